"""Negative controls for `writes_nothing` / `snapshot` (tests/scripttools.py), the check every refusal test uses for
README's "exit status 2 means bad input, nothing written": each way a refusal could write (a new file, a new folder,
a fresh --out created, a file changed, rewritten with the same bytes, or removed) makes the check fire, and a block
that only reads passes."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from scripttools import run_main, snapshot, writes_nothing


def _populate(root: Path) -> Path:
    """A folder like a run's: a file, a hidden lock and a sub-folder with a file; returns the file to touch."""
    (root / "sub").mkdir()
    (root / "sub" / "evals.csv").write_text("eval_index,env_steps,mean\n")
    (root / ".lock").write_text("123\n")
    config = root / "config.json"
    config.write_text('{"seed": 0}')
    os.utime(config, ns=(0, 0))  # an old mtime, so a rewrite now shows even on a coarse clock
    return config


def _create_file(root: Path, config: Path) -> None:
    (root / "sub" / "summary.json").write_text("{}")


def _create_folder(root: Path, config: Path) -> None:
    (root / "seed0").mkdir()


def _change_bytes_keep_mtime(root: Path, config: Path) -> None:
    config.write_text('{"seed": 1}')
    os.utime(config, ns=(0, 0))


def _rewrite_same_bytes(root: Path, config: Path) -> None:
    config.write_text(config.read_text())


def _remove_hidden_file(root: Path, config: Path) -> None:
    (root / ".lock").unlink()


def _remove_folder(root: Path, config: Path) -> None:
    (root / "sub" / "evals.csv").unlink()
    (root / "sub").rmdir()


@pytest.mark.parametrize(("write", "what"), [
    (_create_file, "created: {root}/sub/summary.json"),
    (_create_folder, "created: {root}/seed0"),
    (_change_bytes_keep_mtime, "changed: {root}/config.json"),
    (_rewrite_same_bytes, "changed: {root}/config.json"),
    (_remove_hidden_file, "removed: {root}/.lock"),
    (_remove_folder, "removed: {root}/sub, {root}/sub/evals.csv"),
], ids=["new-file", "new-folder", "changed-bytes", "same-bytes-rewritten", "hidden-file-removed", "folder-removed"])
def test_every_kind_of_write_makes_the_check_fire(write, what, tmp_path: Path) -> None:
    config = _populate(tmp_path)
    with pytest.raises(AssertionError) as info, writes_nothing(tmp_path):
        write(tmp_path, config)
    assert str(info.value).startswith(f"a refusal wrote: {what.format(root=tmp_path)}"), str(info.value)


def test_a_fresh_out_created_by_a_refusal_makes_the_check_fire(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(AssertionError, match=f"created: {out}$"), writes_nothing(out):
        out.mkdir()  # even empty: a folder left behind blocks the next --out
    assert snapshot(tmp_path / "never") == {tmp_path / "never": "missing"}


def test_reading_and_a_temporary_file_removed_again_pass(tmp_path: Path) -> None:
    config = _populate(tmp_path)
    with writes_nothing(tmp_path, tmp_path / "absent"):
        config.read_bytes()
        (tmp_path / "sub" / "x.tmp").write_bytes(b"half")  # what an atomic writer does before it gives up
        (tmp_path / "sub" / "x.tmp").unlink()


def test_a_script_that_writes_before_refusing_is_caught(tmp_path: Path, capsys) -> None:
    """The class the refusal tests guard against: exit status 2 and one line, but a file already written."""

    def main(argv: list[str]) -> int:
        out = Path(argv[argv.index("--out") + 1])
        out.mkdir()
        (out / "config.json").write_text("{}")  # written before the check below
        raise SystemExit(2)

    out = tmp_path / "run"
    with pytest.raises(AssertionError, match="a refusal wrote: created: "), writes_nothing(tmp_path, out):
        status, _, _ = run_main(SimpleNamespace(main=main), capsys, "--out", out)
        assert status == 2  # the status alone would let it pass


def test_a_lock_rewritten_with_its_own_bytes_is_still_a_write(tmp_path: Path) -> None:
    """`.lock` is judged like any file: a refused process must put back its bytes and its times
    (RunLock.release(undo=True) does); the same bytes with a new mtime are a write."""
    _populate(tmp_path)
    lock = tmp_path / ".lock"
    os.utime(lock, ns=(0, 0))
    with pytest.raises(AssertionError, match=f"changed: {lock}$"), writes_nothing(tmp_path):
        lock.write_text("123\n")  # the earlier bytes, but written now
    with writes_nothing(tmp_path):
        stat = lock.stat()
        lock.write_text("999\n")
        lock.write_text("123\n")
        os.utime(lock, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # what a refused RunLock does
    with pytest.raises(AssertionError, match=f"changed: {lock}$"), writes_nothing(tmp_path):
        lock.write_text("999\n")  # this process's PID left behind
