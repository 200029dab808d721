"""The learner step: sample a batch per member, take one gradient step on the TD loss, and move the target network.

    batch = replay.sample(B)            into preallocated (S, B, ...) arrays, each member from its own buffer
    metrics = agent.update(batch)       y = R + discount * Q'(s', a'); loss (weighted by batch.weights); delta2;
                                        backward; clip; step
    replay.update_priorities(batch, metrics["td_errors"])   prioritized replay's new priorities (uniform: nothing)
    (inside update) every target_update_interval updates: target <- online (or a Polyak step)

A member whose update goes non-finite is frozen by the agent itself (`DQNAgent.update`); the loop reads
`agent.frozen_at` to report it. The learner times its own phases, so a benchmark reads where the time went instead
of monkeypatching methods.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from agents.algo.dqn import DQNAgent
from agents.data.replay import MemberReplay
from agents.loop.events import StopFlag


class Learner:
    """Gradient steps of a stacked `agent` on batches from its members' buffers.

    Args:
        agent: the stacked DQN agent whose online networks are trained.
        replay: the members' buffers.
        batch_size: B, transitions per member per gradient step.

    Attributes:
        seconds: `{"sample": s, "update": s}` spent so far in this process ("sample" includes prioritized replay's
            priority update).
        last_metrics: the metrics of the last update (`loss`, `q_mean`, `grad_norm`, `td_abs`: `(S,)` each).
    """

    def __init__(self, agent: DQNAgent, replay: MemberReplay, batch_size: int) -> None:
        self.agent, self.replay, self.batch_size = agent, replay, batch_size
        self._batch = replay.empty_batch(batch_size)  # reused by every step: sampling allocates nothing
        self.seconds = {"sample": 0.0, "update": 0.0}
        self.last_metrics: dict[str, Any] = {}

    def select(self, members: np.ndarray, agent: DQNAgent, replay: MemberReplay) -> Learner:
        """A learner of only `members` (rows, in order) on the parts cut down to them; timings and the members'
        last figures carry over."""
        out = Learner(agent, replay, self.batch_size)
        out.seconds = self.seconds
        out.last_metrics = {k: v[members] for k, v in self.last_metrics.items()}
        return out

    def ready(self) -> bool:
        """True once every active member's buffer holds at least one batch (a resume without replay refills)."""
        return len(self.replay) >= self.batch_size

    def steps(self, n: int, stop: StopFlag | None = None) -> int:
        """Take `n` gradient steps (every member at once), or fewer if `stop` is set before one of them.

        Returns:
            The gradient steps taken: `n`, or fewer when `stop` cut the burst (the caller owes the rest).
        """
        clock, seconds, agent, replay = time.perf_counter, self.seconds, self.agent, self.replay
        B, batch = self.batch_size, self._batch
        n_frozen, before, diverged = len(agent.frozen_at), None, {}  # diverged: member -> its last finite figures
        done = 0
        while done < n and not stop:  # a signal is honoured within one gradient step, not one burst
            t0 = clock()
            replay.sample(B, out=batch)
            t1 = clock()
            metrics = agent.update(batch)
            t2 = clock()
            replay.update_priorities(batch, metrics["td_errors"])  # |TD error| back into the sampler (PER)
            seconds["sample"] += t1 - t0 + clock() - t2
            seconds["update"] += t2 - t1
            if len(agent.frozen_at) != n_frozen:  # cold path: a member diverged on this update
                for s in list(agent.frozen_at)[n_frozen:]:  # dicts keep insertion order: the newly frozen
                    diverged[s] = before  # the update before's figures (fresh arrays); None: not in this burst
                n_frozen = len(agent.frozen_at)
            before = metrics
            done += 1
        if done:
            self._keep(before, diverged)
        return done

    def _keep(self, metrics: dict[str, Any], diverged: dict[int, dict[str, Any] | None]) -> None:
        """`last_metrics` <- the last update's figures, except for frozen members: one that diverged in this burst
        gets those of its last finite update, a member stopped before keeps its own (its later "updates" ran on
        frozen parameters and stale rows); NaN where a member has none."""
        new = {k: np.array(v) for k, v in metrics.items() if k not in ("finite", "td_errors")}
        held = self.agent.frozen
        if held.any():
            for k, v in new.items():
                v[held] = self.last_metrics[k][held] if self.last_metrics else np.nan
                for s, figures in diverged.items():
                    if figures is not None:
                        v[s] = figures[k][s]
        self.last_metrics = new
