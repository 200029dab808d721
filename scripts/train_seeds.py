#!/usr/bin/env python
"""Train many seeds of DQN in one process (stacked networks, one member per seed) and aggregate them.

Seed k of the batch is the run `train_cartpole.py --seed k` makes, trained side by side with the others. The
folder holds one sub-folder per seed with a single run's files, one checkpoint for the whole batch, and the
aggregate over seeds (fraction solved, IQM / median / mean with 95% bootstrap intervals, steps to solve).

Examples:
    python scripts/train_seeds.py --seeds 0-9 --out runs/ten
    python scripts/train_seeds.py --seeds 0-99 --total-steps 50000 --final-eval-episodes 100 --out runs/hundred
    python scripts/train_seeds.py --resume runs/hundred
"""

from __future__ import annotations

import os
import signal

os.environ.setdefault("OMP_NUM_THREADS", "1")  # per-member matrices are small: BLAS threads only add overhead
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

_EARLY_SIGNALS: list[int] = []  # SIGINT/SIGTERM received while the modules below load (before main's handlers)
if __name__ == "__main__":
    for _signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_signum, lambda signum, _frame: _EARLY_SIGNALS.append(signum))

from agents.loop.events import StopFlag  # noqa: E402
from agents.run.cli import _main as _cli_run  # noqa: E402
from agents.run.cli import main as _cli_main  # noqa: E402

PROG = "train_seeds.py"


def main(argv: list[str] | None = None) -> int:
    return _cli_main(argv, "batch", PROG, __doc__, _EARLY_SIGNALS)


def _main(argv: list[str] | None, stop: StopFlag) -> int:
    """`main` with the caller's stop flag and no signal handlers of its own (tests drive it so)."""
    return _cli_run(argv, "batch", PROG, __doc__, stop)


if __name__ == "__main__":
    raise SystemExit(main())
