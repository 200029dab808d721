"""The one training loop: DQN on S members (one per seed) x E environments; a single run is S = 1.

    while env_steps < total:                 env_steps counts each member's transitions (all members move together)
        collector.step(epsilon)              S * E transitions: one forward pass of the stacked agent, S * E envs
        learner.steps(k * gradient_steps)    each step: S batches (one per member's buffer), one stacked update
        callbacks.on_step                    evaluation of every member, logs, progress bar, checkpoints

A stop request (`stop`, set by a signal handler) is honoured within one gradient step or one evaluation step: a
vector step it cuts after its collection is recorded in the state (`pending`: the gradient steps it still owes, its
events not yet emitted), and the next `run`, resumed or not, finishes that step before collecting again, so the
resumed run is bit-identical to an uninterrupted one.

Every cadence counts transitions per member (environment steps summed over its E envs), so the schedule is the same
for any E; with S = E = 1 the loop is exactly the classic one-env DQN loop. Member s is seed `seeds[s]`: its
generators are spawned from that seed alone (`spawn_generators`), so it draws the same initial weights, exploration,
episode seeds and batches, and takes the same actions and updates, alone or in any batch. Nothing couples two
members: losses, gradient norms and clipping reduce per member, each member has its own replay buffer, best model
and solved step. A member whose loss, Q-values, gradient or environment turns non-finite is stopped (at its last good
state) and reported; with `stop_when_solved` a member stops at its first solving evaluation; the others go on. A
stopped member leaves the compute: at the end of that step the stacked parts (agent, optimizer state, replay buffers,
training and evaluation envs, n-step windows) are rebuilt for the live members only (`Engine.live`), so a batch costs
what its live members cost, and each live member goes on exactly as before (nothing couples two members). The
stopped member's agent is kept whole (`member_agent`) for its final model. The loop talks to environments only through
`agents.loop.collector.VecEnvLike` and never prints. Its whole state round-trips through `state_dict()`, so a resumed
run continues bit-identically.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from agents.algo.dqn import DQNAgent
from agents.algo.schedules import linear_epsilon
from agents.config import DQNConfig
from agents.data.prioritized import PrioritizedReplay
from agents.data.replay import MemberReplay, require_memory
from agents.loop.collector import Collector, VecEnvLike
from agents.loop.evaluation import MIN_SOLVE_EPISODES, Evaluator
from agents.loop.events import Callback, EpisodeRow, StepCut, StopFlag, crossed
from agents.loop.learner import Learner
from agents.validate import positive_int
from agents.validate import seeds as check_seeds

MakeEnv = Callable[[int, list[np.random.Generator]], VecEnvLike]
"""`(n_envs, rngs) -> VecEnvLike`: S * E envs in S equal groups, group s's episode seeds drawn from `rngs[s]`."""

GENERATORS = ("agent", "replay", "env", "eval")
"""What `np.random.SeedSequence(seed).spawn(4)` seeds, in order: weights and exploration, replay sampling, training
episode resets, evaluation resets beyond the counted episodes."""


def spawn_generators(seed: int) -> dict[str, np.random.Generator]:
    """One member's independent generators, all derived from `seed` (see `GENERATORS`)."""
    return {name: np.random.default_rng(s)
            for name, s in zip(GENERATORS, np.random.SeedSequence(seed).spawn(len(GENERATORS)), strict=True)}


