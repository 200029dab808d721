#!/usr/bin/env python
"""Are two finished runs the same run? Compares their models bit for bit and their logs row for row.

Run the same command at two commits (or on two machines), then compare the folders: every model file's arrays
(best.npz, final.npz) in dtype, shape and every bit, the config both record, every row of progress.csv and
evals.csv but the clock column (train_seconds), and summary.json's counters and scores. Single runs and batches
(seed<k>/ folders) alike; both folders must hold the same seeds. This is how README's figures measured at an
earlier commit are checked to hold for the current code.

Exit status: 0 the same run; 1 they differ (each difference printed, one line each); 2 bad input (a folder that
holds no finished run, or runs of other seeds).

Example:
    python scripts/train_seeds.py --seeds 0-2 --total-steps 20000 --out runs/after
    python scripts/compare_runs.py runs/before runs/after
"""

from __future__ import annotations

from pathlib import Path

from agents.run.cli import OneLineParser, fail, path_arg
from agents.run.compare import CompareError, compare_runs
from agents.run.entry import run_command  # noqa: E402

PROG = "compare_runs.py"


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog=PROG, description=__doc__,
                      epilog="exit status: 0 the same run; 1 they differ; 2 bad input")
    p.add_argument("a", type=path_arg, help="a finished run folder (single run or batch)")
    p.add_argument("b", type=path_arg, help="another finished run folder, of the same seeds")
    p.add_argument("--max-lines", type=int, default=20,
                   help="differences printed at most (default: 20; the count is always printed)")
    args = p.parse_args(argv)
    if args.max_lines < 1:
        fail(PROG, f"--max-lines must be a positive integer, got {args.max_lines}")
    try:
        differences = compare_runs(Path(args.a), Path(args.b))
    except CompareError as e:
        fail(PROG, str(e))
    if not differences:
        print(f"{args.a} and {args.b}: the same run (models bit for bit, logs but the clock, summaries' figures)")
        return 0
    for line in differences[:args.max_lines]:
        print(line)
    print(f"{args.a} and {args.b} differ: {len(differences)} difference(s)"
          + (f", the first {args.max_lines} shown" if len(differences) > args.max_lines else ""))
    return 1


if __name__ == "__main__":
    run_command(main, "compare_runs.py", lambda: "nothing was written")
