"""agents/run/checkpoint.py and agents/run/models.py: round trips, atomic writes that survive a failure mid-save, normal
file permissions, and a loader that turns every bad file into one `CheckpointError` naming the file, and never
unpickles anything. Format 3: nested state flattened to "/"-joined keys, the files `train` writes for a single run
and a batch (one engine checkpoint with its member axis S, one-seed model files), model files through
`save_agent`/`load_agent`/`DQNAgent.load`, and version-1 files (dqn-np 0.1) whose models still load and evaluate
while their training checkpoints are refused for resuming. Version 2 is tests/agents/run/test_format_v2.py."""

import errno
import io
import json
import os
import re
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from scripttools import snapshot, writes_nothing

import agents.run.checkpoint as ckpt_module
from agents.algo.dqn import DQNAgent
from agents.config import DQNConfig
from agents.run import train, train_one
from agents.run.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    atomic_open,
    atomic_write_text,
    check_compatible,
    flatten_state,
    load_checkpoint,
    save_checkpoint,
    training_state,
    unflatten_state,
)
from agents.run.models import load_agent, save_agent

REPO = Path(__file__).resolve().parents[3]
CONFIG = DQNConfig(hidden_sizes=(8, 4), optimizer="sgd", momentum=0.5, gamma=0.9, batch_size=16, learning_starts=32,
                   n_step=3, n_envs=2)
ARRAYS = {  # a training checkpoint's nested state under "/"-joined keys, every dtype kind
    "agent/online.W1": np.arange(24, dtype=np.float32).reshape(6, 4) / 7,
    "agent/online.b1": np.full(6, -0.25, dtype=np.float64),
    "agent/agent.n_updates": np.array(7, dtype=np.int64),
    "replay/actions": np.array([0, 2, 1], dtype=np.int64),
    "replay/discounts": np.array([0.9**3, 0.0, 0.9], dtype=np.float32),
    "collector/env/obs": np.arange(12, dtype=np.uint8).reshape(3, 4),
    "collector/env/done": np.array([True, False, True]),
}
META = {"kind": "engine", "layout": "single", "seeds": [3], "env_id": "CartPole-v1", "rng": {"state": [1, 2, 3]},
        "best_eval_step": None, "ratio": 0.5, "collector": {"episodes": 4, "env": {"n_envs": 2}}}


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


def test_files_are_written_in_format_version_3(tmp_path: Path) -> None:
    assert FORMAT_VERSION == 3
    with np.load(_save(tmp_path / "ckpt.npz"), allow_pickle=False) as data:
        assert str(data["format"]) == "dqn-np"
        assert data["format_version"].dtype == np.int64 and int(data["format_version"]) == 3


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
    with writes_nothing(tmp_path), pytest.raises(ValueError, match=match):
        save_checkpoint(tmp_path / "ckpt.npz", CONFIG, 4, 3, arrays)


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
        save_checkpoint(path, CONFIG, 4, 3, {"online.W1": np.zeros((2, 2))}, {"seeds": [9]}, write=writer)
    assert path.read_bytes() == before
    assert load_checkpoint(path).meta["seeds"] == [3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]


def test_failing_replace_keeps_previous_checkpoint_and_leaves_no_temp_file(tmp_path: Path, monkeypatch) -> None:
    path = _save(tmp_path / "checkpoint.npz")
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(ckpt_module.os, "replace", broken_replace)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(path, CONFIG, 4, 3, {"online.W1": np.zeros((2, 2))}, {"seeds": [9]})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path).meta["seeds"] == [3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]


def _disk_full_mid_write(f, **arrays) -> None:
    f.write(b"PK\x03\x04 half an archive")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_mid_save_names_the_file_and_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    path = _save(tmp_path / "checkpoint.npz")
    before = path.read_bytes()
    with pytest.raises(OSError) as info:
        save_checkpoint(path, CONFIG, 4, 3, {"online.W1": np.zeros((2, 2))}, {"seeds": [9]}, write=_disk_full_mid_write)
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename == str(path)  # the file the user knows, not the temporary one
    assert path.read_bytes() == before
    assert load_checkpoint(path).meta["seeds"] == [3]
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


def _version_zero(tmp_path: Path, path: Path) -> None:
    arrays = _real_arrays(tmp_path)
    arrays["format_version"] = np.array(0, dtype=np.int64)
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
    "version 0": (_version_zero, "invalid format version 0"),
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
    with writes_nothing(tmp_path), pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message
    assert re.search(pattern, message), message


