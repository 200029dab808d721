"""Checkpoint files: one versioned `.npz` of plain arrays, written atomically, read with `allow_pickle=False`.

Layout of the archive:
    format          "dqn-np"                        identifies our files
    format_version  int                             refused when newer than FORMAT_VERSION
    config          JSON of DQNConfig
    meta            JSON: obs_dim, n_actions and whatever the writer adds (counters, RNG states, ...)
    online.W1, target.W1, optim.m.W1, ...          a model file's arrays (best.npz, final.npz)
    agent/online.W1, replay/obs, collector/env/obs, ...   a training checkpoint's nested state (`flatten_state`)

Versions: 1 (dqn-np 0.1: one env, replay stored `terminated`), 2 (vector envs, n-step windows, replay stores
`discounts`; a training checkpoint is of kind "trainer", one seed, or "seed_batch", many), 3 (one kind, "engine":
the one loop's state with its member axis S, for a single run (S = 1, layout "single") and a batch alike; every
component's generators inside its own state). Model files (best.npz, final.npz) keep their one-seed layout in every
version. A version-1 model file still loads and evaluates; a version-1 training checkpoint cannot be resumed; a
version-2 training checkpoint of either kind is read into the version-3 state (`training_state`) and resumes
bit-identically.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np

from agents.config import DQNConfig
from agents.validate import is_integer

FORMAT = "dqn-np"
FORMAT_VERSION = 3
_RESERVED = ("format", "format_version", "config", "meta")
_UMASK = os.umask(0)
os.umask(_UMASK)


class CheckpointError(Exception):
    """A checkpoint could not be read: missing, corrupt, not ours, too new, or not matching the environment."""


class Checkpoint(NamedTuple):
    """What `load_checkpoint` returns."""

    path: Path
    config: DQNConfig
    obs_dim: int
    n_actions: int
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Write to a temporary file in the same folder, fsync it, then `os.replace` it over `path`.

    A failure at any point leaves the previous `path` untouched and removes the temporary file; an `OSError` (a full
    disk, a read-only folder) is raised again naming `path`, not the temporary file.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from e
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the permissions open() would
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if e.errno is not None and e.filename in (None, tmp):
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Replace `path` with `text` atomically (see `atomic_open`)."""
    with atomic_open(path, "w") as f:
        f.write(text)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(
    path: str | Path,
    config: DQNConfig,
    obs_dim: int,
    n_actions: int,
    arrays: dict[str, np.ndarray],
    meta: dict[str, Any] | None = None,
    write: Callable[..., None] = np.savez,
) -> Path:
    """Write a checkpoint atomically and return its path.

    Args:
        path: the `.npz` file to (re)place.
        config: the run's config.
        obs_dim: observation length the networks take.
        n_actions: number of actions the networks output.
        arrays: named numeric arrays (no object arrays).
        meta: JSON-serialisable extras (counters, RNG states as `bit_generator.state` dicts, ...).
        write: the archive writer (`np.savez`; `np.savez_compressed` for smaller replay files).
    """
    path = Path(path)
    clash = set(arrays) & set(_RESERVED)
    if clash:
        raise ValueError(f"arrays must not use the reserved keys {sorted(clash)}")
    for key, a in arrays.items():
        if np.asarray(a).dtype.kind not in "biuf":
            raise ValueError(f"arrays[{key!r}] must be numeric, got dtype {np.asarray(a).dtype}")
    header = {
        "format": np.array(FORMAT),
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "config": np.array(config.to_json()),
        "meta": np.array(json.dumps({**(meta or {}), "obs_dim": int(obs_dim), "n_actions": int(n_actions)})),
    }
    with atomic_open(path) as f:
        write(f, **header, **arrays)
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and validate a checkpoint; every failure raises `CheckpointError` naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):  # np.load would return a lone .npy array, or try to unpickle anything else
        raise CheckpointError(f"{path}: not a .npz archive (truncated, corrupt, or another kind of file)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except ValueError as e:
        if "object arrays cannot be loaded" in str(e).lower():  # numpy's words for a pickled array
            raise CheckpointError(
                f"{path}: refused: the file holds pickled Python objects, which are never loaded") from e
        raise CheckpointError(f"{path}: not a readable .npz checkpoint ({e})") from e
    # Damaged bytes surface as many types (BadZipFile, OSError, EOFError, KeyError, and also NotImplementedError or
    # RuntimeError from a garbled zip flag or method, TokenError from a garbled .npy header): all mean "corrupt".
    except Exception as e:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({type(e).__name__}: {e})") from e
    if "format" not in arrays or str(arrays["format"]) != FORMAT:
        raise CheckpointError(f"{path}: not a dqn-np checkpoint (no 'format' = {FORMAT!r} entry)")
    try:
        version = int(arrays.pop("format_version", -1))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid format version ({e})") from e
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer dqn-np (format version {version}); this version reads up to {FORMAT_VERSION}"
        )
    if version < 1:
        raise CheckpointError(f"{path}: invalid format version {version}")
    try:
        config_json = str(arrays.pop("config"))
        if version == 1:  # dqn-np 0.1 stepped one env with one-step targets; today's defaults would misread it
            config_json = json.dumps({"n_step": 1, "n_envs": 1, **json.loads(config_json)})
        config = DQNConfig.from_json(config_json)
        meta = json.loads(str(arrays.pop("meta")))
        obs_dim, n_actions = int(meta["obs_dim"]), int(meta["n_actions"])
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: invalid config or metadata ({e})") from e
    arrays.pop("format")
    return Checkpoint(path, config, obs_dim, n_actions, arrays, meta)


