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

import envs  # noqa: E402
from agents.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from agents.cli import OneLineParser, add_config_args, config_overrides, fail  # noqa: E402
from agents.config import DQNConfig  # noqa: E402
from agents.dqn import DivergenceError  # noqa: E402
from agents.run import SIGNAL_EXIT, RunFiles, finish_run, plot_learning_curve, start_run, stop_on_signals  # noqa: E402
from agents.train import Callback, EvalRow, Trainer  # noqa: E402

PROG = "train_cartpole.py"
DEFAULT_TOTAL_STEPS = 50_000


class ProgressBar(Callback):
    """tqdm bar: steps/s, epsilon, the last episode return and the last evaluation."""

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=initial, unit="step", disable=not enabled, dynamic_ncols=True)

    def on_progress(self, trainer: Trainer, steps: int) -> None:
        last = trainer.last_episode.episode_return if trainer.last_episode else float("nan")
        ev = f"{trainer.last_eval.mean:.1f}" if trainer.last_eval else "-"
        self.bar.set_postfix_str(f"eps={trainer.epsilon:.3f} return={last:.0f} eval={ev}", refresh=False)
        self.bar.update(steps)

    def on_eval(self, trainer: Trainer, row: EvalRow) -> None:
        self.bar.set_postfix_str(f"eps={trainer.epsilon:.3f} eval={row.mean:.1f}", refresh=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env-id", default=None, help="Gymnasium env id (default: CartPole-v1)")
    p.add_argument("--seed", type=int, default=None,
                   help="seeds weights, exploration, replay sampling and resets (default: 0)")
    p.add_argument("--total-steps", type=int, default=None,
                   help=f"the run's total environment steps, also when resuming (default: {DEFAULT_TOTAL_STEPS})")
    p.add_argument("--out", default=None, help="run folder (default: runs/<env>-seed<seed>-<time>)")
    p.add_argument("--resume", metavar="DIR", default=None, help="continue the run in DIR from its checkpoint")
    p.add_argument("--checkpoint-every", type=int, default=10_000, help="env steps between checkpoints (0: at the end)")
    p.add_argument("--no-save-replay", action="store_true",
                   help="leave the replay buffer out of checkpoints (smaller; resume is then not bit-identical)")
    p.add_argument("--final-eval-episodes", type=int, default=None, help="episodes of the final evaluation")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_args(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = config_overrides(args)
    try:
        fixed_by_run = sorted(overrides) + [f for f in ("env_id", "seed") if getattr(args, f) is not None]
        if args.resume and fixed_by_run:
            raise ValueError(f"--resume continues with the run's own environment, seed and hyperparameters; "
                             f"drop {', '.join('--' + f.replace('_', '-') for f in fixed_by_run)}")
        config = DQNConfig(**overrides)
        seed = 0 if args.seed is None else args.seed
        if seed < 0:
            raise ValueError(f"--seed must be >= 0, got {seed}")
        if args.checkpoint_every < 0:
            raise ValueError(f"--checkpoint-every must be >= 0, got {args.checkpoint_every}")
        if args.final_eval_episodes is not None and args.final_eval_episodes < 1:
            raise ValueError(f"--final-eval-episodes must be >= 1, got {args.final_eval_episodes}")
        total = DEFAULT_TOTAL_STEPS if args.total_steps is None else args.total_steps
        if total < 1:
            raise ValueError(f"--total-steps must be >= 1, got {total}")
        env_id = args.env_id or "CartPole-v1"
        if args.resume:  # a run continues on its own environment, not on --env-id (which defaults to CartPole-v1)
            env_id = str(load_checkpoint(RunFiles(args.resume).checkpoint).meta.get("env_id", env_id))
        probe = envs.GymEnv(envs.make_env(env_id))  # fail early on unknown ids and unsupported spaces
        threshold = probe.reward_threshold
        probe.close()
        out = args.resume or args.out or Path("runs") / f"{env_id.replace('/', '_')}-seed{seed}-" \
            f"{datetime.now():%Y%m%d-%H%M%S}"
        trainer, logger = start_run(
            lambda env_seed: envs.GymEnv(envs.make_env(env_id, env_seed)), env_id, config, seed, out,
            threshold, save_replay=not args.no_save_replay, checkpoint_every=args.checkpoint_every,
            resume=bool(args.resume), total_steps=total)
    except (ValueError, CheckpointError) as e:  # EnvError is a ValueError
        fail(PROG, str(e))
    env_id = logger.env_id
    if total < trainer.env_steps:
        fail(PROG, f"--total-steps {total} is below the {trainer.env_steps} steps this run has already taken")
    # The bar is made only now: one made before a usage error would print a stray bar line to stderr.
    bar = ProgressBar(total, trainer.env_steps, enabled=not args.no_progress)
    logger.extra = bar
    status = "completed"
    try:
        with stop_on_signals(trainer):
            if total > trainer.env_steps:
                trainer.run(total)
    except DivergenceError as e:
        status = "diverged"
        bar.bar.close()
        finish_run(trainer, logger, env_id, status)
        print(f"{PROG}: error: {e}", file=sys.stderr)
        print(f"{PROG}: the last good checkpoint is untouched: {logger.files.checkpoint}", file=sys.stderr)
        return 1
    bar.bar.close()
    if trainer.stop_requested:
        status = "interrupted"
    summary = finish_run(trainer, logger, env_id, status, args.final_eval_episodes)
    if status == "interrupted":
        print(f"Interrupted by {trainer.stop_requested} at step {trainer.env_steps}. Checkpoint "
              f"({(summary['checkpoint_bytes'] or 0) / 1e6:.1f} MB) and summary are in "
              f"{logger.files.root}\nResume with: python scripts/train_cartpole.py --resume {logger.files.root}"
              + (f" --total-steps {total}" if args.total_steps is not None else ""))
        return SIGNAL_EXIT[trainer.stop_requested]
    print(plot_learning_curve(logger.files, env_id, trainer.solve_threshold))
    size_mb = (summary["checkpoint_bytes"] or 0) / 1e6
    solved = (f"solved at step {summary['solved_at_step']} after {summary['solved_at_seconds']:.1f} s of training"
              if summary["solved"] else "not solved")
    print(f"{env_id} seed {trainer.seed}: {summary['env_steps']} steps in {summary['train_seconds']:.1f} s "
          f"(+{summary['eval_seconds']:.1f} s evaluating); {solved}.\n"
          f"best eval {summary['best_eval_mean']} at step {summary['best_eval_step']} (saved as best.npz); final eval "
          f"{summary['final_eval_mean']:.1f} ± {summary['final_eval_std']:.1f} over {summary['final_eval_episodes']} "
          f"episodes.\nfiles in {logger.files.root} (checkpoint {size_mb:.1f} MB"
          f"{'' if not args.no_save_replay else ', replay buffer not saved'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
