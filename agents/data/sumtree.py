"""A sum tree for proportional prioritized replay: S members' trees in one set of stacked arrays, every operation
batched over members and samples, with no Python loop per sample.

Each member's leaves are the priorities `p_i` of its buffer's slots, in blocks of `b`; each block keeps the running
sums of its leaves (so its last running sum is the block's total, its node in the tree), and the root is the sum of
the blocks' totals. The tree is two levels deep, not a binary tree of log2(capacity) levels: in NumPy every level
costs a few calls whatever their size, so sixteen levels of a binary tree over 50,000 slots cost far more than one
`searchsorted` over the blocks' running total plus one `(n, b)` block per query.

    priorities  (S, n_blocks, b)   the leaves; slots >= capacity are padding and stay 0
    running     (S, n_blocks, b)   running[s, j, i] = sum_{l <= i} priorities[s, j, l]
    totals      (S, n_blocks)      running[:, :, -1], the blocks' totals (kept contiguous); their sum is member s's

`find(u)` walks down once: the block whose cumulative total first exceeds u, then the leaf whose running sum first
exceeds what is left of u, which is slot j with `sum_{l < j} p_l <= u < sum_{l <= j} p_l`.
"""

from __future__ import annotations

import math

import numpy as np

from agents.validate import positive_int


class SumTree:
    """Priorities of S buffers of `capacity` slots each, in a two-level sum tree per member.

    Args:
        members: S.
        capacity: slots per member.
        block: b, leaves per block (>= 1).
    """

    def __init__(self, members: int, capacity: int, block: int = 32) -> None:
        self.members, self.capacity = positive_int("members", members), positive_int("capacity", capacity)
        b = self.block = positive_int("block", block)
        self.n_blocks = math.ceil(capacity / b)
        self.priorities = np.zeros((members, self.n_blocks, b), np.float64)
        self.running = np.zeros((members, self.n_blocks, b), np.float64)
        self.totals = np.zeros((members, self.n_blocks), np.float64)  # running[:, :, -1], kept contiguous
        self._first_block = np.arange(members, dtype=np.int64) * self.n_blocks  # member s's first block, flat
        self._cumulative = np.zeros(members * self.n_blocks + 1)  # 0, then the joined running total of the blocks

    def total(self) -> np.ndarray:
        """`(S,)` each member's sum of priorities (the root of its tree)."""
        return self.totals.sum(axis=1)

    def get(self, members: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """`(n,)` the priorities of the given (member, slot) pairs."""
        return self.priorities.reshape(-1)[members * (self.n_blocks * self.block) + slots]

    def set(self, members: np.ndarray, slots: np.ndarray, priorities: np.ndarray) -> None:
        """Set the priority of slot `slots[i]` of member `members[i]` to `priorities[i]`; update the sums above.

        A (member, slot) pair given more than once keeps the last of its priorities, whatever order NumPy writes in.

        Args:
            members, slots: `(k,)` integers; slots in `[0, capacity)`.
            priorities: `(k,)` finite and non-negative.
        """
        b = self.block
        keys = np.asarray(members, np.int64) * (self.n_blocks * b) + slots  # flat leaf index
        priorities = np.asarray(priorities, np.float64)
        if len(keys) > 1:
            order = np.argsort(keys, kind="stable")
            keys, priorities = keys[order], priorities[order]
            last = np.append(keys[1:] != keys[:-1], True)  # the last entry of each run of equal keys
            if not last.all():
                keys, priorities = keys[last], priorities[last]
        self.priorities.reshape(-1)[keys] = priorities
        blocks = keys // b
        if len(blocks) > 1:
            blocks = blocks[np.append(blocks[1:] != blocks[:-1], True)]  # keys are sorted: each block once
        leaves = self.priorities.reshape(-1, b)
        sums = np.cumsum(leaves[blocks], axis=1)  # the blocks' running sums, recomputed exactly
        self.running.reshape(-1, b)[blocks] = sums
        self.totals.reshape(-1)[blocks] = sums[:, -1]

    def find(self, members: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The slot of each prefix sum `u[i]` in `[0, total[members[i]])` of member `members[i]`.

        Returns slot j with `sum_{l < j} p_l <= u < sum_{l <= j} p_l`, so a zero-priority slot is never returned (a
        `u` that rounding puts at or past the total returns the member's last slot of positive priority).

        Args:
            members: `(n,)` int64.
            u: `(n,)` float64.

        Returns:
            `(n,)` int64 slots.
        """
        b = self.block
        cumulative = self._cumulative  # cumulative[k] = the sum of the first k blocks (every member's, joined)
        np.cumsum(self.totals, out=cumulative[1:])
        if self.members == 1:
            first, target = 0, u
        else:  # u as a point on the members' joined running total
            first = self._first_block[members]
            target = u + cumulative[first]
        block = np.searchsorted(cumulative, target, side="right") - 1  # the block whose running total passes it
        np.clip(block, first, first + self.n_blocks - 1, out=block)
        left = target - cumulative[block]  # what is left of u inside the block
        rows = self.running.reshape(-1, b)[block]  # (n, b) running sums within each chosen block
        leaf = np.count_nonzero(rows <= left[:, None], axis=1)  # the first leaf whose running sum exceeds `left`
        stray = leaf >= b
        if stray.any():  # rounding at a member's end: its last slot of positive priority (the cold path)
            for i in np.flatnonzero(stray):
                s = int(members[i])
                positive = np.flatnonzero(self.priorities[s].reshape(-1) > 0)
                slot = positive[-1] if len(positive) else 0
                block[i], leaf[i] = s * self.n_blocks + slot // b, slot % b
        return (block - first) * b + leaf

    def state_dict(self) -> dict[str, np.ndarray]:
        """The leaves, `(S, n_blocks * b)`; the sums are rebuilt from them on load."""
        return {"priorities": self.priorities.reshape(self.members, -1).copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore `state_dict()`, recomputing every sum from the leaves."""
        leaves = np.asarray(state["priorities"])
        want = (self.members, self.n_blocks * self.block)
        if leaves.shape != want or leaves.dtype != np.float64 or not (np.isfinite(leaves).all()
                                                                     and (leaves >= 0).all()):
            raise ValueError(f"sum tree priorities must be a finite, non-negative float64 array of shape {want}, "
                             f"got {leaves.shape} {leaves.dtype}")
        self.priorities[...] = leaves.reshape(self.priorities.shape)
        np.cumsum(self.priorities, axis=2, out=self.running)
        self.totals[...] = self.running[:, :, -1]
