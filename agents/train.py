"""The DQN training loop: collect experience, learn from replay, evaluate greedily, keep the best model.

The loop talks to the environment only through the small `Env` interface (`envs.GymEnv` adapts Gymnasium), and to
the outside world only through a `Callback`: it returns metrics and never prints. Its whole state (agent, replay,
every random generator, counters, the current episode) round-trips through `state_dict()`, so a resumed run
continues bit-identically.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, NamedTuple, Protocol

import numpy as np

from agents.config import DQNConfig
from agents.dqn import DivergenceError, DQNAgent
from agents.replay import ReplayBuffer
from agents.schedules import linear_epsilon

MIN_SOLVE_EPISODES = 20  # an evaluation counts as "solved" only over at least this many episodes
EVAL_SEED_OFFSET = 1_000_000  # evaluation episodes use seeds disjoint from training's


class Step(Protocol):
    next_obs: np.ndarray
    reward: float
    terminated: bool
    truncated: bool


class Env(Protocol):
    """What the loop needs from an environment (`envs.GymEnv` provides it for Gymnasium)."""

    obs_dim: int
    n_actions: int

    def reset(self, seed: int | None) -> np.ndarray: ...

    def step(self, action: int) -> Step: ...


class EpisodeRow(NamedTuple):
    """One finished training episode (a row of progress.csv)."""

    episode: int
    env_steps: int
    episode_return: float
    length: int
    epsilon: float
    train_seconds: float


class EvalRow(NamedTuple):
    """One greedy evaluation (a row of evals.csv)."""

    eval_index: int
    env_steps: int
    mean: float
    std: float
    min: float
    max: float
    episodes: int
    train_seconds: float
    is_best: bool


class Callback:
    """Hooks the loop calls; override what you need (a script logs, draws a progress bar, writes files)."""

    def on_episode(self, trainer: Trainer, row: EpisodeRow) -> None:
        """After each training episode."""

    def on_eval(self, trainer: Trainer, row: EvalRow) -> None:
        """After each evaluation; when `row.is_best`, `trainer.agent` holds the new best parameters."""

    def on_progress(self, trainer: Trainer, steps: int) -> None:
        """Every `progress_every` environment steps, with the number of steps since the last call."""

    def on_checkpoint(self, trainer: Trainer) -> None:
        """Every `checkpoint_every` environment steps: the moment to save `trainer.state_dict()`."""


def evaluate(agent: DQNAgent, env: Env, episodes: int, seed: int) -> np.ndarray:
    """Greedy returns `(episodes,)`: episode i starts from `env.reset(seed + i)` and acts with argmax Q."""
    returns = np.empty(episodes)
    for i in range(episodes):
        obs, total, done = env.reset(seed + i), 0.0, False
        while not done:
            step = env.step(int(np.argmax(agent.q_values(obs))))
            obs, total, done = step.next_obs, total + step.reward, step.terminated or step.truncated
        returns[i] = total
    return returns


class Trainer:
    """DQN on one environment, with periodic greedy evaluation on a separately seeded copy.

    Args:
        env: the training environment.
        eval_env: the evaluation environment (a separate instance).
        config: the hyperparameters.
        seed: seeds every generator: weights and exploration, replay sampling, episode resets.
        solve_threshold: mean evaluation return that counts as solved (CartPole-v1: 475); None never solves.
        callback: receives episodes, evaluations, progress and checkpoint moments.
        progress_every: environment steps between `on_progress` calls.
        checkpoint_every: environment steps between `on_checkpoint` calls; 0 never.
    """

    def __init__(
        self,
        env: Env,
        eval_env: Env | None,
        config: DQNConfig,
        seed: int,
        solve_threshold: float | None = None,
        callback: Callback | None = None,
        progress_every: int = 1000,
        checkpoint_every: int = 0,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.env, self.eval_env, self.config, self.seed = env, eval_env, config, int(seed)
        self.solve_threshold = solve_threshold
        self.callback = callback or Callback()
        self.progress_every, self.checkpoint_every = progress_every, checkpoint_every
        agent_seq, replay_seq, env_seq = np.random.SeedSequence(self.seed).spawn(3)
        self.agent = DQNAgent(env.obs_dim, env.n_actions, config, np.random.default_rng(agent_seq))
        self.replay = ReplayBuffer(config.buffer_size, env.obs_dim, np.random.default_rng(replay_seq), config.dtype)
        self.env_rng = np.random.default_rng(env_seq)  # one reset seed per training episode
        self.env_steps = 0
        self.episodes = 0
        self.train_seconds = 0.0  # time in the loop, evaluation excluded
        self.eval_seconds = 0.0
        self.n_evals = 0
        self.best_eval_mean = -math.inf
        self.best_eval_step: int | None = None
        self.best_params: dict[str, np.ndarray] | None = None
        self.solved_at_step: int | None = None
        self.solved_at_seconds: float | None = None
        self.last_eval: EvalRow | None = None
        self.last_episode: EpisodeRow | None = None
        self.last_metrics: dict[str, float] = {}
        self.stop_requested: str | None = None  # set (e.g. by a signal handler) to end `run` after this step
        self._episode_seed = 0
        self._episode_actions: list[int] = []
        self._episode_return = 0.0
        self._obs: np.ndarray | None = None
        self._clock = (time.perf_counter(), 0.0, 0.0)  # (run start, eval_seconds then, train_seconds then)

    @property
    def epsilon(self) -> float:
        """Exploration probability at the current environment step."""
        cfg = self.config
        return linear_epsilon(self.env_steps, cfg.epsilon_start, cfg.epsilon_end, cfg.epsilon_decay_steps)

    def run(self, total_steps: int) -> dict[str, Any]:
        """Train until `env_steps == total_steps` (a run's total, also after resuming) or `stop_requested`.

        Returns:
            `summary()`.

        Raises:
            DivergenceError: a non-finite reward, observation, loss or gradient; the step is not applied.
        """
        if isinstance(total_steps, bool) or not isinstance(total_steps, (int, np.integer)) or total_steps < 1:
            raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")
        cfg, agent, replay = self.config, self.agent, self.replay
        if self._obs is None:
            self._start_episode()
        since_progress = 0
        self._clock = (time.perf_counter(), self.eval_seconds, self.train_seconds)
        try:
            while self.env_steps < total_steps and self.stop_requested is None:
                obs = self._obs
                action = agent.act(obs, self.epsilon)
                step = self.env.step(action)
                if not (math.isfinite(step.reward) and np.isfinite(step.next_obs).all()):
                    raise DivergenceError(
                        f"environment returned a non-finite reward {step.reward} or observation {step.next_obs} "
                        f"at env step {self.env_steps + 1}")
                # Store `terminated` only: a time-limit truncation must still bootstrap from next_obs.
                replay.add(obs, action, step.reward, step.next_obs, step.terminated)
                self.env_steps += 1
                self._episode_actions.append(action)
                self._episode_return += step.reward
                self._obs = step.next_obs
                if step.terminated or step.truncated:
                    self._end_episode()
                if (self.env_steps >= cfg.learning_starts and self.env_steps % cfg.train_freq == 0
                        and len(replay) >= cfg.batch_size):  # a resume without saved replay refills first
                    for _ in range(cfg.gradient_steps):
                        self._learn()
                since_progress += 1
                if since_progress == self.progress_every:
                    self.callback.on_progress(self, since_progress)
                    since_progress = 0
                if cfg.eval_freq and self.env_steps % cfg.eval_freq == 0 and self.eval_env is not None:
                    self._evaluate()
                if self.checkpoint_every and self.env_steps % self.checkpoint_every == 0:
                    self._sync_time()
                    self.callback.on_checkpoint(self)
        finally:
            self._sync_time()
            if since_progress:
                self.callback.on_progress(self, since_progress)
        return self.summary()

    # --- the pieces of one step -------------------------------------------------------------------------------

    def _learn(self) -> None:
        try:
            metrics = self.agent.update(self.replay.sample(self.config.batch_size))
        except DivergenceError as e:
            raise DivergenceError(f"training diverged at env step {self.env_steps}: {e}; "
                                  f"last finite metrics {self.last_metrics}") from e
        self.last_metrics = metrics

    def _start_episode(self) -> None:
        self._episode_seed = int(self.env_rng.integers(2**31))
        self._episode_actions = []
        self._episode_return = 0.0
        self._obs = self.env.reset(self._episode_seed)

    def _end_episode(self) -> None:
        self.episodes += 1
        self._sync_time()
        self.last_episode = EpisodeRow(self.episodes, self.env_steps, self._episode_return,
                                       len(self._episode_actions), self.epsilon, round(self.train_seconds, 4))
        self.callback.on_episode(self, self.last_episode)
        self._start_episode()

    def _sync_time(self) -> None:
        """train_seconds = earlier runs' total + time since this `run` began, evaluation excluded."""
        t_start, eval_before, train_before = self._clock
        self.train_seconds = train_before + time.perf_counter() - t_start - (self.eval_seconds - eval_before)

    def _evaluate(self) -> None:
        self._sync_time()
        t0 = time.perf_counter()
        cfg = self.config
        seed = EVAL_SEED_OFFSET + self.seed * 10_000_019 + self.n_evals * cfg.eval_episodes
        returns = evaluate(self.agent, self.eval_env, cfg.eval_episodes, seed)
        self.n_evals += 1
        mean = float(returns.mean())
        is_best = mean > self.best_eval_mean
        if is_best:
            self.best_eval_mean, self.best_eval_step = mean, self.env_steps
            self.best_params = {k: v.copy() for k, v in self.agent.online.params.items()}
        solved = self.solve_threshold is not None and mean >= self.solve_threshold
        if solved and self.solved_at_step is None and cfg.eval_episodes >= MIN_SOLVE_EPISODES:
            self.solved_at_step, self.solved_at_seconds = self.env_steps, round(self.train_seconds, 4)
        self.last_eval = EvalRow(self.n_evals, self.env_steps, mean, float(returns.std()), float(returns.min()),
                                 float(returns.max()), cfg.eval_episodes, round(self.train_seconds, 4), is_best)
        self.callback.on_eval(self, self.last_eval)
        self.eval_seconds += time.perf_counter() - t0

    # --- results and persistence ------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Counters, timings, the best and last evaluation, and when the run solved its environment."""
        return {
            "seed": self.seed,
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "updates": self.agent.n_updates,
            "train_seconds": round(self.train_seconds, 4),
            "eval_seconds": round(self.eval_seconds, 4),
            "solved": self.solved_at_step is not None,
            "solved_at_step": self.solved_at_step,
            "solved_at_seconds": self.solved_at_seconds,
            "best_eval_mean": None if self.best_eval_step is None else self.best_eval_mean,
            "best_eval_step": self.best_eval_step,
            "last_eval_mean": None if self.last_eval is None else self.last_eval.mean,
            "last_episode_return": None if self.last_episode is None else self.last_episode.episode_return,
            "interrupted": self.stop_requested,
        }

    def state_dict(self, include_replay: bool = True) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Everything needed to continue exactly: `(arrays, meta)` for `agents.checkpoint.save_checkpoint`.

        Args:
            include_replay: save the replay buffer; without it a resumed run refills the buffer and is no longer
                bit-identical to an uninterrupted one.
        """
        arrays = self.agent.state_dict()
        if include_replay:
            arrays.update({f"replay.{k}": v for k, v in self.replay.state_dict().items()})
        if self.best_params is not None:
            arrays.update({f"best.{k}": v.copy() for k, v in self.best_params.items()})
        arrays["episode.actions"] = np.array(self._episode_actions, dtype=np.int64)
        meta = {
            "seed": self.seed,
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "train_seconds": self.train_seconds,
            "eval_seconds": self.eval_seconds,
            "n_evals": self.n_evals,
            "best_eval_mean": None if self.best_eval_step is None else self.best_eval_mean,
            "best_eval_step": self.best_eval_step,
            "solved_at_step": self.solved_at_step,
            "solved_at_seconds": self.solved_at_seconds,
            "last_eval": None if self.last_eval is None else list(self.last_eval),
            "last_episode": None if self.last_episode is None else list(self.last_episode),
            "last_metrics": self.last_metrics,
            "episode_seed": self._episode_seed,
            "episode_return": self._episode_return,
            "replay_saved": include_replay,
            "rng": {
                "agent": self.agent.rng.bit_generator.state,
                "replay": self.replay.rng.bit_generator.state,
                "env": self.env_rng.bit_generator.state,
            },
        }
        return arrays, json.loads(json.dumps(meta))

    def load_state_dict(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Restore `state_dict()` output into a Trainer built with the same env, config and seed.

        The current episode is rebuilt by resetting the environment with its seed and replaying its actions, so
        any environment that is deterministic given its reset seed continues exactly where it was.
        """
        self.agent.load_state_dict(arrays)
        if meta["replay_saved"]:
            self.replay.load_state_dict({k[len("replay."):]: v for k, v in arrays.items() if k.startswith("replay.")})
        best = {k[len("best."):]: v.copy() for k, v in arrays.items() if k.startswith("best.")}
        self.best_params = best or None
        for name in ("env_steps", "episodes", "n_evals", "best_eval_step", "solved_at_step"):
            setattr(self, name, meta[name])
        self.train_seconds, self.eval_seconds = float(meta["train_seconds"]), float(meta["eval_seconds"])
        self.best_eval_mean = -math.inf if meta["best_eval_mean"] is None else float(meta["best_eval_mean"])
        self.solved_at_seconds = meta["solved_at_seconds"]
        self.last_eval = None if meta["last_eval"] is None else EvalRow(*meta["last_eval"])
        self.last_episode = None if meta["last_episode"] is None else EpisodeRow(*meta["last_episode"])
        self.last_metrics = dict(meta["last_metrics"])
        self.agent.rng.bit_generator.state = meta["rng"]["agent"]
        self.replay.rng.bit_generator.state = meta["rng"]["replay"]
        self.env_rng.bit_generator.state = meta["rng"]["env"]
        self._episode_seed = int(meta["episode_seed"])
        self._episode_return = float(meta["episode_return"])
        self._episode_actions = [int(a) for a in arrays["episode.actions"]]
        obs = self.env.reset(self._episode_seed)
        for action in self._episode_actions:
            obs = self.env.step(action).next_obs
        self._obs = obs
