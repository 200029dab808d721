"""Helpers shared by the tests that run a script's `main` in-process (on pytest's pythonpath, like statecheck)."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_script(name: str) -> ModuleType:
    """scripts/<name>.py as a fresh module, so a test can call its `main(argv)`."""
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_main(script: ModuleType, capsys, *args) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `script.main(ARGS)`, in-process (a SystemExit's code counts as its status)."""
    try:
        status = script.main([str(a) for a in args])
    except SystemExit as e:
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


def tree(folder: Path) -> dict[Path, bytes | None]:
    """Every path under `folder` with its bytes (None for a folder): what a refusal must leave as it was."""
    return {p: (None if p.is_dir() else p.read_bytes()) for p in sorted(folder.rglob("*"))}


Entry = tuple[int, bytes] | None


def snapshot(*roots: Path) -> dict[Path, Entry | str]:
    """What a refusal must leave as it was under each root: every path (hidden ones included) -> (mtime_ns, bytes)
    for a file, None for a folder; a root that does not exist maps to "missing", so creating it shows.

    The mtime catches a file rewritten with the same bytes (a config.json written again); folders' own mtimes are left
    out, so a temporary file made and removed again does not count as written. A run folder's `.lock` is no exception:
    a process refused after taking the lock puts its earlier bytes and times back (`RunLock.release(undo=True)`).
    """
    shot: dict[Path, Entry | str] = {}
    for root in map(Path, roots):
        if not root.exists():
            shot[root] = "missing"
            continue
        for p in [root, *sorted(root.rglob("*"))]:
            shot[p] = None if p.is_dir() else (p.stat().st_mtime_ns, p.read_bytes())
    return shot


def changes(before: dict[Path, Entry | str], after: dict[Path, Entry | str]) -> str:
    """The paths created, removed and changed between two snapshots, in one line ('' when none)."""
    created = sorted(str(p) for p in after.keys() - before.keys() if after[p] != "missing")
    created += sorted(str(p) for p in before if before[p] == "missing" and after.get(p) != "missing")
    removed = sorted(str(p) for p in before.keys() - after.keys() if before[p] != "missing")
    removed += sorted(str(p) for p in after if after[p] == "missing" and before.get(p) != "missing")
    changed = sorted(str(p) for p in before.keys() & after.keys() if "missing" not in (before[p], after[p])
                     and before[p] != after[p])
    parts = [f"{what}: {', '.join(paths)}" for what, paths in (("created", created), ("removed", removed),
                                                               ("changed", changed)) if paths]
    return "; ".join(parts)


@contextlib.contextmanager
def writes_nothing(*roots: Path) -> Iterator[None]:
    """Asserts that the block creates, removes and changes nothing under `roots` (see `snapshot`); a root that did
    not exist must not exist afterwards. Wrap a refusal in it: `with writes_nothing(tmp_path): ...`."""
    before = snapshot(*roots)
    yield
    after = snapshot(*roots)
    assert after == before, f"a refusal wrote: {changes(before, after)}"


# (args, the error's fragment): the --json paths every command that writes results refuses before its work, in a
# folder made by `make_output_paths`
JSON_REFUSALS = [
    (["--json", "missing/x.json"], "its folder"),
    (["--json", "a_folder"], "it is a folder"),
    (["--json", "file/x.json"], "is not a folder"),
    (["--json", "n" * 300 + ".json"], "bytes long"),
    (["--json", "old.json"], "the file exists"),
]


def make_output_paths(root: Path) -> None:
    """What `JSON_REFUSALS` points at, in `root`: a folder, a file and an earlier results file."""
    (root / "a_folder").mkdir()
    (root / "file").write_text("a file")
    (root / "old.json").write_text("earlier figures")
