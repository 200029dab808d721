#!/usr/bin/env python
"""Aggregate finished runs over seeds: batch folders from train_seeds.py, single-run folders, or a mix.

Reads every seed's summary.json and evals.csv and writes aggregate.json (and aggregate.png with matplotlib) into
--out: fraction of seeds solved (Wilson and bootstrap 95% intervals), IQM / median / mean of the best and final
evaluations with 95% stratified-bootstrap intervals, median steps and seconds to solve, and the failing seeds. Use
it to join a study trained in several processes, e.g. seeds 0-49 and 50-99 on two cores.

Example:
    python scripts/aggregate_seeds.py runs/s0-49 runs/s50-99 --out runs/hundred
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from agents.run.aggregate import format_aggregate, read_seed_folders
from agents.run.checkpoint import atomic_write_text
from agents.run.cli import OneLineParser, fail
from agents.run.stats import aggregate_seeds, plot_aggregate
from agents.run.train import AGGREGATE_SEED

PROG = "aggregate_seeds.py"


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog=PROG, description=__doc__)
    p.add_argument("folders", nargs="+", type=Path, help="batch folders and/or single-run folders")
    p.add_argument("--out", type=Path, required=True, help="folder for aggregate.json and aggregate.png")
    p.add_argument("--threshold", type=float, default=None,
                   help="return that counts as solved in the plot and the best-model count (default: the runs')")
    args = p.parse_args(argv)
    try:
        summaries, curves = read_seed_folders(args.folders)
        aggregate = aggregate_seeds(summaries, np.random.default_rng(AGGREGATE_SEED))
    except (ValueError, KeyError, OSError) as e:
        fail(PROG, str(e))
    threshold = args.threshold if args.threshold is not None else summaries[0].get("solve_threshold")
    scored = [s for s in summaries if s.get("best_model_eval_mean") is not None]
    if threshold is not None and scored:
        below = sorted(s["seed"] for s in summaries if (s.get("best_model_eval_mean") or -np.inf) < threshold)
        aggregate["best_model_at_threshold"] = {"threshold": threshold, "count": len(summaries) - len(below),
                                                "n": len(summaries), "episodes": scored[0].get("final_eval_episodes"),
                                                "below": below}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "aggregate.json", json.dumps(aggregate, indent=2) + "\n")
    env_id = summaries[0].get("env_id", "")
    picture = plot_aggregate(curves, [s["solved_at_step"] for s in summaries], args.out / "aggregate.png",
                             f"DQN on {env_id}: {len(summaries)} seeds", threshold,
                             np.random.default_rng(AGGREGATE_SEED))
    print(f"{len(summaries)} seeds from {len(args.folders)} folder(s)")
    print(format_aggregate(aggregate))
    print(f"wrote {args.out / 'aggregate.json'}" + (f" and {picture}" if picture else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
