"""Sweeps: a TOML SPEC of a search over `DQNConfig` fields, run on a Dask cluster, one folder of results.

A SPEC (every key but `env_id` and the one search table is optional):

    env_id = "CartPole-v1"
    seeds = [0, 1]                 # or "0-19" (as --seeds)
    total_steps = 3000             # per seed (default 50000); may also be searched
    metric = "best_eval_mean"      # one of METRICS
    direction = "maximize"         # default: the metric's own (see METRICS)
    preset = "presets/x.toml"      # a preset file (relative to the SPEC) that [base] overrides
    seeds_per_batch = 10           # at most this many seeds per unit of work (default: enough units to fill the
                                   # workers when trials are fewer than workers, else one unit per trial)
    [base]                         # DQNConfig fields held fixed
    hidden_sizes = [16]
    [grid]                         # exactly one of [grid], [random], [optuna]
    learning_rate = [0.001, 0.003] # grid: every combination of the lists
    gamma = [0.95, 0.99]

`[random]` draws `trials` configurations from a `numpy.random.Generator(seed)`; `[optuna]` asks Optuna's TPE sampler
(seeded with `seed`; `startup_trials` random trials first, Optuna's default 10) for `trials` configurations, its study
kept in `optuna_integration.DaskStorage` on the cluster's scheduler. Their parameters are a list (a uniform choice),
or a range `{ low = 1e-4, high = 1e-2, log = true }` (uniform, or log-uniform with `log`; integer for an int field,
both ends included). A random draw that repeats a configuration is run once; an Optuna suggestion that repeats a
finished configuration is told its recorded value without training again.

Checks before anything is written (a `SpecError`, one line): the TOML, every key, every field name, every value of
[base] and of the search (each tried with [base] through `DQNConfig`'s own validation), the metric, the direction.
A combination that `DQNConfig` refuses only as a whole (e.g. `batch_size` above `learning_starts`, both swept) is a
failed trial with that one-line error; the others go on.

The folder (see `agents.run.cluster` for a trial's own folder and why it is complete or absent):

    DIR/spec.toml            the SPEC as given; the same DIR with another SPEC is refused, naming the difference
    DIR/trials/<id>/         trial <id>'s seed-batch folder, with trial.json (its record); id = a hash of
                             env_id, the full configuration, total_steps and seeds
    DIR/trials/<id>.failed.json   a failed trial's record (a rerun tries it again)
    DIR/trials.csv           one row per trial: parameters, metric with its 95% interval, fraction solved, seconds,
                             status, error; rewritten when each trial finishes
    DIR/best.json, best.toml the best configuration as a preset (best.toml is what `--preset` reads)
    DIR/sweep.png            the metric against each swept parameter (needs matplotlib)

The same command again skips completed trials and runs the rest; Ctrl-C (with `handle_signals`) keeps every
finished trial. Python:

    >>> spec = SweepSpec.from_dict({"env_id": "CartPole-v1", "seeds": [0, 1], "total_steps": 1000,
    ...                             "grid": {"learning_rate": [1e-3, 3e-3]}})      # doctest: +SKIP
    >>> table = run_sweep(spec, "runs/sweep", workers=2)                          # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import hashlib
import io
import itertools
import json
import math
import os
import re
import shutil
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.config import DQNConfig, config_for, read_preset
from agents.loop.events import StopFlag
from agents.run.aggregate import check_out_folder
from agents.run.checkpoint import atomic_open, atomic_write_text
from agents.run.cli import parse_seeds
from agents.run.cluster import Cluster, Driver, Part, merge_parts, one_line, remove_attempts, require_extra
from agents.run.folder import RunLock, make_run_folder
from agents.run.train import DEFAULT_TOTAL_STEPS, env_facts, stop_on_signals
from agents.validate import seeds as check_seeds

METRICS = {  # name -> (its natural direction, what it is)
    "best_eval_mean": ("maximize", "IQM over seeds of each seed's best evaluation mean"),
    "final_eval_mean": ("maximize", "IQM over seeds of the final model's evaluation mean"),
    "best_model_eval_mean": ("maximize", "IQM over seeds of the best model re-evaluated on the final episodes"),
    "fraction_solved": ("maximize", "fraction of seeds that solved (Wilson 95% interval)"),
    "median_steps_to_solve": ("minimize", "median environment steps to solve (unsolved seeds count as never)"),
    "median_seconds_to_solve": ("minimize", "median training seconds to solve (unsolved seeds count as never)"),
}
SEARCHES = ("grid", "random", "optuna")
TOP_KEYS = ("env_id", "seeds", "total_steps", "metric", "direction", "preset", "seeds_per_batch", "base", *SEARCHES)
SEARCH_KEYS = {"grid": (), "random": ("trials", "seed"), "optuna": ("trials", "seed", "startup_trials")}
FIELDS = {f.name: f for f in dataclasses.fields(DQNConfig)}
PART_OPTIONS = {"save_replay": False, "plot": False}  # a trial's parts: small checkpoints, no per-seed plots
NO_PLOT = "matplotlib is not installed: no sweep.png (pip install -e '.[plot]' to get it)"


class SpecError(ValueError):
    """A SPEC (or the folder it is run in) that cannot be used; the message is one line naming the problem."""


@dataclass(frozen=True)
class Choice:
    """A parameter's listed values (a grid's axis, or a uniform choice)."""

    values: tuple[Any, ...]


@dataclass(frozen=True)
class Range:
    """A parameter's range, both ends included: uniform, or log-uniform with `log`; integer for an int field."""

    low: float
    high: float
    log: bool
    integer: bool


