"""Greedy evaluation, side by side: N episodes run together in a vector environment, each counted once.

`evaluate` gives episode i the reset seed `seed + i` and acts with argmax Q; with E >= N envs all N episodes run at
once (the CartPole vector env steps 20 envs for the price of one), otherwise in waves of E. An env whose episode ended
keeps stepping until the slowest one ends, but its later episodes are never counted.

`Evaluator` is the callback that evaluates every `eval_freq` transitions, keeps the best parameters and decides
"solved": a greedy mean >= the environment's reward threshold over at least `MIN_SOLVE_EPISODES` episodes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from agents.callbacks import Callback, EvalRow, crossed
from agents.collector import VecEnvLike
from agents.dqn import DQNAgent

if TYPE_CHECKING:
    from agents.train import Trainer

MIN_SOLVE_EPISODES = 20  # an evaluation counts as "solved" only over at least this many episodes
EVAL_SEED_OFFSET = 1_000_000  # evaluation episodes use seeds disjoint from training's


def evaluate(agent: DQNAgent, env: VecEnvLike, episodes: int, seed: int | np.ndarray, *,
             should_stop: Callable[[], bool] | None = None, on_wave: Callable[[int], Any] | None = None) -> np.ndarray:
    """Greedy returns `(episodes,)`: episode i starts from reset seed `seed + i` and acts with argmax Q.

    A stacked agent of S members is evaluated side by side on `S * E` envs (member s on envs `s*E ..`), member s's
    episode i from reset seed `seed[s] + i`; the returns are `(S, episodes)`, row s what `evaluate` of member s alone
    returns (an episode depends only on its seed and its member's network).

    Args:
        agent: acts greedily (its exploration generator is not touched).
        env: E envs (stacked: S * E); episodes run in waves of E.
        episodes: N >= 1.
        seed: the first episode's reset seed; stacked: `(S,)`, one per member.
        should_stop: checked after every vector step; once true, the evaluation ends there and returns the
            returns of the waves it completed, so fewer than N (a `StopFlag`'s `__bool__` fits).
        on_wave: called with the number of episodes each completed wave counted (a progress bar's `update`).
    """
    if isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
    S = agent.members
    base = np.asarray(seed, dtype=np.int64).reshape(-1, 1)  # (1, 1), or (S, 1) for a stacked agent
    if (S or 1) != len(base) or env.n_envs % (S or 1):
        raise ValueError(f"a stacked agent of {S} members needs {S} seeds and a multiple of {S} envs, got "
                         f"{len(base)} seeds and {env.n_envs} envs")
    E = env.n_envs // (S or 1)  # envs per member
    lead = () if S is None else (S, -1)  # how a flat (S * E,) array is viewed per member
    returns = np.empty((len(base), episodes))
    for start in range(0, episodes, E):
        m = min(E, episodes - start)  # episodes counted in this wave; envs m.. run but are ignored
        obs = env.reset((base + start + np.arange(E)).reshape(-1))
        total = np.zeros(env.n_envs)
        running = np.tile(np.arange(E) < m, len(base))
        while running.any():
            if should_stop is not None and should_stop():
                return returns[:, :start] if S is not None else returns[0, :start]
            actions = agent.greedy(obs.reshape(*lead, obs.shape[-1]) if lead else obs).reshape(-1)  # argmax_a Q
            step = env.step(actions)
            total += np.where(running, step.reward, 0.0)
            running &= ~(step.terminated | step.truncated)
            obs = env.obs
        returns[:, start:start + m] = total.reshape(len(base), E)[:, :m]
        if on_wave is not None:
            on_wave(m)
    return returns if S is not None else returns[0]


class Evaluator(Callback):
    """Evaluates every `freq` transitions; tracks the best parameters and the first solving evaluation.

    Args:
        env: the evaluation envs (their own instances, E = `episodes` runs every episode at once).
        episodes: greedy episodes per evaluation.
        freq: transitions between evaluations; 0 never (the final evaluation is the caller's).
        seed: the run's seed; evaluation k uses reset seeds `EVAL_SEED_OFFSET + seed * 10_000_019 + k * episodes + i`.
        solve_threshold: mean return that counts as solved; None never solves.
    """

    name = "evaluator"

    def __init__(self, env: VecEnvLike, episodes: int, freq: int, seed: int, solve_threshold: float | None) -> None:
        self.env, self.episodes, self.freq, self.seed = env, episodes, freq, seed
        self.solve_threshold = solve_threshold
        self.n_evals = 0
        self.best_mean = -math.inf
        self.best_step: int | None = None
        self.best_params: dict[str, np.ndarray] | None = None
        self.solved_at_step: int | None = None
        self.solved_at_seconds: float | None = None
        self.last: EvalRow | None = None
        self.seconds = 0.0  # time spent evaluating; not training time

    def on_step(self, trainer: Trainer, steps_before: int) -> None:
        if crossed(steps_before, trainer.env_steps, self.freq):
            self.run(trainer)

    def run(self, trainer: Trainer) -> EvalRow:
        """Evaluate the current agent now, update best and solved, and emit `on_eval` to every callback."""
        t0 = time.perf_counter()
        trainer.sync_time()
        seed = EVAL_SEED_OFFSET + self.seed * 10_000_019 + self.n_evals * self.episodes
        returns = evaluate(trainer.agent, self.env, self.episodes, seed)
        self.n_evals += 1
        mean = float(returns.mean())
        is_best = mean > self.best_mean
        if is_best:
            self.best_mean, self.best_step = mean, trainer.env_steps
            self.best_params = {k: v.copy() for k, v in trainer.agent.online.params.items()}
        solved = self.solve_threshold is not None and mean >= self.solve_threshold
        if solved and self.solved_at_step is None and self.episodes >= MIN_SOLVE_EPISODES:
            self.solved_at_step, self.solved_at_seconds = trainer.env_steps, round(trainer.train_seconds, 4)
        self.last = EvalRow(self.n_evals, trainer.env_steps, mean, float(returns.std()), float(returns.min()),
                            float(returns.max()), self.episodes, round(trainer.train_seconds, 4), is_best)
        trainer.emit("on_eval", self.last)  # saving best.npz counts as evaluation time, not training time
        self.seconds += time.perf_counter() - t0
        return self.last

    def summary(self) -> dict[str, Any]:
        """The figures of the evaluations so far, for the run's summary."""
        return {
            "solved": self.solved_at_step is not None,
            "solved_at_step": self.solved_at_step,
            "solved_at_seconds": self.solved_at_seconds,
            "best_eval_mean": None if self.best_step is None else self.best_mean,
            "best_eval_step": self.best_step,
            "last_eval_mean": None if self.last is None else self.last.mean,
            "n_evals": self.n_evals,
        }

    def state_dict(self) -> dict[str, Any]:
        """Counters, best and solved figures, the last row and the best parameters."""
        return {
            "n_evals": self.n_evals,
            "best_mean": None if self.best_step is None else self.best_mean,
            "best_step": self.best_step,
            "best_params": self.best_params or {},
            "solved_at_step": self.solved_at_step,
            "solved_at_seconds": self.solved_at_seconds,
            "last": None if self.last is None else list(self.last),
            "seconds": self.seconds,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()` output."""
        self.n_evals = int(state["n_evals"])
        self.best_step = state["best_step"]
        self.best_mean = -math.inf if state["best_mean"] is None else float(state["best_mean"])
        self.best_params = {k: np.array(v) for k, v in state["best_params"].items()} or None
        self.solved_at_step, self.solved_at_seconds = state["solved_at_step"], state["solved_at_seconds"]
        self.last = None if state["last"] is None else EvalRow(*state["last"])
        self.seconds = float(state["seconds"])
