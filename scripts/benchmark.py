#!/usr/bin/env python
"""Train several seeds and report time to solve, per seed and as medians, with the time split by phase.

Each seed runs in this process, one after another (no two runs share the CPU), through `agents.run.train`, the same
function `train_cartpole.py` calls, with DQNConfig's defaults and the flags given: no preset, so every seed trains
for the whole budget unless `--stop-when-solved` (the CartPole-v1 preset's setting) is given. After training, the
final evaluation re-evaluates each seed's best checkpoint (best.npz) greedily over --final-eval-episodes episodes,
as the training commands do. The loop times its own
phases: collect (act, step the envs, store), replay sampling, gradient updates, and evaluation (which is not
training time). Runs go to a temporary folder that is removed at the end, unless --out keeps them.

Every output is checked before the first seed trains: --out (and each OUT/seed<k> in it, which must hold no run) and
--json PATH (its folder must exist and be writable; an existing file is replaced only with --force).
Exit status: 0 done; 1 the JSON file could not be written after the work; 2 bad input (one line, nothing written).

Example:
    python scripts/benchmark.py --seeds 0-9 --json bench.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from agents.algo.dqn import DQNAgent  # noqa: E402
from agents.config import DQNConfig  # noqa: E402
from agents.loop.evaluation import evaluate  # noqa: E402
from agents.run import RunFiles, env_facts, make_vec_env, train_one  # noqa: E402
from agents.run.aggregate import check_out_folder, check_output_file  # noqa: E402
from agents.run.checkpoint import CheckpointError, atomic_write_text  # noqa: E402
from agents.run.cli import OneLineParser, add_config_args, config_overrides, fail, parse_seeds, path_arg  # noqa: E402
from agents.run.entry import run_command  # noqa: E402
from agents.run.folder import RUN_FILE_NAMES  # noqa: E402
from agents.run.train import BATCH_FILE_NAMES  # noqa: E402
from agents.validate import seeds as checked_seeds  # noqa: E402

PROG = "benchmark.py"
TIMING_EVAL_SEED = 3_000_000_000  # reset seeds of the timed 20-episode evaluation of the best checkpoint
DEFAULT_TOTAL_STEPS = 50_000
MAX_TOTAL_STEPS = 10**9  # days of CPU per seed: anything larger is a typo
DEFAULT_FINAL_EVAL_EPISODES = 100
MAX_FINAL_EVAL_EPISODES = 1_000_000


def run_seed(env_id: str, config: DQNConfig, seed: int, total_steps: int, out: Path, final_episodes: int) -> dict:
    """Train one seed into `out` (its final evaluation re-evaluates best.npz over `final_episodes` episodes), then
    time one 20-episode evaluation of its best checkpoint; returns the figures of one table row."""
    summary = train_one(config, env_id, seed, out, total_steps, final_eval_episodes=final_episodes)
    files = RunFiles(out)
    eval20_ms = None
    if files.best.exists():
        agent = DQNAgent.load(files.best)
        env20 = make_vec_env(env_id)(20, np.random.default_rng(seed))  # what one evaluation during training costs
        t0 = time.perf_counter()
        evaluate(agent, env20, 20, seed=TIMING_EVAL_SEED + seed)
        eval20_ms = round(1e3 * (time.perf_counter() - t0), 1)
    phases = summary["phase_seconds"]
    steps = summary["env_steps"]
    return {
        "seed": seed,
        "solved": summary["solved"],
        "solved_at_step": summary["solved_at_step"],
        "solved_at_seconds": summary["solved_at_seconds"],
        "train_seconds": summary["train_seconds"],
        "eval_seconds": summary["eval_seconds"],
        "steps": steps,
        "updates": summary["updates"],
        "best_eval_mean": summary["best_eval_mean"],
        "final_eval_mean": summary["final_eval_mean"],
        "best_ckpt_mean": summary.get("best_model_eval_mean"),
        **{f"{k}_seconds": v for k, v in phases.items() if k != "evaluate"},
        "us_per_update": round(1e6 * phases["update"] / max(summary["updates"], 1), 1),
        "us_per_transition_collect": round(1e6 * phases["collect"] / steps, 2),
        "eval_ms_each": round(1e3 * summary["eval_seconds"] / max(summary["n_evals"], 1), 1),
        "best_ckpt_eval20_ms": eval20_ms,
    }


def _median(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r[key] is not None]
    return statistics.median(values) if values else None


def check_runs_folder(out: str, seeds: list[int]) -> None:
    """Refuse, before any seed trains, an --out that could not hold the runs: a file, under a file, not writable, a
    name too long (`check_out_folder`), or a folder that holds a run of any layout already: a run's or a batch's own
    files (`RUN_FILE_NAMES`, `BATCH_FILE_NAMES`, as the training commands refuse them) or a non-empty seed<k>/ (an
    earlier benchmark's, or a batch's); two runs in one folder could not be told apart."""
    root = check_out_folder("--out", out)
    try:
        if not root.is_dir():
            return
        found = [root / name for name in dict.fromkeys((*BATCH_FILE_NAMES, *RUN_FILE_NAMES)) if (root / name).exists()]
        for folder in sorted(p for p in root.glob("seed*") if p.is_dir()):  # linear: one look per folder
            inside = RunFiles(folder).existing() or sorted(folder.iterdir())
            found += inside[:1]
    except OSError as e:
        raise ValueError(f"--out {root}: cannot use this folder: {e.strerror or e}") from None
    if found:
        of = f" (a run of seed {found[0].parent.name[4:]})" if found[0].parent != root else ""
        raise ValueError(f"--out {root}: {found[0]} exists{of}: the folder already holds a run; give a new --out")


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog=PROG, description=__doc__,
                      epilog="exit status: 0 done; 1 the JSON file could not be written; 2 bad input (nothing "
                             "written)")
    p.add_argument("--env-id", default="CartPole-v1", help="Gymnasium env id (default: CartPole-v1)")
    p.add_argument("--seeds", default="0-9", help="seeds: a range 0-9, a list 0,3,7, or both (default: 0-9)")
    p.add_argument("--total-steps", type=int, default=DEFAULT_TOTAL_STEPS,
                   help=f"environment steps per seed, 1 to {MAX_TOTAL_STEPS} (default: {DEFAULT_TOTAL_STEPS})")
    p.add_argument("--final-eval-episodes", type=int, default=DEFAULT_FINAL_EVAL_EPISODES,
                   help="episodes of the final evaluation of each seed's final and best model, as in the training "
                        f"commands (default: {DEFAULT_FINAL_EVAL_EPISODES})")
    p.add_argument("--out", type=path_arg, default=None,
                   help="keep the runs in this folder, as OUT/seed<k>/; it must hold no run already (default: a "
                        "temporary folder, removed)")
    p.add_argument("--json", type=path_arg, default=None, metavar="PATH",
                   help="also write the results as one JSON object to PATH (default: none)")
    p.add_argument("--force", action="store_true", help="replace an existing --json file (default: refused)")
    add_config_args(p)
    args = p.parse_args(argv)
    try:
        seeds = checked_seeds(parse_seeds(args.seeds), "--seeds")
        config = DQNConfig(**config_overrides(args))
        if not 1 <= args.total_steps <= MAX_TOTAL_STEPS:
            raise ValueError(f"--total-steps must be an integer from 1 to {MAX_TOTAL_STEPS}, got {args.total_steps}")
        if not 1 <= args.final_eval_episodes <= MAX_FINAL_EVAL_EPISODES:
            raise ValueError(f"--final-eval-episodes must be an integer from 1 to {MAX_FINAL_EVAL_EPISODES}, got "
                             f"{args.final_eval_episodes}")
        threshold = env_facts(args.env_id)[0]
        if args.json:
            check_output_file("--json", args.json, args.force)
        if args.out:
            check_runs_folder(args.out, seeds)
    except ValueError as e:
        fail(PROG, str(e))
    updates = max(0, args.total_steps - config.learning_starts) // config.train_freq * config.gradient_steps
    print(f"{len(seeds)} seeds x {args.total_steps} steps of {args.env_id} with n_envs={config.n_envs}, "
          f"n_step={config.n_step}, batch {config.batch_size}: about {updates} gradient steps per seed, at a few "
          f"hundred µs each for a 64-64 network", flush=True)
    with tempfile.TemporaryDirectory(prefix="dqn-np-bench-") as tmp:
        root = Path(args.out) if args.out else Path(tmp)
        rows = []
        print(f"{'seed':>4} {'solved@step':>11} {'solved@s':>9} {'train s':>8} {'best eval':>9} {'final':>7} "
              f"{'best ckpt':>9} {'µs/update':>9} {'µs/trans':>8} {'eval ms':>7}", flush=True)
        for seed in seeds:
            try:
                r = run_seed(args.env_id, config, seed, args.total_steps, root / f"seed{seed}",
                             args.final_eval_episodes)
            except (ValueError, CheckpointError) as e:  # a setting only the run can judge (buffer memory, ...)
                fail(PROG, str(e))
            rows.append(r)
            fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
            print(f"{seed:>4} {fmt(r['solved_at_step'], 'd'):>11} {fmt(r['solved_at_seconds'], '.2f'):>9} "
                  f"{r['train_seconds']:>8.2f} {fmt(r['best_eval_mean'], '.1f'):>9} "
                  f"{fmt(r['final_eval_mean'], '.1f'):>7} {fmt(r['best_ckpt_mean'], '.1f'):>9} "
                  f"{r['us_per_update']:>9.1f} {r['us_per_transition_collect']:>8.2f} {r['eval_ms_each']:>7.1f}",
                  flush=True)
    keys = ("solved_at_step", "solved_at_seconds", "train_seconds", "best_eval_mean", "final_eval_mean",
            "best_ckpt_mean", "collect_seconds", "sample_seconds", "update_seconds", "us_per_update",
            "us_per_transition_collect", "eval_ms_each", "best_ckpt_eval20_ms")
    medians = {k: _median(rows, k) for k in keys}
    n_solved = sum(r["solved"] for r in rows)
    ok = [r["seed"] for r in rows if threshold is not None and r["best_ckpt_mean"] is not None
          and r["best_ckpt_mean"] >= threshold]
    failed = [r["seed"] for r in rows if not r["solved"]]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    print(f"median: solved at step {medians['solved_at_step']}, {medians['solved_at_seconds']} s of training; "
          f"{n_solved}/{len(rows)} seeds solved" + (f" (not: {failed})" if failed else "") +
          f"; {len(ok)}/{len(rows)} best checkpoints >= {threshold} over {args.final_eval_episodes} episodes")
    print(f"time split (medians, s): collect {medians['collect_seconds']}, replay sampling "
          f"{medians['sample_seconds']}, updates {medians['update_seconds']}; {medians['us_per_update']} µs per "
          f"update, {medians['us_per_transition_collect']} µs per transition collected, "
          f"{medians['eval_ms_each']} ms per evaluation ({medians['best_ckpt_eval20_ms']} ms for 20 episodes of the "
          f"best checkpoint); peak RSS {peak_mb:.0f} MB")
    if args.json:
        result = {"env_id": args.env_id, "total_steps": args.total_steps, "config": json.loads(config.to_json()),
                  "seeds": rows, "medians": medians, "n_solved": n_solved, "best_checkpoint_ok": ok,
                  "failed_seeds": failed, "peak_rss_mb": round(peak_mb, 1), "machine": platform.processor(),
                  "numpy": np.__version__}
        try:
            atomic_write_text(args.json, json.dumps(result) + "\n")
        except OSError as e:  # a full disk, a folder removed since the check: the table above stays printed
            print(f"{PROG}: error: cannot write {args.json}: {e.strerror or e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    run_command(main, PROG, lambda: "nothing was written but the runs of the seeds it finished, in --out if one was "
                                    "given (the one it was training is left incomplete there)")
