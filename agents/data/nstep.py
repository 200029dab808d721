"""n-step returns: each env keeps a window of its last n steps and turns them into replay transitions.

For a window that starts at step t of an episode, the transition stored is

    (obs_t, a_t, R, next_obs, discount),   R = r_t + gamma r_(t+1) + ... + gamma^(k-1) r_(t+k-1)

with k = n while the episode goes on (next_obs = obs_(t+n), discount = gamma^n). When the episode ends at step
t + k - 1 < t + n - 1, every pending window of that env is flushed with the k rewards it has: next_obs is the true
final observation, and discount is 0 after a termination (nothing to bootstrap) or gamma^k after a truncation (the
time limit is not part of the MDP, so the target still bootstraps). With n = 1 this is the one-step transition
`(obs, a, r, next_obs, gamma * (1 - terminated))`.

All E envs push one step at the same time, so the windows share one ring over time: the step pushed at vector step
t sits in slot `t % n` for every env, and env i's pending steps are its last `count[i]` slots.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from agents.validate import positive_int


class Transitions(NamedTuple):
    """k finished n-step transitions, ready for `ReplayBuffer.write`."""

    obs: np.ndarray
    """(k, obs_dim) observation each window started in."""
    actions: np.ndarray
    """(k,) int64 action taken there."""
    rewards: np.ndarray
    """(k,) float64 discounted sum of the window's rewards."""
    next_obs: np.ndarray
    """(k, obs_dim) observation to bootstrap from."""
    discounts: np.ndarray
    """(k,) gamma^(window length), or 0.0 after a termination."""


