"""Events and callbacks: everything around the training loop that is not collecting or learning.

The engine (`agents.loop.engine.Engine`) trains S members (one per seed; a single run is S = 1) and calls every
callback with events that carry their figures, per member:

    on_run_start(loop)                          before the first step of `Engine.run` (also after a resume)
    on_step(loop, steps_before)                 after each vector step and its gradient steps; env_steps moved by E
                                                (a callback cut short by `loop.stop` raises `StepCut`: the step's
                                                events then run again, from the first callback, when the run goes on)
    on_episode(loop, member, row: EpisodeRow)   a training episode of member `member` ended
    on_eval(loop, member, row: EvalRow)         member `member`'s greedy evaluation finished (emitted by the evaluator)
    on_stopped(loop, member, reason)            member `member` stopped training (it diverged, or solved with
                                                `stop_when_solved`); the others go on
    on_run_end(loop)                            `Engine.run` returns (finished, stopped, every member stopped)

A callback is typed against `LoopView`, the few attributes it may read, never against the engine class, so any loop
that offers them can drive it. A cadence is a number of transitions per member, and a vector step moves the count by
E, so callbacks act when the count *crosses* a multiple of their period (`crossed`), never on
`env_steps % period == 0`. A callback with state that a resumed run needs has `state_dict()` / `load_state_dict()`;
the engine nests them under the callback's `name`.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import numpy as np

from agents.config import DQNConfig


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


def crossed(before: int, after: int, period: int) -> int:
    """How many multiples of `period` lie in `(before, after]` (0 when `period` is 0: never)."""
    return after // period - before // period if period else 0


class StepCut(Exception):  # noqa: N818 (control flow: a cut step, not an error)
    """Raised by a callback's `on_step` that a stop request (`loop.stop`) cut short before it changed anything (the
    evaluator, between two vector steps of an evaluation). The loop ends at once, and the step's events are still
    owed: the next `run`, in this process or resumed from the checkpoint, emits `on_step` for that step again."""


class StopFlag:
    """A request to end `Engine.run` within one gradient step or evaluation step; `reason` says why ("SIGINT",
    ...) or is None.

    Signal handlers set it (`agents.run.train.stop_on_signals`), so it is one object shared by the command, the engine
    and the final evaluation: a signal that arrives at any moment is seen by whichever of them runs next.
    """

    __slots__ = ("reason", "checkpoint")

    def __init__(self) -> None:
        self.reason: str | None = None
        self.checkpoint: str | None = None  # the last complete checkpoint written (for a second signal's message)

    def set(self, reason: str) -> None:
        """Ask to stop; the first reason given is kept."""
        if self.reason is None:
            self.reason = reason

    def __bool__(self) -> bool:
        return self.reason is not None

    def __repr__(self) -> str:
        return f"StopFlag({self.reason!r})"


class EvaluatorView(Protocol):
    """What a callback may read of the evaluator: per member `(S,)` figures."""

    best_mean: np.ndarray
    best_step: list[int | None]
    solved_at_step: list[int | None]
    seconds: float


class LoopView(Protocol):
    """What a callback may read of the loop that calls it (`Engine` provides it)."""

    config: DQNConfig
    seeds: list[int]
    env_steps: int
    train_seconds: float
    active: np.ndarray
    live: np.ndarray  # (L,) the members the stacked parts hold: row p of `agent` is member live[p]
    stopped: dict[int, str]
    stopped_at: dict[int, tuple[int, int]]  # member -> (env steps, updates) when it stopped
    last_episode: list[EpisodeRow | None]
    evaluator: EvaluatorView
    agent: Any  # the stacked agent of the live members
    stop: StopFlag

    @property
    def last_metrics(self) -> dict[str, np.ndarray]: ...  # (S,) per key: each member's last update's figures

    def member_agent(self, s: int) -> Any: ...  # member s as an unstacked agent (`agents.algo.dqn.DQNAgent`)

    @property
    def epsilon(self) -> float: ...

    @property
    def n_solved(self) -> int: ...


class Callback:
    """Hooks the loop calls; override what you need. `name` keys the callback's state in checkpoints."""

    name = ""

    def on_run_start(self, loop: LoopView) -> None:
        """Before the first step of a `run` call."""

    def on_step(self, loop: LoopView, steps_before: int) -> None:
        """After each vector step (`loop.env_steps` moved from `steps_before` by E) and its gradient steps."""

    def on_episode(self, loop: LoopView, member: int, row: EpisodeRow) -> None:
        """After each training episode of member `member`."""

    def on_eval(self, loop: LoopView, member: int, row: EvalRow) -> None:
        """After member `member`'s evaluation; when `row.is_best`, its parameters are the new best."""

    def on_stopped(self, loop: LoopView, member: int, reason: str) -> None:
        """Member `member` stopped training (`reason` says why: what was not finite, or that it solved; and when)."""

    def on_run_end(self, loop: LoopView) -> None:
        """When `run` returns or raises."""
