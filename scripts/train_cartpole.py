#!/usr/bin/env python
"""Train a DQN (built on dqn_np) on CartPole-v1, or any Gymnasium env with flat observations and discrete actions.

Examples:
    python scripts/train_cartpole.py
    python scripts/train_cartpole.py --seed 3 --total-steps 30000 --out runs/s3
    python scripts/train_cartpole.py --resume runs/s3 --total-steps 60000
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from datetime import datetime
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny matrices: BLAS threads only add overhead
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

_EARLY_SIGNALS: list[int] = []  # SIGINT/SIGTERM received while the modules below load (before main's handlers)
if __name__ == "__main__":
    for _signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_signum, lambda signum, _frame: _EARLY_SIGNALS.append(signum))

from agents.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from agents.cli import OneLineParser, add_config_args, config_overrides, fail  # noqa: E402
from agents.config import DQNConfig  # noqa: E402
from agents.run import (  # noqa: E402
    DEFAULT_TOTAL_STEPS,
    NO_PLOT,
    SIGNAL_EXIT,
    RunFiles,
    env_facts,
    stop_on_signals,
    train,
)
from agents.train import StopFlag  # noqa: E402

PROG = "train_cartpole.py"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env-id", default=None, help="Gymnasium env id (default: CartPole-v1)")
    p.add_argument("--seed", type=int, default=None,
                   help="seeds weights, exploration, replay sampling and resets (default: 0)")
    p.add_argument("--total-steps", type=int, default=None,
                   help=f"the run's total environment steps (default: {DEFAULT_TOTAL_STEPS}; with --resume, the "
                        "run's own total)")
    p.add_argument("--out", default=None, help="run folder (default: runs/<env>-seed<seed>-<time>)")
    p.add_argument("--resume", metavar="DIR", default=None, help="continue the run in DIR from its checkpoint")
    p.add_argument("--checkpoint-every", type=int, default=10_000,
                   help="env steps between checkpoints; 0: only at the end (default: 10000)")
    p.add_argument("--no-save-replay", action="store_true",
                   help="leave the replay buffer out of checkpoints (smaller; resume is then not bit-identical)")
    p.add_argument("--final-eval-episodes", type=int, default=None,
                   help="episodes of the final evaluation (default: --eval-episodes)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_args(p)
    return p.parse_args(argv)


def _checked(args: argparse.Namespace) -> tuple[DQNConfig | None, str, int, int | None, str | Path]:
    """Every usage check that needs no run folder: config, env id, seed, total steps and where to write.

    The folder itself (free, writable, not holding a run; for --resume, its checkpoint and the run's total) is
    checked by `train`, after it has locked the folder.
    """
    overrides = config_overrides(args)
    fixed_by_run = sorted(overrides) + [f for f in ("env_id", "seed") if getattr(args, f) is not None]
    if args.resume and fixed_by_run:
        raise ValueError(f"--resume continues with the run's own environment, seed and hyperparameters; "
                         f"drop {', '.join('--' + f.replace('_', '-') for f in fixed_by_run)}")
    if args.resume and args.out:
        raise ValueError(f"--resume writes into the run's own folder {args.resume}; drop --out {args.out}")
    seed = 0 if args.seed is None else args.seed
    if seed < 0:
        raise ValueError(f"--seed must be >= 0, got {seed}")
    if args.checkpoint_every < 0:
        raise ValueError(f"--checkpoint-every must be >= 0, got {args.checkpoint_every}")
    if args.final_eval_episodes is not None and args.final_eval_episodes < 1:
        raise ValueError(f"--final-eval-episodes must be >= 1, got {args.final_eval_episodes}")
    if args.total_steps is not None and args.total_steps < 1:
        raise ValueError(f"--total-steps must be >= 1, got {args.total_steps}")
    if args.resume:  # the run's own environment, and its own total unless told otherwise (train reads both)
        return None, "", seed, args.total_steps, args.resume
    config = DQNConfig(**overrides)
    env_id = args.env_id or "CartPole-v1"
    env_facts(env_id)  # fail early on unknown ids and unsupported spaces
    out = args.out or Path("runs") / f"{env_id.replace('/', '_')}-seed{seed}-{datetime.now():%Y%m%d-%H%M%S}"
    return config, env_id, seed, args.total_steps or DEFAULT_TOTAL_STEPS, out


def main(argv: list[str] | None = None) -> int:
    with stop_on_signals() as stop:  # for the command's whole life: a signal never raises mid-write
        if _EARLY_SIGNALS:
            stop.set(signal.Signals(_EARLY_SIGNALS[0]).name)
        return _main(argv, stop)


def _main(argv: list[str] | None, stop: StopFlag) -> int:
    args = parse_args(argv)
    out = args.resume or args.out
    try:
        config, env_id, seed, total, out = _checked(args)
        if stop:
            print(f"Interrupted by {stop.reason} before training started; nothing was written.")
            return SIGNAL_EXIT[stop.reason]
        summary = train(config, env_id, seed, out, total, resume=bool(args.resume),
                        save_replay=not args.no_save_replay, checkpoint_every=args.checkpoint_every,
                        final_eval_episodes=args.final_eval_episodes, progress=not args.no_progress,
                        stop=stop, plot=True, notify=print)
    except (ValueError, CheckpointError) as e:  # EnvError and RunFolderError are ValueErrors
        fail(PROG, str(e))
    except OSError as e:  # a file of the run could not be written: not a usage error
        print(f"{PROG}: error: {_write_error(e, None if out is None else RunFiles(out))}", file=sys.stderr)
        return 1
    files = RunFiles(summary["out_dir"])
    for warning in summary["warnings"]:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    if summary["status"] == "diverged":
        where = (f"the last good checkpoint is untouched: {files.checkpoint}" if files.checkpoint.exists()
                 else "it diverged before its first checkpoint, so there is none to resume")
        print(f"{PROG}: error: {summary['error']}; {where}", file=sys.stderr)
        return 1
    if summary["status"] == "interrupted" or stop:  # a signal after the summary was written: during the report
        when = (f"at step {summary['env_steps']}" if summary["env_steps"] < summary["total_steps"] else
                f"after all {summary['env_steps']} steps (final evaluation, saving or plotting)")
        print(f"Interrupted by {stop.reason} {when}. Checkpoint "
              f"({(summary['checkpoint_bytes'] or 0) / 1e6:.1f} MB) and summary are in {files.root}\n"
              f"Resume with: python scripts/train_cartpole.py --resume {files.root}")
        return SIGNAL_EXIT[stop.reason]
    print(f"learning curve: {summary['learning_curve']}" if summary["learning_curve"] else NO_PLOT)
    print(_report(summary, files, args.no_save_replay))
    return 0


def _write_error(e: OSError, files: RunFiles | None) -> str:
    """One line: which file could not be written and why, and what is left to resume from."""
    what = f"cannot write {e.filename}: {e.strerror}" if e.filename else f"cannot write the run: {e}"
    if files is None:
        return what
    try:
        step = load_checkpoint(files.checkpoint).meta.get("env_steps")
    except CheckpointError:
        return f"{what}; {files.root} holds no loadable checkpoint to resume"
    return (f"{what}; the last checkpoint (step {step}) is intact: make room, then resume with "
            f"--resume {files.root}")


def _report(summary: dict, files: RunFiles, no_replay: bool) -> str:
    """The closing lines: speed, whether and when it solved, best and final evaluations, where the files are."""
    if summary["solved"]:
        solved = f"solved at step {summary['solved_at_step']} after {summary['solved_at_seconds']:.1f} s of training"
    elif summary["solve_threshold"] is None:
        solved = f"never counted as solved ({summary['env_id']} has no reward threshold)"
    elif summary["eval_episodes"] < 20:
        solved = ("not solved (solving needs evaluations over at least 20 episodes; these had "
                  f"{summary['eval_episodes']})")
    else:
        solved = "not solved"
    if summary["best_eval_step"] is None:
        why = ("--eval-freq 0" if not summary["eval_freq"] else
               f"the first was due at step {summary['eval_freq']}")
        best = f"no evaluation during training ({why}), so no best.npz"
    else:
        best = f"best eval {summary['best_eval_mean']:.1f} at step {summary['best_eval_step']} (saved as best.npz)"
    return (f"{summary['env_id']} seed {summary['seed']}: {summary['env_steps']} steps in "
            f"{summary['train_seconds']:.1f} s (+{summary['eval_seconds']:.1f} s evaluating); {solved}.\n"
            f"{best}; final eval {summary['final_eval_mean']:.1f} ± {summary['final_eval_std']:.1f} over "
            f"{summary['final_eval_episodes']} episodes.\nfiles in {files.root} (checkpoint "
            f"{(summary['checkpoint_bytes'] or 0) / 1e6:.1f} MB{', replay buffer not saved' if no_replay else ''})")


if __name__ == "__main__":
    raise SystemExit(main())
