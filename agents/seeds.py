"""Many seeds in one process: the DQN loop of `agents.train` with a member axis S.

    while env_steps < total:                 env_steps counts each member's transitions (all members move together)
        collector.step(epsilon)              S * E transitions: one forward pass of the stacked agent, S * E envs
        learner.steps(k * gradient_steps)    each step: S batches (one per member's buffer), one stacked update
        callbacks.on_step                    evaluation of every member, logs, progress bar, checkpoints

Member s is seed `seeds[s]`: its generators are spawned exactly as a single run with that seed spawns them
(`agents.train.spawn_generators`), so it draws the same initial weights, exploration, episode seeds and batches, and
takes the same actions and updates as that run (up to floating-point rounding in the batched matmuls). Nothing couples
two members: losses, gradient norms and clipping reduce per member, each member has its own replay buffer, best
model and solved step. A member whose loss, Q-values, gradient or environment turns non-finite is stopped and
reported; the others go on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from agents.callbacks import EpisodeRow, EvalRow, crossed
from agents.collector import Collector
from agents.config import DQNConfig
from agents.dqn import DQNAgent
from agents.evaluation import EVAL_SEED_OFFSET, MIN_SOLVE_EPISODES, evaluate
from agents.learner import Learner
from agents.replay import MemberReplay, require_memory
from agents.train import MakeEnv, StopFlag, TrainingLoop, spawn_generators


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """`seeds` as a list of distinct non-negative ints, or a ValueError naming the bad value."""
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must name at least one seed, got none")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seeds must be non-negative integers, got {seed!r}")
    repeated = sorted({int(s) for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ValueError(f"seeds must be distinct, got {repeated} more than once")
    return [int(s) for s in seeds]


class SeedCallback:
    """Hooks of the seed-batched loop; override what you need. `name` keys the callback's state in checkpoints."""

    name = ""

    def on_run_start(self, batch: SeedBatch) -> None:
        """Before the first step of a `run` call."""

    def on_step(self, batch: SeedBatch, steps_before: int) -> None:
        """After each vector step (`batch.env_steps` moved by E for every member) and its gradient steps."""

    def on_episode(self, batch: SeedBatch, member: int, row: EpisodeRow) -> None:
        """After each training episode of member `member`."""

    def on_eval(self, batch: SeedBatch, rows: list[EvalRow | None]) -> None:
        """After each evaluation: `rows[s]` is member s's row, None for a stopped member."""

    def on_stopped(self, batch: SeedBatch, member: int, reason: str) -> None:
        """Member `member` diverged and was stopped (`reason` says what was not finite, and when)."""

    def on_run_end(self, batch: SeedBatch) -> None:
        """When `run` returns or raises."""


