"""Aggregates over seeds read from run folders: joining batches trained in several processes, and their report;
and the checks every secondary command makes of the files it is about to write.

    read_seed_folders(roots)      the finished runs' summaries and curves; refuses runs of different studies
    study_differences(runs)       what differs between runs (configuration, env id, budget), by field
    check_output_file(flag, path) a results file (`--json PATH`) that can be written, checked before any work
    check_aggregate_out(out)      a folder for aggregate.json and aggregate.png that holds no other results
    check_out_folder(flag, path)  any command's output folder: creatable and writable, checked before any work

Rule for every output: a command writes only files it creates in this invocation; one that would replace a file
already there is refused (one line, nothing written) unless `force` (the commands' `--force`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.run.folder import RunFiles
from agents.validate import path_fits

AGGREGATE_FILES = ("aggregate.json", "aggregate.png")
"""What an aggregate writes into its folder."""
STUDY_FIELDS = ("env_id", "total_steps", "config")
"""The fields of a run's config.json that make it one study (the seed and the folder may differ)."""


def _interval(entry: dict | None, fmt: str = "{:.1f}") -> str:
    """`value [lo, hi]` of an aggregate entry; an infinite (None) value or bound shows as inf."""
    if entry is None:
        return "n/a"

    def show(v: float | None) -> str:
        return "inf" if v is None else fmt.format(v)

    lo, hi = entry["ci"]
    return f"{show(entry['value'])} [{show(lo)}, {show(hi)}]"


def format_aggregate(agg: dict[str, Any]) -> str:
    """The aggregate in a few lines: seeds solved (Wilson 95% CI), steps to solve, scores (bootstrap 95% CIs)."""
    frac = agg["fraction_solved"]
    lines = [f"solved: {frac['solved']}/{frac['n']} (95% CI {frac['ci_wilson'][0]:.3f}-{frac['ci_wilson'][1]:.3f}, "
             f"Wilson); not solved: {agg['failed_seeds'] or 'none'}",
             f"median steps to solve: {_interval(agg['steps_to_solve']['median'], '{:.0f}')}; median seconds: "
             f"{_interval(agg['seconds_to_solve']['median'])} (95% bootstrap CIs)"]
    for key, label in (("best_eval_mean", "best evaluation"), ("final_eval_mean", "final model"),
                       ("best_model_eval_mean", "best model re-evaluated")):
        entry = agg.get(key)
        if entry:
            lines.append(f"{label}: IQM {_interval(entry['iqm'])}, median {_interval(entry['median'])}, "
                         f"mean {_interval(entry['mean'])} (n={entry['n']})")
    at = agg.get("best_model_at_threshold")
    if at and at["episodes"]:
        lines.append(f"best.npz >= {at['threshold']:g} over {at['episodes']} episodes: {at['count']}/{at['n']}"
                     f" (below: {at['below'] or 'none'})")
    return "\n".join(lines)