@dataclass(frozen=True)
class Trial:
    """One configuration of the search.

    Attributes:
        id: the hash of env_id, `fields`, total_steps and seeds (12 hex digits).
        number: its place in the search (grid / random order, or Optuna's trial number).
        params: the swept values, as the SPEC writes them.
        fields: every `DQNConfig` field (defaults, preset, [base], params); not validated as a whole yet.
        total_steps: per seed.
    """

    id: str
    number: int
    params: dict[str, Any]
    fields: dict[str, Any]
    total_steps: int

    def config(self) -> DQNConfig:
        """The trial's `DQNConfig` (ValueError: a combination it refuses)."""
        return DQNConfig(**{k: tuple(v) if k == "hidden_sizes" else v for k, v in self.fields.items()})


@dataclass(frozen=True)
class SweepSpec:
    """A validated SPEC; build it with `from_toml(path)`, `from_text(text)` or `from_dict(data)`.

    Attributes:
        raw: the SPEC's data as TOML holds it (what DIR/spec.toml is compared by); text: its text, when read.
        base: every `DQNConfig` field of the defaults, the preset and [base].
        space: the swept parameters in SPEC order.
        trials, search_seed, startup_trials: [random] / [optuna] settings (None for a grid).
    """

    env_id: str
    seeds: tuple[int, ...]
    total_steps: int
    metric: str
    direction: str
    search: str
    base: dict[str, Any]
    space: dict[str, Choice | Range]
    trials: int | None
    search_seed: int | None
    startup_trials: int | None
    seeds_per_batch: int | None
    raw: dict[str, Any]
    text: str | None = None

    @classmethod
    def from_toml(cls, path: str | Path) -> SweepSpec:
        """Read and check a SPEC file (SpecError naming the file and the problem)."""
        path = Path(path)
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise SpecError(f"{path}: cannot read the SPEC ({getattr(e, 'strerror', None) or e})") from None
        return cls.from_text(text, where=str(path), folder=path.parent)

    @classmethod
    def from_text(cls, text: str, where: str = "SPEC", folder: str | Path = ".") -> SweepSpec:
        """Check a SPEC given as TOML text."""
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise SpecError(f"{where}: not a TOML file ({e})") from None
        return cls.from_dict(data, where=where, folder=folder, text=text)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "SPEC", folder: str | Path = ".",
                  text: str | None = None) -> SweepSpec:
        """Check a SPEC given as a mapping (the TOML's tables as dicts)."""
        try:
            return _parse(_plain(data), where, Path(folder), text)
        except SpecError:
            raise
        except ValueError as e:
            raise SpecError(f"{where}: {e}") from None

    def trial(self, params: Mapping[str, Any], number: int) -> Trial:
        """The trial of `params` (values of the swept parameters)."""
        params = dict(params)
        fields = dict(self.base)
        fields.update({k: v for k, v in params.items() if k != "total_steps"})
        total = int(params.get("total_steps", self.total_steps))
        key = json.dumps({"env_id": self.env_id, "config": fields, "total_steps": total, "seeds": list(self.seeds)},
                         sort_keys=True)
        return Trial(hashlib.sha256(key.encode()).hexdigest()[:12], number, params, fields, total)

    def planned(self) -> list[Trial]:
        """The trials of a grid (every combination, in SPEC order) or of a random search (distinct draws)."""
        names = list(self.space)
        if self.search == "grid":
            draws = (dict(zip(names, c, strict=True)) for c in itertools.product(*(self.space[n].values
                                                                                   for n in names)))
        else:
            rng = np.random.default_rng(self.search_seed)
            draws = ({n: _draw(self.space[n], rng) for n in names} for _ in range(self.trials or 0))
        out: dict[str, Trial] = {}
        for params in draws:  # a configuration listed or drawn twice is one trial
            trial = self.trial(params, len(out))
            out.setdefault(trial.id, trial)
        return list(out.values())

    def spec_text(self) -> str:
        return self.text if self.text is not None else to_toml(self.raw)


