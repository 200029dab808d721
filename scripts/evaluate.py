"""Greedy evaluation of a saved agent: mean ± std of the return over N seeded episodes.

Takes a `best.npz` / `final.npz`, a training checkpoint, or a run folder (its `best.npz`). The environment defaults
to the `env_id` recorded in the file (CartPole-v1 if none); episode i starts from `reset(seed + i)`, so the same
command gives the same numbers. The episodes run side by side in a vector environment.
Every error (missing, corrupt, foreign or too-new file; unknown environment; a network that does not fit the
environment) is one line on stderr and exit status 2.

Usage:
    PYTHONPATH=. python scripts/evaluate.py runs/cartpole/best.npz [--episodes 100] [--seed 0] [--env-id ID] [--json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from agents.loop.evaluation import evaluate
from agents.run.checkpoint import CheckpointError, check_compatible, load_checkpoint
from agents.run.cli import OneLineParser, fail
from agents.run.models import agent_from_checkpoint
from envs import EnvError, VecEnv

PROG = "evaluate.py"
DEFAULT_ENV_ID = "CartPole-v1"
MAX_ENVS = 100  # episodes beyond this run in waves


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="best.npz, final.npz, a training checkpoint, or a run folder")
    parser.add_argument("--episodes", type=int, default=100, help="greedy episodes to run (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="episode i resets with seed + i (default 0)")
    parser.add_argument("--env-id", help=f"Gymnasium id; default: the file's env_id, else {DEFAULT_ENV_ID}")
    parser.add_argument("--json", action="store_true", help="end stdout with one JSON line of the results")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"--episodes must be at least 1, got {args.episodes}")
    if args.seed < 0:
        parser.error(f"--seed must be a non-negative integer, got {args.seed}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    path = args.checkpoint
    if path.is_dir():
        seeds = sorted(p.name for p in path.glob("seed*") if (p / "best.npz").exists())
        if not (path / "best.npz").exists() and seeds:
            fail(PROG, f"{path} is a batch of seeds ({len(seeds)} seed folders): evaluate one of them, e.g. "
                       f"{path / seeds[0]}")
        path = path / "best.npz"
        print(f"{args.checkpoint} is a run folder: evaluating its best checkpoint {path}")
    try:
        ckpt = load_checkpoint(path)  # validates the file before an environment is built
        seeds = ckpt.meta.get("seeds")
        if ckpt.meta.get("kind") in ("seed_batch", "engine") and isinstance(seeds, list) and len(seeds) > 1:
            raise CheckpointError(f"{ckpt.path}: a seed-batch checkpoint holds {len(seeds)} agents: "
                                  f"evaluate one seed's model, e.g. {ckpt.path.parent / 'seed<k>' / 'best.npz'}")
        env_id = args.env_id if args.env_id is not None else ckpt.meta.get("env_id", DEFAULT_ENV_ID)
        if not isinstance(env_id, str):
            raise CheckpointError(f"{ckpt.path}: env_id in its metadata must be a string, got {env_id!r}")
        env = VecEnv(env_id, min(args.episodes, MAX_ENVS), np.random.default_rng(args.seed))
    except (CheckpointError, EnvError) as e:
        fail(PROG, str(e))
    try:
        check_compatible(ckpt, env.obs_dim, env.n_actions, env_id)
        agent = agent_from_checkpoint(ckpt)
        returns = evaluate(agent, env, args.episodes, args.seed)
    except CheckpointError as e:
        fail(PROG, str(e))
    finally:
        env.close()

    mean, std = float(returns.mean()), float(returns.std())
    print(f"checkpoint {ckpt.path} on {env_id}, greedy, seeds {args.seed}..{args.seed + args.episodes - 1}")
    print(f"return {mean:.2f} ± {std:.2f} over {args.episodes} episodes (min {returns.min():g}, max {returns.max():g})")
    if args.json:
        print(json.dumps({
            "checkpoint": str(ckpt.path),
            "env_id": env_id,
            "seed": args.seed,
            "episodes": args.episodes,
            "mean": mean,
            "std": std,
            "min": float(returns.min()),
            "max": float(returns.max()),
            "returns": returns.tolist(),
        }))


if __name__ == "__main__":
    main()
