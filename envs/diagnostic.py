"""Tiny environments whose optimal Q-values are known in closed form, for testing that a DQN learns the truth.

Each environment has Box float32 observations of shape (obs_dim,), Discrete actions, and two methods:

- `state_observations() -> (n_states, obs_dim)`: the observation of every non-terminal state, one per row;
- `optimal_q(gamma) -> (n_states, n_actions)`: Q* of those states, in the same row order.

so a test can compare `agent.q_values(env.state_observations())` with `env.optimal_q(gamma)`. Q* is the
infinite-horizon value: time limits truncate episodes but are not part of the MDP, so a correct agent bootstraps
through them. Importing `envs` registers the ids "dqn_np/Chain-v0", "dqn_np/TwoArmedBandit-v0" and
"dqn_np/ConstantReward-v0".
"""

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np


def _check_gamma(gamma: float, allow_one: bool) -> None:
    """Raise ValueError unless gamma is in [0, 1) (or [0, 1] when `allow_one`)."""
    if not (0.0 <= gamma < 1.0 or (allow_one and gamma == 1.0)):
        expected = "0 <= gamma <= 1" if allow_one else "0 <= gamma < 1 (the return diverges at gamma = 1)"
        raise ValueError(f"gamma={gamma!r} is out of range; expected {expected}")


def check_action(action_space: gym.spaces.Discrete, action: int) -> None:
    """Raise ValueError unless `action` is an integer in `action_space`."""
    if not action_space.contains(action):
        raise ValueError(f"action={action!r} is not a valid action; expected an integer in {action_space!r}")


