"""The DQN training loop on E environments at once: collect, learn, and let callbacks do the rest.

    while env_steps < total:
        collector.step(epsilon)            E transitions: act, step the envs, n-step windows -> replay
        learner.steps(k * gradient_steps)  k = multiples of train_freq crossed by this vector step
        callbacks.on_step                  evaluation (best model, solved), logs, progress bar, checkpoints

Every cadence counts transitions (environment steps summed over the E envs), so the schedule is the same for any
E; with E = 1 the loop is exactly the classic one-env DQN loop. The loop talks to environments only through
`agents.collector.VecEnvLike` (`envs.VecEnv` adapts Gymnasium) and never prints. Its whole state round-trips
through `state_dict()`, so a resumed run continues bit-identically.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from agents.callbacks import Callback, EpisodeRow, EvalRow, crossed
from agents.collector import Collector, VecEnvLike
from agents.config import DQNConfig
from agents.dqn import DQNAgent
from agents.evaluation import Evaluator
from agents.learner import Learner
from agents.replay import ReplayBuffer, require_memory
from agents.schedules import linear_epsilon

MakeEnv = Callable[[int, np.random.Generator], VecEnvLike]
"""`(n_envs, rng) -> VecEnvLike`: builds E envs whose episode reset seeds come from `rng`."""

GENERATORS = ("agent", "replay", "env", "eval")
"""What `np.random.SeedSequence(seed).spawn(4)` seeds, in order: weights and exploration, replay sampling, training
episode resets, evaluation resets beyond the counted episodes."""


class StopFlag:
    """A request to end `Trainer.run` after its current step; `reason` says why ("SIGINT", "solved", ...) or is None.

    Signal handlers set it (`agents.run.stop_on_signals`), so it is one object shared by the command, the trainer and
    the final evaluation: a signal that arrives at any moment is seen by whichever of them runs next.
    """

    __slots__ = ("reason",)

    def __init__(self) -> None:
        self.reason: str | None = None

    def set(self, reason: str) -> None:
        """Ask to stop; the first reason given is kept."""
        if self.reason is None:
            self.reason = reason

    def __bool__(self) -> bool:
        return self.reason is not None

    def __repr__(self) -> str:
        return f"StopFlag({self.reason!r})"


def spawn_generators(seed: int) -> dict[str, np.random.Generator]:
    """The run's independent generators, all derived from `seed` (see `GENERATORS`)."""
    return {name: np.random.default_rng(s)
            for name, s in zip(GENERATORS, np.random.SeedSequence(seed).spawn(len(GENERATORS)), strict=True)}


class TrainingLoop:
    """What the training loops share (`Trainer` for one seed, `agents.seeds.SeedBatch` for many): the epsilon
    schedule, event dispatch to callbacks, and the clock of training time (evaluation excluded).

    Subclasses set `config`, `env_steps`, `callbacks`, `evaluator` (with `seconds`), `collector`, `train_seconds`,
    `_started` and `_clock`.
    """

    config: DQNConfig
    env_steps: int
    callbacks: list[Any]
    evaluator: Any
    collector: Collector
    train_seconds: float
    _started: bool
    _clock: tuple[float, float, float]

    @property
    def epsilon(self) -> float:
        """Exploration probability at the current environment step (for a batch: the same for every member)."""
        cfg = self.config
        return linear_epsilon(self.env_steps, cfg.epsilon_start, cfg.epsilon_end, cfg.epsilon_decay_steps)

    def emit(self, event: str, *args: Any) -> None:
        """Call `event` (`on_step`, `on_episode`, `on_eval`, ...) on every callback, in order."""
        for callback in self.callbacks:
            getattr(callback, event)(self, *args)

    def sync_time(self) -> None:
        """train_seconds = earlier sessions' total + time since this `run` began, evaluation excluded."""
        t_start, eval_before, train_before = self._clock
        self.train_seconds = train_before + time.perf_counter() - t_start - (self.evaluator.seconds - eval_before)

    def _load_loop_state(self, state: dict[str, Any]) -> list[str]:
        """Restore what both loops save alike: the collector (envs, n-step windows), the callbacks and the counters.

        Returns:
            A warning line if the environments could not be restored exactly (they then start fresh episodes).
        """
        warnings = []
        if not self.collector.load_state_dict(state["collector"]):
            warnings.append("the environments' state could not be restored exactly: they start fresh episodes")
        for cb in self.callbacks:
            if hasattr(cb, "load_state_dict") and cb.name in state["callbacks"]:
                cb.load_state_dict(state["callbacks"][cb.name])
        self.env_steps = int(state["env_steps"])
        self.train_seconds = float(state["train_seconds"])
        self._started = True
        return warnings