class MemberEvaluator(SeedCallback):
    """Evaluates every member every `freq` transitions; tracks each member's best parameters and solved step.

    Member s's evaluation k uses the reset seeds a single run of seed `seeds[s]` uses (`agents.evaluation.Evaluator`),
    so its figures are that run's.
    """

    name = "evaluator"

    def __init__(self, env: Any, episodes: int, freq: int, seeds: list[int], solve_threshold: float | None) -> None:
        S = len(seeds)
        self.env, self.episodes, self.freq, self.seeds = env, episodes, freq, np.array(seeds, np.int64)
        self.solve_threshold = solve_threshold
        self.n_evals = 0
        self.member_evals = np.zeros(S, np.int64)  # evaluations of each member (a stopped member has no more)
        self.best_mean = np.full(S, -math.inf)
        self.best_step: list[int | None] = [None] * S
        self.best_params: dict[str, np.ndarray] | None = None  # stacked (S, ...): row s is member s's best
        self.solved_at_step: list[int | None] = [None] * S
        self.solved_at_seconds: list[float | None] = [None] * S
        self.last: list[EvalRow | None] = [None] * S
        self.seconds = 0.0

    def on_step(self, batch: SeedBatch, steps_before: int) -> None:
        if crossed(steps_before, batch.env_steps, self.freq):
            self.run(batch)

    def run(self, batch: SeedBatch) -> list[EvalRow | None]:
        """Evaluate every member now, update bests and solved steps, and emit `on_eval`."""
        t0 = time.perf_counter()
        batch.sync_time()
        first_seed = EVAL_SEED_OFFSET + self.seeds * 10_000_019 + self.n_evals * self.episodes  # (S,)
        returns = evaluate(batch.agent, self.env, self.episodes, first_seed)  # (S, episodes)
        self.n_evals += 1
        params = batch.agent.online.params
        if self.best_params is None:
            self.best_params = {k: v.copy() for k, v in params.items()}
        rows: list[EvalRow | None] = []
        seconds = round(batch.train_seconds, 4)
        for s in range(len(self.seeds)):
            if not batch.active[s]:
                rows.append(None)
                continue
            self.member_evals[s] += 1
            mean = float(returns[s].mean())
            is_best = mean > self.best_mean[s]
            if is_best:
                self.best_mean[s], self.best_step[s] = mean, batch.env_steps
                for k, v in params.items():
                    self.best_params[k][s] = v[s]
            solved = self.solve_threshold is not None and mean >= self.solve_threshold
            if solved and self.solved_at_step[s] is None and self.episodes >= MIN_SOLVE_EPISODES:
                self.solved_at_step[s], self.solved_at_seconds[s] = batch.env_steps, seconds
            rows.append(EvalRow(self.n_evals, batch.env_steps, mean, float(returns[s].std()), float(returns[s].min()),
                                float(returns[s].max()), self.episodes, seconds, bool(is_best)))
        self.last = [row if row is not None else last for row, last in zip(rows, self.last, strict=True)]
        batch.emit("on_eval", rows)
        self.seconds += time.perf_counter() - t0
        return rows

    def summary(self, s: int) -> dict[str, Any]:
        """Member s's evaluation figures, with the keys of a single run's summary."""
        last = self.last[s]
        return {
            "solved": self.solved_at_step[s] is not None,
            "solved_at_step": self.solved_at_step[s],
            "solved_at_seconds": self.solved_at_seconds[s],
            "best_eval_mean": None if self.best_step[s] is None else float(self.best_mean[s]),
            "best_eval_step": self.best_step[s],
            "last_eval_mean": None if last is None else last.mean,
            "n_evals": self.n_evals,
        }

    def state_dict(self) -> dict[str, Any]:
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
        self.n_evals = int(state["n_evals"])
        self.member_evals = np.array(state["member_evals"], np.int64)
        self.best_mean = np.array([-math.inf if m is None else m for m in state["best_mean"]])
        self.best_step = list(state["best_step"])
        self.best_params = {k: np.array(v) for k, v in state["best_params"].items()} or None
        self.solved_at_step = list(state["solved_at_step"])
        self.solved_at_seconds = list(state["solved_at_seconds"])
        self.last = [None if row is None else EvalRow(*row) for row in state["last"]]
        self.seconds = float(state["seconds"])


