#!/usr/bin/env python
"""Sweep DQNConfig settings over seeds on a Dask cluster, as a TOML SPEC says (see agents/run/sweep.py for it).

Each trial (one configuration x the SPEC's seeds, in batches trained by one process each) lands in
DIR/trials/<id>/, a seed-batch folder; DIR/trials.csv has one row per trial (parameters, metric and its 95% interval,
fraction solved, seconds, status, error), DIR/best.toml (and best.json) the best configuration as a preset for
--preset, DIR/sweep.png the metric against each parameter. The same command again skips the completed trials; a
changed SPEC in the same DIR is refused. By default a local cluster of --workers single-threaded processes; with
--scheduler it joins a running one (`dask scheduler`, then `dask worker ADDRESS` on each machine; dask-jobqueue
starts them on SLURM), whose workers must share DIR's file system.

Examples:
    python scripts/sweep.py sweep.toml --out runs/sweep --workers 2
    python scripts/sweep.py sweep.toml --out runs/sweep --scheduler tcp://10.0.0.5:8786

exit status: 0 done; 1 no trial completed; 2 bad input (one line, nothing written); 130 / 143 stopped by SIGINT /
SIGTERM (every finished trial kept; the same command continues).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from agents.loop.events import StopFlag  # noqa: E402
from agents.run.cli import OneLineParser, fail, path_arg  # noqa: E402
from agents.run.train import SIGNAL_EXIT, stop_on_signals  # noqa: E402

PROG = "sweep.py"


def _notify(line: str) -> None:
    if line.startswith("warning: "):
        print(f"{PROG}: {line}", file=sys.stderr)
    else:
        print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    with stop_on_signals() as stop:
        return _main(argv, stop)


def _main(argv: list[str] | None, stop: StopFlag) -> int:
    """`main` with the caller's stop flag and no signal handlers of its own."""
    p = OneLineParser(prog=PROG, description=__doc__)
    p.add_argument("spec", type=path_arg, help="the sweep's TOML SPEC")
    p.add_argument("--out", type=path_arg, required=True, help="the sweep's folder (the same one continues it)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None,
                       help="worker processes of a local Dask cluster (default: the CPU count)")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="join the running Dask scheduler at ADDRESS instead (e.g. tcp://host:8786)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    args.out = Path(args.out)
    try:
        from agents.run.cluster import require_extra

        require_extra("a sweep")
        from agents.run.sweep import SweepSpec, best_row, run_sweep

        if args.workers is not None and args.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {args.workers}")
        spec = SweepSpec.from_toml(args.spec)
        rows = run_sweep(spec, args.out, workers=args.workers, scheduler=args.scheduler,
                         progress=not args.no_progress, stop=stop, notify=_notify)
    except ValueError as e:  # SpecError, ClusterError, RunFolderError
        fail(PROG, str(e))
    except OSError as e:
        print(f"{PROG}: error: cannot write {e.filename or 'the sweep'}: {e.strerror or e}; finished trials are "
              f"kept in {args.out}", file=sys.stderr)
        return 1
    counts = {s: sum(r["status"] == s for r in rows) for s in ("completed", "failed", "unfinished")}
    print(f"{counts['completed']} completed, {counts['failed']} failed, {counts['unfinished']} unfinished of "
          f"{len(rows)} trials; table: {args.out / 'trials.csv'}")
    for r in rows:
        if r["status"] == "failed":
            print(f"{PROG}: warning: trial {r['trial_id']} failed: {r['error']}", file=sys.stderr)
    best = best_row(rows, spec.metric, spec.direction)
    if best is not None:
        setting = " ".join(f"{n}={best[n]}" for n in spec.space)
        low, high = best[f"{spec.metric}_low"], best[f"{spec.metric}_high"]
        ci = f" (95% CI {low:.4g}-{high:.4g})" if low is not None and high is not None else ""
        print(f"best: trial {best['trial_id']} {setting}: {spec.metric} {best[spec.metric]:.4g}{ci}, solved "
              f"{best['n_solved']}/{best['n_seeds']}; preset: {args.out / 'best.toml'}")
    if stop:
        print(f"Interrupted by {stop.reason}: {counts['completed']} finished trials are kept in {args.out}; run "
              "the same command to finish the sweep")
        return SIGNAL_EXIT[stop.reason]
    return 0 if counts["completed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