def test_missing_file_raises_checkpoint_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "checkpoint.npz"
    with writes_nothing(tmp_path), pytest.raises(CheckpointError, match="no such checkpoint") as info:
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
        before = snapshot(tmp_path)
        try:
            load_checkpoint(path)
        except CheckpointError as e:
            assert str(path) in str(e)
            refused += 1
        assert snapshot(tmp_path) == before  # refused or not, loading writes nothing
    assert refused > 400  # most damage is caught (by the zip CRCs); the rest hit bytes nobody reads


def test_pickled_object_array_is_refused_and_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled.marker"
    path = tmp_path / "checkpoint.npz"
    arrays = _real_arrays(tmp_path)
    with open(path, "wb") as f:
        np.savez(f, **arrays, trap=np.array([Trap(str(marker))], dtype=object), allow_pickle=True)

    with writes_nothing(tmp_path), pytest.raises(CheckpointError) as info:
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


# --- nested state: flatten_state / unflatten_state -----------------------------------------------------------------


def _assert_same_state(got, want, where: str = "state") -> None:
    """Equal nested state: arrays with the same dtype, shape and values; everything else equal and of the same type."""
    if isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray), where
        assert (got.dtype, got.shape) == (want.dtype, want.shape), where
        np.testing.assert_array_equal(got, want, err_msg=where)
    elif isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), f"{where}: {sorted(got)} != {sorted(want)}"
        for key in want:
            _assert_same_state(got[key], want[key], f"{where}/{key}")
    else:
        assert type(got) is type(want) and got == want, f"{where}: {got!r} != {want!r}"


def _nested_state() -> dict:
    rng = np.random.default_rng(5)
    rng.random(3)  # a state part-way through the stream
    return {
        "kind": "trainer",
        "seed": 3,
        "train_seconds": 0.125,
        "last_episode": [4, 82, 26.0, 26, 0.99, 0.04],
        "best_params": None,
        "empty": {},
        "agent": {
            "online.W1": np.arange(6, dtype=np.float32).reshape(3, 2),
            "agent.n_updates": np.array(7, dtype=np.int64),
        },
        "rng": {"agent": rng.bit_generator.state, "replay": np.random.default_rng(6).bit_generator.state},
        "collector": {
            "episodes": 4,
            "windows": {"obs": np.zeros((3, 2, 4), np.float32), "count": np.array([1, 2]), "nothing": {}},
            "env": {"obs": np.ones((2, 4), np.float64), "name": "CartPole-v1", "captured": True,
                    "deeper": {"steps": np.array([5, 9], np.int64), "done": np.array([True, False])}},
        },
        "callbacks": {"evaluator": {"best_mean": None, "last": [1, 2.5, False]}, "logger": {}},
        "replay_saved": False,
    }


def test_flatten_state_joins_paths_with_slashes_and_keeps_the_rest_as_json() -> None:
    arrays, meta = flatten_state(_nested_state())
    assert set(arrays) == {"agent/online.W1", "agent/agent.n_updates", "collector/windows/obs",
                           "collector/windows/count", "collector/env/obs", "collector/env/deeper/steps",
                           "collector/env/deeper/done"}
    assert all(isinstance(a, np.ndarray) for a in arrays.values())
    assert json.loads(json.dumps(meta)) == meta  # plain JSON: no arrays, nothing JSON would change
    assert meta["collector"]["env"] == {"name": "CartPole-v1", "captured": True, "deeper": {}}
    assert meta["empty"] == {} and meta["best_params"] is None


def test_flatten_then_unflatten_gives_the_state_back() -> None:
    state = _nested_state()
    arrays, meta = flatten_state(state)
    back = unflatten_state(arrays, meta)
    _assert_same_state(back, state)
    back["collector"]["env"]["name"] = "changed"  # the result does not share the metadata's dicts
    assert meta["collector"]["env"]["name"] == "CartPole-v1"


def test_nested_state_round_trips_through_a_checkpoint_file(tmp_path: Path) -> None:
    state = _nested_state()
    path = save_checkpoint(tmp_path / "checkpoint.npz", CONFIG, 4, 2, *flatten_state(state))
    ckpt = load_checkpoint(path)
    back = unflatten_state(ckpt.arrays, ckpt.meta)
    _assert_same_state(back, {**state, "obs_dim": 4, "n_actions": 2})
    restored = np.random.default_rng(0)
    restored.bit_generator.state = back["rng"]["agent"]
    original = np.random.default_rng(0)
    original.bit_generator.state = state["rng"]["agent"]
    np.testing.assert_array_equal(restored.random(5), original.random(5))  # the generator goes on where it was