class ChainEnv(gym.Env):
    """A corridor of `n_states` states; walk right from state 0 to the goal at state n_states - 1.

    Observation: one-hot of the state, (n_states,) float32. Actions: 0 = left (to max(s - 1, 0)), 1 = right.
    Reaching the goal gives reward 1 and terminates; every other step gives reward 0. Registered with
    `max_episode_steps=20`. Closed form, with V*(s) = gamma^(n_states - 2 - s):
    Q*(s, right) = V*(s) and Q*(s, left) = gamma * V*(max(s - 1, 0)).
    """

    def __init__(self, n_states: int = 4) -> None:
        if n_states < 2:
            raise ValueError(f"n_states={n_states!r} is too small; expected at least 2 (a start and a goal)")
        self.n_states = n_states
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(n_states,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self._state: int | None = None  # None until reset, and again after the goal is reached

    def _obs(self, state: int) -> np.ndarray:
        return np.eye(self.n_states, dtype=np.float32)[state]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._state = 0
        return self._obs(0), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        check_action(self.action_space, action)
        if self._state is None:
            raise RuntimeError("ChainEnv.step called before reset or after the goal was reached; call reset()")
        self._state = max(self._state - 1, 0) if action == 0 else self._state + 1
        goal = self._state == self.n_states - 1
        obs = self._obs(self._state)
        if goal:
            self._state = None
        return obs, float(goal), goal, False, {}

    def state_observations(self) -> np.ndarray:
        """Observations of the non-terminal states 0, ..., n_states - 2: (n_states - 1, n_states)."""
        return np.eye(self.n_states, dtype=np.float32)[:-1]

    def optimal_q(self, gamma: float) -> np.ndarray:
        """Q* of states 0, ..., n_states - 2: (n_states - 1, 2), columns (left, right)."""
        _check_gamma(gamma, allow_one=True)
        states = np.arange(self.n_states - 1)
        v = gamma ** (self.n_states - 2 - states)  # V*(s): the goal is n_states - 1 - s right-steps away
        return np.stack([gamma * v[np.maximum(states - 1, 0)], v], axis=1)


class TwoArmedBanditEnv(gym.Env):
    """A one-step bandit: every action ends the episode with a reward whose mean depends on the arm.

    Observation: the constant [1.0], (1,) float32. Action a gives reward `means[a] + noise * N(0, 1)`, the noise drawn
    from `self.np_random` (seeded through `reset(seed=...)`); `noise=0` (the default) is deterministic.
    Closed form: Q*(a) = means[a] for any gamma, since nothing follows the first step.
    """

    def __init__(self, means: Sequence[float] = (0.2, 0.8), noise: float = 0.0) -> None:
        if len(means) < 2:
            raise ValueError(f"means={means!r} has {len(means)} arms; expected at least 2")
        if noise < 0:
            raise ValueError(f"noise={noise!r} is negative; expected a standard deviation >= 0")
        self.means = np.asarray(means, dtype=np.float64)
        self.noise = float(noise)
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(len(means))
        self._ready = False  # True between reset and the (single) step

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._ready = True
        return np.ones(1, dtype=np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        check_action(self.action_space, action)
        if not self._ready:
            raise RuntimeError("TwoArmedBanditEnv.step called before reset or after the episode ended; call reset()")
        self._ready = False
        reward = self.means[action] + (self.noise * self.np_random.standard_normal() if self.noise else 0.0)
        return np.ones(1, dtype=np.float32), float(reward), True, False, {}

    def state_observations(self) -> np.ndarray:
        """Observation of the single state: (1, 1)."""
        return np.ones((1, 1), dtype=np.float32)

    def optimal_q(self, gamma: float) -> np.ndarray:
        """Q* = the arm means: (1, n_arms). `gamma` is checked but does not matter."""
        _check_gamma(gamma, allow_one=True)
        return self.means[None, :].copy()


class ConstantRewardEnv(gym.Env):
    """One state that never terminates; action 0 gives reward 0.5 and action 1 gives 1.0 (by default).

    Observation: the constant [1.0], (1,) float32. Registered with `max_episode_steps=20`, so every episode ends by
    truncation, never by termination. Closed form (the optimal policy always takes the best arm):
    Q*(a) = rewards[a] + gamma * max(rewards) / (1 - gamma); with the defaults Q*(1) = 1 / (1 - gamma).

    This holds only if the agent bootstraps through truncation. An agent that treats the time limit as termination
    learns a visibly lower value: the state is the same at every step, so about 1 in 20 of its targets is `r` alone,
    giving roughly Q(1) = 1 / (1 - gamma * 19 / 20), e.g. 16.8 instead of 100 at gamma = 0.99.
    """

    def __init__(self, rewards: Sequence[float] = (0.5, 1.0)) -> None:
        if len(rewards) < 2:
            raise ValueError(f"rewards={rewards!r} has {len(rewards)} actions; expected at least 2")
        self.rewards = np.asarray(rewards, dtype=np.float64)
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(len(rewards))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return np.ones(1, dtype=np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        check_action(self.action_space, action)
        return np.ones(1, dtype=np.float32), float(self.rewards[action]), False, False, {}

    def state_observations(self) -> np.ndarray:
        """Observation of the single state: (1, 1)."""
        return np.ones((1, 1), dtype=np.float32)

    def optimal_q(self, gamma: float) -> np.ndarray:
        """Q*(a) = rewards[a] + gamma * max(rewards) / (1 - gamma): (1, n_actions)."""
        _check_gamma(gamma, allow_one=False)
        return (self.rewards + gamma * self.rewards.max() / (1.0 - gamma))[None, :]


class TruncationAsTermination(gym.Wrapper):
    """A deliberately WRONG wrapper: reports `terminated = terminated or truncated`.

    It reproduces the "time limit as death" bug so tests can prove they catch it: on ConstantReward an agent trained
    through this wrapper must miss `optimal_q(gamma)` by far. `truncated` is passed through unchanged.
    """

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, bool(terminated or truncated), truncated, info


_REGISTRATIONS = {  # env id -> (entry point, max_episode_steps)
    "dqn_np/Chain-v0": ("envs.diagnostic:ChainEnv", 20),
    "dqn_np/TwoArmedBandit-v0": ("envs.diagnostic:TwoArmedBanditEnv", None),
    "dqn_np/ConstantReward-v0": ("envs.diagnostic:ConstantRewardEnv", 20),
}
DIAGNOSTIC_IDS = tuple(_REGISTRATIONS)
"""Ids of the diagnostic environments registered by importing `envs`."""


def register_diagnostics() -> None:
    """Register the diagnostic environments with Gymnasium; calling it again does nothing."""
    for env_id, (entry_point, max_episode_steps) in _REGISTRATIONS.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=entry_point, max_episode_steps=max_episode_steps)