class Trainer(TrainingLoop):
    """DQN on E environments with periodic greedy evaluation on separate ones.

    Args:
        make_env: builds the training envs (E = `config.n_envs`) and the evaluation envs (E = `eval_episodes`).
        config: the hyperparameters.
        seed: seeds every generator (`spawn_generators`).
        solve_threshold: mean evaluation return that counts as solved; "env" (default) takes the env's
            `reward_threshold` attribute (CartPole-v1: 475) if it has one; None never solves.
        callbacks: receive episodes, evaluations and steps (logs, progress bar, checkpoints); the `Evaluator` is
            always the first callback.
        stop: the flag `run` checks after every step (default: a new one); share one to stop it from outside.

    Raises:
        ValueError: a replay buffer that would not fit in the memory available (checked before it is allocated).

    Attributes:
        agent, replay, env, collector, learner, evaluator: the parts, each usable on its own.
        env_steps: transitions collected so far.
        seconds: time per phase in this process: `collect`, `sample`, `update` (learner), `evaluate`.
    """

    def __init__(
        self,
        make_env: MakeEnv,
        config: DQNConfig,
        seed: int,
        solve_threshold: float | None | str = "env",
        callbacks: Sequence[Callback] = (),
        stop: StopFlag | None = None,
    ) -> None:
        if not isinstance(config, DQNConfig):
            raise TypeError(f"config must be a DQNConfig, got {type(config).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.config, self.seed = config, int(seed)
        rngs = spawn_generators(self.seed)
        self.env = make_env(config.n_envs, rngs["env"])
        if solve_threshold == "env":
            solve_threshold = getattr(self.env, "reward_threshold", None)
        self.solve_threshold = solve_threshold
        self.agent = DQNAgent(self.env.obs_dim, self.env.n_actions, config, rngs["agent"])
        require_memory(ReplayBuffer.nbytes_for(config.buffer_size, self.env.obs_dim, config.dtype),
                       f"buffer_size {config.buffer_size}: the replay buffer")
        self.replay = ReplayBuffer(config.buffer_size, self.env.obs_dim, rngs["replay"], config.dtype)
        self.collector = Collector(self.env, self.agent, self.replay, config.n_step, config.gamma)
        self.learner = Learner(self.agent, self.replay, config.batch_size)
        self.evaluator = Evaluator(make_env(config.eval_episodes, rngs["eval"]), config.eval_episodes,
                                   config.eval_freq, self.seed, solve_threshold)
        self.callbacks: list[Callback] = [self.evaluator, *callbacks]
        self.env_steps = 0
        self.train_seconds = 0.0  # time in the loop, evaluation excluded, over every session of the run
        self.collect_seconds = 0.0
        self.last_episode: EpisodeRow | None = None
        self.stop = StopFlag() if stop is None else stop
        self._started = False  # the envs have been reset (or restored)
        self._clock = (time.perf_counter(), 0.0, 0.0)  # (run start, evaluation seconds then, train_seconds then)

    @property
    def stop_requested(self) -> str | None:
        """Why `run` is to end after its current step (`stop.reason`); assign a reason to ask, None to take it back."""
        return self.stop.reason

    @stop_requested.setter
    def stop_requested(self, reason: str | None) -> None:
        self.stop.reason = reason

    @property
    def last_eval(self) -> EvalRow | None:
        """The last evaluation's row, or None."""
        return self.evaluator.last

    @property
    def seconds(self) -> dict[str, float]:
        """Seconds per phase in this process; `train` excludes evaluation and covers earlier sessions too."""
        return {"collect": self.collect_seconds, **self.learner.seconds, "evaluate": self.evaluator.seconds,
                "train": self.train_seconds}

    def run(self, total_steps: int) -> dict[str, Any]:
        """Train until `env_steps >= total_steps` (the run's total, also after resuming) or `stop_requested`.

        A vector step adds E transitions, so the run ends on the first multiple of E at or past `total_steps`.

        Returns:
            `summary()`.

        Raises:
            DivergenceError: a non-finite reward, observation, loss or gradient; that step is not applied.
        """
        if isinstance(total_steps, bool) or not isinstance(total_steps, (int, np.integer)) or total_steps < 1:
            raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")
        cfg, collector, learner = self.config, self.collector, self.learner
        E, clock = self.env.n_envs, time.perf_counter
        if not self._started:
            self.env.reset()
            self._started = True
        self._clock = (clock(), self.evaluator.seconds, self.train_seconds)
        self.emit("on_run_start")
        try:
            while self.env_steps < total_steps and self.stop_requested is None:
                before = self.env_steps
                t0 = clock()
                ended = collector.step(self.epsilon, before)  # E transitions into the n-step windows and replay
                self.env_steps = before + E
                self.collect_seconds += clock() - t0
                first = collector.episodes - len(ended) + 1  # the number of the first episode that just ended
                for k, (_env_index, episode_return, length) in enumerate(ended):
                    self._end_episode(first + k, episode_return, length)
                n_bursts = crossed(before, self.env_steps, cfg.train_freq)  # multiples of train_freq just passed
                if n_bursts and self.env_steps >= cfg.learning_starts and learner.ready():
                    learner.steps(n_bursts * cfg.gradient_steps, self.env_steps)
                self.emit("on_step", before)
        finally:
            self.sync_time()
            self.emit("on_run_end")
        return self.summary()

    def _end_episode(self, number: int, episode_return: float, length: int) -> None:
        self.sync_time()
        self.last_episode = EpisodeRow(number, self.env_steps, episode_return, length, self.epsilon,
                                       round(self.train_seconds, 4))
        self.emit("on_episode", self.last_episode)

    # --- results and persistence ------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Counters, timings per phase, and the evaluator's figures (best, last, when it solved)."""
        return {
            "seed": self.seed,
            "env_steps": self.env_steps,
            "episodes": self.collector.episodes,
            "updates": self.agent.n_updates,
            "n_envs": self.env.n_envs,
            "train_seconds": round(self.train_seconds, 4),
            "eval_seconds": round(self.evaluator.seconds, 4),
            "phase_seconds": {k: round(v, 4) for k, v in self.seconds.items() if k != "train"},
            **self.evaluator.summary(),
            "last_episode_return": None if self.last_episode is None else self.last_episode.episode_return,
            "interrupted": self.stop_requested,
        }

    def state_dict(self, include_replay: bool = True) -> dict[str, Any]:
        """Everything needed to continue exactly, as nested dicts of arrays and JSON values.

        `agents.checkpoint.flatten_state` maps it to `.npz` keys. Each part's state holds its own generator.

        Args:
            include_replay: save the replay buffer; without it a resumed run refills the buffer and is no longer
                bit-identical to an uninterrupted one.
        """
        state: dict[str, Any] = {
            "kind": "trainer",
            "seed": self.seed,
            "env_steps": self.env_steps,
            "train_seconds": self.train_seconds,
            "last_episode": None if self.last_episode is None else list(self.last_episode),
            "last_metrics": self.learner.last_metrics,
            "agent": self.agent.state_dict(),
            "rng": {"agent": self.agent.rng.bit_generator.state, "replay": self.replay.rng.bit_generator.state},
            "collector": self.collector.state_dict(),
            "callbacks": {cb.name: cb.state_dict() for cb in self.callbacks if hasattr(cb, "state_dict")},
            "replay_saved": include_replay,
        }
        if include_replay:
            state["replay"] = self.replay.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> list[str]:
        """Restore `state_dict()` output into a Trainer built with the same make_env, config and seed.

        Returns:
            Warnings for the user, one line each (an environment whose state could not be restored exactly, a
            checkpoint saved without its replay buffer).
        """
        warnings = []
        self.agent.load_state_dict(state["agent"])
        self.agent.rng.bit_generator.state = state["rng"]["agent"]
        self.replay.rng.bit_generator.state = state["rng"]["replay"]
        if state["replay_saved"]:
            self.replay.load_state_dict(state["replay"])
        else:
            warnings.append("the checkpoint holds no replay buffer: it refills before training goes on, so this "
                            "run will differ from an uninterrupted one")
        warnings += self._load_loop_state(state)
        self.last_episode = None if state["last_episode"] is None else EpisodeRow(*state["last_episode"])
        self.learner.last_metrics = dict(state["last_metrics"])
        return warnings
