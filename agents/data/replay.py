"""Uniform experience replay: a ring of preallocated arrays sampled into a `Batch`.

One transition ``(obs, action, reward, next_obs, discount)`` goes in per environment step
(`ReplayBuffer.add`) or per vector-environment step (`ReplayBuffer.add_batch`); `ReplayBuffer.sample`
draws a `Batch` uniformly with replacement for the TD target ``y = reward + discount * Q'(next_obs, a')``.

``discount`` carries everything the target needs to know about how the transition ended: ``gamma**k``
for a k-step return whose episode goes on (a time-limit truncation included: it still bootstraps from
``next_obs``), and 0 where the episode truly terminated. A learner never needs to know n or gamma, and
never sees ``terminated or truncated``. Transitions produced by a vector environment's autoreset step
never reach the buffer (`envs.VecEnv` does not return them).

Example:
    >>> rng = np.random.default_rng(0)
    >>> buffer = ReplayBuffer(capacity=100, obs_dim=4, rng=rng)
    >>> buffer.add(np.zeros(4), 1, 1.0, np.ones(4), discount=0.99)
    >>> batch = buffer.sample(8)
    >>> batch.obs.shape, batch.actions.dtype, batch.discounts.tolist()[:2]
    ((8, 4), dtype('int64'), [0.99, 0.99])
"""

from __future__ import annotations

import math
import numbers
import operator
import os
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_ARRAY_KEYS = ("obs", "actions", "rewards", "next_obs", "discounts")
_SCALAR_KEYS = ("pos", "size", "capacity")


