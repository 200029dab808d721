"""Greedy evaluation, side by side: N episodes run together in a vector environment, each counted once.

`evaluate` gives episode i the reset seed `seed + i` and acts with argmax Q; with E >= N envs all N episodes run at
once (the CartPole vector env steps 20 envs for the price of one), otherwise in waves of E. An env whose episode ended
keeps stepping until the slowest one ends, but its later episodes are never counted.

`Evaluator` is the callback that evaluates every member every `eval_freq` transitions, keeps each member's best
parameters and decides "solved": a greedy mean >= the environment's reward threshold over at least
`MIN_SOLVE_EPISODES` episodes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from agents.algo.dqn import DQNAgent
from agents.loop.collector import VecEnvLike
from agents.loop.events import Callback, EvalRow, StepCut, crossed
from agents.validate import positive_int

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
    positive_int("episodes", episodes)
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
    """Evaluates every member every `freq` transitions; tracks each member's best parameters and solved step.

    Member s's evaluation k runs episodes from reset seeds `EVAL_SEED_OFFSET + seeds[s] * 10_000_019 + k * episodes
    + i`, so its figures depend on its own seed and network only: the same alone as in any batch.

    Args:
        env: the evaluation envs, `S * episodes` of them (member s on envs `s * episodes ..`).
        episodes: greedy episodes per evaluation.
        freq: transitions (per member) between evaluations; 0 never (the final evaluation is the caller's).
        seeds: the members' seeds.
        solve_threshold: mean return that counts as solved; None never solves.

    Attributes:
        best_mean: `(S,)` each member's best evaluation mean so far (-inf before the first).
        best_step, solved_at_step, solved_at_seconds, last: per member, None until known.
        best_params: the stacked parameters whose row s is member s's best (None before the first evaluation).
        member_evals: `(S,)` evaluations of each member (a stopped member has no more).
        seconds: time spent evaluating (not training time).
    """

    name = "evaluator"

    def __init__(self, env: VecEnvLike, episodes: int, freq: int, seeds: list[int],
                 solve_threshold: float | None) -> None:
        S = len(seeds)
        self.env, self.episodes, self.freq, self.seeds = env, episodes, freq, np.array(seeds, np.int64)
        self.solve_threshold = solve_threshold
        self.n_evals = 0
        self.member_evals = np.zeros(S, np.int64)
        self.best_mean = np.full(S, -math.inf)
        self.best_step: list[int | None] = [None] * S
        self.best_params: dict[str, np.ndarray] | None = None
        self.solved_at_step: list[int | None] = [None] * S
        self.solved_at_seconds: list[float | None] = [None] * S
        self.last: list[EvalRow | None] = [None] * S
        self.seconds = 0.0

    def on_step(self, loop: Any, steps_before: int) -> None:
        if crossed(steps_before, loop.env_steps, self.freq):
            self.run(loop)

    def set_env(self, env: VecEnvLike) -> None:
        """Evaluate on `env` from now on (the loop's live members changed: `episodes` envs per live member)."""
        getattr(self.env, "close", lambda: None)()
        self.env = env

    def run(self, loop: Any) -> list[EvalRow | None]:
        """Evaluate every active member now, update bests and solved steps, and emit `on_eval` per member.

        The loop's agent holds the live members `loop.live` (row p is member `live[p]`), evaluated side by side on
        `self.env`.

        Returns:
            Member s's row, None for a stopped member.

        Raises:
            StepCut: `loop.stop` was set during the evaluation; it recorded nothing, and runs again on resume.
        """
        t0 = time.perf_counter()
        loop.sync_time()
        live = loop.live
        first_seed = EVAL_SEED_OFFSET + self.seeds[live] * 10_000_019 + self.n_evals * self.episodes  # (L,)
        returns = evaluate(loop.agent, self.env, self.episodes, first_seed, should_stop=loop.stop.__bool__)
        if returns.shape[-1] < self.episodes:  # a signal cut it: nothing recorded, the step evaluates again on resume
            self.seconds += time.perf_counter() - t0
            raise StepCut(f"the evaluation at env step {loop.env_steps} was cut by {loop.stop.reason}")
        self.n_evals += 1
        params = loop.agent.online.params  # row p: member live[p]
        if self.best_params is None:
            self.best_params = {k: np.zeros((len(self.seeds), *v.shape[1:]), v.dtype) for k, v in params.items()}
            for k, v in params.items():
                self.best_params[k][live] = v
        rows: list[EvalRow | None] = [None] * len(self.seeds)
        seconds = round(loop.train_seconds, 4)
        for p, s in enumerate(live.tolist()):
            if not loop.active[s]:
                continue
            self.member_evals[s] += 1
            mean = float(returns[p].mean())
            is_best = mean > self.best_mean[s]
            if is_best:
                self.best_mean[s], self.best_step[s] = mean, loop.env_steps
                for k, v in params.items():
                    self.best_params[k][s] = v[p]
            solved = self.solve_threshold is not None and mean >= self.solve_threshold
            if solved and self.solved_at_step[s] is None and self.episodes >= MIN_SOLVE_EPISODES:
                self.solved_at_step[s], self.solved_at_seconds[s] = loop.env_steps, seconds
            rows[s] = EvalRow(self.n_evals, loop.env_steps, mean, float(returns[p].std()), float(returns[p].min()),
                              float(returns[p].max()), self.episodes, seconds, bool(is_best))
        self.last = [row if row is not None else last for row, last in zip(rows, self.last, strict=True)]
        for s, row in enumerate(rows):  # saving best.npz counts as evaluation time, not training time
            if row is not None:
                loop.emit("on_eval", s, row)
        self.seconds += time.perf_counter() - t0
        return rows

    def summary(self, s: int) -> dict[str, Any]:
        """Member s's evaluation figures, for its summary."""
        last = self.last[s]
        return {
            "solved": self.solved_at_step[s] is not None,
            "solved_at_step": self.solved_at_step[s],
            "solved_at_seconds": self.solved_at_seconds[s],
            "best_eval_mean": None if self.best_step[s] is None else float(self.best_mean[s]),
            "best_eval_step": self.best_step[s],
            "last_eval_mean": None if last is None else last.mean,
            "n_evals": int(self.member_evals[s]),
        }

    def state_dict(self) -> dict[str, Any]:
        """Counters, best and solved figures, the last rows and the best parameters."""
        return {
            "n_evals": self.n_evals,
            "member_evals": self.member_evals.copy(),
            "best_mean": [None if step is None else float(m) for m, step in zip(self.best_mean, self.best_step,
                                                                                strict=True)],
            "best_step": list(self.best_step),
            "best_params": self.best_params or {},
            "solved_at_step": list(self.solved_at_step),
            "solved_at_seconds": list(self.solved_at_seconds),
            "last": [None if row is None else list(row) for row in self.last],
            "seconds": self.seconds,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()` output."""
        self.n_evals = int(state["n_evals"])
        self.member_evals = np.array(state["member_evals"], np.int64).reshape(len(self.seeds))
        self.best_mean = np.array([-math.inf if m is None else m for m in state["best_mean"]], float)
        self.best_step = list(state["best_step"])
        self.best_params = {k: np.array(v) for k, v in state["best_params"].items()} or None
        self.solved_at_step = list(state["solved_at_step"])
        self.solved_at_seconds = list(state["solved_at_seconds"])
        self.last = [None if row is None else EvalRow(*row) for row in state["last"]]
        self.seconds = float(state["seconds"])
