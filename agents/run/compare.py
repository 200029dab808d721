"""Are two finished runs the same run? Models bit for bit, logs row for row (the clock aside), summaries' figures.

Two folders of the same command at two commits (or on two machines) answer "did this change alter training?":

    differences = compare_runs("runs/before", "runs/after")   # [] when the runs are the same, bit for bit

A folder is a single run (its files at the top) or a batch (`seed<k>/` per seed); both folders must be of the same
layout and seeds. Compared, per member:

- every model file (`best.npz`, `final.npz`): each numeric array equal in dtype, shape and every bit; the recorded
  config equal on the fields both record (a field one version of the code does not have is not a difference);
- `progress.csv` and `evals.csv`: the same rows, every column but `train_seconds` (a clock);
- `summary.json`: the same counters and scores (`FIGURES`), not its timings.
"""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

MODEL_FILES = ("best.npz", "final.npz")
LOG_FILES = ("progress.csv", "evals.csv")
CLOCK_COLUMNS = ("train_seconds",)
FIGURES = ("status", "env_steps", "episodes", "updates", "solved_at_step", "best_eval_mean", "best_eval_step",
           "final_eval_mean", "best_model_eval_mean", "stopped_solved")


class CompareError(ValueError):
    """A folder that is not a finished run, or two runs that cannot be compared (other layout or seeds)."""


def members(root: Path) -> list[str]:
    """The member folders of a finished run, relative to it: `["."]` for a single run, `["seed0", ...]` for a batch."""
    root = Path(root)
    if not root.is_dir():
        raise CompareError(f"{root}: not a folder")
    if (root / "summary.json").is_file() and any((root / name).is_file() for name in MODEL_FILES):
        return ["."]
    seeds = sorted((p.name for p in root.glob("seed*") if (p / "summary.json").is_file()),
                   key=lambda name: (len(name), name))
    if not seeds:
        raise CompareError(f"{root}: holds no finished run (a summary.json with best.npz or final.npz, or seed<k>/ "
                           "folders holding them)")
    return seeds


def compare_runs(a: str | Path, b: str | Path) -> list[str]:
    """Every difference between runs `a` and `b`, one line each; `[]` when they are the same run.

    Raises:
        CompareError: a folder that holds no finished run, or runs of other layouts or seeds.
    """
    a, b = Path(a), Path(b)
    ma, mb = members(a), members(b)
    if ma != mb:
        raise CompareError(f"{a} holds {_named(ma)} but {b} holds {_named(mb)}: not runs of the same seeds")
    out: list[str] = []
    for m in ma:
        where = "" if m == "." else f"{m}: "
        for name in MODEL_FILES:
            out += [where + line for line in _compare_models(a / m / name, b / m / name, name)]
        for name in LOG_FILES:
            out += [where + line for line in _compare_logs(a / m / name, b / m / name, name)]
        out += [where + line for line in _compare_summaries(a / m / "summary.json", b / m / "summary.json")]
    return out


def _named(found: list[str]) -> str:
    return "a single run" if found == ["."] else ", ".join(found)


def _compare_models(pa: Path, pb: Path, name: str) -> list[str]:
    if pa.is_file() != pb.is_file():
        return [f"{name}: only in {pa if pa.is_file() else pb}"]
    if not pa.is_file():
        return []
    try:
        with np.load(pa, allow_pickle=False) as za, np.load(pb, allow_pickle=False) as zb:
            arrays_a = {k: za[k] for k in za.files}
            arrays_b = {k: zb[k] for k in zb.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CompareError(f"cannot read {pa} or {pb} as a model file ({type(e).__name__}: {e})") from None
    out = []
    numeric = sorted(k for k in arrays_a.keys() | arrays_b.keys()
                     if (arrays_a.get(k, arrays_b.get(k))).dtype.kind not in "USO")
    for k in numeric:
        x, y = arrays_a.get(k), arrays_b.get(k)
        if x is None or y is None:
            out.append(f"{name}: array {k} only in {pa if y is None else pb}")
        elif x.dtype != y.dtype or x.shape != y.shape:
            out.append(f"{name}: array {k} is {x.dtype}{list(x.shape)} against {y.dtype}{list(y.shape)}")
        elif not np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"):
            diff = int(np.count_nonzero(x != y)) if x.shape else 1
            out.append(f"{name}: array {k} differs in {diff} of {max(x.size, 1)} values")
    config_a, config_b = _config(arrays_a), _config(arrays_b)
    for field in sorted(config_a.keys() & config_b.keys()):
        if config_a[field] != config_b[field]:
            out.append(f"{name}: config {field} is {config_a[field]!r} against {config_b[field]!r}")
    return out


def _config(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    try:
        config = json.loads(str(arrays["config"]))
    except (KeyError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _rows(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as f:
            return [{k: v for k, v in row.items() if k not in CLOCK_COLUMNS} for row in csv.DictReader(f)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise CompareError(f"cannot read {path} ({type(e).__name__}: {e})") from None


def _compare_logs(pa: Path, pb: Path, name: str) -> list[str]:
    if pa.is_file() != pb.is_file():
        return [f"{name}: only in {pa if pa.is_file() else pb}"]
    if not pa.is_file():
        return []
    ra, rb = _rows(pa), _rows(pb)
    for i, (x, y) in enumerate(zip(ra, rb)):  # noqa: B905 (a longer log is reported below)
        if x != y:
            field = next(k for k in (x.keys() | y.keys()) if x.get(k) != y.get(k))
            return [f"{name}: row {i + 1} differs first in {field}: {x.get(field)} against {y.get(field)}"]
    if len(ra) != len(rb):
        return [f"{name}: {len(ra)} rows against {len(rb)}"]
    return []


def _compare_summaries(pa: Path, pb: Path) -> list[str]:
    try:
        sa, sb = json.loads(pa.read_text()), json.loads(pb.read_text())
    except (OSError, ValueError) as e:
        raise CompareError(f"cannot read a summary.json ({e})") from None
    return [f"summary.json: {k} is {sa.get(k)!r} against {sb.get(k)!r}" for k in FIGURES if sa.get(k) != sb.get(k)]
