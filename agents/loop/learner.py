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


class Learner:
    """Gradient steps of a stacked `agent` on batches from its members' buffers.

    Args:
        agent: the stacked DQN agent whose online networks are trained.
        replay: the members' buffers.
        batch_size: B, transitions per member per gradient step.

    Attributes:
        seconds: `{"sample": s, "update": s}` spent so far in this process.
        last_metrics: the metrics of the last update (`loss`, `q_mean`, `grad_norm`, `td_abs`: `(S,)` each).
    """

    def __init__(self, agent: DQNAgent, replay: MemberReplay, batch_size: int) -> None:
        self.agent, self.replay, self.batch_size = agent, replay, batch_size
        self._batch = replay.empty_batch(batch_size)  # reused by every step: sampling allocates nothing
        self.seconds = {"sample": 0.0, "update": 0.0}
        self.last_metrics: dict[str, Any] = {}

    def ready(self) -> bool:
        """True once every active member's buffer holds at least one batch (a resume without replay refills)."""
        return len(self.replay) >= self.batch_size

    def steps(self, n: int) -> None:
        """Take `n` gradient steps (every member at once)."""
        clock, seconds, agent, replay = time.perf_counter, self.seconds, self.agent, self.replay
        B, batch = self.batch_size, self._batch
        for _ in range(n):
            t0 = clock()
            replay.sample(B, out=batch)
            t1 = clock()
            metrics = agent.update(batch)
            t2 = clock()
            replay.update_priorities(batch, metrics["td_errors"])  # |TD error| back into the sampler (PER)
            seconds["sample"] += t1 - t0 + clock() - t2
            seconds["update"] += t2 - t1
        if n:
            self.last_metrics = {k: np.array(v) for k, v in metrics.items() if k not in ("finite", "td_errors")}
