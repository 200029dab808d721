"""agents/checkpoint.py: round trips, atomic writes that survive a failure mid-save, normal file permissions, and a
loader that turns every bad file into one `CheckpointError` naming the file, and never unpickles anything."""

import io
import os
import re
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from agents import checkpoint as ckpt_module
from agents.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    atomic_open,
    atomic_write_text,
    check_compatible,
    load_checkpoint,
    save_checkpoint,
)
from agents.config import DQNConfig

REPO = Path(__file__).resolve().parents[2]
CONFIG = DQNConfig(hidden_sizes=(8, 4), optimizer="sgd", momentum=0.5, gamma=0.9, batch_size=16, learning_starts=32)
ARRAYS = {
    "online.W1": np.arange(24, dtype=np.float32).reshape(6, 4) / 7,
    "online.b1": np.full(6, -0.25, dtype=np.float64),
    "replay.actions": np.array([0, 2, 1], dtype=np.int64),
    "replay.obs": np.arange(12, dtype=np.uint8).reshape(3, 4),
    "replay.terminated": np.array([True, False, True]),
    "agent.n_updates": np.array(7, dtype=np.int64),
}
META = {"seed": 3, "env_id": "CartPole-v1", "rng": {"state": [1, 2, 3]}, "best_eval_step": None, "ratio": 0.5}


def _save(path: Path, **kwargs) -> Path:
    return save_checkpoint(path, CONFIG, 4, 3, ARRAYS, META, **kwargs)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _npy_bytes(header: str, version: bytes = b"\x01\x00") -> bytes:
    """A .npy member with a hand-written header (padded and newline-terminated like numpy's)."""
    text = header.ljust(118) + "\n"
    return b"\x93NUMPY" + version + struct.pack("<H", len(text)) + text.encode("latin1")


