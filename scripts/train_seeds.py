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

import argparse
import os
import signal
import sys
from datetime import datetime
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # per-member matrices are small: BLAS threads only add overhead
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

_EARLY_SIGNALS: list[int] = []  # SIGINT/SIGTERM received while the modules below load (before main's handlers)
if __name__ == "__main__":
    for _signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_signum, lambda signum, _frame: _EARLY_SIGNALS.append(signum))

from agents.checkpoint import CheckpointError  # noqa: E402
from agents.cli import OneLineParser, add_config_args, config_overrides, fail, parse_seeds  # noqa: E402
from agents.config import DQNConfig  # noqa: E402
from agents.run import DEFAULT_TOTAL_STEPS, NO_PLOT, SIGNAL_EXIT, env_facts, stop_on_signals  # noqa: E402
from agents.seed_run import format_aggregate, train_seeds  # noqa: E402
from agents.train import StopFlag  # noqa: E402

PROG = "train_seeds.py"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default=None,
                   help="seeds to train, as ranges and lists: 0-99, 0-9,12,20-29 (default: 0-9; with --resume, "
                        "the batch's own, which you may repeat but not change)")
    p.add_argument("--env-id", default=None, help="Gymnasium env id (default: CartPole-v1)")
    p.add_argument("--total-steps", type=int, default=None,
                   help=f"environment steps per seed (default: {DEFAULT_TOTAL_STEPS}; with --resume, the batch's own)")
    p.add_argument("--out", default=None, help="batch folder (default: runs/<env>-seeds<first>-<last>-<time>)")
    p.add_argument("--resume", metavar="DIR", default=None, help="continue the batch in DIR from its checkpoint")
    p.add_argument("--checkpoint-every", type=int, default=10_000,
                   help="env steps per seed between batch checkpoints; 0: only at the end (default: 10000)")
    p.add_argument("--final-eval-episodes", type=int, default=None,
                   help="episodes of the final evaluation of each seed's final and best model (default: "
                        "--eval-episodes)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_args(p)
    return p.parse_args(argv)


def _checked(args: argparse.Namespace) -> tuple[DQNConfig | None, str, list[int] | None, int | None, str | Path]:
    """Every usage check that needs no folder; the folder itself is checked by `train_seeds` once it is locked."""
    seeds = None if args.seeds is None else parse_seeds(args.seeds)
    overrides = config_overrides(args)
    fixed_by_run = sorted(overrides) + (["env_id"] if args.env_id is not None else [])
    if args.resume and fixed_by_run:
        raise ValueError(f"--resume continues with the batch's own environment and hyperparameters; "
                         f"drop {', '.join('--' + f.replace('_', '-') for f in fixed_by_run)}")
    if args.resume and args.out:
        raise ValueError(f"--resume writes into the batch's own folder {args.resume}; drop --out {args.out}")
    if args.checkpoint_every < 0:
        raise ValueError(f"--checkpoint-every must be >= 0, got {args.checkpoint_every}")
    if args.final_eval_episodes is not None and args.final_eval_episodes < 1:
        raise ValueError(f"--final-eval-episodes must be >= 1, got {args.final_eval_episodes}")
    if args.total_steps is not None and args.total_steps < 1:
        raise ValueError(f"--total-steps must be >= 1, got {args.total_steps}")
    if args.resume:
        return None, "", seeds, args.total_steps, args.resume
    seeds = list(range(10)) if seeds is None else seeds
    config = DQNConfig(**overrides)
    env_id = args.env_id or "CartPole-v1"
    env_facts(env_id)  # fail early on unknown ids and unsupported spaces
    out = args.out or (Path("runs") / f"{env_id.replace('/', '_')}-seeds{seeds[0]}-{seeds[-1]}-"
                                      f"{datetime.now():%Y%m%d-%H%M%S}")
    return config, env_id, seeds, args.total_steps or DEFAULT_TOTAL_STEPS, out


def main(argv: list[str] | None = None) -> int:
    with stop_on_signals() as stop:  # for the command's whole life: a signal never raises mid-write
        if _EARLY_SIGNALS:
            stop.set(signal.Signals(_EARLY_SIGNALS[0]).name)
        return _main(argv, stop)


def _main(argv: list[str] | None, stop: StopFlag) -> int:
    args = parse_args(argv)
    try:
        config, env_id, seeds, total, out = _checked(args)
        if stop:
            print(f"Interrupted by {stop.reason} before training started; nothing was written.")
            return SIGNAL_EXIT[stop.reason]
        result = train_seeds(config, env_id, seeds, out, total, resume=bool(args.resume),
                             checkpoint_every=args.checkpoint_every, final_eval_episodes=args.final_eval_episodes,
                             progress=not args.no_progress, stop=stop, plot=True, notify=print)
    except (ValueError, CheckpointError) as e:  # EnvError and RunFolderError are ValueErrors
        fail(PROG, str(e))
    except OSError as e:  # a file could not be written: not a usage error
        what = f"cannot write {e.filename}: {e.strerror}" if e.filename else f"cannot write the batch: {e}"
        print(f"{PROG}: error: {what}; the last batch checkpoint in {out} is intact", file=sys.stderr)
        return 1
    for warning in result["warnings"]:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    for seed, reason in result["stopped"].items():
        print(f"{PROG}: warning: seed {seed} diverged and was stopped: {reason}", file=sys.stderr)
    if result["status"] == "interrupted" or stop:
        print(f"Interrupted by {stop.reason} at step {result['env_steps']} of {result['total_steps']}. The batch "
              f"checkpoint is in {out}\nResume with: python scripts/train_seeds.py --resume {out}")
        return SIGNAL_EXIT[stop.reason]
    print(f"aggregate plot: {result['aggregate_plot']}" if result["aggregate_plot"] else NO_PLOT)
    print(report(result, out))
    return 0


def report(result: dict, out: str | Path) -> str:
    """The closing lines: time, seeds solved with their interval, scores, steps to solve, failing seeds, files."""
    return (f"{result['env_id']}: {result['n_seeds']} seeds x {result['env_steps']} steps in "
            f"{result['train_seconds']:.1f} s (+{result['eval_seconds']:.1f} s evaluating)\n"
            f"{format_aggregate(result['aggregate'])}\n"
            f"files in {out} (per seed: {out}/seed<k>/; aggregate.json, aggregate.png)")


if __name__ == "__main__":
    raise SystemExit(main())