def _plain(data: Any) -> Any:
    """A deep copy with tuples as lists (what TOML would hold)."""
    if isinstance(data, Mapping):
        return {str(k): _plain(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_plain(v) for v in data]
    return copy.copy(data)


def _parse(data: dict[str, Any], where: str, folder: Path, text: str | None) -> SweepSpec:
    unknown = [k for k in data if k not in TOP_KEYS]
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {unknown}; a SPEC has {list(TOP_KEYS)}")
    if "env_id" not in data or not isinstance(data["env_id"], str):
        raise SpecError(f"{where}: env_id must be a Gymnasium id (a string), got {data.get('env_id')!r}")
    env_id = data["env_id"]
    env_facts(env_id)  # EnvError (a ValueError) for an unknown id
    seeds = data.get("seeds", [0])
    seeds = check_seeds(parse_seeds(seeds) if isinstance(seeds, str) else seeds, "seeds")
    total = _positive(data.get("total_steps", DEFAULT_TOTAL_STEPS), "total_steps")
    metric = data.get("metric", "best_eval_mean")
    if metric not in METRICS:
        raise SpecError(f"{where}: unknown metric {metric!r}; metrics are {list(METRICS)}")
    direction = data.get("direction", METRICS[metric][0])
    if direction not in ("maximize", "minimize"):
        raise SpecError(f"{where}: direction must be 'maximize' or 'minimize', got {direction!r}")
    per_batch = data.get("seeds_per_batch")
    per_batch = None if per_batch is None else _positive(per_batch, "seeds_per_batch")
    base_table = data.get("base", {})
    if not isinstance(base_table, dict):
        raise SpecError(f"{where}: [base] must be a table of DQNConfig fields, got {base_table!r}")
    preset = data.get("preset")
    if preset is not None:
        if not isinstance(preset, str):
            raise SpecError(f"{where}: preset must be a file name, got {preset!r}")
        preset_fields = read_preset(folder / preset, env_id)
    else:
        preset_fields = {}
    base_fields = _normalised(preset_fields | base_table)
    try:
        base = dataclasses.asdict(config_for(env_id, base_fields))
    except ValueError as e:
        raise SpecError(f"{where}: [base]: {e}") from None
    base["hidden_sizes"] = list(base["hidden_sizes"])
    searches = [s for s in SEARCHES if s in data]
    if len(searches) != 1:
        raise SpecError(f"{where}: needs exactly one of [grid], [random], [optuna]; got {searches or 'none'}")
    search = searches[0]
    table = data[search]
    if not isinstance(table, dict):
        raise SpecError(f"{where}: [{search}] must be a table, got {table!r}")
    settings = {k: table[k] for k in SEARCH_KEYS[search] if k in table}
    if search != "grid" and "trials" not in settings:
        raise SpecError(f"{where}: [{search}] needs trials = N (how many configurations to try)")
    space = {}
    for name, value in table.items():
        if name in settings:
            continue
        space[name] = _param(where, search, name, value, env_id, base)
    if not space:
        raise SpecError(f"{where}: [{search}] names no parameter to search (an empty {search})")
    trials = None if search == "grid" else _positive(settings["trials"], f"[{search}] trials")
    seed = None if search == "grid" else _non_negative(settings.get("seed", 0), f"[{search}] seed")
    startup = settings.get("startup_trials")
    startup = None if startup is None else _non_negative(startup, "[optuna] startup_trials")
    return SweepSpec(env_id, tuple(seeds), total, metric, direction, search, base, space, trials, seed, startup,
                     per_batch, data, text)


def _param(where: str, search: str, name: str, value: Any, env_id: str, base: dict[str, Any]) -> Choice | Range:
    """One swept parameter, every value (each end of a range) checked with [base]."""
    label = f"{where}: [{search}] {name}"
    if name not in FIELDS and name != "total_steps":
        raise SpecError(f"{label}: unknown field; a parameter is a DQNConfig field ({sorted(FIELDS)}) or "
                        "total_steps")
    kind = "int" if name == "total_steps" else FIELDS[name].type
    if isinstance(value, dict):
        if search == "grid":
            raise SpecError(f"{label}: a grid takes a list of values, got the range {value!r}")
        extra = sorted(set(value) - {"low", "high", "log"})
        if extra or "low" not in value or "high" not in value:
            raise SpecError(f"{label}: a range is {{ low = A, high = B, log = false }}, got {value!r}")
        if kind not in ("int", "float") or name == "hidden_sizes":
            raise SpecError(f"{label}: a range needs an int or float field, and {name} is {kind}; list the values")
        low, high, log = value["low"], value["high"], value.get("log", False)
        if not isinstance(log, bool):
            raise SpecError(f"{label}: log must be true or false, got {log!r}")
        for end in (low, high):
            if isinstance(end, bool) or not isinstance(end, (int, float)) or (kind == "int" and
                                                                              not isinstance(end, int)):
                raise SpecError(f"{label}: range ends must be {'integers' if kind == 'int' else 'numbers'}, "
                                f"got {end!r}")
            _check_value(label, name, float(end) if kind == "float" else end, env_id, base)
        if not low < high:
            raise SpecError(f"{label}: a range needs low < high, got low {low!r} and high {high!r}")
        if log and low <= 0:
            raise SpecError(f"{label}: a log range needs low > 0, got {low!r}")
        return Range(float(low), float(high), log, kind == "int")
    if not isinstance(value, list):
        raise SpecError(f"{label}: expected a list of values{'' if search == 'grid' else ' or a range'}, "
                        f"got {value!r}")
    if not value:
        raise SpecError(f"{label}: an empty list of values")
    values = tuple(_normalised({name: v})[name] for v in value)
    for v in values:
        _check_value(label, name, v, env_id, base)
    return Choice(values)


def _check_value(label: str, name: str, value: Any, env_id: str, base: dict[str, Any]) -> None:
    if name == "total_steps":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpecError(f"{label}: value {value!r} is out of range (total_steps must be an integer >= 1)")
        return
    try:
        config_for(env_id, {**base, name: value})
    except ValueError as e:
        raise SpecError(f"{label}: value {value!r} is out of range ({e})") from None


def _normalised(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Ints given for float fields as floats (so `tau = 1` and `tau = 1.0` are one configuration)."""
    out = dict(fields)
    for name, v in out.items():
        if name in FIELDS and FIELDS[name].type == "float" and isinstance(v, int) and not isinstance(v, bool):
            out[name] = float(v)
    return out


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def _non_negative(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def _draw(param: Choice | Range, rng: np.random.Generator) -> Any:
    """One random value of a parameter (floats rounded to 6 significant digits)."""
    if isinstance(param, Choice):
        return param.values[int(rng.integers(len(param.values)))]
    if param.integer:
        if param.log:
            return int(min(param.high, max(param.low, round(math.exp(rng.uniform(math.log(param.low),
                                                                                  math.log(param.high)))))))
        return int(rng.integers(int(param.low), int(param.high) + 1))
    x = math.exp(rng.uniform(math.log(param.low), math.log(param.high))) if param.log else rng.uniform(
        param.low, param.high)
    return float(f"{x:.6g}")


# ---------------------------------------------------------------------------------------------------- TOML out


def to_toml(data: Mapping[str, Any]) -> str:
    """`data` (scalars, lists, tables of them) as TOML text: top-level values first, then one [table] each."""
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, Mapping)]
    for k, table in data.items():
        if isinstance(table, Mapping):
            lines += ["", f"[{_toml_key(k)}]", *(f"{_toml_key(n)} = {_toml_value(v)}" for n, v in table.items())]
    return "\n".join(lines).lstrip("\n") + "\n"


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise ValueError(f"TOML cannot hold {v!r} ({type(v).__name__})")


# ---------------------------------------------------------------------------------------------------- the folder


def check_folder(root: Path, spec: SweepSpec) -> None:
    """Refuse a folder that holds something else than a sweep of this very SPEC, or that could not be created and
    written (`check_out_folder`: a name too long, a file on the way, a parent that takes no new entry); nothing is
    written."""
    import tomllib

    try:
        is_file = root.exists() and not root.is_dir()
    except OSError:  # a name too long to look up: check_out_folder names it
        is_file = False
    if is_file:
        raise SpecError(f"{root}: is a file, not a sweep folder")
    try:
        check_out_folder("--out", root)
    except ValueError as e:
        raise SpecError(str(e)) from None
    if not root.exists():
        return
    stored = root / "spec.toml"
    if stored.exists():
        try:
            old = tomllib.loads(stored.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise SpecError(f"{stored}: cannot be read back ({e}); use a new --out") from None
        diff = _differences(old, spec.raw)
        if diff:
            raise SpecError(f"{root} holds a sweep of another SPEC ({'; '.join(diff[:4])}"
                            f"{'; ...' if len(diff) > 4 else ''}); run that SPEC again or choose a new --out")
    elif any(p.name != ".lock" for p in root.iterdir()):
        raise SpecError(f"{root}: holds files but no spec.toml, so it is no sweep folder; choose a new --out")


def _differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in list(old) + [k for k in new if k not in old]:
        name = f"{prefix}{key}"
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += _differences(a, b, name + ".")
        elif a != b:
            out.append(f"{name}: {a!r} in spec.toml, {b!r} now")
    return out


class Book:
    """The trials' records in DIR/trials: completed (`<id>/trial.json`) and failed (`<id>.failed.json`)."""

    def __init__(self, root: Path, spec: SweepSpec) -> None:
        self.root, self.spec = root, spec
        self.trials_dir = root / "trials"
        self.trials_dir.mkdir(exist_ok=True)
        self.remove_unfinished()  # an earlier session's (the lock is ours)
        self.records: dict[str, dict[str, Any]] = {}
        for path in [*self.trials_dir.glob("*/trial.json"), *self.trials_dir.glob("*.failed.json")]:
            with contextlib.suppress(OSError, ValueError):
                record = json.loads(path.read_text())
                if record.get("status") == "completed" or record["trial_id"] not in self.records:
                    self.records[record["trial_id"]] = record
        self.known: dict[str, Trial] = {}  # every trial of this session's search, in order

    def remove_unfinished(self) -> None:
        """Remove the folders of trials whose parts did not all finish (`trials/.tmp-<id>/`)."""
        for unfinished in self.trials_dir.glob(".tmp-*"):
            shutil.rmtree(unfinished, ignore_errors=True)

    def completed(self, trial_id: str) -> dict[str, Any] | None:
        record = self.records.get(trial_id)
        return record if record is not None and record["status"] == "completed" else None

    def record(self, trial: Trial, status: str, **fields: Any) -> dict[str, Any]:
        return {"trial_id": trial.id, "number": trial.number, "status": status, "params": trial.params,
                "env_id": self.spec.env_id, "seeds": list(self.spec.seeds), "total_steps": trial.total_steps,
                "config": trial.fields, "metric": self.spec.metric, "value": None, "ci": [None, None],
                "fraction_solved": None, "n_solved": None, "n_seeds": len(self.spec.seeds),
                "median_steps_to_solve": None, "seconds": None, "error": None, "folder": None} | fields

    def fail(self, trial: Trial, error: str, seconds: float | None = None) -> dict[str, Any]:
        record = self.record(trial, "failed", error=error, seconds=seconds)
        atomic_write_text(self.trials_dir / f"{trial.id}.failed.json", json.dumps(record, indent=2) + "\n")
        self.records[trial.id] = record
        return record

    def finish(self, trial: Trial, parts: Sequence[Part], outcomes: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Publish a trial whose parts returned: its merged folder renamed into place, or a failed record."""
        tmp, final = self.trials_dir / f".tmp-{trial.id}", self.trials_dir / trial.id
        seconds = round(sum(o["seconds"] for o in outcomes), 4)
        bad = [(p, o) for p, o in zip(parts, outcomes, strict=True) if not o["ok"]]
        if bad:
            part, o = bad[0]
            where = f" (part {part.index + 1} of {len(parts)}, seeds {list(part.seeds)})" if len(parts) > 1 else ""
            shutil.rmtree(tmp, ignore_errors=True)
            return self.fail(trial, f"{o['error']}{where}", seconds)
        try:
            result = merge_parts(tmp, outcomes, self.spec.env_id, trial.total_steps, final_root=final)
        except OSError:
            raise
        except Exception as e:  # a part's files that cannot be merged: the trial fails, the sweep goes on
            shutil.rmtree(tmp, ignore_errors=True)
            return self.fail(trial, f"merging its parts: {one_line(e)}", seconds)
        value, lo, hi = metric_of(result["aggregate"], self.spec.metric)
        agg = result["aggregate"]
        record = self.record(trial, "completed", value=value, ci=[lo, hi],
                             fraction_solved=agg["fraction_solved"]["value"], n_solved=agg["fraction_solved"][
                                 "solved"], median_steps_to_solve=agg["steps_to_solve"]["median"]["value"],
                             seconds=seconds, folder=str(final))
        atomic_write_text(tmp / "trial.json", json.dumps(record, indent=2) + "\n")
        remove_attempts(tmp)
        os.replace(tmp, final)  # the trial's folder appears complete
        (self.trials_dir / f"{trial.id}.failed.json").unlink(missing_ok=True)
        self.records[trial.id] = record
        return record

    def rows(self) -> list[dict[str, Any]]:
        """One row per trial of the search, in its order: the trials table."""
        rows = []
        names = list(self.spec.space)
        metric = self.spec.metric
        for trial in self.known.values():
            r = self.records.get(trial.id) or self.record(trial, "unfinished")
            row = {"trial_id": trial.id, "number": trial.number, "status": r["status"]}
            row |= {n: trial.params.get(n) for n in names}
            row |= {metric: r["value"], f"{metric}_low": r["ci"][0], f"{metric}_high": r["ci"][1],
                    "fraction_solved": r["fraction_solved"], "n_solved": r["n_solved"], "n_seeds": r["n_seeds"],
                    "median_steps_to_solve": r["median_steps_to_solve"], "seconds": r["seconds"],
                    "error": r["error"]}
            rows.append(row)
        return rows

    def write_csv(self) -> None:
        rows = self.rows()
        if not rows:
            return
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else json.dumps(v) if isinstance(v, list) else v
                             for k, v in row.items()})
        atomic_write_text(self.root / "trials.csv", buffer.getvalue())


def metric_of(aggregate: Mapping[str, Any], metric: str) -> tuple[float | None, float | None, float | None]:
    """`(value, ci_low, ci_high)` of `metric` in an `aggregate_seeds` result (None where it has no figure)."""
    if metric == "fraction_solved":
        frac = aggregate["fraction_solved"]
        return frac["value"], *frac["ci_wilson"]
    key = {"median_steps_to_solve": "steps_to_solve", "median_seconds_to_solve": "seconds_to_solve"}.get(metric)
    if key is not None:
        entry = aggregate[key]["median"]
    else:
        scores = aggregate.get(metric)
        if not scores:
            return None, None, None
        entry = scores["iqm"]
    return entry["value"], *entry["ci"]


def best_row(rows: Sequence[dict[str, Any]], metric: str, direction: str) -> dict[str, Any] | None:
    """The completed row with the best metric (the first of equals), or None."""
    scored = [r for r in rows if r["status"] == "completed" and r[metric] is not None]
    if not scored:
        return None
    sign = 1 if direction == "maximize" else -1
    return max(scored, key=lambda r: sign * r[metric])  # max keeps the first of equals


def write_best(root: Path, spec: SweepSpec, book: Book, row: dict[str, Any]) -> None:
    """DIR/best.json and DIR/best.toml: the best configuration as a preset (`config_for(preset=...)`)."""
    record = book.records[row["trial_id"]]
    preset = {"env_id": spec.env_id, "config": record["config"],
              "source": {"sweep": str(root), "trial_id": row["trial_id"], "metric": spec.metric,
                         "direction": spec.direction, "value": row[spec.metric],
                         "ci": [x for x in record["ci"] if x is not None], "total_steps": record["total_steps"],
                         "seeds": record["seeds"]}}
    if row[spec.metric] is None:
        del preset["source"]["value"]
    atomic_write_text(root / "best.json", json.dumps(preset, indent=2) + "\n")
    atomic_write_text(root / "best.toml", to_toml(preset))


def plot_sweep(rows: Sequence[dict[str, Any]], spec: SweepSpec, path: Path) -> Path | None:
    """The metric (with its interval) against each swept parameter, one panel each; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    metric, names = spec.metric, list(spec.space)
    done = [r for r in rows if r["status"] == "completed" and r[metric] is not None]
    best = best_row(rows, metric, spec.direction)
    if not done:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names) + 0.6, 3.8), squeeze=False)
    try:
        for ax, name in zip(axes[0], names, strict=True):
            param = spec.space[name]
            values = [r[name] for r in done]
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            if numeric:
                x = np.array(values, dtype=float)
                positive = x.size and (x > 0).all()
                if (isinstance(param, Range) and param.log) or (positive and x.max() / x.min() >= 100):
                    ax.set_xscale("log")
            else:
                labels = list(dict.fromkeys(json.dumps(v) if isinstance(v, list) else str(v) for v in values))
                x = np.array([labels.index(json.dumps(v) if isinstance(v, list) else str(v)) for v in values],
                             dtype=float)
                ax.set_xticks(range(len(labels)), labels)
            y = np.array([r[metric] for r in done], dtype=float)
            lo = np.array([np.nan if r[f"{metric}_low"] is None else r[f"{metric}_low"] for r in done], dtype=float)
            hi = np.array([np.nan if r[f"{metric}_high"] is None else r[f"{metric}_high"] for r in done],
                          dtype=float)
            err = np.nan_to_num(np.stack([y - lo, hi - y]), nan=0.0) if y.size else None
            ax.errorbar(x, y, yerr=err, fmt="o", ms=5, capsize=3, color="tab:blue", alpha=0.8,
                        label="trial (95% CI)")
            if best is not None:
                bx = x[[r["trial_id"] for r in done].index(best["trial_id"])]
                ax.plot(bx, best[metric], "*", ms=15, color="tab:red", mec="black", mew=0.6, zorder=5, label="best")
            ax.set(xlabel=name, ylabel=metric)
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize="small")
        fig.suptitle(f"{spec.env_id}: {metric} ({spec.direction}) over {len(done)} trials x {len(spec.seeds)} seeds")
        fig.tight_layout()
        with atomic_open(path) as f:
            fig.savefig(f, format="png", dpi=100)
    finally:
        plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------------- searches