class Batch(NamedTuple):
    """A sampled minibatch of B transitions; float arrays are in the buffer's dtype.

    A `MemberReplay` fills the same fields with a leading member axis: `(S, B, obs_dim)`, `(S, B)`.

    Attributes:
        obs: ``(B, obs_dim)`` observations the actions were taken in.
        actions: ``(B,)`` int64 actions taken.
        rewards: ``(B,)`` the (n-step, discounted) rewards received after each action.
        next_obs: ``(B, obs_dim)`` observations the target bootstraps from (k steps later, or where the
            episode ended).
        discounts: ``(B,)`` ``gamma**k``, or 0.0 where the episode truly terminated: the TD target is
            ``rewards + discounts * Q'(next_obs, a')``.
        weights: ``(B,)`` per-sample loss weights (a prioritized sampler's importance-sampling weights), or None:
            every sample weighs 1.
        indices: ``(B,)`` int64 buffer slots the rows came from (a prioritized sampler updates their priorities
            with the TD errors `DQNAgent.update` returns), or None.
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_obs: np.ndarray
    discounts: np.ndarray
    weights: np.ndarray | None = None
    indices: np.ndarray | None = None


class ReplayBuffer:
    """Fixed-capacity ring buffer of transitions, overwriting the oldest when full.

    Slots ``[0, len(self))`` are always the filled ones, so sampling draws indices from that range.

    Args:
        capacity: Maximum number of transitions kept, >= 1.
        obs_dim: Length of one observation vector, >= 1.
        rng: Generator used by `sample`, and only there. Its state is not part of `state_dict`;
            save ``rng.bit_generator.state`` alongside it to resume sampling exactly.
        dtype: float32 or float64; dtype of the stored and sampled float arrays.

    Raises:
        TypeError: If ``capacity``/``obs_dim`` are not integers or ``rng`` is not a Generator.
        ValueError: If ``capacity``/``obs_dim`` are < 1 or ``dtype`` is not float32/float64.
    """

    def __init__(
        self,
        capacity: int,
        obs_dim: int,
        rng: np.random.Generator,
        dtype: npt.DTypeLike = np.float32,
        *,
        _storage: tuple[np.ndarray, ...] | None = None,
    ) -> None:
        capacity = _int_at_least(capacity, "capacity", 1)
        obs_dim = _int_at_least(obs_dim, "obs_dim", 1)
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        dtype = np.dtype(dtype)
        if dtype not in _FLOAT_DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        self._capacity = capacity
        self._obs_dim = obs_dim
        self._obs_shape = (obs_dim,)
        self._rng = rng
        self._dtype = dtype
        if _storage is not None:  # a MemberReplay's views of member s's rows of its stacked arrays
            self._obs, self._actions, self._rewards, self._next_obs, self._discounts = _storage
        else:
            self._obs = np.zeros((capacity, obs_dim), dtype=dtype)  # (capacity, obs_dim)
            self._actions = np.zeros(capacity, dtype=np.int64)  # (capacity,)
            self._rewards = np.zeros(capacity, dtype=dtype)  # (capacity,)
            self._next_obs = np.zeros((capacity, obs_dim), dtype=dtype)  # (capacity, obs_dim)
            self._discounts = np.zeros(capacity, dtype=dtype)  # (capacity,)
        self._pos = 0  # slot the next transition is written to
        self._size = 0  # number of filled slots

    @staticmethod
    def nbytes_for(capacity: int, obs_dim: int, dtype: npt.DTypeLike = np.float32) -> int:
        """Bytes the arrays of a buffer of `capacity` transitions take: obs and next_obs `(capacity, obs_dim)`,
        rewards and discounts `(capacity,)` in `dtype`, actions `(capacity,)` int64.

        A checkpoint that saves the buffer copies its filled part once more (`state_dict`).
        """
        itemsize = np.dtype(dtype).itemsize
        return int(capacity) * ((2 * int(obs_dim) + 2) * itemsize + np.dtype(np.int64).itemsize)

    @property
    def nbytes(self) -> int:
        """Bytes this buffer's arrays take (`nbytes_for` its capacity, obs_dim and dtype)."""
        return self.nbytes_for(self._capacity, self._obs_dim, self._dtype)

    @property
    def capacity(self) -> int:
        """Maximum number of transitions kept."""
        return self._capacity

    @property
    def obs_dim(self) -> int:
        """Length of one observation vector."""
        return self._obs_dim

    @property
    def dtype(self) -> np.dtype:
        """dtype of the stored float arrays."""
        return self._dtype

    @property
    def rng(self) -> np.random.Generator:
        """The Generator `sample` draws from (save its `bit_generator.state` to resume sampling exactly)."""
        return self._rng

    def __len__(self) -> int:
        """Number of transitions currently stored, at most `capacity`."""
        return self._size

    def add(
        self,
        obs: npt.ArrayLike,
        action: int,
        reward: float,
        next_obs: npt.ArrayLike,
        discount: float,
    ) -> None:
        """Store one transition, overwriting the oldest if the buffer is full.

        Everything is validated before anything is written, so a rejected transition leaves the
        buffer unchanged.

        Args:
            obs: ``(obs_dim,)`` finite observation the action was taken in.
            action: Integer action >= 0 (Python or NumPy integer; not bool or float).
            reward: Finite real reward.
            next_obs: ``(obs_dim,)`` finite observation to bootstrap from (finite even when the
                episode terminated, since ``0 * nan`` is nan in the TD target).
            discount: ``gamma**k`` in [0, 1] for a k-step transition whose episode goes on (truncation
                included); 0 where the episode truly terminated.

        Raises:
            ValueError: On a wrong shape, a non-finite value, a negative action, or ``discount``
                outside [0, 1].
            TypeError: If ``action`` is not an integer or ``reward``/``discount`` are not real scalars.
        """
        obs = np.asarray(obs)  # no copy for an ndarray; the slot assignment below is the only copy
        next_obs = np.asarray(next_obs)
        if obs.shape != self._obs_shape:
            raise ValueError(f"obs must have shape {self._obs_shape}, got {obs.shape}")
        if next_obs.shape != self._obs_shape:
            raise ValueError(f"next_obs must have shape {self._obs_shape}, got {next_obs.shape}")
        _check_finite(obs, "obs")
        _check_finite(next_obs, "next_obs")
        action = _int_at_least(action, "action", 0)
        reward = _real_scalar(reward, "reward")
        if not math.isfinite(reward):
            raise ValueError(f"reward must be finite, got {reward}")
        if isinstance(discount, (bool, np.bool_)):  # an old `terminated` flag would mean the opposite
            raise TypeError(f"discount must be a number in [0, 1] (gamma**k, 0 at termination), got bool {discount}")
        discount = _real_scalar(discount, "discount")
        if not 0.0 <= discount <= 1.0:
            raise ValueError(f"discount must be in [0, 1] (gamma**k, or 0 at termination), got {discount}")
        self.write(obs[None], np.array([action]), np.array([reward]), next_obs[None], np.array([discount]))

    def add_batch(
        self,
        obs: npt.ArrayLike,
        actions: npt.ArrayLike,
        rewards: npt.ArrayLike,
        next_obs: npt.ArrayLike,
        discounts: npt.ArrayLike,
    ) -> None:
        """Store ``k`` transitions; the result equals ``k`` sequential `add` calls in row order.

        Wrap-around takes at most two slice copies per array. If ``k > capacity`` only the last
        ``capacity`` rows are kept. ``k == 0`` is allowed and does nothing. Everything is validated
        before anything is written.

        Args:
            obs: ``(k, obs_dim)`` finite observations.
            actions: ``(k,)`` integer-dtype actions >= 0.
            rewards: ``(k,)`` finite rewards.
            next_obs: ``(k, obs_dim)`` finite next observations.
            discounts: ``(k,)`` values in [0, 1]: ``gamma**k``, or 0 where the episode terminated.

        Raises:
            ValueError: On a wrong or inconsistent shape, a non-finite value, a negative action, or a
                discount outside [0, 1].
            TypeError: If ``actions`` does not have an integer dtype.
        """
        obs = np.asarray(obs)
        if obs.ndim != 2 or obs.shape[1] != self._obs_dim:
            raise ValueError(f"obs must have shape (k, {self._obs_dim}), got {obs.shape}")
        k = obs.shape[0]
        next_obs = np.asarray(next_obs)
        if next_obs.shape != obs.shape:
            raise ValueError(f"next_obs must have shape {obs.shape} (same as obs), got {next_obs.shape}")
        actions = np.asarray(actions)
        rewards = np.asarray(rewards)
        discounts = np.asarray(discounts)
        for name, array in (("actions", actions), ("rewards", rewards), ("discounts", discounts)):
            if array.shape != (k,):
                raise ValueError(f"{name} must have shape ({k},) to match obs {obs.shape}, got {array.shape}")
        if k == 0:
            return
        _check_actions(actions)
        _check_finite(obs, "obs")
        _check_finite(next_obs, "next_obs")
        _check_finite(rewards, "rewards")
        if discounts.dtype.kind == "b":  # an old `terminated` array would mean the opposite
            raise TypeError("discounts must be numbers in [0, 1] (gamma**k, 0 at termination), got a bool array")
        _check_unit_interval(discounts, "discounts")
        self.write(obs, actions, rewards, next_obs, discounts)

    def write(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        discounts: np.ndarray,
    ) -> None:
        """`add_batch` without validation: the collector's own hot path, whose arrays are already checked.

        Args are as in `add_batch`, already of the right shapes and values; ``k >= 1``.
        """
        k = obs.shape[0]
        cap = self._capacity
        drop = max(0, k - cap)  # rows overwritten within this very batch
        n = k - drop
        start = (self._pos + drop) % cap  # where row `drop` lands after k sequential adds
        first = min(n, cap - start)  # rows that fit before the end of the ring
        for ring, data in (
            (self._obs, obs),
            (self._actions, actions),
            (self._rewards, rewards),
            (self._next_obs, next_obs),
            (self._discounts, discounts),
        ):
            ring[start : start + first] = data[drop : drop + first]
            ring[: n - first] = data[drop + first :]
        self._pos = (self._pos + k) % cap
        self._size = min(self._size + k, cap)

    def sample(self, batch_size: int, out: Batch | None = None) -> Batch:
        """Draw ``batch_size`` transitions uniformly with replacement from the filled slots.

        Args:
            batch_size: Number of transitions B, >= 1 (may exceed ``len(self)``).
            out: Preallocated arrays to gather into (from `empty_batch`; the learner's hot path); None
                allocates new ones.

        Returns:
            A `Batch` with leading dimension B (``out`` itself when given); writing to it never changes
            the buffer.

        Raises:
            TypeError: If ``batch_size`` is not an integer.
            ValueError: If ``batch_size`` < 1, the buffer is empty, or ``out`` does not hold B rows.
        """
        batch_size = _int_at_least(batch_size, "batch_size", 1)
        if self._size == 0:
            raise ValueError("cannot sample from an empty ReplayBuffer (len 0); add transitions first")
        if out is None:
            out = self.empty_batch(batch_size)
        elif out.obs.shape != (batch_size, self._obs_dim) or out.obs.dtype != self._dtype or len(out.actions) != \
                batch_size:
            raise ValueError(f"out must be an empty_batch({batch_size}) of this buffer: obs ({batch_size}, "
                             f"{self._obs_dim}) {self._dtype}, got obs {out.obs.shape} {out.obs.dtype}")
        idx = self._rng.integers(0, self._size, size=batch_size)  # (B,), drawn only once `out` is known good
        for ring, dest in zip((self._obs, self._actions, self._rewards, self._next_obs, self._discounts), out[:5],
                              strict=True):
            np.take(ring, idx, axis=0, out=dest)
        return out

    def empty_batch(self, batch_size: int) -> Batch:
        """Uninitialised arrays for a `Batch` of ``batch_size`` rows, to pass as `sample`'s ``out``."""
        return Batch(
            obs=np.empty((batch_size, self._obs_dim), self._dtype),
            actions=np.empty(batch_size, np.int64),
            rewards=np.empty(batch_size, self._dtype),
            next_obs=np.empty((batch_size, self._obs_dim), self._dtype),
            discounts=np.empty(batch_size, self._dtype),
        )

    def state_dict(self) -> dict[str, np.ndarray]:
        """Snapshot the buffer as plain arrays, safe for ``np.savez`` / ``np.load(allow_pickle=False)``.

        The sampling Generator's state is not included: save ``rng.bit_generator.state`` separately and
        restore it to reproduce later samples.

        Returns:
            Copies of the filled slots, in slot order: ``obs`` and ``next_obs`` ``(len, obs_dim)``,
            ``actions`` ``(len,)`` int64, ``rewards`` and ``discounts`` ``(len,)``; plus 0-d int64
            ``pos`` (next slot written), ``size`` (``len``) and ``capacity``.
        """
        n = self._size
        return {
            "obs": self._obs[:n].copy(),
            "actions": self._actions[:n].copy(),
            "rewards": self._rewards[:n].copy(),
            "next_obs": self._next_obs[:n].copy(),
            "discounts": self._discounts[:n].copy(),
            "pos": np.array(self._pos, dtype=np.int64),
            "size": np.array(n, dtype=np.int64),
            "capacity": np.array(self._capacity, dtype=np.int64),
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore a snapshot from `state_dict` exactly; the buffer is unchanged if validation fails.

        The buffer must have the same capacity, obs_dim and dtype as the one that was saved.

        Args:
            state: Mapping with exactly the keys produced by `state_dict`.

        Raises:
            ValueError: Naming the offending key, on missing/unexpected keys or a wrong shape, dtype
                or value.
        """
        missing = sorted(set(_ARRAY_KEYS + _SCALAR_KEYS) - set(state))
        unexpected = sorted(set(state) - set(_ARRAY_KEYS + _SCALAR_KEYS))
        if missing or unexpected:
            raise ValueError(f"state keys mismatch: missing {missing}, unexpected {unexpected}")
        scalars = {}
        for key in _SCALAR_KEYS:
            value = np.asarray(state[key])
            if value.shape != () or value.dtype != np.int64:
                raise ValueError(f"state['{key}'] must be a 0-d int64 array, got shape {value.shape} {value.dtype}")
            scalars[key] = int(value)
        cap, pos, size = scalars["capacity"], scalars["pos"], scalars["size"]
        if cap != self._capacity:
            raise ValueError(f"state['capacity'] must equal this buffer's capacity {self._capacity}, got {cap}")
        if not 0 <= size <= cap:
            raise ValueError(f"state['size'] must be in [0, {cap}], got {size}")
        expected_pos = f"{size}" if size < cap else f"in [0, {cap})"
        if (size < cap and pos != size) or not 0 <= pos < cap:
            raise ValueError(f"state['pos'] must be {expected_pos} for size {size}, got {pos}")
        expected = {
            "obs": ((size, self._obs_dim), self._dtype),
            "actions": ((size,), np.dtype(np.int64)),
            "rewards": ((size,), self._dtype),
            "next_obs": ((size, self._obs_dim), self._dtype),
            "discounts": ((size,), self._dtype),
        }
        arrays = {}
        for key, (shape, dtype) in expected.items():
            value = state[key]
            if not isinstance(value, np.ndarray) or value.shape != shape or value.dtype != dtype:
                got = f"{value.shape} {value.dtype}" if isinstance(value, np.ndarray) else type(value).__name__
                raise ValueError(f"state['{key}'] must be a {shape} {dtype} array, got {got}")
            arrays[key] = value
        if size:
            _check_actions(arrays["actions"], "state['actions']")
            for key in ("obs", "rewards", "next_obs"):
                _check_finite(arrays[key], f"state['{key}']")
            _check_unit_interval(arrays["discounts"], "state['discounts']")

        for ring in (self._obs, self._actions, self._rewards, self._next_obs, self._discounts):
            ring.fill(0)
        self._obs[:size] = arrays["obs"]
        self._actions[:size] = arrays["actions"]
        self._rewards[:size] = arrays["rewards"]
        self._next_obs[:size] = arrays["next_obs"]
        self._discounts[:size] = arrays["discounts"]
        self._pos, self._size = pos, size


class MemberReplay:
    """S replay buffers, one per member of a stacked agent, in one set of stacked arrays.

    Member s's buffer is a `ReplayBuffer` of its own (its own size, write position and sampling Generator); the
    buffers' arrays are rows of stacked `(S, capacity, ...)` arrays, so `sample` draws each member's indices from its
    own Generator, exactly as a single run's buffer would, and then gathers all S batches with one `take` per array.

    Args:
        capacity: transitions kept per member.
        obs_dim: observation length.
        rngs: S Generators, one per member (`sample`'s only randomness).
        dtype: float32 or float64.

    Attributes:
        buffers: the S member buffers (`buffers[s].state_dict()` is what a single run's buffer would save).
    """

    def __init__(self, capacity: int, obs_dim: int, rngs: list[np.random.Generator],
                 dtype: npt.DTypeLike = np.float32) -> None:
        capacity = _int_at_least(capacity, "capacity", 1)
        obs_dim = _int_at_least(obs_dim, "obs_dim", 1)
        rngs = list(rngs)
        if not rngs:
            raise ValueError("rngs must hold one Generator per member, got none")
        dtype = np.dtype(dtype)
        S = self.members = len(rngs)
        self.capacity, self.obs_dim, self.dtype = capacity, obs_dim, dtype
        self._rings = (np.zeros((S, capacity, obs_dim), dtype), np.zeros((S, capacity), np.int64),
                       np.zeros((S, capacity), dtype), np.zeros((S, capacity, obs_dim), dtype),
                       np.zeros((S, capacity), dtype))
        self.buffers = [ReplayBuffer(capacity, obs_dim, rng, dtype, _storage=tuple(r[s] for r in self._rings))
                        for s, rng in enumerate(rngs)]
        # the same arrays with members and slots merged, so one flat index s * capacity + i reaches any row
        self._flat = tuple(r.reshape(S * capacity, *r.shape[2:]) for r in self._rings)
        self._first_rows = [s * capacity for s in range(S)]  # member s's first row in the merged arrays
        self.active = np.ones(S, bool)  # a stopped member is neither sampled nor waited for (its owner shares this)
        self._idx: dict[int, np.ndarray] = {}  # (S, B) flat indices per batch size; a stopped member's row stays put

    @staticmethod
    def nbytes_for(members: int, capacity: int, obs_dim: int, dtype: npt.DTypeLike = np.float32) -> int:
        """Bytes of S members' buffers: `members * ReplayBuffer.nbytes_for(capacity, obs_dim, dtype)`."""
        return int(members) * ReplayBuffer.nbytes_for(capacity, obs_dim, dtype)

    def sizes(self) -> np.ndarray:
        """`(S,)` transitions stored per member."""
        return np.array([len(b) for b in self.buffers])

    def write(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
              discounts: np.ndarray, members: np.ndarray) -> None:
        """Store k transitions, row i into member `members[i]`'s buffer, each member's rows in their order.

        Args:
            obs, actions, rewards, next_obs, discounts: as in `ReplayBuffer.write`, `(k, ...)`, already checked.
            members: `(k,)` the member each row belongs to.
        """
        if self.members == 1:  # a single run: every row is member 0's, in order
            self.buffers[0].write(obs, actions, rewards, next_obs, discounts)
            return
        order = np.argsort(members, kind="stable")  # rows grouped by member; each member's rows keep their order
        counts = np.bincount(members, minlength=self.members)
        columns = [c[order] for c in (obs, actions, rewards, next_obs, discounts)]
        start = 0
        for s in np.flatnonzero(counts):
            rows = slice(start, start + counts[s])
            self.buffers[s].write(*(c[rows] for c in columns))
            start += counts[s]

    def sample(self, batch_size: int, out: Batch) -> Batch:
        """B transitions per member, uniformly with replacement from each member's filled slots, into `out`.

        Args:
            batch_size: B.
            out: `empty_batch(B)`: arrays `(S, B, ...)`.

        Returns:
            `out`, holding member s's batch in row s: what `buffers[s].sample(B)` would have drawn. A stopped member
            (`active[s]` False) draws nothing and gets the rows of its last batch again (or its first slot).
        """
        idx = self._idx.get(batch_size)
        if idx is None:
            idx = self._idx[batch_size] = np.zeros((self.members, batch_size), np.int64)
        active, first_rows = self.active, self._first_rows
        for s, buf in enumerate(self.buffers):  # each member draws from its own Generator, as a single run does
            if active[s]:
                rows = buf.rng.integers(0, buf._size, size=batch_size)
                if s:
                    rows += first_rows[s]  # row s * capacity + i of the merged arrays
                idx[s] = rows
        for ring, dest in zip(self._flat, out[:5], strict=True):
            np.take(ring, idx, axis=0, out=dest)
        return out

    def update_priorities(self, batch: Batch, td_errors: np.ndarray) -> None:
        """What the learner reports after each update (the sampled batch and its per-sample |TD error| `(S, B)`);
        uniform sampling needs neither (`agents.data.prioritized.PrioritizedReplay` does)."""

    def set_progress(self, fraction: float) -> None:
        """The fraction of the run done, for samplers whose settings are annealed over it; uniform has none."""

    def empty_batch(self, batch_size: int) -> Batch:
        """Uninitialised `(S, B, ...)` arrays for `sample`'s `out`."""
        S, B = self.members, batch_size
        return Batch(np.empty((S, B, self.obs_dim), self.dtype), np.empty((S, B), np.int64),
                     np.empty((S, B), self.dtype), np.empty((S, B, self.obs_dim), self.dtype),
                     np.empty((S, B), self.dtype))

    def state_dict(self, include_replay: bool = True) -> dict[str, Any]:
        """Every member's buffer (`ReplayBuffer.state_dict`, keyed "0", "1", ...) and its sampling generator's state.

        Args:
            include_replay: False keeps only the generators (a checkpoint saved without its replay buffer).
        """
        state: dict[str, Any] = {"rng": [b.rng.bit_generator.state for b in self.buffers]}
        if include_replay:
            state["buffers"] = {str(s): b.state_dict() for s, b in enumerate(self.buffers)}
        return state

    def select(self, members: np.ndarray) -> MemberReplay:
        """The buffers of only `members` (rows, in order), continuing exactly: their transitions, write positions,
        sampler state and sampling generators (the same Generator objects) move to a new replay of k members."""
        members = np.asarray(members, np.int64)
        out = self._like([self.buffers[s].rng for s in members.tolist()])
        out.load_state_dict(self._select_state(self.state_dict(), members))
        return out

    def _like(self, rngs: list[np.random.Generator]) -> MemberReplay:
        """An empty replay with this one's settings for `len(rngs)` members."""
        return MemberReplay(self.capacity, self.obs_dim, rngs, self.dtype)

    def _select_state(self, state: dict[str, Any], members: np.ndarray) -> dict[str, Any]:
        """`state_dict()` output cut down to `members`, renumbered 0..k-1."""
        out = {"rng": [state["rng"][s] for s in members.tolist()]}
        if "buffers" in state:
            out["buffers"] = {str(i): state["buffers"][str(s)] for i, s in enumerate(members.tolist())}
        return out

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        """Restore `state_dict()`; returns False when it held no buffers (they stay empty and refill)."""
        if len(state["rng"]) != self.members:
            raise ValueError(f"the replay state holds {len(state['rng'])} members, this one {self.members}")
        for b, rng_state in zip(self.buffers, state["rng"], strict=True):
            b.rng.bit_generator.state = rng_state
        if "buffers" not in state:
            return False
        for s, b in enumerate(self.buffers):
            b.load_state_dict(state["buffers"][str(s)])
        return True

    def __len__(self) -> int:
        """The fewest transitions an active member holds (a batch can be sampled once every one has B)."""
        sizes = [len(b) for b, active in zip(self.buffers, self.active, strict=True) if active]
        return min(sizes) if sizes else 0


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation without swapping (`MemAvailable`), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def require_memory(need: int, what: str) -> None:
    """Raise `ValueError` naming `what`, the bytes it needs and the bytes available, if it would not fit in memory.

    Call it before allocating: numpy allocates lazily, so a buffer too large for memory fails only when the run
    fills it (or the kernel kills the process), possibly hours later.
    """
    available = available_memory()
    if available is not None and need > available:
        raise ValueError(f"{what} would need {need} bytes ({need / 1e9:.1f} GB), but only {available} bytes "
                         f"({available / 1e9:.1f} GB) of memory are available")


def _int_at_least(value: Any, name: str, minimum: int) -> int:
    """Return ``value`` as an int >= ``minimum``, raising TypeError (bool, float, ...) or ValueError (too small)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got bool {value}")
    try:
        result = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r} of type {type(value).__name__}") from None
    if result < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {result}")
    return result


def _real_scalar(value: Any, name: str) -> float:
    """Return a real scalar (Python/NumPy number, bool or 0-d numeric array) as float."""
    if isinstance(value, np.ndarray):
        if value.shape != () or value.dtype.kind not in "biuf":
            raise ValueError(f"{name} must be a real scalar, got an array of shape {value.shape} {value.dtype}")
    elif not isinstance(value, (numbers.Real, np.bool_)):
        raise TypeError(f"{name} must be a real number, got {value!r} of type {type(value).__name__}")
    return float(value)


def _check_finite(array: np.ndarray, name: str) -> None:
    """Raise TypeError if ``array`` is not numeric, ValueError naming its first non-finite entry."""
    _check_numeric(array, name)
    finite = np.isfinite(array)
    if not finite.all():
        where = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise ValueError(f"{name} must be finite, got {array[where]} at index {where}")


def _check_actions(actions: np.ndarray, name: str = "actions") -> None:
    """Raise TypeError unless ``actions`` has an integer dtype, ValueError if any entry is < 0."""
    if actions.dtype.kind not in "iu":
        raise TypeError(f"{name} must have an integer dtype, got {actions.dtype}")
    if actions.dtype.kind == "i" and (actions < 0).any():
        where = int(np.argmax(actions < 0))
        raise ValueError(f"{name} must be >= 0, got {actions[where]} at index {where}")


def _check_unit_interval(array: np.ndarray, name: str) -> None:
    """Raise ValueError unless every entry of ``array`` is in [0, 1] (NaN is not)."""
    _check_numeric(array, name)
    ok = (array >= 0) & (array <= 1)
    if not ok.all():
        where = int(np.argmax(~ok))
        raise ValueError(f"{name} must be in [0, 1] (gamma**k, or 0 at termination), got {array[where]} "
                         f"at index {where}")


def _check_numeric(array: np.ndarray, name: str) -> None:
    """Raise TypeError unless ``array`` has a bool, integer or real floating dtype."""
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {array.dtype}")
