#!/usr/bin/env python
"""Sweep settings over seeds: for every combination of --set values, train each seed and report how many solved
and how fast (median environment steps and training seconds to the first solving evaluation).

Runs go through `agents.run.train` without a folder; with --stop-when-solved a run ends at its first solving
evaluation (steps and seconds to solve are unchanged; the solve rate then means "solved within --total-steps").
Unsolved seeds count as never solving, so a median is only a figure when more than half the seeds solved.

Example:
    python scripts/sweep.py --seeds 0-19 --set n_envs=1,8,16 --set n_step=1,3 --stop-when-solved --json sweep.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import dataclasses  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from agents.config import DQNConfig  # noqa: E402
from agents.loop.events import Callback, EvalRow, LoopView  # noqa: E402
from agents.run import env_facts, train_one  # noqa: E402
from agents.run.cli import OneLineParser, add_config_args, config_overrides, fail, parse_seeds  # noqa: E402

PROG = "sweep.py"


class StopWhenSolved(Callback):
    """Ends a single run at its first solving evaluation."""

    def on_eval(self, loop: LoopView, member: int, row: EvalRow) -> None:
        if loop.evaluator.solved_at_step[member] is not None:
            loop.stop.set("solved")


def parse_set(text: str) -> tuple[str, list[Any]]:
    """`"n_envs=1,8,16"` -> `("n_envs", [1, 8, 16])`, each value parsed as the DQNConfig field's type."""
    name, eq, values = text.partition("=")
    fields = {f.name: f for f in dataclasses.fields(DQNConfig)}
    if not eq or name not in fields or not values:
        raise ValueError(f"--set {text!r} must be FIELD=V1,V2,... with FIELD one of {sorted(fields)}")
    kind = fields[name].type
    parse = {"int": int, "float": float, "str": str, "bool": lambda v: v.lower() in ("1", "true", "yes")}.get(kind)
    try:
        if name == "hidden_sizes":  # 64x64,128 -> (64, 64), (128,)
            return name, [tuple(int(n) for n in v.split("x")) for v in values.split(",")]
        return name, [parse(v) for v in values.split(",")]
    except ValueError as e:
        raise ValueError(f"--set {text!r}: {e}") from e


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog=PROG, description=__doc__)
    p.add_argument("--env-id", default="CartPole-v1")
    p.add_argument("--seeds", default="0-9", help="a range 0-19, a list 0,3,7, or both (default: 0-9)")
    p.add_argument("--total-steps", type=int, default=50_000)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=V1,V2",
                   help="a DQNConfig field and the values to try; repeat for a grid (hidden_sizes: 64x64,128)")
    p.add_argument("--stop-when-solved", action="store_true", help="end each run at its first solving evaluation")
    p.add_argument("--json", metavar="PATH", help="append one JSON line per combination")
    add_config_args(p)
    args = p.parse_args(argv)
    try:
        seeds = parse_seeds(args.seeds)
        grid = dict(parse_set(s) for s in args.set)
        base = config_overrides(args)
        combos = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
        configs = [DQNConfig(**(base | combo)) for combo in combos]  # every combination validated up front
        env_facts(args.env_id)
        if args.total_steps < 1:
            raise ValueError(f"--total-steps must be >= 1, got {args.total_steps}")
    except ValueError as e:
        fail(PROG, str(e))
    print(f"{len(configs)} settings x {len(seeds)} seeds of {args.env_id}, up to {args.total_steps} steps each",
          flush=True)
    for combo, config in zip(combos, configs, strict=True):
        t0 = time.perf_counter()
        rows = []
        for seed in seeds:
            s = train_one(config, args.env_id, seed, None, args.total_steps,
                      callbacks=[StopWhenSolved()] if args.stop_when_solved else [])
            rows.append({"seed": seed, "solved_at_step": s["solved_at_step"],
                         "solved_at_seconds": s["solved_at_seconds"], "best_eval_mean": s["best_eval_mean"],
                         "train_seconds": s["train_seconds"], "updates": s["updates"]})
        solved = [r for r in rows if r["solved_at_step"] is not None]
        never = [math.inf] * (len(rows) - len(solved))  # unsolved seeds rank last in the medians
        result = {
            "setting": combo,
            "solved": len(solved),
            "seeds": len(rows),
            "failed_seeds": [r["seed"] for r in rows if r["solved_at_step"] is None],
            "median_steps_to_solve": _median([r["solved_at_step"] for r in solved] + never),
            "median_seconds_to_solve": _median([r["solved_at_seconds"] for r in solved] + never),
            "median_train_seconds": _median([r["train_seconds"] for r in rows]),
            "wall_seconds": round(time.perf_counter() - t0, 1),
            "runs": rows,
        }
        setting = " ".join(f"{k}={v}" for k, v in combo.items()) or "(defaults)"
        print(f"{setting:<48} solved {len(solved):>3}/{len(rows):<3} median to solve: "
              f"{result['median_steps_to_solve']:>8} steps {result['median_seconds_to_solve']:>7.2f} s  "
              f"failed {result['failed_seeds']}", flush=True)
        if args.json:
            with Path(args.json).open("a") as f:
                f.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