class PlannedSearch:
    """A grid or random search: its trials known up front, all submitted at once."""

    concurrency = math.inf

    def __init__(self, spec: SweepSpec, book: Book) -> None:
        self.todo = spec.planned()
        for trial in self.todo:
            book.known[trial.id] = trial
        self.total = len(self.todo)
        self.todo.reverse()

    def ask(self) -> Trial | None:
        return self.todo.pop() if self.todo else None

    def tell(self, trial: Trial, record: dict[str, Any]) -> None:
        pass


class OptunaSearch:
    """Optuna's TPE, asked for one trial at a time (at most one per worker in flight); its study is kept in
    `DaskStorage` on the scheduler. Completed trials in DIR are told to it first; failed ones are asked again."""

    def __init__(self, spec: SweepSpec, book: Book, client: Any, workers: Callable[[], int]) -> None:
        import optuna
        from optuna_integration import DaskStorage

        self.optuna, self.spec, self.book, self.workers = optuna, spec, book, workers
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = DaskStorage(client=client)
        kwargs = {} if spec.startup_trials is None else {"n_startup_trials": spec.startup_trials}
        self.study = optuna.create_study(storage=storage, direction=spec.direction,
                                         sampler=optuna.samplers.TPESampler(seed=spec.search_seed, **kwargs))
        self.distributions = {n: self._distribution(p) for n, p in spec.space.items()}
        self.pending: dict[int, Any] = {}  # Optuna trial number -> its trial, until told
        done = sorted(book.records.values(), key=lambda r: (r["number"], r["trial_id"]))
        for r in done:
            trial = spec.trial(r["params"], r["number"])
            if trial.id != r["trial_id"] or set(r["params"]) != set(spec.space):
                continue  # not a trial of this search
            book.known[trial.id] = trial
            if r["status"] == "completed":
                self.study.add_trial(optuna.trial.create_trial(
                    params={n: self._encode(n, v) for n, v in r["params"].items()},
                    distributions=self.distributions, value=self._value(r)))
            else:
                self.study.enqueue_trial({n: self._encode(n, v) for n, v in r["params"].items()})
        self.total = spec.trials or 0
        self.asked = sum(r["status"] == "completed" for r in done if r["trial_id"] in book.known)

    @property
    def concurrency(self) -> int:
        return self.workers()

    def _distribution(self, param: Choice | Range) -> Any:
        d = self.optuna.distributions
        if isinstance(param, Choice):
            return d.CategoricalDistribution([self._encode_value(v) for v in param.values])
        if param.integer:
            return d.IntDistribution(int(param.low), int(param.high), log=param.log)
        return d.FloatDistribution(param.low, param.high, log=param.log)

    @staticmethod
    def _encode_value(v: Any) -> Any:
        return v if v is None or isinstance(v, (bool, int, float, str)) else json.dumps(v)

    def _encode(self, name: str, v: Any) -> Any:
        return self._encode_value(v) if isinstance(self.spec.space[name], Choice) else v

    def _value(self, record: dict[str, Any]) -> float:
        """The metric Optuna is told: None (no figure) is the worst value of the direction."""
        if record["value"] is not None:
            return float(record["value"])
        return -math.inf if self.spec.direction == "maximize" else math.inf

    def ask(self) -> Trial | None:
        if self.asked >= self.total:
            return None
        frozen = self.study.ask()
        params = {}
        for name, param in self.spec.space.items():
            dist = self.distributions[name]
            if isinstance(param, Choice):
                encoded = frozen.suggest_categorical(name, dist.choices)
                params[name] = param.values[list(dist.choices).index(encoded)]
            elif param.integer:
                params[name] = frozen.suggest_int(name, dist.low, dist.high, log=dist.log)
            else:
                params[name] = frozen.suggest_float(name, dist.low, dist.high, log=dist.log)
        self.asked += 1
        trial = self.spec.trial(params, frozen.number)
        self.book.known.setdefault(trial.id, trial)
        self.pending[trial.number] = frozen
        return trial

    def tell(self, trial: Trial, record: dict[str, Any]) -> None:
        frozen = self.pending.pop(trial.number, None)
        if frozen is None:
            return
        if record["status"] == "completed":
            self.study.tell(frozen, self._value(record))
        else:
            self.study.tell(frozen, state=self.optuna.trial.TrialState.FAIL)