@pytest.mark.parametrize(
    ("state", "path"),
    [
        ({"a/b": np.zeros(2)}, "a/b"),
        ({"agent": {"online/W1": np.zeros(2)}}, "agent/online/W1"),
        ({"collector": {"env": {"obs": np.zeros(2), "x/y": 1}}}, "collector/env/x/y"),
        ({"a/b": 1}, "a/b"),
        ({"x": {"a/b": 1}}, "x/a/b"),  # no array anywhere: checked all the same
    ],
)
def test_flatten_state_refuses_a_key_containing_a_slash(state: dict, path: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"must not contain '/', got {path!r}")):
        flatten_state(state)


def test_empty_state_round_trips() -> None:
    assert flatten_state({}) == ({}, {})
    assert unflatten_state({}, {}) == {}


# --- the files a run writes (agents.run.train) --------------------------------------------------------------------

RUN_CONFIG = DQNConfig(hidden_sizes=(8,), batch_size=16, buffer_size=500, learning_starts=32, train_freq=32,
                       gradient_steps=4, target_update_interval=16, eval_freq=100, eval_episodes=2, n_step=2, n_envs=2)
SCALARS = ("agent.n_updates", "optim.t")  # shared by the members: no member axis


@pytest.mark.parametrize(("layout", "seeds"), [("single", [0]), ("batch", [0, 4])])
def test_train_writes_one_nested_engine_checkpoint_and_flat_one_seed_model_files(tmp_path: Path, layout: str,
                                                                                 seeds: list[int]) -> None:
    train(RUN_CONFIG, "CartPole-v1", seeds, tmp_path, 200, layout=layout, final_eval_episodes=2)
    ckpt = load_checkpoint(tmp_path / "checkpoint.npz")
    S = len(seeds)
    assert ckpt.config == RUN_CONFIG and (ckpt.obs_dim, ckpt.n_actions) == (4, 2)
    assert ckpt.meta["kind"] == "engine" and ckpt.meta["layout"] == layout and ckpt.meta["env_steps"] == 200
    assert ckpt.meta["seeds"] == seeds
    assert {"agent/online.W1", "agent/target.W1", "agent/agent.n_updates", "replay/buffers/0/discounts"} <= set(
        ckpt.arrays)
    assert not any(key.startswith(("online.", "target.", "optim.")) for key in ckpt.arrays)
    state, found = training_state(ckpt)
    assert found == layout
    assert sorted(state["replay"]["buffers"]) == [str(s) for s in range(S)]
    for buffer in state["replay"]["buffers"].values():
        assert set(buffer) == {"obs", "actions", "rewards", "next_obs", "discounts", "pos", "size", "capacity"}
    assert len(state["replay"]["rng"]) == len(state["agent"]["rng"]) == S  # each member's generators in its part
    assert state["agent"]["online.W1"].shape == (S, 8, 4)  # the member axis, also for one seed
    assert state["agent"]["agent.n_updates"].shape == ()
    for s, k in enumerate(seeds):
        root = tmp_path if layout == "single" else tmp_path / f"seed{k}"
        for name in ("best.npz", "final.npz"):
            model = load_checkpoint(root / name)
            assert "kind" not in model.meta and model.meta["seed"] == k, name
            assert {"online.W1", "target.W1", "agent.n_updates"} <= set(model.arrays), name
            assert not any("/" in key for key in model.arrays), name
            assert model.arrays["online.W1"].shape == (8, 4), name  # one seed: no member axis
        final = load_checkpoint(root / "final.npz")
        assert set(final.arrays) == {key[len("agent/"):] for key in ckpt.arrays if key.startswith("agent/")}
        for key, value in final.arrays.items():  # the final model is member s of the checkpoint's agent
            stacked = ckpt.arrays[f"agent/{key}"]
            np.testing.assert_array_equal(stacked if key in SCALARS else stacked[s], value, err_msg=f"{k}: {key}")
        assert final.meta["agent_rng"] == state["agent"]["rng"][s]
    if layout == "batch":
        assert not (tmp_path / "final.npz").exists() and not (tmp_path / "seed0" / "checkpoint.npz").exists()


# --- model files (agents.run.models) ------------------------------------------------------------------------------


def _trained_agent(members: int | None = None) -> DQNAgent:
    """An agent (stacked when `members` is given) after a few updates and draws, so every part of its state is set."""
    from agents.data.replay import Batch

    rng = np.random.default_rng(21)
    gens = np.random.default_rng(22) if members is None else [np.random.default_rng(22 + s) for s in range(members)]
    agent = DQNAgent(4, 3, CONFIG, gens)
    lead = (16,) if members is None else (members, 16)
    for _ in range(3):
        agent.update(Batch(rng.normal(size=(*lead, 4)), rng.integers(3, size=lead), rng.normal(size=lead),
                           rng.normal(size=(*lead, 4)), np.full(lead, 0.9)))
    agent.act(rng.normal(size=(2, 4)) if members is None else rng.normal(size=(members, 2, 4)), 0.5)
    return agent


