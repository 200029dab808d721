"""algo: the DQN update (targets, TD loss, backward, clip, step) and its schedules. Imports `data` and `dqn_np`, never
`loop` or `run`."""

from agents.algo.dqn import DivergenceError, DQNAgent
from agents.algo.schedules import linear_epsilon

__all__ = ["DQNAgent", "DivergenceError", "linear_epsilon"]
