"""The learner step: sample a batch, take one gradient step on the TD loss, and move the target network.

    batch = replay.sample(B)                       into preallocated arrays
    metrics = agent.update(batch)                  y = R + discount * Q'(s', a'); loss; delta2; backward; clip; step
    (inside update) every target_update_interval updates: target <- online (or a Polyak step)

The learner times its own phases, so a benchmark reads where the time went instead of monkeypatching methods.
"""

from __future__ import annotations

import time

from agents.dqn import DivergenceError, DQNAgent
from agents.replay import ReplayBuffer


class Learner:
    """Gradient steps of `agent` on batches from `replay`.

    Args:
        agent: the DQN agent whose online network is trained.
        replay: the buffer to sample from.
        batch_size: B, transitions per gradient step.

    Attributes:
        seconds: `{"sample": s, "update": s}` spent so far in this process.
        last_metrics: the metrics of the last update (`loss`, `q_mean`, `grad_norm`, `td_abs`).
    """

    def __init__(self, agent: DQNAgent, replay: ReplayBuffer, batch_size: int) -> None:
        self.agent, self.replay, self.batch_size = agent, replay, batch_size
        self._batch = replay.empty_batch(batch_size)  # reused by every step: sampling allocates nothing
        self.seconds = {"sample": 0.0, "update": 0.0}
        self.last_metrics: dict[str, float] = {}

    def ready(self) -> bool:
        """True once the buffer holds at least one batch (a resume without saved replay refills first)."""
        return len(self.replay) >= self.batch_size

    def steps(self, n: int, env_steps: int) -> None:
        """Take `n` gradient steps.

        Raises:
            DivergenceError: a non-finite target, Q-value, loss or gradient; that step is not applied.
        """
        clock, seconds = time.perf_counter, self.seconds
        for _ in range(n):
            t0 = clock()
            batch = self.replay.sample(self.batch_size, out=self._batch)
            t1 = clock()
            try:
                self.last_metrics = self.agent.update(batch)
            except DivergenceError as e:
                raise DivergenceError(f"training diverged at env step {env_steps}: {e}; "
                                      f"last finite metrics {self.last_metrics}") from e
            seconds["sample"] += t1 - t0
            seconds["update"] += clock() - t1
