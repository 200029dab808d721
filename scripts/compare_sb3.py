#!/usr/bin/env python
"""dqn-np against Stable-Baselines3's DQN on one classic-control env: time and steps to the solving threshold.

For each seed, in one sitting and interleaved (dqn-np seed k, SB3 seed k, dqn-np seed k+1, ...), so that a machine
shared with other work slows both alike, it trains:

- dqn-np through `agents.run.train_one` with the package's preset for the env (`config_for(env_id,
  preset="default")`) and the preset's budget (`preset_total_steps`, else 50,000 steps);
- Stable-Baselines3's DQN with rl-baselines3-zoo's tuned settings for the env (`ZOO` below) and the zoo's budget.

Both run single-threaded (one BLAS thread for NumPy, `torch.set_num_threads(1)`) and follow one evaluation rule:
every `eval_freq` environment steps (the dqn-np config's, 2,000 by default; dqn-np steps its E envs together, so it
evaluates at the first vector step that reaches each multiple, exactly on it when E divides `eval_freq`) the greedy
policy plays `eval_episodes` episodes (20 by default) from the same reset seeds on both sides (the seeds of
`agents.loop.evaluation.Evaluator`); the first evaluation whose mean reaches the threshold (CartPole-v1 475,
Acrobot-v1 -100, MountainCar-v0 -110, LunarLander-v3 200) is the solve. Evaluation time is excluded from the
training seconds on both sides: dqn-np's loop pauses its own clock, and on the SB3 side `PausingEvalCallback` does.
Where the preset stops a seed at its first solving evaluation (CartPole-v1's does; `--stop-when-solved true|false`
overrides it), SB3's run stops there too, so both final models are the solving ones. Each final model then plays
`--final-eval-episodes` greedy episodes.

Reported per seed and library: steps and training seconds to the first solving evaluation, steps and seconds
trained, final evaluation; then per library the medians of steps and seconds to solve, where a seed that never
solved counts as never (infinity, as in `agents.run.stats`), and the ratios of the medians (SB3 / dqn-np). Also the
CPU, the load average, the versions and the date.

Needs the optional extra: `pip install -e '.[sb3]'` (install torch's CPU build first; see README).

Example:
    python scripts/compare_sb3.py --env-id CartPole-v1 --seeds 0-5 --json compare.json

Exit status: 0 done; 1 the JSON file could not be written after the work; 2 bad input, or the extra missing (one
line, nothing written); 130 interrupted (nothing written).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one BLAS thread: must be set before numpy (or torch) is imported

import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from agents.config import DQNConfig, config_for, preset_total_steps  # noqa: E402
from agents.loop.evaluation import EVAL_SEED_OFFSET, MIN_SOLVE_EPISODES  # noqa: E402
from agents.loop.events import Callback, EvalRow  # noqa: E402
from agents.run import env_facts, train_one  # noqa: E402
from agents.run.aggregate import check_output_file  # noqa: E402
from agents.run.checkpoint import atomic_write_text  # noqa: E402
from agents.run.cli import OneLineParser, fail, parse_bool, parse_seeds, path_arg  # noqa: E402
from agents.run.entry import run_command  # noqa: E402
from agents.run.train import DEFAULT_TOTAL_STEPS, FINAL_EVAL_SEED  # noqa: E402
from agents.validate import MAX_SEED  # noqa: E402

PROG = "compare_sb3.py"
MISSING_EXTRA = "compare_sb3.py needs the [sb3] extra: pip install -e '.[sb3]' (torch: see README)"
LIBRARIES = ("dqn-np", "sb3")
MAX_TOTAL_STEPS = 10_000_000  # a budget beyond this is days of SB3 on one core: no comparison of one sitting
MAX_EPISODES = 1000  # one Gymnasium env per episode on the SB3 side

THRESHOLDS = {"CartPole-v1": 475.0, "Acrobot-v1": -100.0, "MountainCar-v0": -110.0, "LunarLander-v3": 200.0}
"""The greedy evaluation mean that counts as solved (Gymnasium's reward_threshold of each env)."""

# rl-baselines3-zoo's tuned DQN settings, hyperparams/dqn.yml (DLR-RM/rl-baselines3-zoo, master of 2026-04-23), as
# tabulated in shared/bench/ANCHORS.md. Every other argument keeps SB3's DQN default: Adam, Huber loss, tau 1 (a hard
# target copy), max_grad_norm 10, exploration from 1.0, 1-step returns, no Double DQN. `target_update_interval`
# counts environment steps in SB3; `gradient_steps=-1` takes as many gradient steps as environment steps collected.
_ACROBOT_AND_LUNAR = {"learning_rate": 6.3e-4, "batch_size": 128, "buffer_size": 50_000, "learning_starts": 0,
                      "gamma": 0.99, "target_update_interval": 250, "train_freq": 4, "gradient_steps": -1,
                      "exploration_fraction": 0.12, "exploration_final_eps": 0.1, "net_arch": (256, 256)}
ZOO: dict[str, dict[str, Any]] = {
    "CartPole-v1": {"n_timesteps": 50_000, "learning_rate": 2.3e-3, "batch_size": 64, "buffer_size": 100_000,
                    "learning_starts": 1000, "gamma": 0.99, "target_update_interval": 10, "train_freq": 256,
                    "gradient_steps": 128, "exploration_fraction": 0.16, "exploration_final_eps": 0.04,
                    "net_arch": (256, 256)},
    "Acrobot-v1": {"n_timesteps": 100_000, **_ACROBOT_AND_LUNAR},
    "MountainCar-v0": {"n_timesteps": 120_000, "learning_rate": 4e-3, "batch_size": 128, "buffer_size": 10_000,
                       "learning_starts": 1000, "gamma": 0.98, "target_update_interval": 600, "train_freq": 16,
                       "gradient_steps": 8, "exploration_fraction": 0.2, "exploration_final_eps": 0.07,
                       "net_arch": (256, 256)},
    "LunarLander-v3": {"n_timesteps": 100_000, **_ACROBOT_AND_LUNAR},
}
ZOO_SOURCE = "rl-baselines3-zoo hyperparams/dqn.yml (DLR-RM/rl-baselines3-zoo master, 2026-04-23)"


def sb3_kwargs(env_id: str) -> tuple[int, dict[str, Any]]:
    """`(n_timesteps, keyword arguments of stable_baselines3.DQN)` of the zoo's settings for `env_id`."""
    settings = dict(ZOO[env_id])
    n_timesteps = settings.pop("n_timesteps")
    settings["policy_kwargs"] = {"net_arch": list(settings.pop("net_arch"))}
    return n_timesteps, settings


def schedule(seeds: Sequence[int]) -> list[tuple[int, str]]:
    """The order of the runs: `[(seeds[0], "dqn-np"), (seeds[0], "sb3"), (seeds[1], "dqn-np"), ...]`."""
    return [(seed, library) for seed in seeds for library in LIBRARIES]


def median_to_solve(values: Sequence[float | None]) -> float:
    """The median over seeds of a time to solve, a seed that never solved (None) counting as +inf.

    The median is finite while fewer than half of the seeds failed (for an even count, fewer than half: the middle
    pair must both be finite), as in `agents.run.stats.aggregate_seeds`.
    """
    if not values:
        raise ValueError("median_to_solve needs at least one seed's value, got none")
    return float(np.median([math.inf if v is None else float(v) for v in values]))


def ratio(sb3: float, ours: float) -> float | None:
    """`sb3 / ours` of two medians that may be +inf: inf when only SB3's is, 0 when only ours is, None when both are."""
    if math.isinf(sb3) and math.isinf(ours):
        return None
    if math.isinf(ours):
        return 0.0
    return math.inf if math.isinf(sb3) else sb3 / ours


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per library: seeds, seeds solved, median steps and seconds to solve; and the ratios SB3 / dqn-np of both."""
    out: dict[str, Any] = {}
    for library in LIBRARIES:
        mine = [r for r in rows if r["library"] == library]
        out[library] = {"seeds": len(mine), "solved": sum(r["solved_at_step"] is not None for r in mine),
                        "median_steps_to_solve": median_to_solve([r["solved_at_step"] for r in mine]),
                        "median_seconds_to_solve": median_to_solve([r["solved_at_seconds"] for r in mine])}
    out["ratio_seconds"] = ratio(out["sb3"]["median_seconds_to_solve"], out["dqn-np"]["median_seconds_to_solve"])
    out["ratio_steps"] = ratio(out["sb3"]["median_steps_to_solve"], out["dqn-np"]["median_steps_to_solve"])
    return out


def greedy_returns(predict: Callable[..., Any], envs: Sequence[Any], first_seed: int) -> np.ndarray:
    """Returns `(N,)` of one greedy episode on each of N Gymnasium envs, env i reset with seed `first_seed + i`.

    The envs still running step together, so the model is asked once per step for all of them.

    Args:
        predict: `predict(obs (n, obs_dim), deterministic=True) -> (actions (n,), state)` (SB3's `model.predict`).
        envs: N Gymnasium envs (not vector envs).
        first_seed: the reset seed of env 0.
    """
    obs = np.stack([env.reset(seed=first_seed + i)[0] for i, env in enumerate(envs)])
    returns = np.zeros(len(envs))
    running = np.ones(len(envs), dtype=bool)
    while running.any():
        live = np.flatnonzero(running)
        actions, _ = predict(obs[live], deterministic=True)
        for i, action in zip(live.tolist(), np.asarray(actions).reshape(-1).tolist(), strict=True):
            obs[i], reward, terminated, truncated, _ = envs[i].step(int(action))
            returns[i] += float(reward)
            running[i] = not (terminated or truncated)
    return returns


def eval_first_seed(seed: int, k: int, episodes: int) -> int:
    """The reset seed of episode 0 of evaluation k of `seed`: dqn-np's `Evaluator` rule, used on both sides."""
    return EVAL_SEED_OFFSET + seed * 10_000_019 + k * episodes


class EvalRecorder(Callback):
    """Keeps dqn-np's evaluation curve: `(env_steps, train_seconds, mean)` per evaluation."""

    name = "eval_recorder"

    def __init__(self) -> None:
        self.curve: list[list[float]] = []

    def on_eval(self, loop: Any, member: int, row: EvalRow) -> None:
        self.curve.append([row.env_steps, row.train_seconds, row.mean])


def run_dqn_np(env_id: str, seed: int, config: DQNConfig, total_steps: int, final_episodes: int) -> dict[str, Any]:
    """One dqn-np run in memory (nothing written); its row of the table."""
    recorder = EvalRecorder()
    s = train_one(config, env_id, seed, out_dir=None, total_steps=total_steps, final_eval_episodes=final_episodes,
                  callbacks=[recorder])
    return {"library": "dqn-np", "seed": seed, "status": s["status"], "env_steps": s["env_steps"],
            "train_seconds": s["train_seconds"], "eval_seconds": s["eval_seconds"], "n_evals": s["n_evals"],
            "solved_at_step": s["solved_at_step"], "solved_at_seconds": s["solved_at_seconds"],
            "final_eval_mean": s["final_eval_mean"], "final_eval_std": s["final_eval_std"],
            "curve": recorder.curve}


def run_sb3(sb3: Any, env_id: str, seed: int, total_steps: int, eval_freq: int, eval_episodes: int,
            final_episodes: int, stop_when_solved: bool) -> dict[str, Any]:
    """One Stable-Baselines3 DQN run with the zoo's settings, evaluated by `PausingEvalCallback`; its row."""
    import gymnasium as gym
    from stable_baselines3.common.env_util import make_vec_env

    _, kwargs = sb3_kwargs(env_id)
    model = sb3.DQN("MlpPolicy", make_vec_env(env_id, n_envs=1, seed=seed), seed=seed, device="cpu", verbose=0,
                    **kwargs)
    envs = [gym.make(env_id) for _ in range(max(eval_episodes, final_episodes))]
    try:
        callback = pausing_eval_callback(sb3)(envs[:eval_episodes], seed, THRESHOLDS[env_id], eval_freq,
                                              stop_when_solved)
        model.learn(total_timesteps=total_steps, callback=callback)
        train_seconds = callback.train_seconds()
        final = greedy_returns(model.predict, envs[:final_episodes], FINAL_EVAL_SEED + seed)
    finally:
        for env in envs:
            env.close()
    return {"library": "sb3", "seed": seed, "status": "completed", "env_steps": int(model.num_timesteps),
            "train_seconds": round(train_seconds, 4), "eval_seconds": round(callback.paused, 4),
            "n_evals": len(callback.curve), "solved_at_step": callback.solved_at_step,
            "solved_at_seconds": callback.solved_at_seconds, "final_eval_mean": float(final.mean()),
            "final_eval_std": float(final.std()), "curve": callback.curve}


def pausing_eval_callback(sb3: Any) -> type:
    """The SB3 callback class (built on `sb3.common.callbacks.BaseCallback`, imported only with the extra)."""
    from stable_baselines3.common.callbacks import BaseCallback

    class PausingEvalCallback(BaseCallback):
        """Greedy evaluation every `eval_freq` env steps, with the training clock paused while it runs.

        Args:
            envs: the evaluation envs, one per episode.
            seed: the run's seed (evaluation k plays from reset seeds `eval_first_seed(seed, k, episodes) + i`).
            threshold: the mean that counts as solved.
            eval_freq: env steps between evaluations.
            stop_when_solved: end training at the first solving evaluation.
        """

        def __init__(self, envs: Sequence[Any], seed: int, threshold: float, eval_freq: int,
                     stop_when_solved: bool) -> None:
            super().__init__()
            self.envs, self.seed, self.threshold = envs, seed, threshold
            self.eval_freq, self.stop_when_solved = eval_freq, stop_when_solved
            self.start, self.paused = time.perf_counter(), 0.0
            self.curve: list[list[float]] = []
            self.solved_at_step: int | None = None
            self.solved_at_seconds: float | None = None

        def train_seconds(self, now: float | None = None) -> float:
            """Seconds since training started, less the time spent evaluating."""
            return (time.perf_counter() if now is None else now) - self.start - self.paused

        def _on_training_start(self) -> None:
            self.start, self.paused = time.perf_counter(), 0.0

        def _on_step(self) -> bool:
            if self.num_timesteps % self.eval_freq:
                return True
            t0 = time.perf_counter()  # the clock stops here ...
            seconds = round(self.train_seconds(t0), 4)
            first = eval_first_seed(self.seed, len(self.curve), len(self.envs))
            mean = float(greedy_returns(self.model.predict, self.envs, first).mean())
            self.curve.append([int(self.num_timesteps), seconds, mean])
            solved_now = mean >= self.threshold and self.solved_at_step is None
            if solved_now:
                self.solved_at_step, self.solved_at_seconds = int(self.num_timesteps), seconds
            self.paused += time.perf_counter() - t0  # ... and goes on here
            return not (solved_now and self.stop_when_solved)

    return PausingEvalCallback


def cpu_model() -> str:
    """The CPU's model name as lscpu gives it (else /proc/cpuinfo's, else platform's)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10,
                             env={**os.environ, "LC_ALL": "C"}).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def fmt(value: float | None, digits: int = 1) -> str:
    """A figure for the table: `never` for None or inf."""
    if value is None or math.isinf(value):
        return "never"
    return f"{value:,.{digits}f}" if digits else f"{value:,.0f}"


def table(rows: Sequence[dict[str, Any]], summary: dict[str, Any]) -> str:
    """The per-seed table, then each library's medians and the ratios."""
    lines = [f"{'seed':>4}  {'library':<7}  {'steps to solve':>14}  {'s to solve':>10}  {'steps':>7}  "
             f"{'train s':>8}  {'eval s':>7}  {'final eval':>16}"]
    for r in rows:
        final = "-" if r["final_eval_mean"] is None else f"{r['final_eval_mean']:.1f} ± {r['final_eval_std']:.1f}"
        lines.append(f"{r['seed']:>4}  {r['library']:<7}  {fmt(r['solved_at_step'], 0):>14}  "
                     f"{fmt(r['solved_at_seconds'], 2):>10}  {r['env_steps']:>7}  {r['train_seconds']:>8.2f}  "
                     f"{r['eval_seconds']:>7.2f}  {final:>16}")
    for library in LIBRARIES:
        m = summary[library]
        lines.append(f"{library}: solved {m['solved']}/{m['seeds']}; median steps to solve "
                     f"{fmt(m['median_steps_to_solve'], 0)}, median seconds to solve "
                     f"{fmt(m['median_seconds_to_solve'], 2)}")

    def show(x: float | None) -> str:
        return "undefined (neither solved)" if x is None else ("inf" if math.isinf(x) else f"{x:.3f}")

    lines.append(f"ratio of medians, SB3 / dqn-np: seconds to solve {show(summary['ratio_seconds'])}, "
                 f"steps to solve {show(summary['ratio_steps'])}")
    return "\n".join(lines)


def json_safe(value: Any) -> Any:
    """`value` with every infinite float replaced by None (JSON has no infinity), recursively."""
    if isinstance(value, float) and math.isinf(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def parse_args(argv: list[str] | None) -> Any:
    p = OneLineParser(prog=PROG, description=__doc__)
    p.add_argument("--env-id", default="CartPole-v1", choices=sorted(ZOO),
                   help="the environment (default: CartPole-v1)")
    p.add_argument("--seeds", default="0-5", help="seeds, as ranges and lists: 0-5, 0,3,7 (default: 0-5)")
    p.add_argument("--total-steps", type=int, default=None,
                   help="env steps per run on both sides (default: each side's own budget: the dqn-np preset's "
                        "total_steps, else 50000; the zoo's n_timesteps for SB3)")
    p.add_argument("--eval-freq", type=int, default=None,
                   help="env steps between greedy evaluations, both sides (default: the dqn-np preset's eval_freq)")
    p.add_argument("--eval-episodes", type=int, default=None,
                   help=f"episodes per evaluation, both sides, at least {MIN_SOLVE_EPISODES} (default: the dqn-np "
                        "preset's eval_episodes)")
    p.add_argument("--final-eval-episodes", type=int, default=20,
                   help="greedy episodes of each final model (default: 20)")
    p.add_argument("--stop-when-solved", type=parse_bool, default=None, metavar="BOOL",
                   help="end each run, both sides, at its first solving evaluation; seconds and steps to solve do "
                        "not change, the final model becomes the solving one (default: the dqn-np preset's "
                        "stop_when_solved)")
    p.add_argument("--json", type=path_arg, default=None, metavar="PATH",
                   help="also write every figure to this JSON file")
    p.add_argument("--force", action="store_true", help="replace an existing --json file")
    return p.parse_args(argv)


def checked(args: Any) -> dict[str, Any]:
    """Every check that needs no training, before any work: the plan of the comparison, or a ValueError."""
    seeds = parse_seeds(args.seeds)
    if max(seeds) > MAX_SEED:
        raise ValueError(f"--seeds must be integers from 0 to {MAX_SEED}, got {max(seeds)}")
    for flag, value, low, high in (("--total-steps", args.total_steps, 1, MAX_TOTAL_STEPS),
                                   ("--eval-freq", args.eval_freq, 1, MAX_TOTAL_STEPS),
                                   ("--eval-episodes", args.eval_episodes, MIN_SOLVE_EPISODES, MAX_EPISODES),
                                   ("--final-eval-episodes", args.final_eval_episodes, 1, MAX_EPISODES)):
        if value is not None and not low <= value <= high:
            why = " (dqn-np counts a solve only over at least that many)" if flag == "--eval-episodes" else ""
            raise ValueError(f"{flag} must be from {low}{why} to {high}, got {value}")
    overrides = {k: v for k, v in (("eval_freq", args.eval_freq), ("eval_episodes", args.eval_episodes),
                                   ("stop_when_solved", args.stop_when_solved)) if v is not None}
    config = config_for(args.env_id, overrides, preset="default")
    if not (config.eval_freq >= 1 and MIN_SOLVE_EPISODES <= config.eval_episodes <= MAX_EPISODES):
        raise ValueError(f"the dqn-np preset for {args.env_id} evaluates every {config.eval_freq} steps over "
                         f"{config.eval_episodes} episodes; give --eval-freq >= 1 and --eval-episodes from "
                         f"{MIN_SOLVE_EPISODES} to {MAX_EPISODES}")
    n_timesteps, _ = sb3_kwargs(args.env_id)
    total = {"dqn-np": args.total_steps or preset_total_steps("default", args.env_id) or DEFAULT_TOTAL_STEPS,
             "sb3": args.total_steps or n_timesteps}
    least = max(config.learning_starts, config.train_freq, config.n_envs)  # what dqn-np's train() needs
    if total["dqn-np"] < least:
        raise ValueError(f"--total-steps {total['dqn-np']} leaves dqn-np's preset no gradient step (it learns from "
                         f"step {config.learning_starts}, every {config.train_freq} steps); give at least {least}")
    if config.eval_freq > min(total.values()):
        raise ValueError(f"--eval-freq {config.eval_freq} leaves no evaluation within {min(total.values())} steps")
    threshold, _, _ = env_facts(args.env_id)  # an env that cannot be made (LunarLander without box2d) fails here
    if threshold != THRESHOLDS[args.env_id]:
        raise ValueError(f"{args.env_id}: Gymnasium's reward_threshold is {threshold}, but this comparison counts "
                         f"{THRESHOLDS[args.env_id]} as solved")
    json_path = check_output_file("--json", args.json, args.force) if args.json is not None else None
    return {"env_id": args.env_id, "seeds": seeds, "config": config, "threshold": THRESHOLDS[args.env_id],
            "total_steps": total, "final_episodes": args.final_eval_episodes, "json": json_path}


def import_sb3() -> tuple[Any, Any]:
    """`(stable_baselines3, torch)`, or the one-line notice of the missing extra and exit status 2."""
    try:
        import stable_baselines3
        import torch
    except ImportError:
        print(MISSING_EXTRA, file=sys.stderr)
        raise SystemExit(2) from None
    return stable_baselines3, torch


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        plan = checked(args)
    except ValueError as e:  # EnvError is a ValueError
        fail(PROG, str(e))
    sb3, torch = import_sb3()
    torch.set_num_threads(1)
    import gymnasium

    env_id, config, seeds = plan["env_id"], plan["config"], plan["seeds"]
    machine = {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "load_average_start": list(os.getloadavg()),
               "date": datetime.now(UTC).isoformat(timespec="seconds"),
               "versions": {"python": platform.python_version(), "stable_baselines3": sb3.__version__,
                            "torch": torch.__version__, "numpy": np.__version__, "gymnasium": gymnasium.__version__},
               "torch_threads": torch.get_num_threads(),
               "blas_threads_env": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}
    v = machine["versions"]
    print(f"{env_id}, seeds {','.join(map(str, seeds))}, interleaved; threshold {plan['threshold']:g}; greedy "
          f"evaluation every {config.eval_freq} steps over {config.eval_episodes} episodes, both sides"
          f"{'; each run stops at its first solving evaluation' if config.stop_when_solved else ''}")
    print(f"dqn-np: its preset for {env_id}, {plan['total_steps']['dqn-np']} steps; sb3: {ZOO_SOURCE}, "
          f"{plan['total_steps']['sb3']} steps")
    print(f"CPU {machine['cpu']} ({machine['cpu_count']} cores), load average {machine['load_average_start']}; "
          f"{machine['date']}; sb3 {v['stable_baselines3']}, torch {v['torch']} ({machine['torch_threads']} thread), "
          f"numpy {v['numpy']}, gymnasium {v['gymnasium']}", flush=True)
    rows: list[dict[str, Any]] = []
    try:
        for seed, library in schedule(seeds):
            if library == "dqn-np":
                row = run_dqn_np(env_id, seed, config, plan["total_steps"]["dqn-np"], plan["final_episodes"])
            else:
                row = run_sb3(sb3, env_id, seed, plan["total_steps"]["sb3"], config.eval_freq, config.eval_episodes,
                              plan["final_episodes"], config.stop_when_solved)
            rows.append(row)
            solved = ("never solved" if row["solved_at_step"] is None else
                      f"solved at {row['solved_at_step']} steps / {row['solved_at_seconds']:.2f} s")
            print(f"  seed {seed} {library}: {solved}; {row['env_steps']} steps in {row['train_seconds']:.2f} s "
                  f"(+{row['eval_seconds']:.2f} s evaluating)", flush=True)
    except ValueError as e:  # a refusal the checks above could not foresee (memory for a replay buffer, ...)
        fail(PROG, f"{e}; nothing written")
    except KeyboardInterrupt:  # no traceback; the JSON holds only complete comparisons
        print(f"{PROG}: interrupted after {len(rows)} of {2 * len(seeds)} runs; nothing written", file=sys.stderr)
        return 130
    machine["load_average_end"] = list(os.getloadavg())
    summary = summarize(rows)
    print(table(rows, summary))
    print(f"load average at the end {machine['load_average_end']}")
    if plan["json"] is not None:
        result = {"env_id": env_id, "seeds": seeds, "threshold": plan["threshold"], "order": schedule(seeds),
                  "eval_freq": config.eval_freq, "eval_episodes": config.eval_episodes,
                  "final_eval_episodes": plan["final_episodes"], "stop_when_solved": config.stop_when_solved,
                  "total_steps": plan["total_steps"], "dqn_np_config": json.loads(config.to_json()),
                  "sb3_settings": {"source": ZOO_SOURCE, **sb3_kwargs(env_id)[1]}, "machine": machine,
                  "runs": rows, "summary": summary}
        try:
            atomic_write_text(plan["json"], json.dumps(json_safe(result), indent=2) + "\n")
        except OSError as e:
            print(f"{PROG}: error: cannot write {plan['json']}: {e.strerror or e}", file=sys.stderr)
            return 1
        print(f"figures written to {plan['json']}")
    return 0


if __name__ == "__main__":
    run_command(main, "compare_sb3.py", lambda: "nothing was written")