# ---------------------------------------------------------------------------------------------------- the sweep


def run_sweep(spec: SweepSpec, out_dir: str | Path, *, workers: int | None = None, scheduler: str | None = None,
              progress: bool = False, stop: StopFlag | None = None, handle_signals: bool = False,
              notify: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Run the sweep of `spec` into `out_dir` on a Dask cluster; returns the trials table (`Book.rows`).

    Args:
        spec: the sweep.
        out_dir: its folder (new, empty, or the folder of an earlier run of the same SPEC, which it continues).
        workers, scheduler: a local cluster of `workers` processes, or the running scheduler at `scheduler`
            (`agents.run.cluster.Cluster`).
        progress: a tqdm bar counting finished trials.
        stop: once set, no trial starts and the running ones are cancelled; finished trials stay.
        handle_signals: SIGINT / SIGTERM set `stop` while the sweep runs.
        notify: receives one-line notices (the cluster and its dashboard, warnings).

    Returns:
        One dict per trial: trial_id, number, status ("completed", "failed", "unfinished"), each parameter, the
        metric with `<metric>_low` / `<metric>_high`, fraction_solved, n_solved, n_seeds, median_steps_to_solve,
        seconds (the trial's own, summed over its parts), error.

    Raises:
        SpecError: the folder holds another SPEC or no sweep. ClusterError (a ValueError): no [sweep] extra, or the
        cluster cannot be started or reached; both before anything is written. OSError: a result not writable.
    """
    require_extra("run_sweep")
    root, stop, notify = Path(out_dir), StopFlag() if stop is None else stop, notify or (lambda _line: None)
    check_folder(root, spec)
    with stop_on_signals(stop) if handle_signals else contextlib.nullcontext(), \
            Cluster(workers, scheduler) as cluster:  # a cluster that cannot be used is refused before any write
        notify(cluster.describe())
        make_run_folder(root)
        lock = RunLock(root)
        try:
            if not (root / "spec.toml").exists():
                atomic_write_text(root / "spec.toml", spec.spec_text())
            book = Book(root, spec)
            search = (OptunaSearch(spec, book, cluster.client, lambda: cluster.n_workers) if spec.search == "optuna"
                      else PlannedSearch(spec, book))
            try:
                _drive(spec, book, search, cluster, stop, progress, notify)
            finally:
                # a local cluster's workers end here (at once after a stop): nothing writes into DIR after this
                cluster.close(now=bool(stop))
                book.remove_unfinished()
            rows = book.rows()
            _write_results(root, spec, book, rows, notify, plot=not stop)
        finally:
            lock.release()
    return rows


def _drive(spec: SweepSpec, book: Book, search: PlannedSearch | OptunaSearch, cluster: Cluster, stop: StopFlag,
           progress: bool, notify: Callable[[str], None]) -> None:
    """Ask, submit and publish trials until the search is done or `stop` is set."""
    from tqdm import tqdm

    already = sum(1 for t in book.known.values() if book.completed(t.id))
    notify(f"{search.total} trials ({spec.search}) x {len(spec.seeds)} seeds of {spec.env_id}; metric "
           f"{spec.metric} ({spec.direction}); {already} already completed in {book.root}")
    per_batch = spec.seeds_per_batch or math.ceil(len(spec.seeds) / max(1, math.ceil(
        cluster.n_workers / max(1, search.total))))
    driver = Driver(cluster.client, stop)
    running: dict[str, tuple[Trial, list[Part]]] = {}
    waiting: dict[str, list[Trial]] = {}
    bar = tqdm(total=search.total, initial=already, disable=not progress, unit="trial", desc="trials")
    try:
        while not stop:
            while driver.groups_in_flight < search.concurrency and not stop:
                trial = search.ask()
                if trial is None:
                    break
                if trial.id in running:  # Optuna asked again for a configuration in flight: told with it
                    waiting.setdefault(trial.id, []).append(trial)
                    continue
                record = book.completed(trial.id) or _refused(book, trial)
                if record is not None:  # done before, or a configuration DQNConfig refuses
                    search.tell(trial, record)
                    if record["status"] == "failed" or spec.search == "optuna":  # an Optuna ask counts
                        bar.update(1)
                        book.write_csv()
                    continue
                seeds = list(spec.seeds)
                parts = [Part(trial.id, i, str(book.trials_dir / f".tmp-{trial.id}"), trial.config().to_json(),
                              spec.env_id, tuple(seeds[j:j + per_batch]), trial.total_steps, dict(PART_OPTIONS))
                         for i, j in enumerate(range(0, len(seeds), per_batch))]
                running[trial.id] = (trial, parts)
                driver.submit(parts)
            if not driver.groups_in_flight:
                break
            for group, outcomes in driver.finished():
                trial, parts = running.pop(group)
                record = book.finish(trial, parts, outcomes)
                for same in [trial, *waiting.pop(group, [])]:
                    search.tell(same, record)
                    bar.update(1)
                book.write_csv()
    finally:
        driver.cancel()
        bar.close()


def _refused(book: Book, trial: Trial) -> dict[str, Any] | None:
    """A failed record when DQNConfig refuses the trial's combination of values, else None."""
    try:
        trial.config()
    except ValueError as e:
        return book.fail(trial, f"invalid configuration: {e}")
    return None


def _write_results(root: Path, spec: SweepSpec, book: Book, rows: list[dict[str, Any]],
                   notify: Callable[[str], None], plot: bool = True) -> None:
    """trials.csv, then best.json/best.toml, then the optional plot (a failure there is a notice; after a stop it
    is left to the rerun that finishes the sweep, so the signal is honoured at once)."""
    book.write_csv()
    best = best_row(rows, spec.metric, spec.direction)
    if best is None:
        notify("warning: no trial completed with a figure for the metric, so no best.json")
    else:
        write_best(root, spec, book, best)
    try:
        if plot and best is not None and plot_sweep(rows, spec, root / "sweep.png") is None:
            notify(f"warning: {NO_PLOT}")
    except OSError:
        raise
    except Exception as e:  # an optional step: the results are written
        notify(f"warning: sweep.png could not be drawn ({one_line(e)}); the results are written")