class Trap:
    """Unpickling this object creates `marker`: proof that a loader executed pickled code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


# --- round trip ---------------------------------------------------------------------------------------------------


def test_round_trip_keeps_arrays_dtypes_config_and_meta(tmp_path: Path) -> None:
    path = _save(tmp_path / "ckpt.npz")
    loaded = load_checkpoint(path)
    assert loaded.path == path
    assert loaded.config == CONFIG
    assert (loaded.obs_dim, loaded.n_actions) == (4, 3)
    assert set(loaded.arrays) == set(ARRAYS)  # the reserved header entries are not handed back as arrays
    for key, a in ARRAYS.items():
        assert loaded.arrays[key].dtype == a.dtype, key
        assert loaded.arrays[key].shape == a.shape, key
        assert np.array_equal(loaded.arrays[key], a), key
    assert loaded.meta == {**META, "obs_dim": 4, "n_actions": 3}


def test_save_with_compressed_writer_round_trips(tmp_path: Path) -> None:
    path = _save(tmp_path / "ckpt.npz", write=np.savez_compressed)
    loaded = load_checkpoint(path)
    assert all(np.array_equal(loaded.arrays[k], a) for k, a in ARRAYS.items())


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"meta": np.zeros(2)}, "reserved"),
        ({"format": np.zeros(2)}, "reserved"),
        ({"obj": np.array([{"a": 1}], dtype=object)}, "numeric"),
        ({"text": np.array(["a", "b"])}, "numeric"),
    ],
)
def test_save_refuses_reserved_keys_and_non_numeric_arrays(tmp_path: Path, arrays: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        save_checkpoint(tmp_path / "ckpt.npz", CONFIG, 4, 3, arrays)
    assert list(tmp_path.iterdir()) == []


# --- atomic writes and permissions --------------------------------------------------------------------------------


def _fail_mid_write(f, **arrays) -> None:
    f.write(b"PK\x03\x04 half an archive")
    raise RuntimeError("disk full")


def _interrupt_mid_write(f, **arrays) -> None:
    np.savez(io.BytesIO(), **arrays)
    f.write(b"PK\x03\x04")
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("writer", "error"), [(_fail_mid_write, RuntimeError), (_interrupt_mid_write, KeyboardInterrupt)]
)
def test_failure_mid_save_keeps_previous_checkpoint_and_leaves_no_temp_file(tmp_path: Path, writer, error) -> None:
    path = _save(tmp_path / "checkpoint.npz")
    before = path.read_bytes()
    with pytest.raises(error):
        save_checkpoint(path, CONFIG, 4, 3, {"online.W1": np.zeros((2, 2))}, {"seed": 9}, write=writer)
    assert path.read_bytes() == before
    assert load_checkpoint(path).meta["seed"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]


def test_failing_replace_keeps_previous_checkpoint_and_leaves_no_temp_file(tmp_path: Path, monkeypatch) -> None:
    path = _save(tmp_path / "checkpoint.npz")
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(ckpt_module.os, "replace", broken_replace)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(path, CONFIG, 4, 3, {"online.W1": np.zeros((2, 2))}, {"seed": 9})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path).meta["seed"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]


def test_atomic_write_text_replaces_content_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    atomic_write_text(path, "first\n")
    atomic_write_text(path, "second\n")
    assert path.read_text() == "second\n"
    with pytest.raises(ZeroDivisionError), atomic_open(path, "w") as f:
        f.write("third, never finished")
        1 / 0  # noqa: B018
    assert path.read_text() == "second\n"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_written_files_get_the_permissions_open_would_give(tmp_path: Path) -> None:
    expected = 0o666 & ~_current_umask()
    new = _save(tmp_path / "new.npz")
    replaced = _save(_save(tmp_path / "replaced.npz"))
    atomic_write_text(tmp_path / "summary.json", "{}\n")
    for path in (new, replaced, tmp_path / "summary.json"):
        mode = path.stat().st_mode & 0o777
        assert mode == expected, f"{path.name}: {oct(mode)} != {oct(expected)}"
        if not _current_umask() & 0o044:
            assert mode & 0o044, f"{path.name} is not readable by group/others: {oct(mode)}"


# --- load errors --------------------------------------------------------------------------------------------------


def _real_arrays(tmp_path: Path) -> dict[str, np.ndarray]:
    path = _save(tmp_path / "real.npz")
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _truncated(tmp_path: Path, path: Path) -> None:
    data = _save(tmp_path / "real.npz").read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(tmp_path: Path, path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(4096))


def _empty(tmp_path: Path, path: Path) -> None:
    path.write_bytes(b"")


def _lone_npy(tmp_path: Path, path: Path) -> None:
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))


def _not_ours(tmp_path: Path, path: Path) -> None:
    with open(path, "wb") as f:
        np.savez(f, weights=np.zeros(3))


def _other_format(tmp_path: Path, path: Path) -> None:
    arrays = _real_arrays(tmp_path)
    arrays["format"] = np.array("someone-else")
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _newer_version(tmp_path: Path, path: Path) -> None:
    arrays = _real_arrays(tmp_path)
    arrays["format_version"] = np.array(FORMAT_VERSION + 1, dtype=np.int64)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _bad_meta(tmp_path: Path, path: Path) -> None:
    arrays = _real_arrays(tmp_path)
    arrays["meta"] = np.array('{"obs_dim": 4}')  # n_actions missing
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _bad_config(tmp_path: Path, path: Path) -> None:
    arrays = _real_arrays(tmp_path)
    arrays["config"] = np.array('{"gamma": 7}')
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _damage_central_directory(tmp_path: Path, path: Path, offset: int, value: int) -> None:
    data = bytearray(_save(tmp_path / "real.npz").read_bytes())
    entry = data.find(b"PK\x01\x02")  # the first central-directory entry
    data[entry + offset : entry + offset + 2] = value.to_bytes(2, "little")
    path.write_bytes(bytes(data))


def _damaged_compression_field(tmp_path: Path, path: Path) -> None:
    _damage_central_directory(tmp_path, path, 10, 99)  # an unknown compression method: NotImplementedError


def _damaged_flag_field(tmp_path: Path, path: Path) -> None:
    _damage_central_directory(tmp_path, path, 8, 1)  # the "encrypted" flag: RuntimeError


def _damaged_array_header(tmp_path: Path, path: Path) -> None:
    # A valid zip (correct CRC) whose .npy header is cut off mid-dict: numpy's Python-2 fallback tokenizes it.
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("format.npy", _npy_bytes("{'descr': '<U6', 'fortran_order': False, 'shape': (), "))


BAD_FILES = {
    "truncated": (_truncated, "truncated|corrupt|not a .npz"),
    "garbage": (_garbage, "not a .npz"),
    "empty": (_empty, "not a .npz"),
    "lone .npy": (_lone_npy, "not a .npz"),
    "not ours": (_not_ours, "not a dqn-np checkpoint"),
    "other format": (_other_format, "not a dqn-np checkpoint"),
    "newer version": (_newer_version, f"newer.*{FORMAT_VERSION + 1}"),
    "bad meta": (_bad_meta, "metadata"),
    "bad config": (_bad_config, "config"),
    "damaged compression field": (_damaged_compression_field, "corrupt"),
    "damaged flag field": (_damaged_flag_field, "corrupt"),
    "damaged array header": (_damaged_array_header, "corrupt"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_raises_checkpoint_error_naming_it(tmp_path: Path, case: str) -> None:
    make, pattern = BAD_FILES[case]
    path = tmp_path / "checkpoint.npz"
    make(tmp_path, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message
    assert re.search(pattern, message), message


def test_missing_file_raises_checkpoint_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "checkpoint.npz"
    with pytest.raises(CheckpointError, match="no such checkpoint") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_random_damage_never_escapes_as_another_exception(tmp_path: Path) -> None:
    good = _save(tmp_path / "real.npz").read_bytes()
    path = tmp_path / "checkpoint.npz"
    rng = np.random.default_rng(1)
    refused = 0
    for _ in range(500):
        data = bytearray(good)
        start = int(rng.integers(len(data)))
        chunk = rng.bytes(int(rng.integers(1, 16)))[: len(data) - start]
        data[start : start + len(chunk)] = chunk
        path.write_bytes(bytes(data))
        try:
            load_checkpoint(path)
        except CheckpointError as e:
            assert str(path) in str(e)
            refused += 1
    assert refused > 400  # most damage is caught (by the zip CRCs); the rest hit bytes nobody reads


def test_pickled_object_array_is_refused_and_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled.marker"
    path = tmp_path / "checkpoint.npz"
    arrays = _real_arrays(tmp_path)
    with open(path, "wb") as f:
        np.savez(f, **arrays, trap=np.array([Trap(str(marker))], dtype=object), allow_pickle=True)

    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert "refused" in str(info.value)
    assert not marker.exists(), "load_checkpoint executed pickled code"

    # The trap is live: a loader that allows pickles does run it.
    with np.load(path, allow_pickle=True) as data:
        data["trap"]
    assert marker.exists()


def test_check_compatible_names_file_and_both_sizes(tmp_path: Path) -> None:
    loaded = load_checkpoint(_save(tmp_path / "ckpt.npz"))
    check_compatible(loaded, 4, 3, "Fits-v0")  # no error
    with pytest.raises(CheckpointError) as info:
        check_compatible(loaded, 6, 3, "Wider-v0")
    message = str(info.value).replace(str(loaded.path), "PATH")
    assert message.startswith("PATH:")
    assert re.search(r"\b4\b", message) and re.search(r"\b6\b", message) and "Wider-v0" in message


# --- nothing in the code base may unpickle ------------------------------------------------------------------------


def test_no_source_file_allows_pickle() -> None:
    sources = [p for d in ("dqn_np", "agents", "envs", "scripts") for p in sorted((REPO / d).rglob("*.py"))]
    assert len(sources) >= 10
    offenders = []
    for path in sources:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"allow_pickle\s*=\s*True|^\s*import\s+(c?pickle|dill)\b|^\s*from\s+(c?pickle|dill)\s", line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == []
