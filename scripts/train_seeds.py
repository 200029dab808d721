#!/usr/bin/env python
"""Train many seeds of DQN in one process (stacked networks, one member per seed) and aggregate them.

Seed k of the batch is the run `train_cartpole.py --seed k` makes, trained side by side with the others. The
folder holds one sub-folder per seed with a single run's files, one checkpoint for the whole batch, and the
aggregate over seeds (fraction solved, IQM / median / mean with 95% bootstrap intervals, steps to solve).

With --workers N (a local Dask cluster of N single-threaded processes) or --scheduler ADDRESS (a running one), the
seeds are split into one batch per worker, each trained in one process by the same engine; the folder then holds
every seed's sub-folder, the aggregate over all seeds, and each batch's own checkpoint in parts/part<i>/ (no
--resume for it; needs the [sweep] extra: pip install -e '.[sweep]').

Examples:
    python scripts/train_seeds.py --seeds 0-9 --out runs/ten
    python scripts/train_seeds.py --seeds 0-99 --total-steps 50000 --final-eval-episodes 100 --out runs/hundred
    python scripts/train_seeds.py --resume runs/hundred
    python scripts/train_seeds.py --seeds 0-99 --workers 2 --out runs/hundred-on-two
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

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from agents.loop.events import StopFlag  # noqa: E402
from agents.run.cli import _checked, fail, parse_args, report_batch  # noqa: E402
from agents.run.cli import _main as _cli_run  # noqa: E402
from agents.run.cli import main as _cli_main  # noqa: E402
from agents.run.train import NO_PLOT, SIGNAL_EXIT, stop_on_signals  # noqa: E402

PROG = "train_seeds.py"


def _cluster_flags(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """`--workers N` and `--scheduler ADDRESS` taken out of argv; the rest is the one-process command's."""
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    p.add_argument("--workers", default=None)
    p.add_argument("--scheduler", default=None)
    return p.parse_known_args(sys.argv[1:] if argv is None else argv)


def main(argv: list[str] | None = None) -> int:
    flags, rest = _cluster_flags(argv)
    if flags.workers is None and flags.scheduler is None:
        return _cli_main(argv, "batch", PROG, __doc__, _EARLY_SIGNALS)
    with stop_on_signals() as stop:
        if _EARLY_SIGNALS:
            stop.set(signal.Signals(_EARLY_SIGNALS[0]).name)
        return _distributed(flags, rest, stop)


def _main(argv: list[str] | None, stop: StopFlag) -> int:
    """`main` with the caller's stop flag and no signal handlers of its own (tests drive it so)."""
    flags, rest = _cluster_flags(argv)
    if flags.workers is None and flags.scheduler is None:
        return _cli_run(argv, "batch", PROG, __doc__, stop)
    return _distributed(flags, rest, stop)


def _distributed(flags: argparse.Namespace, rest: list[str], stop: StopFlag) -> int:
    """The batch split across a Dask cluster (`agents.run.cluster.train_distributed`)."""
    args = parse_args(rest, "batch", PROG, __doc__)
    try:
        from agents.run.cluster import require_extra

        require_extra("--workers / --scheduler")
        from agents.run.cluster import train_distributed

        workers = None
        if flags.workers is not None:
            if flags.scheduler is not None:
                raise ValueError("give --workers N (a local cluster) or --scheduler ADDRESS (a running one), not "
                                 "both")
            try:
                workers = int(flags.workers)
            except ValueError:
                raise ValueError(f"--workers must be an integer >= 1, got {flags.workers!r}") from None
            if workers < 1:
                raise ValueError(f"--workers must be >= 1, got {workers}")
        for flag, given in (("--resume", args.resume), ("--tensorboard", args.tensorboard)):
            if given:
                raise ValueError(f"{flag} is not available with --workers / --scheduler; drop {flag}")
        config, env_id, seeds, total, out = _checked(args, "batch")
        if stop:
            print(f"Interrupted by {stop.reason} before training started; nothing was written.")
            return SIGNAL_EXIT[stop.reason]
        result = train_distributed(config, env_id, seeds, out, total, workers=workers, scheduler=flags.scheduler,
                                   stop=stop, notify=print, save_replay=not args.no_save_replay,
                                   final_eval_episodes=args.final_eval_episodes, plot=True,
                                   env_backend=args.env_backend)
    except ValueError as e:  # ClusterError, EnvError and RunFolderError are ValueErrors
        fail(PROG, str(e))
    except RuntimeError as e:  # a part failed
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"{PROG}: error: cannot write {e.filename or 'the batch'}: {e.strerror or e}", file=sys.stderr)
        return 1
    root = Path(result["out_dir"])
    if result["status"] == "interrupted" or stop:
        parts = result.get("parts") or []
        print(f"Interrupted by {stop.reason}: {len(parts)} finished part(s) kept in {root / 'parts'} (each a batch "
              f"folder that aggregate_seeds.py reads); start again in a new --out to train the rest")
        return SIGNAL_EXIT.get(stop.reason, 130)
    for warning in result["warnings"]:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    if result["status"] == "diverged":  # every seed: one error line with the count and a reason, as without a cluster
        reason = next(iter(result["stopped"].values()), "non-finite values")
        print(f"{PROG}: error: every seed ({len(result['stopped'])}) diverged: {reason}; each part's folder in "
              f"{root / 'parts'} holds its checkpoint of the last good state", file=sys.stderr)
        return 1
    for seed, reason in result["stopped"].items():
        print(f"{PROG}: note: seed {seed} stopped: {reason}", file=sys.stderr)
    print(f"aggregate plot: {result['aggregate_plot']}" if result["aggregate_plot"] else NO_PLOT)
    print(report_batch(result, root) + f"; parts: {', '.join(p['folder'] for p in result['parts'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
