#!/usr/bin/env python
"""Aggregate finished runs over seeds: batch folders from train_seeds.py, single-run folders, or a mix.

Reads every seed's summary.json and evals.csv and writes aggregate.json (and aggregate.png with matplotlib) into
--out: fraction of seeds solved (Wilson and bootstrap 95% intervals), IQM / median / mean of the best and final
evaluations with 95% stratified-bootstrap intervals, median steps and seconds to solve, and the failing seeds. Use
it to join a study trained in several processes, e.g. seeds 0-49 and 50-99 on two cores.

The runs must be one study: the same env id, budget (total_steps) and configuration in every run's config.json;
otherwise the command names the difference (field, values, folders) and writes nothing, unless --allow-mixed.
--out must not hold results already (an aggregate.json or aggregate.png, or a run's own summary.json): such a folder
is refused, unless --force replaces the earlier aggregate. aggregate.json is written first; a plot that fails
afterwards is one warning line and exit status 1.

Exit status: 0 written; 1 the plot (optional) or a file could not be written; 2 bad input (one line, nothing
written).

Example:
    python scripts/aggregate_seeds.py runs/s0-49 runs/s50-99 --out runs/hundred
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np

from agents.run.aggregate import check_aggregate_out, format_aggregate, read_seed_folders
from agents.run.checkpoint import atomic_write_text
from agents.run.cli import OneLineParser, fail, path_arg
from agents.run.entry import run_command  # noqa: E402
from agents.run.stats import aggregate_seeds, plot_aggregate
from agents.run.train import AGGREGATE_SEED

PROG = "aggregate_seeds.py"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineParser(prog=PROG, description=__doc__,
                      epilog="exit status: 0 written; 1 the plot or a file could not be written; 2 bad input "
                             "(nothing written)")
    p.add_argument("folders", nargs="+", type=path_arg, help="batch folders and/or single-run folders")
    p.add_argument("--out", type=path_arg, required=True,
                   help="folder for aggregate.json and aggregate.png, created if missing (required)")
    p.add_argument("--threshold", type=float, default=None,
                   help="return that counts as solved in the plot and the best-model count (default: the runs' "
                        "solve_threshold)")
    p.add_argument("--allow-mixed", action="store_true",
                   help="join runs whose env id, total_steps or configuration differ (default: refused, naming the "
                        "difference)")
    p.add_argument("--force", action="store_true",
                   help="replace an aggregate.json / aggregate.png already in --out (default: refused)")
    args = p.parse_args(argv)
    if args.threshold is not None and not math.isfinite(args.threshold):
        fail(PROG, f"--threshold must be a finite number, got {args.threshold}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        out = check_aggregate_out(args.out, args.force)  # before any reading: nothing is written on a refusal
        summaries, curves = read_seed_folders(args.folders, allow_mixed=args.allow_mixed)
        aggregate = aggregate_seeds(summaries, np.random.default_rng(AGGREGATE_SEED))
    except (ValueError, KeyError, TypeError) as e:
        fail(PROG, str(e))
    threshold = args.threshold if args.threshold is not None else summaries[0].get("solve_threshold")
    scored = [s for s in summaries if s.get("best_model_eval_mean") is not None]
    if threshold is not None and scored:
        below = sorted(s["seed"] for s in summaries if (s.get("best_model_eval_mean") or -np.inf) < threshold)
        aggregate["best_model_at_threshold"] = {"threshold": threshold, "count": len(summaries) - len(below),
                                                "n": len(summaries), "episodes": scored[0].get("final_eval_episodes"),
                                                "below": below}
    try:
        out.mkdir(parents=True, exist_ok=True)
        if args.force:  # an earlier study's plot must not stay beside this aggregate (no matplotlib: no new plot)
            (out / "aggregate.png").unlink(missing_ok=True)
        atomic_write_text(out / "aggregate.json", json.dumps(aggregate, indent=2) + "\n")
    except OSError as e:  # a full disk, a folder removed meanwhile: not a usage error
        print(f"{PROG}: error: cannot write {e.filename or out}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(f"{len(summaries)} seeds from {len(args.folders)} folder(s)")
    print(format_aggregate(aggregate))
    status, picture = 0, None
    env_id = summaries[0].get("env_id", "")
    try:  # optional, after the results: a failure is one warning line
        picture = plot_aggregate(curves, [s["solved_at_step"] for s in summaries], out / "aggregate.png",
                                 f"DQN on {env_id}: {len(summaries)} seeds", threshold,
                                 np.random.default_rng(AGGREGATE_SEED))
    except Exception as e:  # matplotlib can raise anything; the aggregate is written
        print(f"{PROG}: warning: could not draw {out / 'aggregate.png'}: {type(e).__name__}: {e}", file=sys.stderr)
        status = 1
    print(f"wrote {out / 'aggregate.json'}" + (f" and {picture}" if picture else ""))
    return status


if __name__ == "__main__":
    run_command(main, "aggregate_seeds.py")