class Engine:
    """DQN on S seeds at once, each with E environments, periodic greedy evaluation and its own best model.

    Args:
        make_env: `(n_envs, rngs) -> VecEnvLike`; called with `S * E` envs and S generators (training) and with
            `S * eval_episodes` envs and S generators (evaluation); member s owns envs `s * E .. (s + 1) * E - 1`.
            When members stop, it is called again with the live members' counts and generators.
        config: the hyperparameters, shared by every member.
        seeds: the members' seeds, distinct and non-negative; `[k]` is the single run of seed k.
        solve_threshold: mean evaluation return that counts as solved; "env" (default) takes the env's
            `reward_threshold` (CartPole-v1: 475) if it has one; None never solves.
        callbacks: after the evaluator (logs, progress bar, checkpoints); see `agents.loop.events`.
        stop: the flag `run` checks before every gradient step and evaluation step (default: a new one); share one
            to stop it from outside.

    Raises:
        ValueError: bad seeds, `stop_when_solved` with evaluations too small to solve, or replay buffers for S
            members that would not fit in memory (checked before they are allocated; the message names the bytes
            needed).

    Attributes:
        agent: the stacked agent of the live members (row p is member `live[p]`); `member_agent(s)` is member s
            (live or stopped) as an unstacked agent.
        replay, env, collector, learner, evaluator: the parts, each usable on its own; like `agent`, they hold the
            live members only.
        live: `(L,)` the members (indices into `seeds`) the parts hold, in order.
        make_env: the factory of its envs (a final evaluation builds its own with it).
        env_steps: transitions collected so far by each member.
        active: `(S,)` bool; False for a stopped member.
        stopped: `{member: reason}` of the members stopped (diverged, or solved with `stop_when_solved`).
        stopped_solved: the members stopped because they solved.
        seconds: time per phase in this process: `collect`, `sample`, `update`, `evaluate`, and `train` (evaluation
            excluded, earlier sessions included).
    """

    def __init__(self, make_env: MakeEnv, config: DQNConfig, seeds: Sequence[int],
                 solve_threshold: float | None | str = "env", callbacks: Sequence[Callback] = (),
                 stop: StopFlag | None = None) -> None:
        if not isinstance(config, DQNConfig):
            raise TypeError(f"config must be a DQNConfig, got {type(config).__name__}")
        if config.stop_when_solved and config.eval_episodes < MIN_SOLVE_EPISODES:
            raise ValueError(f"stop_when_solved needs evaluations that can solve (eval_episodes >= "
                             f"{MIN_SOLVE_EPISODES}), got eval_episodes={config.eval_episodes}")
        self.config, self.seeds = config, check_seeds(seeds)
        S = self.n_members = len(self.seeds)
        rngs = [spawn_generators(seed) for seed in self.seeds]  # member s spawns exactly as a single run of its seed
        self._env_rngs, self._eval_rngs = [r["env"] for r in rngs], [r["eval"] for r in rngs]
        self.make_env = make_env
        self.env = make_env(S * config.n_envs, self._env_rngs)
        if solve_threshold == "env":
            solve_threshold = getattr(self.env, "reward_threshold", None)
        self.solve_threshold = solve_threshold
        obs_dim, n_actions = self.env.obs_dim, self.env.n_actions
        need = MemberReplay.nbytes_for(S, config.buffer_size, obs_dim, config.dtype)
        what = f"buffer_size {config.buffer_size}: the replay buffer" if S == 1 else \
            f"{S} seeds x buffer_size {config.buffer_size}: the replay buffers"
        require_memory(need, what)
        networks = DQNAgent.nbytes_for(obs_dim, n_actions, config, S)  # before any array: numpy would fail midway
        hidden = " x ".join(map(str, config.hidden_sizes))
        require_memory(need + networks, f"{what}, with {'' if S == 1 else f'{S} x '}hidden_sizes {hidden} "
                       f"(the networks, their gradients and Adam moments),")
        self.agent = DQNAgent(obs_dim, n_actions, config, [r["agent"] for r in rngs])
        replay_rngs = [r["replay"] for r in rngs]
        self.replay = (PrioritizedReplay(config.buffer_size, obs_dim, replay_rngs, config.dtype,
                                         alpha=config.prioritized_alpha, beta=config.prioritized_beta,
                                         eps=config.prioritized_eps)
                       if config.prioritized else MemberReplay(config.buffer_size, obs_dim, replay_rngs, config.dtype))
        self.collector = Collector(self.env, self.agent, self.replay, config.n_step, config.gamma)
        self.learner = Learner(self.agent, self.replay, config.batch_size)
        self.evaluator = Evaluator(make_env(S * config.eval_episodes, self._eval_rngs),
                                   config.eval_episodes, config.eval_freq, self.seeds, solve_threshold)
        self.callbacks: list[Callback] = [self.evaluator, *callbacks]
        self.env_steps = 0
        self.live = np.arange(S)
        self.active = np.ones(S, bool)
        # the parts' own view, one flag per live member: nothing more is stored for a member stopped in this step,
        # and its buffer is neither sampled nor waited for, until the parts are rebuilt without it
        self.collector.active = self.replay.active = self._live_active = np.ones(S, bool)
        self.stopped: dict[int, str] = {}
        self.stopped_solved: set[int] = set()
        self.stopped_at: dict[int, tuple[int, int]] = {}  # member -> (env steps, updates) when it was stopped
        self.frozen_at: dict[int, int] = {}  # member -> the update on which its agent found it non-finite
        self._retired: dict[int, dict[str, Any]] = {}  # a member that left the parts: its agent state as it stopped
        self._retired_metrics: dict[int, dict[str, float]] = {}  # ... and its last update's figures
        self.episodes = np.zeros(S, np.int64)  # training episodes finished per member
        self.last_episode: list[EpisodeRow | None] = [None] * S
        self.train_seconds = 0.0  # time in the loop, evaluation excluded, over every session of the run
        self.collect_seconds = 0.0
        self.stop = StopFlag() if stop is None else stop
        self._started = False  # the envs have been reset (or restored)
        # (steps_before, gradient steps owed) of a vector step a signal cut after its collection: the next `run`
        # finishes its burst and emits its events before collecting again; None between steps
        self._pending: tuple[int, int] | None = None
        self._clock = (time.perf_counter(), 0.0, 0.0)  # (run start, evaluation seconds then, train_seconds then)

    # --- what callbacks read (`agents.loop.events.LoopView`) ------------------------------------------------------

    @property
    def epsilon(self) -> float:
        """Exploration probability at the current environment step (the same for every member)."""
        cfg = self.config
        return linear_epsilon(self.env_steps, cfg.epsilon_start, cfg.epsilon_end, cfg.epsilon_decay_steps)

    @property
    def pending(self) -> tuple[int, int] | None:
        """`(steps_before, gradient steps owed)` of the vector step a stop cut after its collection (its burst or
        its events unfinished), which the next `run` finishes first; None between steps."""
        return self._pending

    @property
    def n_solved(self) -> int:
        """Members that have solved so far."""
        return sum(step is not None for step in self.evaluator.solved_at_step)

    @property
    def seconds(self) -> dict[str, float]:
        """Seconds per phase in this process (for the whole batch); `train` covers earlier sessions too."""
        return {"collect": self.collect_seconds, **self.learner.seconds, "evaluate": self.evaluator.seconds,
                "train": self.train_seconds}

    @property
    def last_metrics(self) -> dict[str, np.ndarray]:
        """The figures of each member's last update, `(S,)` per key (`loss`, `q_mean`, ...; NaN where none)."""
        live = self.learner.last_metrics
        if not self._retired and len(self.live) == self.n_members:
            return live
        keys = live.keys() | {k for figures in self._retired_metrics.values() for k in figures}
        out = {k: np.full(self.n_members, np.nan) for k in keys}
        for k, v in out.items():
            if k in live:
                v[self.live] = live[k]
            for s, figures in self._retired_metrics.items():
                v[s] = figures.get(k, np.nan)
        return out

    def member_agent(self, s: int) -> DQNAgent:
        """Member s (an index into `seeds`) as an unstacked agent: what a single run of its seed holds now (a
        stopped member: what it held when it stopped)."""
        if s in self._retired:
            single = DQNAgent(self.agent.obs_dim, self.agent.n_actions, self.config, np.random.default_rng(0))
            single.load_state_dict(self._retired[s])  # its generator's state too: the init draws are overwritten
            return single
        return self.agent.member(self._position(s))

    def evaluation_agent(self) -> DQNAgent:
        """A stacked agent of all S members' online networks, live and stopped (row s is member s), for greedy
        evaluation side by side; the engine's own agent while every member is live."""
        if len(self.live) == self.n_members:
            return self.agent
        rngs = [np.random.default_rng(0) for _ in range(self.n_members)]  # greedy: never drawn from
        out = DQNAgent(self.agent.obs_dim, self.agent.n_actions, self.config, rngs)
        params = {k: v.copy() for k, v in out.online.params.items()}
        for k, v in params.items():
            v[self.live] = self.agent.online.params[k]
            for s, state in self._retired.items():
                v[s] = state[f"online.{k}"]
        for k, v in out.online.params.items():  # in place: a diverged member's last parameters need not be finite
            v[...] = params[k]
        return out

    def emit(self, event: str, *args: Any) -> None:
        """Call `event` (`on_step`, `on_episode`, `on_eval`, ...) on every callback, in order."""
        for callback in self.callbacks:
            getattr(callback, event)(self, *args)

    def sync_time(self) -> None:
        """train_seconds = earlier sessions' total + time since this `run` began, evaluation excluded."""
        t_start, eval_before, train_before = self._clock
        self.train_seconds = train_before + time.perf_counter() - t_start - (self.evaluator.seconds - eval_before)

    # --- the loop -------------------------------------------------------------------------------------------------

    def run(self, total_steps: int) -> list[dict[str, Any]]:
        """Train until `env_steps >= total_steps` (per member), `stop` is set, or every member has stopped.

        A vector step adds E transitions per member, so the run ends on the first multiple of E at or past
        `total_steps`.

        Returns:
            `summaries()`: one summary per member.
        """
        positive_int("total_steps", total_steps)
        cfg = self.config
        E, clock = cfg.n_envs, time.perf_counter
        if not self._started:
            self.env.reset()
            self._started = True
        self._clock = (clock(), self.evaluator.seconds, self.train_seconds)
        self.emit("on_run_start")
        try:
            while (self._pending is not None or self.env_steps < total_steps) and not self.stop \
                    and self.active.any():
                collector, learner, agent, live = self.collector, self.learner, self.agent, self.live
                if self._pending is None:
                    before = self.env_steps
                    t0 = clock()
                    ended = collector.step(self.epsilon)  # L * E transitions into the windows and replay
                    self.env_steps = before + E
                    self.collect_seconds += clock() - t0
                    if len(collector.nonfinite_members):
                        self._stop_members(live[collector.nonfinite_members], f"environment returned a non-finite "
                                           f"reward or observation at env step {self.env_steps}")
                    for slot, episode_return, length in ended:
                        self._end_episode(int(live[slot // E]), episode_return, length)
                    n_bursts = crossed(before, self.env_steps, cfg.train_freq)  # multiples of train_freq passed
                    owed = n_bursts * cfg.gradient_steps \
                        if n_bursts and self.env_steps >= cfg.learning_starts and learner.ready() else 0
                else:  # a step a signal cut: its collection is done, the rest of its burst and its events are owed
                    before, owed = self._pending
                    owed = owed if learner.ready() else 0  # resumed without replay: it refills instead
                self._pending = (before, owed)  # until the step's burst and events are done (a signal may cut both)
                if owed:
                    self.replay.set_progress(self.env_steps / total_steps)  # prioritized replay anneals beta by it
                    owed -= learner.steps(owed, self.stop)
                    for p, update in sorted(agent.frozen_at.items()):  # the agent froze a member that diverged
                        s = int(live[p])
                        if s not in self.stopped:
                            self.frozen_at[s] = update
                            self._stop_members([s], f"non-finite loss, Q-value or gradient at update {update} "
                                                    f"(env step {self.env_steps})", update)
                    self._pending = (before, owed)
                    if owed:
                        break  # stopped mid-burst: the checkpoint owes the rest, so a resume is still exact
                n_evals = self.evaluator.n_evals
                self._pending = None  # what a callback saves now (a periodic checkpoint) is the step complete
                try:
                    self.emit("on_step", before)
                except StepCut:  # the evaluator, first of the callbacks, was cut and changed nothing
                    self._pending = (before, 0)  # the step's events run again on resume
                    break
                if cfg.stop_when_solved and self.evaluator.n_evals != n_evals:
                    solved = [s for s in live.tolist() if self.active[s]
                              and self.evaluator.solved_at_step[s] is not None]
                    if solved:
                        self._stop_members(solved, f"solved at env step {self.env_steps}", solved=True)
                if not self._live_active.all() and self.active.any():
                    self._compact()  # the stopped leave the compute; the loop takes the rebuilt parts next step
        finally:
            self.sync_time()
            self.emit("on_run_end")
        return self.summaries()

    def _position(self, s: int) -> int:
        """Row of member s in the parts."""
        p = int(np.searchsorted(self.live, s))
        if p == len(self.live) or self.live[p] != s:
            raise ValueError(f"member {s} is not among the live members {self.live.tolist()}")
        return p

    def _stop_members(self, members: Sequence[int] | np.ndarray, reason: str, updates: int | None = None,
                      solved: bool = False) -> None:
        for s in members:
            s = int(s)
            if self.active[s]:
                p = self._position(s)
                self.active[s] = self._live_active[p] = False
                self.stopped[s] = reason
                if solved:
                    self.stopped_solved.add(s)
                self.stopped_at[s] = (self.env_steps, self.agent.n_updates if updates is None else updates)
                self.agent.freeze([p])  # its parameters stay as they were; no more transitions are stored for it
                self.emit("on_stopped", s, reason)

    def _compact(self) -> None:
        """Rebuild the parts for the live members only; each of them continues exactly where it was."""
        keep = np.flatnonzero(self._live_active)  # rows of the parts that stay
        for p in np.flatnonzero(~self._live_active).tolist():
            s = int(self.live[p])
            self._retired[s] = member_state(self.agent, p)  # its last good state (a frozen member is put back)
            metrics = self.learner.last_metrics
            self._retired_metrics[s] = {k: float(v[p]) for k, v in metrics.items()}
        self._select(keep)

    def _select(self, keep: np.ndarray) -> None:
        """The parts of rows `keep` (in order) only: agent, replay, windows and envs, learner, evaluation envs."""
        cfg, live = self.config, self.live[keep]
        self.agent = select_members(self.agent, keep)
        self.replay = self.replay.select(keep)
        self.collector = self.collector.select(keep, self.agent, self.replay,
                                               self.make_env(len(keep) * cfg.n_envs, [self._env_rngs[s] for s in live]))
        self.env = self.collector.env
        self.learner = self.learner.select(keep, self.agent, self.replay)
        self.evaluator.set_env(self.make_env(len(keep) * cfg.eval_episodes, [self._eval_rngs[s] for s in live]))
        self.live = live
        self.collector.active = self.replay.active = self._live_active = np.ones(len(keep), bool)

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
        """Member s's summary: status, counters, timings and the evaluator's figures."""
        metrics = self.last_metrics
        last = self.last_episode[s]
        env_steps, updates = self.stopped_at.get(s, (self.env_steps, self.agent.n_updates))
        diverged = s in self.stopped and s not in self.stopped_solved
        return {
            "seed": self.seeds[s],
            "status": "diverged" if diverged else ("interrupted" if self.stop and self.active[s] else "completed"),
            "error": self.stopped.get(s) if diverged else None,
            "stopped_solved": s in self.stopped_solved,  # with stop_when_solved: it ended at its solving evaluation
            "env_steps": env_steps,  # a stopped member's count ends where it stopped
            "episodes": int(self.episodes[s]),
            "updates": updates,
            "n_envs": self.config.n_envs,
            "train_seconds": round(self.train_seconds, 4),
            "eval_seconds": round(self.evaluator.seconds, 4),
            "phase_seconds": {k: round(v, 4) for k, v in self.seconds.items() if k != "train"},
            **self.evaluator.summary(s),
            "last_episode_return": None if last is None else last.episode_return,
            "interrupted": self.stop.reason,
            "last_metrics": {k: float(v[s]) if np.isfinite(v[s]) else None for k, v in metrics.items()},  # JSON
        }

    def summaries(self) -> list[dict[str, Any]]:
        """One summary per member, in the order of `seeds`."""
        return [self.summary(s) for s in range(self.n_members)]

    def state_dict(self, include_replay: bool = True) -> dict[str, Any]:
        """Everything needed to continue exactly, as nested dicts of arrays and JSON values (each part's state holds
        its own generators); `agents.run.checkpoint.flatten_state` maps it to `.npz` keys.

        The parts' states (`agent`, `replay`, `collector`) are of the live members `live`; a member that left them
        is under `retired/<member>` (its agent, as a single run's agent state).

        Args:
            include_replay: save the replay buffers; without them a resumed run refills them and is no longer
                bit-identical to an uninterrupted one.
        """
        return {
            "seeds": list(self.seeds),
            "live": self.live.tolist(),
            "env_steps": self.env_steps,
            "pending": None if self._pending is None else list(self._pending),  # a step cut by a signal
            "train_seconds": self.train_seconds,
            "active": self.active.copy(),
            "stopped": {str(s): reason for s, reason in self.stopped.items()},
            "stopped_solved": sorted(self.stopped_solved),
            "stopped_at": {str(s): list(at) for s, at in self.stopped_at.items()},
            "frozen_at": {str(s): u for s, u in self.frozen_at.items()},
            "episodes": self.episodes.copy(),
            "last_episode": [None if row is None else list(row) for row in self.last_episode],
            "last_metrics": {k: np.asarray(v) for k, v in self.last_metrics.items()},
            "agent": self.agent.state_dict(),
            "retired": {str(s): state for s, state in self._retired.items()},
            "replay": self.replay.state_dict(include_replay),
            "collector": self.collector.state_dict(),
            "callbacks": {cb.name: cb.state_dict() for cb in self.callbacks if hasattr(cb, "state_dict")},
        }

    def load_state_dict(self, state: dict[str, Any]) -> list[str]:
        """Restore `state_dict()` output into an Engine built with the same make_env, config and seeds (a fresh one:
        the parts are first cut down to the state's live members). A state without `live` (saved before stopped
        members left the compute) holds every member in its parts; its stopped members leave them after loading.

        Returns:
            Warnings for the user, one line each (an environment whose state could not be restored exactly, a
            checkpoint saved without its replay buffers).
        """
        if list(state["seeds"]) != self.seeds:
            raise ValueError(f"the state is of seeds {list(state['seeds'])}, this engine trains {self.seeds}")
        live = np.array(state.get("live", range(self.n_members)), np.int64).reshape(-1)
        if live.tolist() != self.live.tolist():
            fresh = len(self.live) == self.n_members
            if not fresh or len(live) == 0 or not set(live.tolist()) <= set(range(self.n_members)):
                raise ValueError(f"the state's live members {live.tolist()} do not fit this engine's "
                                 f"{self.live.tolist()}")
            self._select(live)  # a fresh engine: the rows of the state's live members, in order
        warnings = []
        for where, agent_state in (("agent", state["agent"]), *((f"retired/{s}", r)
                                                                 for s, r in state.get("retired", {}).items())):
            missing = missing_agent_keys(self.agent, agent_state)
            if missing:  # a checkpoint is complete or refused: a lost array would silently change the run
                raise ValueError(f"the state's {where} lacks {len(missing)} array(s): {', '.join(missing[:6])}"
                                 + (", ..." if len(missing) > 6 else ""))
        self.agent.load_state_dict(state["agent"])
        self._retired = {int(s): dict(agent_state) for s, agent_state in state.get("retired", {}).items()}
        if not self.replay.load_state_dict(state["replay"]):
            what = "buffer" if self.n_members == 1 else "buffers"
            warnings.append(f"the checkpoint holds no replay {what}: training refills them before it goes on, so "
                            "this run will differ from an uninterrupted one")
        if not self.collector.load_state_dict(state["collector"]):
            warnings.append("the environments' state could not be restored exactly: they start fresh episodes")
        for cb in self.callbacks:
            if hasattr(cb, "load_state_dict") and cb.name in state["callbacks"]:
                cb.load_state_dict(state["callbacks"][cb.name])
        self.env_steps = int(state["env_steps"])
        pending = state.get("pending")  # absent before signals could cut a step
        self._pending = None if pending is None else (int(pending[0]), int(pending[1]))
        self.train_seconds = float(state["train_seconds"])
        self._started = True
        self.active[...] = np.array(state["active"], bool)
        self.stopped = {int(s): reason for s, reason in state["stopped"].items()}
        self.stopped_solved = {int(s) for s in state.get("stopped_solved", [])}
        self.stopped_at = {int(s): (int(a), int(b)) for s, (a, b) in state["stopped_at"].items()}
        self.frozen_at = {int(s): int(u) for s, u in state.get("frozen_at", {}).items()}
        self.episodes = np.array(state["episodes"], np.int64).reshape(self.n_members)
        self.last_episode = [None if row is None else EpisodeRow(*row) for row in state["last_episode"]]
        full = {k: np.array(v, np.float64).reshape(self.n_members) for k, v in state["last_metrics"].items()}
        self.learner.last_metrics = {k: np.array(state["last_metrics"][k]).reshape(self.n_members)[self.live]
                                     for k in full}
        self._retired_metrics = {s: {k: float(v[s]) for k, v in full.items()} for s in self._retired}
        self._live_active[...] = self.active[self.live]
        # the agent's own record, by row: a member stopped but not yet gone (a state without `live`) stays put
        self.agent.frozen_at = {p: self.frozen_at[int(s)] for p, s in enumerate(self.live) if int(s) in self.frozen_at}
        if not self._live_active.all():
            self.agent.freeze(np.flatnonzero(~self._live_active))
            if self.active.any():
                self._compact()
        return warnings


def missing_agent_keys(agent: DQNAgent, state: dict[str, Any]) -> list[str]:
    """The keys an agent state must hold and `state` lacks: both networks' parameters, the counters, the generator
    state, and every optimizer slot in full once any of its arrays is there (Adam's m and v exist after a step)."""
    names = list(agent.online.params)
    need = ["agent.n_updates", "optim.t", "rng", *(f"{net}.{k}" for net in ("online", "target") for k in names)]
    slots = {key.split(".")[1] for key in state if key.startswith("optim.") and key.count(".") >= 2}
    if slots:
        need += [f"optim.{slot}.{k}" for slot in sorted(set(agent.optimizer.slots) | slots) for k in names]
    return [key for key in need if key not in state]


def member_state(agent: DQNAgent, p: int) -> dict[str, Any]:
    """Row p of a stacked agent's `state_dict()` as the state of an unstacked agent (`DQNAgent.load_state_dict`)."""
    state = {k: (v[p].copy() if isinstance(v, np.ndarray) and v.ndim else v) for k, v in agent.state_dict().items()}
    state["rng"] = agent.rng[p].bit_generator.state
    return state


def select_members(agent: DQNAgent, rows: np.ndarray) -> DQNAgent:
    """A stacked agent of `agent`'s members `rows` (in order), continuing exactly: their networks, target networks,
    optimizer moments, update count and exploration generators (the same Generator objects)."""
    rows = np.asarray(rows, np.int64)
    rngs = [agent.rng[p] for p in rows.tolist()]
    state = {k: (v[rows] if isinstance(v, np.ndarray) and v.ndim else v) for k, v in agent.state_dict().items()}
    state.pop("rng")  # the generators themselves move over
    held = [g.bit_generator.state for g in rngs]
    out = DQNAgent(agent.obs_dim, agent.n_actions, agent.config, rngs)  # its init draws are undone below
    for g, g_state in zip(rngs, held, strict=True):
        g.bit_generator.state = g_state
    out.load_state_dict(state)
    return out
