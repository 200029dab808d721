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
import sys
from datetime import datetime
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny matrices: BLAS threads only add overhead
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from agents.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from agents.cli import OneLineParser, add_config_args, config_overrides, fail  # noqa: E402
from agents.config import DQNConfig  # noqa: E402
from agents.run import SIGNAL_EXIT, RunFiles, env_facts, plot_learning_curve, train  # noqa: E402

PROG = "train_cartpole.py"
DEFAULT_TOTAL_STEPS = 50_000


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


def _checked(args: argparse.Namespace) -> tuple[DQNConfig | None, str, int, int, str | Path]:
    """Every usage check, before anything is written: config, env id, seed, total steps and folder."""
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
    if args.resume:  # a run continues on its own environment, to its own total unless told otherwise
        ckpt = load_checkpoint(RunFiles(args.resume).checkpoint)
        env_id = str(ckpt.meta.get("env_id", "CartPole-v1"))
        total = int(args.total_steps or ckpt.meta.get("total_steps") or DEFAULT_TOTAL_STEPS)
        taken = int(ckpt.meta.get("env_steps", 0))
        if total < taken:
            raise ValueError(f"--total-steps {total} is below the {taken} steps this run has already taken")
        return None, env_id, seed, total, args.resume
    config = DQNConfig(**overrides)
    env_id = args.env_id or "CartPole-v1"
    env_facts(env_id)  # fail early on unknown ids and unsupported spaces
    total = args.total_steps or DEFAULT_TOTAL_STEPS
    out = args.out or Path("runs") / f"{env_id.replace('/', '_')}-seed{seed}-{datetime.now():%Y%m%d-%H%M%S}"
    return config, env_id, seed, total, out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config, env_id, seed, total, out = _checked(args)
        if args.resume and args.total_steps is None:
            print(f"resuming {out} to its total of {total} steps")
        summary = train(config, env_id, seed, out, total, resume=bool(args.resume),
                        save_replay=not args.no_save_replay, checkpoint_every=args.checkpoint_every,
                        final_eval_episodes=args.final_eval_episodes, progress=not args.no_progress,
                        handle_signals=True)
    except (ValueError, CheckpointError) as e:  # EnvError is a ValueError
        fail(PROG, str(e))
    files = RunFiles(summary["out_dir"])
    for warning in summary["warnings"]:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    if summary["status"] == "diverged":
        print(f"{PROG}: error: {summary['error']}", file=sys.stderr)
        where = (f"the last good checkpoint is untouched: {files.checkpoint}" if files.checkpoint.exists()
                 else "it diverged before its first checkpoint, so there is none to resume")
        print(f"{PROG}: {where}", file=sys.stderr)
        return 1
    if summary["status"] == "interrupted":
        signal_name = summary["interrupted"]
        print(f"Interrupted by {signal_name} at step {summary['env_steps']}. Checkpoint "
              f"({(summary['checkpoint_bytes'] or 0) / 1e6:.1f} MB) and summary are in {files.root}\n"
              f"Resume with: python scripts/train_cartpole.py --resume {files.root}")
        return SIGNAL_EXIT[signal_name]
    print(plot_learning_curve(files, summary["env_id"], env_facts(summary["env_id"])[0]))
    print(_report(summary, files, args.no_save_replay))
    return 0


def _report(summary: dict, files: RunFiles, no_replay: bool) -> str:
    """The closing lines: speed, whether and when it solved, best and final evaluations, where the files are."""
    if summary["solved"]:
        solved = f"solved at step {summary['solved_at_step']} after {summary['solved_at_seconds']:.1f} s of training"
    elif summary["eval_episodes"] < 20:
        solved = ("not solved (solving needs evaluations over at least 20 episodes; these had "
                  f"{summary['eval_episodes']})")
    else:
        solved = "not solved"
    if summary["best_eval_step"] is None:
        best = "no evaluation during training (--eval-freq 0), so no best.npz"
    else:
        best = f"best eval {summary['best_eval_mean']:.1f} at step {summary['best_eval_step']} (saved as best.npz)"
    return (f"{summary['env_id']} seed {summary['seed']}: {summary['env_steps']} steps in "
            f"{summary['train_seconds']:.1f} s (+{summary['eval_seconds']:.1f} s evaluating); {solved}.\n"
            f"{best}; final eval {summary['final_eval_mean']:.1f} ± {summary['final_eval_std']:.1f} over "
            f"{summary['final_eval_episodes']} episodes.\nfiles in {files.root} (checkpoint "
            f"{(summary['checkpoint_bytes'] or 0) / 1e6:.1f} MB{', replay buffer not saved' if no_replay else ''})")


if __name__ == "__main__":
    raise SystemExit(main())
