"""How a command that is not a training run ends on a signal: one line and its status, never a traceback.

The training commands and sweeps stop cleanly on a signal themselves (they save and say how to resume:
`agents.run.train.stop_on_signals`). Every other command (evaluations, benchmarks, gradient checks, the demo,
aggregation) has nothing to save half-way: its outputs are written atomically at the end, so an interrupted one
leaves nothing half-written. `run_command(main, prog)` runs it so that SIGINT or SIGTERM ends it at once with

    <prog>: interrupted by SIGINT; nothing was left half-written

on stderr and the status 130 (SIGINT) or 143 (SIGTERM), instead of a KeyboardInterrupt traceback (SIGINT) or a
silent death (SIGTERM).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import Any, NoReturn

SIGNAL_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Interrupted(BaseException):  # noqa: N818 (a signal, like KeyboardInterrupt: not an error of the program)
    """Raised in the main thread by `run_command`'s handler when SIGINT or SIGTERM arrives."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum: int, _frame: Any) -> None:
    raise Interrupted(signum)


def run_command(main: Callable[[], int | None], prog: str, written: Callable[[], str] | None = None) -> NoReturn:
    """Run `main()` and exit with its status; on SIGINT / SIGTERM exit 130 / 143 with one line on stderr.

    Args:
        main: the command's `main`, returning its exit status.
        prog: the command's name, for the line.
        written: what an interrupted run leaves (default: "nothing was left half-written": every file these
            commands write is written atomically, whole or not at all).
    """
    for signum in SIGNAL_STATUS:
        signal.signal(signum, _raise)
    try:
        status = main()
    except (Interrupted, KeyboardInterrupt) as e:
        signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
        for s in SIGNAL_STATUS:  # a second signal while the line is printed ends the process, not the line
            signal.signal(s, signal.SIG_DFL)
        left = written() if written is not None else "nothing was left half-written"
        print(f"{prog}: interrupted by {signal.Signals(signum).name}; {left}", file=sys.stderr)
        sys.exit(SIGNAL_STATUS[signum])
    sys.exit(status or 0)