class SeedBatch(TrainingLoop):
    """DQN on S seeds at once, each with E environments, periodic greedy evaluation and its own best model.

    Args:
        make_env: `(n_envs, rng) -> VecEnvLike`; called with `S * E` envs and S generators (training) and with
            `S * eval_episodes` envs and S generators (evaluation); member s owns envs `s * E .. (s + 1) * E - 1`.
        config: the hyperparameters, shared by every member.
        seeds: the members' seeds, distinct and non-negative; member s is a single run of seed `seeds[s]`.
        solve_threshold: as in `agents.train.Trainer` ("env": the environment's reward threshold).
        callbacks: `SeedCallback`s after the evaluator (logs, progress bar, checkpoints).
        stop: the flag `run` checks after every step.

    Raises:
        ValueError: bad seeds, or replay buffers for S members that would not fit in memory (checked before they
            are allocated; the message names the bytes needed).

    Attributes:
        agent: the stacked agent (`agent.member(s)` is member s as a single agent).
        replay, env, collector, learner, evaluator: the parts.
        env_steps: transitions collected so far by each member.
        active: `(S,)` bool; False for a member stopped by divergence.
        stopped: `{member: reason}` of the members stopped.
    """

    def __init__(self, make_env: MakeEnv, config: DQNConfig, seeds: Sequence[int],
                 solve_threshold: float | None | str = "env", callbacks: Sequence[SeedCallback] = (),
                 stop: StopFlag | None = None) -> None:
        if not isinstance(config, DQNConfig):
            raise TypeError(f"config must be a DQNConfig, got {type(config).__name__}")
        self.config, self.seeds = config, check_seeds(seeds)
        S = self.n_members = len(self.seeds)
        rngs = [spawn_generators(seed) for seed in self.seeds]  # member s spawns exactly as a single run of its seed
        self.env = make_env(S * config.n_envs, [r["env"] for r in rngs])
        if solve_threshold == "env":
            solve_threshold = getattr(self.env, "reward_threshold", None)
        self.solve_threshold = solve_threshold
        obs_dim, n_actions = self.env.obs_dim, self.env.n_actions
        need = MemberReplay.nbytes_for(S, config.buffer_size, obs_dim, config.dtype)
        require_memory(need, f"{S} seeds x buffer_size {config.buffer_size}: the replay buffers")
        self.agent = DQNAgent(obs_dim, n_actions, config, [r["agent"] for r in rngs])
        self.replay = MemberReplay(config.buffer_size, obs_dim, [r["replay"] for r in rngs], config.dtype)
        self.collector = Collector(self.env, self.agent, self.replay, config.n_step, config.gamma)
        self.learner = Learner(self.agent, self.replay, config.batch_size)
        self.evaluator = MemberEvaluator(make_env(S * config.eval_episodes, [r["eval"] for r in rngs]),
                                         config.eval_episodes, config.eval_freq, self.seeds, solve_threshold)
        self.callbacks: list[SeedCallback] = [self.evaluator, *callbacks]
        self.env_steps = 0
        # shared: nothing more is stored for a stopped member, and its buffer is neither sampled nor waited for
        self.active = self.collector.active = self.replay.active = np.ones(S, bool)
        self.stopped: dict[int, str] = {}
        self.stopped_at: dict[int, tuple[int, int]] = {}  # member -> (env steps, updates) when it was stopped
        self.episodes = np.zeros(S, np.int64)  # training episodes finished per member
        self.last_episode: list[EpisodeRow | None] = [None] * S
        self.train_seconds = 0.0
        self.collect_seconds = 0.0
        self.stop = StopFlag() if stop is None else stop
        self._started = False
        self._clock = (time.perf_counter(), 0.0, 0.0)

    @property
    def n_solved(self) -> int:
        """Members that have solved so far."""
        return sum(step is not None for step in self.evaluator.solved_at_step)

    def run(self, total_steps: int) -> list[dict[str, Any]]:
        """Train until `env_steps >= total_steps` (per member), `stop` is set, or every member has stopped.

        Returns:
            `summaries()`: one summary per member.
        """
        if isinstance(total_steps, bool) or not isinstance(total_steps, (int, np.integer)) or total_steps < 1:
            raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")
        cfg, collector, learner = self.config, self.collector, self.learner
        E, clock = cfg.n_envs, time.perf_counter
        if not self._started:
            self.env.reset()
            self._started = True
        self._clock = (clock(), self.evaluator.seconds, self.train_seconds)
        self.emit("on_run_start")
        try:
            while self.env_steps < total_steps and not self.stop and self.active.any():
                before = self.env_steps
                t0 = clock()
                ended = collector.step(self.epsilon, before)  # S * E transitions into the windows and replay
                self.env_steps = before + E
                self.collect_seconds += clock() - t0
                if len(collector.nonfinite_members):
                    self._stop_members(collector.nonfinite_members, f"environment returned a non-finite reward or "
                                       f"observation at env step {self.env_steps}")
                for slot, episode_return, length in ended:
                    self._end_episode(slot // E, episode_return, length)
                n_bursts = crossed(before, self.env_steps, cfg.train_freq)
                if n_bursts and self.env_steps >= cfg.learning_starts and learner.ready():
                    for _ in range(n_bursts * cfg.gradient_steps):
                        learner.steps(1, self.env_steps)
                        finite = learner.last_metrics["finite"]
                        if not finite[self.active].all():
                            self._stop_members(np.flatnonzero(~finite & self.active), self._nonfinite_reason())
                self.emit("on_step", before)
        finally:
            self.sync_time()
            self.emit("on_run_end")
        return self.summaries()

    def _nonfinite_reason(self) -> str:
        return (f"non-finite loss, Q-value or gradient at update {self.agent.n_updates} "
                f"(env step {self.env_steps})")

    def _stop_members(self, members: np.ndarray, reason: str) -> None:
        for s in members:
            s = int(s)
            if self.active[s]:
                self.active[s] = False
                self.stopped[s] = reason
                self.stopped_at[s] = (self.env_steps, self.agent.n_updates)
                self.agent.freeze([s])  # its parameters stay as they were; no more transitions are stored for it
                self.emit("on_stopped", s, reason)

    def _end_episode(self, s: int, episode_return: float, length: int) -> None:
        if not self.active[s]:
            return
        self.episodes[s] += 1
        self.sync_time()
        row = EpisodeRow(int(self.episodes[s]), self.env_steps, episode_return, length, self.epsilon,
                         round(self.train_seconds, 4))
        self.last_episode[s] = row
        self.emit("on_episode", s, row)

    # --- results and persistence ------------------------------------------------------------------------------

    def summary(self, s: int) -> dict[str, Any]:
        """Member s's summary, with the keys of a single run's (`Trainer.summary`) plus `status` and `error`."""
        metrics = self.learner.last_metrics
        last = self.last_episode[s]
        env_steps, updates = self.stopped_at.get(s, (self.env_steps, self.agent.n_updates))
        return {
            "seed": self.seeds[s],
            "status": "diverged" if s in self.stopped else ("interrupted" if self.stop else "completed"),
            "error": self.stopped.get(s),
            "env_steps": env_steps,  # a stopped member's count ends where it stopped
            "episodes": int(self.episodes[s]),
            "updates": updates,
            "n_envs": self.config.n_envs,
            "train_seconds": round(self.train_seconds, 4),
            **self.evaluator.summary(s),
            "last_episode_return": None if last is None else last.episode_return,
            "interrupted": self.stop.reason,
            "last_metrics": {k: float(v[s]) for k, v in metrics.items() if k != "finite"},
        }

    def summaries(self) -> list[dict[str, Any]]:
        """One summary per member, in seed order of `seeds`."""
        return [self.summary(s) for s in range(self.n_members)]

    @property
    def seconds(self) -> dict[str, float]:
        """Seconds per phase in this process (for the whole batch)."""
        return {"collect": self.collect_seconds, **self.learner.seconds, "evaluate": self.evaluator.seconds,
                "train": self.train_seconds}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (replay buffers included), as nested dicts of arrays and JSON."""
        return {
            "kind": "seed_batch",
            "seeds": list(self.seeds),
            "env_steps": self.env_steps,
            "train_seconds": self.train_seconds,
            "active": self.active.copy(),
            "stopped": {str(s): reason for s, reason in self.stopped.items()},
            "stopped_at": {str(s): list(at) for s, at in self.stopped_at.items()},
            "episodes": self.episodes.copy(),
            "last_episode": [None if row is None else list(row) for row in self.last_episode],
            "last_metrics": {k: np.asarray(v) for k, v in self.learner.last_metrics.items()},
            "agent": self.agent.state_dict(),
            "rng": {"agent": [g.bit_generator.state for g in self.agent.rng],
                    "replay": [b.rng.bit_generator.state for b in self.replay.buffers]},
            "replay": {str(s): b.state_dict() for s, b in enumerate(self.replay.buffers)},
            "collector": self.collector.state_dict(),
            "callbacks": {cb.name: cb.state_dict() for cb in self.callbacks if hasattr(cb, "state_dict")},
        }

    def load_state_dict(self, state: dict[str, Any]) -> list[str]:
        """Restore `state_dict()` output into a SeedBatch built with the same make_env, config and seeds.

        Returns:
            Warnings for the user, one line each.
        """
        if list(state["seeds"]) != self.seeds:
            raise ValueError(f"the state is of seeds {list(state['seeds'])}, this batch trains {self.seeds}")
        warnings = []
        self.agent.load_state_dict(state["agent"])
        for g, rng_state in zip(self.agent.rng, state["rng"]["agent"], strict=True):
            g.bit_generator.state = rng_state
        for s, (b, rng_state) in enumerate(zip(self.replay.buffers, state["rng"]["replay"], strict=True)):
            b.load_state_dict(state["replay"][str(s)])
            b.rng.bit_generator.state = rng_state
        warnings += self._load_loop_state(state)
        self.active[...] = np.array(state["active"], bool)
        self.stopped = {int(s): reason for s, reason in state["stopped"].items()}
        self.stopped_at = {int(s): (int(a), int(b)) for s, (a, b) in state["stopped_at"].items()}
        if self.stopped:
            self.agent.freeze(sorted(self.stopped))
        self.episodes = np.array(state["episodes"], np.int64)
        self.last_episode = [None if row is None else EpisodeRow(*row) for row in state["last_episode"]]
        self.learner.last_metrics = {k: np.array(v) for k, v in state["last_metrics"].items()}
        return warnings