def _assert_same_agent(got: DQNAgent, want: DQNAgent) -> None:
    assert got.members is None and got.config == want.config and got.n_updates == want.n_updates
    assert (got.obs_dim, got.n_actions) == (want.obs_dim, want.n_actions)
    got_state, want_state = got.state_dict(), want.state_dict()
    assert got_state.keys() == want_state.keys()
    for key, value in want_state.items():
        if isinstance(value, np.ndarray):
            assert got_state[key].dtype == value.dtype, key
            np.testing.assert_array_equal(got_state[key], value, err_msg=key)
        else:
            assert got_state[key] == value, key  # the exploration generator's state


def test_save_agent_then_load_agent_is_the_same_agent_and_its_stream_goes_on(tmp_path: Path) -> None:
    agent = _trained_agent()
    path = save_agent(agent, tmp_path / "model.npz", meta={"env_id": "Fits-v0"})
    model = load_checkpoint(path)
    assert model.meta["env_id"] == "Fits-v0" and model.meta["agent_rng"] == agent.rng.bit_generator.state
    assert not any("/" in key for key in model.arrays) and "rng" not in model.arrays
    loaded = load_agent(path)
    _assert_same_agent(loaded, agent)
    obs = np.random.default_rng(5).normal(size=(6, 4))
    np.testing.assert_array_equal(loaded.act(obs, 0.5), agent.act(obs, 0.5))  # the same draws from here on
    _assert_same_agent(DQNAgent.load(agent.save(tmp_path / "again.npz")), loaded)  # the conveniences are these


def test_save_agent_refuses_a_stacked_agent_and_writes_nothing(tmp_path: Path) -> None:
    stacked = _trained_agent(members=2)
    with writes_nothing(tmp_path), pytest.raises(ValueError, match=r"save agent\.member\(s\).*2 members"):
        save_agent(stacked, tmp_path / "model.npz")
    _assert_same_agent(load_agent(save_agent(stacked.member(1), tmp_path / "member1.npz")), stacked.member(1))


def test_load_agent_of_a_batch_checkpoint_is_refused_naming_the_seed_files(tmp_path: Path) -> None:
    train(RUN_CONFIG, "CartPole-v1", [0, 4], tmp_path, 100, layout="batch", final_eval_episodes=1)
    path = tmp_path / "checkpoint.npz"
    with writes_nothing(tmp_path), pytest.raises(CheckpointError) as info:
        load_agent(path)
    message = str(info.value)
    assert message.startswith(f"{path}:") and "2 seeds" in message and str(tmp_path / "seed<k>" / "best.npz") in message
    assert load_agent(tmp_path / "seed4" / "final.npz").members is None  # where the way out points: loads


def test_load_agent_of_a_model_file_that_does_not_fit_its_config_names_the_file(tmp_path: Path) -> None:
    path = save_agent(_trained_agent(), tmp_path / "model.npz")
    model = load_checkpoint(path)
    arrays = {**model.arrays, "online.W1": np.zeros((5, 4), model.arrays["online.W1"].dtype)}  # config says 8 x 4
    save_checkpoint(path, model.config, 4, 3, arrays, model.meta)
    with writes_nothing(tmp_path), pytest.raises(CheckpointError) as info:
        load_agent(path)
    assert str(info.value).startswith(f"{path}: agent arrays do not match its config")


# --- version 1 (dqn-np 0.1) ---------------------------------------------------------------------------------------

V1_SIZES = (4, 8, 2)  # CartPole: 4 observation values, one hidden layer of 8, 2 actions


def _v1_config_json() -> str:
    """A config as dqn-np 0.1 wrote it: no n_step, no n_envs."""
    config = json.loads(DQNConfig(hidden_sizes=(8,), batch_size=16, learning_starts=32).to_json())
    del config["n_step"], config["n_envs"]
    return json.dumps(config, sort_keys=True)


