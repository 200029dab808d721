#!/usr/bin/env python
"""Train a DQN (built on dqn_np) on CartPole-v1, or any Gymnasium env with flat observations and discrete actions.

One seed, one folder: the engine of `train_seeds.py` with a single member. Ctrl-C saves and prints how to resume.

Examples:
    python scripts/train_cartpole.py
    python scripts/train_cartpole.py --seed 3 --total-steps 30000 --out runs/s3
    python scripts/train_cartpole.py --resume runs/s3 --total-steps 60000
"""

from __future__ import annotations

import os
import signal

os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny matrices: BLAS threads only add overhead
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

_EARLY_SIGNALS: list[int] = []  # SIGINT/SIGTERM received while the modules below load (before main's handlers)
if __name__ == "__main__":
    for _signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_signum, lambda signum, _frame: _EARLY_SIGNALS.append(signum))

from agents.loop.events import StopFlag  # noqa: E402
from agents.run.cli import _main as _cli_run  # noqa: E402
from agents.run.cli import main as _cli_main  # noqa: E402

PROG = "train_cartpole.py"


def main(argv: list[str] | None = None) -> int:
    return _cli_main(argv, "single", PROG, __doc__, _EARLY_SIGNALS)


def _main(argv: list[str] | None, stop: StopFlag) -> int:
    """`main` with the caller's stop flag and no signal handlers of its own (tests drive it so)."""
    return _cli_run(argv, "single", PROG, __doc__, stop)


if __name__ == "__main__":
    raise SystemExit(main())
