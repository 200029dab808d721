#!/usr/bin/env python
"""Benchmark the Dask sweep engine: the same 8-trial grid with 1 worker and with 2 workers, in fresh folders.

Prints, per sitting and as medians over --repeats sittings: wall time of `run_sweep` (cluster start included),
the speedup of 2 workers over 1, and the scheduling overhead per trial: (workers x wall - the sum of the trials' own
seconds) / trials, i.e. the worker time a trial costs beyond its own training, final evaluation and files (for one
worker this is (wall - sum) / trials). A trial's own seconds are measured inside its worker (`run_part`).

Targets (issue 16): >= 1.8x with two workers; overhead < 0.5 s per trial.

Example:
    python scripts/bench_sweep.py --repeats 3
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from agents.run.cli import OneLineParser, fail  # noqa: E402
from agents.run.entry import run_command  # noqa: E402

PROG = "bench_sweep.py"


def sitting(spec, workers: int, root: Path) -> tuple[float, float, int]:
    """`(wall seconds, sum of the trials' own seconds, completed trials)` of one sweep in a fresh folder."""
    from agents.run.sweep import run_sweep

    t0 = time.perf_counter()
    rows = run_sweep(spec, root / f"w{workers}", workers=workers)
    wall = time.perf_counter() - t0
    return wall, sum(r["seconds"] or 0.0 for r in rows), sum(r["status"] == "completed" for r in rows)


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog=PROG, description=__doc__,
                      epilog="exit status: 0 done; 2 bad input, or the [sweep] extra missing (one line, nothing "
                             "written)")
    p.add_argument("--repeats", type=int, default=3, help="sittings, each 1 worker then 2 (default: 3)")
    p.add_argument("--total-steps", type=int, default=10_000, help="steps per seed of each trial (default: 10000)")
    p.add_argument("--seeds", type=int, default=2, help="seeds per trial (default: 2)")
    args = p.parse_args(argv)
    try:
        from agents.run.cluster import require_extra

        require_extra(PROG)
        from agents.run.sweep import SweepSpec

        if args.repeats < 1 or args.total_steps < 1 or args.seeds < 1:
            raise ValueError(f"--repeats, --total-steps and --seeds must be >= 1, got {args.repeats}, "
                             f"{args.total_steps}, {args.seeds}")
        spec = SweepSpec.from_dict({
            "env_id": "CartPole-v1", "seeds": list(range(args.seeds)), "total_steps": args.total_steps,
            "base": {"eval_freq": 2000, "eval_episodes": 10},
            "grid": {"learning_rate": [1e-3, 2.3e-3], "gamma": [0.95, 0.99], "n_step": [1, 3]}})
    except ValueError as e:
        fail(PROG, str(e))
    n = len(spec.planned())
    print(f"{n} trials x {args.seeds} seeds x {args.total_steps} steps of CartPole-v1 (defaults otherwise); "
          f"{os.cpu_count()} CPUs; load average before: {os.getloadavg()[0]:.2f}", flush=True)
    figures: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    speedups = []
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
            for workers in (1, 2):
                wall, own, done = sitting(spec, workers, Path(tmp))
                overhead = (workers * wall - own) / n
                figures[workers].append((wall, overhead))
                print(f"sitting {r + 1}, {workers} worker(s): wall {wall:6.2f} s, trials' own {own:6.2f} s, "
                      f"{done}/{n} completed, overhead {overhead:+.3f} s per trial", flush=True)
        speedups.append(figures[1][-1][0] / figures[2][-1][0])
        print(f"sitting {r + 1}: speedup {speedups[-1]:.2f}x", flush=True)
    med = {w: (statistics.median(x[0] for x in f), statistics.median(x[1] for x in f)) for w, f in figures.items()}
    print(f"median over {args.repeats}: 1 worker {med[1][0]:.2f} s, 2 workers {med[2][0]:.2f} s, speedup "
          f"{statistics.median(speedups):.2f}x (target >= 1.8x); overhead per trial {med[1][1]:.3f} s (1 worker), "
          f"{med[2][1]:.3f} s (2 workers) (target < 0.5 s)")
    return 0


if __name__ == "__main__":
    run_command(main, "bench_sweep.py", lambda: "nothing was written")
