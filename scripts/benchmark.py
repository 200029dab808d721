#!/usr/bin/env python
"""Train several seeds with the default (or given) settings and report time to solve, per seed and as medians.

Each seed runs in this process, one after another (no two runs share the CPU), into OUT/seed<k>/ exactly as
`train_cartpole.py` would write it. After training, the best checkpoint is evaluated greedily over
--best-eval-episodes episodes. The time of each training run is split into gradient updates (agent.update),
replay sampling, and the rest of the loop (acting, stepping the environment, storing transitions).

Example:
    python scripts/benchmark.py --seeds 0 1 2 3 4 5 6 7 8 9 --json bench.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import envs  # noqa: E402
from agents.checkpoint import CheckpointError  # noqa: E402
from agents.cli import OneLineParser, add_config_args, config_overrides, fail  # noqa: E402
from agents.config import DQNConfig  # noqa: E402
from agents.dqn import DQNAgent  # noqa: E402
from agents.run import finish_run, start_run  # noqa: E402
from agents.train import evaluate  # noqa: E402

PROG = "benchmark.py"


def _timed(fn: Callable, box: list[float]) -> Callable:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            box[0] += time.perf_counter() - t0

    return wrapper


def run_seed(env_id: str, config: DQNConfig, seed: int, total_steps: int, out: Path, best_episodes: int) -> dict:
    """Train one seed into `out`, then evaluate its best checkpoint; returns the figures of one table row."""
    probe = envs.GymEnv(envs.make_env(env_id))
    threshold = probe.reward_threshold
    probe.close()
    trainer, logger = start_run(lambda s: envs.GymEnv(envs.make_env(env_id, s)), env_id, config, seed, out,
                                threshold, checkpoint_every=0)
    update_s, sample_s = [0.0], [0.0]
    trainer.agent.update = _timed(trainer.agent.update, update_s)  # type: ignore[method-assign]
    trainer.replay.sample = _timed(trainer.replay.sample, sample_s)  # type: ignore[method-assign]
    trainer.run(total_steps)
    summary = finish_run(trainer, logger, env_id, "completed")
    best = {"mean": None, "std": None}
    if logger.files.best.exists():
        agent = DQNAgent.load(logger.files.best)
        returns = evaluate(agent, envs.GymEnv(envs.make_env(env_id, 0)), best_episodes, seed=3_000_000_000 + seed)
        best = {"mean": float(returns.mean()), "std": float(returns.std())}
    train_s = summary["train_seconds"]
    return {
        "seed": seed,
        "solved": summary["solved"],
        "solved_at_step": summary["solved_at_step"],
        "solved_at_seconds": summary["solved_at_seconds"],
        "train_seconds": train_s,
        "steps": summary["env_steps"],
        "updates": summary["updates"],
        "best_eval_mean": summary["best_eval_mean"],
        "final_eval_mean": summary["final_eval_mean"],
        f"best_ckpt_{best_episodes}ep_mean": best["mean"],
        f"best_ckpt_{best_episodes}ep_std": best["std"],
        "update_seconds": round(update_s[0], 4),
        "sample_seconds": round(sample_s[0], 4),
        "loop_seconds": round(train_s - update_s[0] - sample_s[0], 4),
        "us_per_update": round(1e6 * update_s[0] / max(summary["updates"], 1), 1),
        "us_per_env_step_excl_updates": round(1e6 * (train_s - update_s[0] - sample_s[0]) / summary["env_steps"], 1),
    }


def _median(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r[key] is not None]
    return statistics.median(values) if values else None


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env-id", default="CartPole-v1")
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    p.add_argument("--total-steps", type=int, default=50_000)
    p.add_argument("--best-eval-episodes", type=int, default=100, help="greedy episodes for the best checkpoint")
    p.add_argument("--out", default=None, help="folder for the runs (default: a temporary folder)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")
    add_config_args(p)
    args = p.parse_args(argv)
    try:
        config = DQNConfig(**config_overrides(args))
        if args.total_steps < 1 or args.best_eval_episodes < 1 or min(args.seeds) < 0:
            raise ValueError("--total-steps and --best-eval-episodes must be >= 1 and seeds >= 0")
        envs.make_env(args.env_id).close()
    except ValueError as e:
        fail(PROG, str(e))
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="dqn-np-bench-"))
    rows = []
    best_key = f"best_ckpt_{args.best_eval_episodes}ep_mean"
    print(f"{'seed':>4} {'solved@step':>11} {'solved@s':>9} {'train s':>8} {'best eval':>9} {'final':>7} "
          f"{'best ckpt':>9} {'µs/update':>9} {'µs/step*':>8}", flush=True)
    for seed in args.seeds:
        try:
            r = run_seed(args.env_id, config, seed, args.total_steps, root / f"seed{seed}", args.best_eval_episodes)
        except CheckpointError as e:  # OUT/seed<k> already holds a run (e.g. a benchmark re-run with the same --out)
            fail(PROG, str(e))
        rows.append(r)
        fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
        print(f"{seed:>4} {fmt(r['solved_at_step'], 'd'):>11} {fmt(r['solved_at_seconds'], '.2f'):>9} "
              f"{r['train_seconds']:>8.2f} {fmt(r['best_eval_mean'], '.1f'):>9} {fmt(r['final_eval_mean'], '.1f'):>7} "
              f"{fmt(r[best_key], '.1f'):>9} {r['us_per_update']:>9.1f} {r['us_per_env_step_excl_updates']:>8.1f}",
              flush=True)
    medians = {k: _median(rows, k) for k in ("solved_at_step", "solved_at_seconds", "train_seconds", "best_eval_mean",
                                             "final_eval_mean", best_key, "update_seconds", "sample_seconds",
                                             "loop_seconds", "us_per_update", "us_per_env_step_excl_updates")}
    n_solved = sum(r["solved"] for r in rows)
    n_best_ok = sum(r[best_key] is not None and r[best_key] >= 475 for r in rows)
    print(f"median: solved at step {medians['solved_at_step']}, {medians['solved_at_seconds']} s; "
          f"train {medians['train_seconds']} s; {n_solved}/{len(rows)} seeds solved; "
          f"{n_best_ok}/{len(rows)} best checkpoints >= 475 over {args.best_eval_episodes} episodes")
    print(f"time split (medians, s): updates {medians['update_seconds']}, replay sampling "
          f"{medians['sample_seconds']}, rest of loop {medians['loop_seconds']}  (*µs/step: per env step, "
          f"updates and sampling excluded)")
    result = {"env_id": args.env_id, "total_steps": args.total_steps, "config": json.loads(config.to_json()),
              "runs_dir": str(root), "seeds": rows, "medians": medians, "n_solved": n_solved,
              "n_best_checkpoint_ok": n_best_ok}
    line = json.dumps(result)
    if args.json:
        Path(args.json).write_text(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