def _v1_agent_arrays(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """An agent as dqn-np 0.1 saved it (Adam): online.*, target.*, optim.t, optim.m.*, optim.v.*, agent.n_updates."""
    arrays: dict[str, np.ndarray] = {"agent.n_updates": np.array(12, dtype=np.int64),
                                     "optim.t": np.array(12, dtype=np.int64)}
    for i, (n_in, n_out) in enumerate(zip(V1_SIZES, V1_SIZES[1:], strict=False), 1):
        for name, shape in ((f"W{i}", (n_out, n_in)), (f"b{i}", (n_out,))):
            arrays[f"online.{name}"] = rng.normal(size=shape).astype(np.float32)
            arrays[f"target.{name}"] = rng.normal(size=shape).astype(np.float32)
            arrays[f"optim.m.{name}"] = rng.normal(scale=0.01, size=shape).astype(np.float32)
            arrays[f"optim.v.{name}"] = np.abs(rng.normal(scale=0.01, size=shape)).astype(np.float32)
    return arrays


def _write_v1(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    """Write a file the way dqn-np 0.1's save_checkpoint did (format_version 1)."""
    header = {"format": np.array("dqn-np"), "format_version": np.array(1, dtype=np.int64),
              "config": np.array(_v1_config_json()),
              "meta": np.array(json.dumps({**meta, "obs_dim": V1_SIZES[0], "n_actions": V1_SIZES[-1]}))}
    with open(path, "wb") as f:
        np.savez(f, **header, **arrays)
    return path


def _v1_model_file(path: Path) -> tuple[Path, dict[str, np.ndarray], dict]:
    rng = np.random.default_rng(11)
    arrays = _v1_agent_arrays(rng)
    agent_rng = np.random.default_rng(12).bit_generator.state
    meta = {"env_id": "CartPole-v1", "env_steps": 600, "agent_rng": agent_rng}
    return _write_v1(path, arrays, meta), arrays, agent_rng


def test_version_1_model_file_loads_with_one_step_one_env_defaults(tmp_path: Path) -> None:
    path, arrays, agent_rng = _v1_model_file(tmp_path / "best.npz")
    agent = DQNAgent.load(path)
    assert agent.config.n_step == 1 and agent.config.n_envs == 1
    assert agent.config.hidden_sizes == (8,)
    assert agent.n_updates == 12
    for name, value in agent.online.params.items():
        np.testing.assert_array_equal(value, arrays[f"online.{name}"], err_msg=name)
    for name, value in agent.target.params.items():
        np.testing.assert_array_equal(value, arrays[f"target.{name}"], err_msg=name)
    assert agent.rng.bit_generator.state == agent_rng


def test_version_1_model_file_evaluates_with_the_script(tmp_path: Path) -> None:
    path, _, _ = _v1_model_file(tmp_path / "final.npz")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "scripts/evaluate.py", str(path), "--episodes", "2", "--json", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result["env_id"] == "CartPole-v1" and result["episodes"] == 2 and len(result["returns"]) == 2


def test_version_1_training_checkpoint_is_refused_for_resuming(tmp_path: Path) -> None:
    rng = np.random.default_rng(13)
    arrays = _v1_agent_arrays(rng)
    arrays.update({  # what else dqn-np 0.1 put in a training checkpoint
        "replay.obs": np.zeros((5, 4), np.float32), "replay.actions": np.zeros(5, np.int64),
        "replay.rewards": np.ones(5, np.float32), "replay.next_obs": np.zeros((5, 4), np.float32),
        "replay.terminated": np.array([0, 0, 1, 0, 0], np.float32), "replay.pos": np.array(5, np.int64),
        "replay.size": np.array(5, np.int64), "replay.capacity": np.array(50_000, np.int64),
        "best.W1": arrays["online.W1"], "episode.actions": np.array([0, 1], np.int64),
    })
    generators = {name: np.random.default_rng(i).bit_generator.state
                  for i, name in enumerate(("agent", "replay", "env"))}
    meta = {"seed": 0, "env_steps": 600, "episodes": 24, "n_evals": 2, "best_eval_mean": 51.5, "best_eval_step": 300,
            "solved_at_step": None, "last_episode": [24, 582, 19.0, 19, 0.93, 0.44], "replay_saved": True,
            "rng": generators, "env_id": "CartPole-v1", "wall_seconds": 0.5}  # no "kind": "trainer"
    path = _write_v1(tmp_path / "checkpoint.npz", arrays, meta)
    before = path.read_bytes()
    with writes_nothing(tmp_path), pytest.raises(CheckpointError) as info:
        train_one(None, "CartPole-v1", 0, tmp_path, 1000, resume=True)
    message = str(info.value)
    assert str(path) in message
    assert "not a training checkpoint of this dqn-np version" in message
    assert re.search(r"before format version 2, can be evaluated but not resumed", message), message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]  # nothing written, nothing changed
    assert path.read_bytes() == before
    assert DQNAgent.load(path).n_updates == 12  # its agent can still be loaded (and evaluated)


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