def _run_folders(root: Path) -> list[Path]:
    """The finished runs in `root`: the folder itself (a single run) or its `seed<k>/` (a batch)."""
    if (root / "summary.json").exists() and not (root / "aggregate.json").exists():
        return [root]
    return sorted(p for p in root.glob("seed*") if (p / "summary.json").exists())


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, or a one-line ValueError naming the file."""
    try:
        value = json.loads(path.read_text())
    except OSError as e:
        raise ValueError(f"{path}: cannot read it: {e.strerror or e}") from None
    except ValueError as e:  # also UnicodeDecodeError
        raise ValueError(f"{path}: not a JSON file ({e})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def read_seed_folders(roots: Sequence[str | Path], allow_mixed: bool = False) -> tuple[
        list[dict[str, Any]], dict[int, tuple[np.ndarray, np.ndarray]]]:
    """The per-seed summaries and evaluation curves of finished runs: batch folders (their `seed<k>/`) or single-run
    folders, e.g. the two halves of a 100-seed study trained by two processes.

    Args:
        roots: batch folders and/or single-run folders.
        allow_mixed: also join runs whose env id, budget (total_steps) or configuration differ; by default such
            runs are refused (`study_differences`), since their aggregate would describe no one study.

    Returns:
        The summaries (sorted by seed) and `{seed: (env_steps, eval means)}`.

    Raises:
        ValueError: a folder without a finished run, a seed found twice, an unreadable summary, config.json or
            evals.csv, or (unless `allow_mixed`) runs of different studies, naming the field, values and folders.
    """
    summaries: dict[int, dict[str, Any]] = {}
    curves: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    studies: list[tuple[Path, dict[str, Any]]] = []
    for root in map(Path, roots):
        try:
            runs = _run_folders(root)
        except OSError as e:  # a name too long, a loop of links, ...
            raise ValueError(f"{root}: cannot read the folder: {e.strerror or e}") from None
        if not runs:
            raise ValueError(f"{root}: holds no finished run (no summary.json, nor seed<k>/summary.json)")
        for run in runs:
            summary = _read_json(run / "summary.json")
            try:
                seed = int(summary["seed"])
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{run / 'summary.json'}: no integer seed in it") from None
            if seed in summaries:
                raise ValueError(f"{run}: seed {seed} was already read from another folder")
            summaries[seed] = summary
            studies.append((run, _study_of(run, summary)))
            curve = _read_curve(RunFiles(run).evals)
            if curve is not None:
                curves[seed] = curve
    if not allow_mixed:
        differences = study_differences(studies)
        if differences:
            raise ValueError(f"these runs are not one study: {differences[0]}"
                             + (f" (and {len(differences) - 1} more difference(s))" if len(differences) > 1 else "")
                             + "; aggregate one study at a time, or pass --allow-mixed to join them anyway")
    return [summaries[k] for k in sorted(summaries)], curves


def _read_curve(evals: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """`(env_steps, eval means)` of an evals.csv, or None if it is missing or holds no row."""
    try:
        if not evals.exists() or evals.stat().st_size == 0:
            return None
        rows = np.loadtxt(evals, delimiter=",", skiprows=1, usecols=(1, 2), ndmin=2)
    except (OSError, ValueError, IndexError) as e:
        raise ValueError(f"{evals}: not an evaluation log of a run ({e})") from None
    return (rows[:, 0], rows[:, 1]) if len(rows) else None


def _study_of(run: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """What makes `run` part of a study: its config.json's `STUDY_FIELDS` (env id and budget from its summary.json
    where it has no config.json; a missing configuration counts as a value of its own, "unknown")."""
    config_json = RunFiles(run).config
    recorded = _read_json(config_json) if config_json.exists() else {}
    study = {field: recorded.get(field, summary.get(field)) for field in STUDY_FIELDS}
    if study["config"] is None:
        study["config"] = "unknown (no config.json)"
    return study


def study_differences(runs: Sequence[tuple[Path, dict[str, Any]]]) -> list[str]:
    """What differs between runs: one line per field (env_id, total_steps, or a configuration field), each with its
    values and, per value, the folders that have it (the first two, and how many).

    Args:
        runs: `(folder, {"env_id", "total_steps", "config"})` per run (`config`: the DQNConfig fields as a dict).

    Returns:
        The differences, empty for runs of one study.
    """
    values: dict[str, dict[str, list[Path]]] = {}
    for folder, study in runs:
        flat = {"env_id": study.get("env_id"), "total_steps": study.get("total_steps")}
        config = study.get("config")
        if isinstance(config, dict):
            flat |= {f"config.{key}": value for key, value in config.items()}
        else:
            flat["config"] = config
        for field, value in flat.items():
            values.setdefault(field, {}).setdefault(json.dumps(value, sort_keys=True), []).append(folder)
    lines = []
    for field in sorted(values, key=lambda f: (f.startswith("config."), f)):
        seen = values[field]
        missing = len(runs) - sum(len(folders) for folders in seen.values())
        if len(seen) > 1 or missing:  # two values, or a field some runs do not have
            shown = [f"{value} in {_folders(folders)}" for value, folders in seen.items()]
            if missing:
                shown.append(f"absent in {missing} run(s)")
            lines.append(f"{field} differs: {'; '.join(shown)}")
    return lines


def _folders(folders: list[Path]) -> str:
    shown = ", ".join(str(f) for f in folders[:2])
    return shown + (f" and {len(folders) - 2} more" if len(folders) > 2 else "")


def _nearest_folder(path: Path) -> Path:
    """The first existing ancestor of `path` (`path` itself excluded; a dangling link counts, so that it is refused as
    no folder); "." for a bare relative name."""
    for folder in path.parents:
        if folder.exists() or folder.is_symlink():
            return folder
    return Path(".")


def _writable_folder(flag: str, path: Path, folder: Path) -> None:
    """Refuse `folder` (where `path` will be created) unless it is an existing folder that takes a new entry.

    Permission bits do not say it all (root ignores them; /proc, a read-only mount or a full quota refuse whatever
    they say), so the folder is asked itself: a temporary folder is created in it and removed again (its error is
    the reason given); the permission bits are then asked too (`os.access`), for a folder that only root may use.
    """
    if not folder.is_dir():
        raise ValueError(f"{flag} {path}: {folder} is not a folder")
    try:
        probe = tempfile.mkdtemp(prefix=".write-probe-", dir=folder)
    except OSError as e:
        raise ValueError(f"{flag} {path}: cannot write into {folder}: {e.strerror or e}") from None
    os.rmdir(probe)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: cannot write into {folder}: permission denied")


def check_out_folder(flag: str, folder: str | Path) -> Path:
    """Refuse, before any work, an output folder that could not be created and written.

    Args:
        flag: the option's name for the message (`--out`).
        folder: the folder the command will create (with its missing parents) or write into.

    Returns:
        `folder` as a Path.

    Raises:
        ValueError: one line naming the flag and the path: a name too long for the file system (`path_fits`), a file
            where the folder or one of its parents should be, or a nearest existing folder that refuses a new entry.
    """
    folder = path_fits(folder, flag)
    try:
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"{flag} {folder}: it is a file, not a folder")
        _writable_folder(flag, folder, folder if folder.is_dir() else _nearest_folder(folder))
    except OSError as e:  # a loop of links, a path too long to look up, ...
        raise ValueError(f"{flag} {folder}: cannot use this folder: {e.strerror or e}") from None
    return folder


def check_output_file(flag: str, path: str | Path, force: bool = False) -> Path:
    """Refuse, before any work, a results file that could not be written or would replace one not made now.

    Args:
        flag: the option's name for the message (`--json`).
        path: the file to write (atomically, later): its folder must exist and be writable.
        force: allow replacing an existing file (the command's `--force`).

    Returns:
        `path` as a Path.

    Raises:
        ValueError: one line naming the path: a name too long, a missing folder, a folder or a file where a folder
            should be, no permission, or an existing file without `force`.
    """
    path = path_fits(path, flag)
    if not path.name or path.name in (".", ".."):
        raise ValueError(f"{flag} {path}: give a file name, e.g. {path / 'results.json'}")
    try:
        if path.is_dir():
            raise ValueError(f"{flag} {path}: it is a folder; give a file name, e.g. {path / 'results.json'}")
        parent = path.parent
        if not parent.exists():
            raise ValueError(f"{flag} {path}: its folder {parent} does not exist")
        _writable_folder(flag, path, parent)
        if (path.exists() or path.is_symlink()) and not force:
            raise ValueError(f"{flag} {path}: the file exists; choose another name, or add --force to replace it")
    except OSError as e:  # a loop of links, a name on the way too long to look up, ...
        raise ValueError(f"{flag} {path}: cannot use this path: {e.strerror or e}") from None
    return path


def check_aggregate_out(out: str | Path, force: bool = False) -> Path:
    """Refuse, before any work, an `--out` folder for an aggregate that could not be written, or that holds results
    this invocation would replace.

    Args:
        out: the folder for aggregate.json and aggregate.png (created with its missing parents when written).
        force: allow replacing an earlier aggregate there (the command's `--force`).

    Raises:
        ValueError: one line naming the folder: a file (whatever `force`), a path under a file, no permission, a
            name too long, a run folder (its own summary.json would be read as a batch's), or an aggregate.json or
            aggregate.png already there without `force` (naming how many seeds that aggregate holds).
    """
    out = path_fits(out, "--out")
    try:
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out}: it is a file, not a folder; give the folder for aggregate.json")
        if not out.exists():
            _writable_folder("--out", out, _nearest_folder(out))
            return out
        _writable_folder("--out", out, out)
        if (out / "summary.json").exists() and not (out / "aggregate.json").exists():
            raise ValueError(f"--out {out}: it is a run folder (it holds summary.json); an aggregate there would "
                             "hide the run: give another folder")
        existing = [out / name for name in AGGREGATE_FILES if (out / name).exists()]
        if existing and not force:
            raise ValueError(f"--out {out}: it already holds {_describe(existing)}; choose another folder, or add "
                             "--force to replace it")
    except OSError as e:
        raise ValueError(f"--out {out}: cannot use this folder: {e.strerror or e}") from None
    return out


def _describe(existing: list[Path]) -> str:
    """`aggregate.json (of 5 seeds)` and friends: what an earlier aggregate holds, as far as it can be read."""
    names = " and ".join(p.name for p in existing)
    try:
        seeds = json.loads(existing[0].read_text()).get("seeds") if existing[0].suffix == ".json" else None
    except (OSError, ValueError, AttributeError):
        seeds = None
    return f"{names} (of {len(seeds)} seeds)" if isinstance(seeds, list) else names