class NStepWindows:
    """The pending n-step windows of E environments.

    Args:
        n_envs: E.
        n_step: n >= 1.
        gamma: the discount factor.
        obs_dim: observation length.
        dtype: dtype of the stored observations (the replay buffer's).

    Example:
        >>> w = NStepWindows(n_envs=1, n_step=2, gamma=0.5, obs_dim=1, dtype=np.float64)
        >>> no = np.zeros(1, bool)
        >>> len(w.push(np.zeros((1, 1)), np.array([0]), np.array([1.0]), np.ones((1, 1)), no, no).actions)
        0
        >>> w.push(np.ones((1, 1)), np.array([1]), np.array([2.0]), np.full((1, 1), 2.0), no, no).rewards
        array([2.])
    """

    def __init__(self, n_envs: int, n_step: int, gamma: float, obs_dim: int, dtype: Any) -> None:
        for name, value in (("n_envs", n_envs), ("n_step", n_step), ("obs_dim", obs_dim)):
            positive_int(name, value)
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma!r}")
        self.n_envs, self.n_step, self.gamma = int(n_envs), int(n_step), float(gamma)
        n, E = self.n_step, self.n_envs
        self._obs = np.zeros((n, E, obs_dim), dtype)  # ring over time: slot t % n holds vector step t
        self._actions = np.zeros((n, E), np.int64)
        self._rewards = np.zeros((n, E), np.float64)
        self._count = np.zeros(E, np.int64)  # pending (not yet emitted) steps of each env's current episode
        self._t = 0  # vector steps pushed so far
        self._powers = self.gamma ** np.arange(n + 1)  # gamma^0 .. gamma^n
        self._discount_n = np.full(E, self._powers[n])
        self._order = (np.arange(n)[:, None] + np.arange(n)) % n  # _order[s]: the ring's slots from s on
        self._env_ids = np.arange(E)
        self.last_envs = self._env_ids[:0]  # (k,): the env each transition of the last `push` came from

    def push(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> Transitions:
        """Add one step of every env; return the transitions it completes.

        Args:
            obs: (E, obs_dim) observations the actions were taken in.
            actions: (E,) actions.
            rewards: (E,) rewards.
            next_obs: (E, obs_dim) true next observations (the final one where an episode ended).
            terminated: (E,) bool.
            truncated: (E,) bool.

        Returns:
            The finished transitions: first the full windows of envs whose episode goes on (env order), then every
            pending window of each env whose episode ended (env order, oldest first). `last_envs` then holds the
            env index of each (a seed-batched loop routes them to each member's replay buffer with it).
        """
        n = self.n_step
        slot = self._t % n
        self._obs[slot] = obs
        self._actions[slot] = actions
        self._rewards[slot] = rewards
        self._t += 1
        self._count += 1
        done = terminated | truncated
        full = self._count == n
        if done.any():
            full &= ~done
            ended = np.flatnonzero(done)
            flushed = [self._flush(i, next_obs[i], bool(terminated[i])) for i in ended]
        else:
            flushed = []
        if full.all():
            self.last_envs = self._env_ids
        else:
            self.last_envs = np.flatnonzero(full)
        if flushed:
            counts = [len(t.actions) for t in flushed]
            self.last_envs = np.concatenate([self.last_envs, np.repeat(ended, counts)])
        out = self._emit_full(full, next_obs) if full.any() else None
        if not flushed:
            return out if out is not None else self._empty(next_obs)
        parts = ([out] if out is not None else []) + flushed
        return Transitions(*(np.concatenate(column) for column in zip(*parts, strict=True)))

    def _emit_full(self, full: np.ndarray, next_obs: np.ndarray) -> Transitions:
        """Windows holding n steps whose episode goes on: R = sum_j gamma^j r_(t+j), discount gamma^n."""
        n = self.n_step
        oldest = self._t % n  # the slot written n vector steps ago, i.e. the start of every full window
        # every env is full in the common case: slices then, so no row of the ring is gathered twice
        envs = slice(None) if full.all() else np.flatnonzero(full)
        k = self.n_envs if isinstance(envs, slice) else len(envs)
        order = self._order[oldest]  # slots oldest first
        returns = self._powers[:n] @ self._rewards[order][:, envs]  # R = sum_j gamma^j r_(t+j), (k,)
        self._count[envs] -= 1
        return Transitions(self._obs[oldest, envs], self._actions[oldest, envs], returns, next_obs[envs],
                           self._discount_n[:k])

    def _flush(self, i: int, final_obs: np.ndarray, terminated: bool) -> Transitions:
        """Every pending window of env i, whose episode just ended; no bootstrap after a termination."""
        n, c = self.n_step, int(self._count[i])
        slots = (self._t - c + np.arange(c)) % n  # env i's pending steps, oldest first
        rewards = self._rewards[slots, i]
        # Window k (k = 0 oldest) holds rewards k..c-1: R_k = sum_j gamma^j r_(k+j), with c - k terms.
        returns = np.array([rewards[k:] @ self._powers[: c - k] for k in range(c)])
        discounts = np.zeros(c) if terminated else self._powers[c - np.arange(c)]
        self._count[i] = 0
        return Transitions(self._obs[slots, i], self._actions[slots, i], returns,
                           np.repeat(final_obs[None], c, axis=0), discounts)

    def _empty(self, like_obs: np.ndarray) -> Transitions:
        return Transitions(like_obs[:0], self._actions[0, :0], np.zeros(0), like_obs[:0], np.zeros(0))

    def state_dict(self) -> dict[str, Any]:
        """The pending windows: ring arrays, per-env counts and the step counter (plain arrays)."""
        return {"obs": self._obs.copy(), "actions": self._actions.copy(), "rewards": self._rewards.copy(),
                "count": self._count.copy(), "t": np.array(self._t, np.int64)}

    def select_state(self, envs: np.ndarray) -> dict[str, Any]:
        """The `state_dict` of windows over only the envs `envs: (k,)`, in order (the others' pending steps go)."""
        return {"obs": self._obs[:, envs], "actions": self._actions[:, envs], "rewards": self._rewards[:, envs],
                "count": self._count[envs], "t": np.array(self._t, np.int64)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()` output of windows with the same E, n and obs_dim."""
        for key in ("obs", "actions", "rewards", "count"):
            target = getattr(self, f"_{key}")
            value = np.asarray(state[key])
            if value.shape != target.shape:
                raise ValueError(f"n-step state[{key!r}] must have shape {target.shape}, got {value.shape}")
            target[...] = value
        self._t = int(state["t"])