def flatten_state(state: dict[str, Any], prefix: str = "") -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Split nested state into `.npz` arrays and JSON metadata: the one mapping from components' state to a file.

    Every array leaf becomes an array under its path joined with "/" (`{"replay": {"obs": a}}` -> `"replay/obs"`);
    everything else (numbers, strings, None, lists, generator states) stays in a nested dict of the same shape,
    which goes into the checkpoint's JSON `meta`. `unflatten_state` puts the two back together.
    """
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {}
    for key, value in state.items():
        if "/" in key:
            raise ValueError(f"state keys must not contain '/', got {prefix + key!r}")
        if isinstance(value, np.ndarray):
            arrays[prefix + key] = value
        elif isinstance(value, dict):
            sub_arrays, sub_meta = flatten_state(value, f"{prefix}{key}/")
            arrays.update(sub_arrays)
            meta[key] = sub_meta
        else:
            meta[key] = value
    return arrays, meta


def unflatten_state(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> dict[str, Any]:
    """The inverse of `flatten_state`: nested state from `.npz` arrays and the JSON metadata."""
    state = json.loads(json.dumps(meta))  # a deep copy
    for path, value in arrays.items():
        *parents, leaf = path.split("/")
        node = state
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return state


def check_compatible(ckpt: Checkpoint, obs_dim: int, n_actions: int, env_id: str) -> None:
    """Raise `CheckpointError` unless the checkpoint's network fits the environment's observation and action sizes."""
    if (ckpt.obs_dim, ckpt.n_actions) != (obs_dim, n_actions):
        raise CheckpointError(
            f"{ckpt.path}: network takes {ckpt.obs_dim} observation values and has {ckpt.n_actions} actions, "
            f"but {env_id} has {obs_dim} and {n_actions}"
        )


def training_state(ckpt: Checkpoint) -> tuple[dict[str, Any], str]:
    """The engine's nested state held by a training checkpoint, and its layout ("single" or "batch").

    Version 3 holds it as written. A version-2 checkpoint is converted: kind "trainer" (one seed) gains the member
    axis (every per-member array becomes `(1, ...)`, every per-member value a one-item list) and each generator's
    state moves into its component's state; kind "seed_batch" only has its generators moved. The numbers are not
    touched, so the run resumes exactly where the old code would have.

    Raises:
        CheckpointError: not a training checkpoint (a model file, or format 1), or damaged state.
    """
    kind = ckpt.meta.get("kind")
    try:
        state = unflatten_state(ckpt.arrays, ckpt.meta)
        if kind == "engine":
            return state, str(ckpt.meta["layout"])
        if kind == "trainer":
            return _from_trainer(state), "single"
        if kind == "seed_batch":
            return _from_seed_batch(state), "batch"
    except (KeyError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise CheckpointError(f"{ckpt.path}: cannot resume from it ({type(e).__name__}: {e})") from e
    raise CheckpointError(f"{ckpt.path}: not a training checkpoint of this dqn-np version (model files such as "
                          "best.npz and final.npz, and checkpoints written before format version 2, can be evaluated "
                          "but not resumed)")


_SCALARS = ("agent.n_updates", "optim.t")  # shared by every member: no member axis


def _from_trainer(old: dict[str, Any]) -> dict[str, Any]:
    """A version-2 single-run state as the version-3 state of an engine of one member."""
    agent = {k: v if k in _SCALARS else v[None] for k, v in old["agent"].items()}
    agent["rng"] = [old["rng"]["agent"]]
    replay: dict[str, Any] = {"rng": [old["rng"]["replay"]]}
    if old["replay_saved"]:
        replay["buffers"] = {"0": old["replay"]}
    collector = old["collector"]
    collector["env"]["rng"] = {"0": collector["env"]["rng"]}  # one group of envs
    ev = old["callbacks"]["evaluator"]
    evaluator = {"n_evals": ev["n_evals"], "member_evals": np.array([ev["n_evals"]], np.int64),
                 "best_mean": [ev["best_mean"]], "best_step": [ev["best_step"]],
                 "best_params": {k: v[None] for k, v in ev["best_params"].items()},
                 "solved_at_step": [ev["solved_at_step"]], "solved_at_seconds": [ev["solved_at_seconds"]],
                 "last": [ev["last"]], "seconds": ev["seconds"]}
    return {"seeds": [int(old["seed"])], "env_steps": old["env_steps"], "train_seconds": old["train_seconds"],
            "active": np.ones(1, bool), "stopped": {}, "stopped_at": {}, "frozen_at": {},
            "episodes": np.array([collector["episodes"]], np.int64), "last_episode": [old["last_episode"]],
            "last_metrics": {k: np.array([v]) for k, v in old["last_metrics"].items()},
            "agent": agent, "replay": replay, "collector": collector, "callbacks": {"evaluator": evaluator}}


def _from_seed_batch(old: dict[str, Any]) -> dict[str, Any]:
    """A version-2 batch state as the version-3 state: the generators move into the agent's and replay's state."""
    state = {k: v for k, v in old.items() if k not in ("kind", "rng", "replay")}
    state["agent"] = {**old["agent"], "rng": old["rng"]["agent"]}
    state["replay"] = {"rng": old["rng"]["replay"], "buffers": old["replay"]}
    state["frozen_at"] = {}
    state["last_metrics"] = {k: v for k, v in old["last_metrics"].items() if k != "finite"}
    return state


def seeds_of(ckpt: Checkpoint) -> list[int] | None:
    """The seeds a training checkpoint trains (from its metadata alone), or None if it names none."""
    seeds = ckpt.meta.get("seeds")
    if seeds is None and ckpt.meta.get("seed") is not None:
        seeds = [ckpt.meta["seed"]]
    if not isinstance(seeds, list) or not all(is_integer(s) for s in seeds):
        return None
    return [int(s) for s in seeds]
