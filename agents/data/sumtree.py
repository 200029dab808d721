"""A sum tree for proportional prioritized replay: S members' trees in one set of stacked arrays, every operation
batched over members and samples, with no Python loop per sample.

Each member's leaves are the priorities `p_i` of its buffer's slots, in blocks of `b` (16); each block keeps its
total (its node in the tree), and the root is the sum of the blocks' totals. The tree is two levels deep, not a
binary tree of log2(capacity) levels: in NumPy every level costs a few calls whatever their size, so sixteen levels
of a binary tree over 50,000 slots cost far more than one `searchsorted` over the blocks' running total plus one
`(n, b)` block per query.

    priorities  (S, n_blocks, b)   the leaves; slots >= capacity are padding and stay 0
    totals      (S, n_blocks)      totals[s, j] = sum_i priorities[s, j, i]; their sum is member s's total

`find(u)` walks down once: the block whose cumulative total first exceeds u, then the leaf whose running sum first
exceeds what is left of u: slot j with `sum_{l < j} p_l <= u < sum_{l <= j} p_l`. Both running sums are matrix
products with an upper-triangular matrix of ones, not `np.cumsum` (which adds one element at a time, about 4.5 ns
each here): the blocks' running total group by group of GROUP blocks (`_running_total`), and the leaves' running
sums for just the n blocks drawn. Running sums are not stored: keeping them would make every `set` write b numbers
per block touched, and at S = 32 members that traffic cost more than the product. A product may add in another
order than a loop would, so a running sum is exact only to rounding; `find` never returns a zero-priority slot
whatever the rounding (its guard), and the totals, which scale every draw, are sums with fixed bits
(`block_sums`), so a member draws the same alone or in any batch, and after a resume.
"""

from __future__ import annotations

import math

import numpy as np

from agents.validate import positive_int

GROUP = 32  # blocks per group in the running total of the blocks' totals


def block_sums(rows: np.ndarray) -> np.ndarray:
    """`(k,)` the sums of the rows of a C-contiguous `(k, b)` array, by NumPy's summation along the fast axis (its
    pairwise routine, applied to each row alone), so a block's total has the same bits whichever rows it is summed
    with: the totals scale every draw, so a matrix product (whose order of additions BLAS may choose by shape)
    would let a member's draws depend on its batch, and a resumed run's on how its totals were rebuilt."""
    return np.add.reduce(rows, axis=1)


class SumTree:
    """Priorities of S buffers of `capacity` slots each, in a two-level sum tree per member.

    Args:
        members: S.
        capacity: slots per member.
        block: b, leaves per block (>= 1).
    """

    def __init__(self, members: int, capacity: int, block: int = 16) -> None:
        self.members, self.capacity = positive_int("members", members), positive_int("capacity", capacity)
        b = self.block = positive_int("block", block)
        self.n_blocks = math.ceil(capacity / b)
        self.priorities = np.zeros((members, self.n_blocks, b), np.float64)
        # the blocks' totals, every member's joined, in a buffer padded to whole groups of GROUP (the padding stays
        # 0) so their running total can be taken group by group (`_running_total`)
        self._groups = math.ceil(members * self.n_blocks / GROUP)
        self._totals_flat = np.zeros(self._groups * GROUP)
        self.totals = self._totals_flat[:members * self.n_blocks].reshape(members, self.n_blocks)
        self._first_block = np.arange(members, dtype=np.int64) * self.n_blocks  # member s's first block, flat
        self._last_block = self._first_block + (self.n_blocks - 1)
        self._cumulative = np.zeros(self._groups * GROUP + 1)  # 0, then the joined running total of the blocks
        # prefix sums as a product: (rows @ upper)[:, i] = sum_{l <= i} rows[:, l]; one BLAS call instead of
        # np.cumsum's element-by-element loop (three times faster on (128, 32))
        self._upper = np.triu(np.ones((b, b)))
        self._upper_group = np.triu(np.ones((GROUP, GROUP)))
        self._masks: dict[int, np.ndarray] = {}  # n -> find's (n, b + 1) comparison buffer

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
        if self.members == 1:  # flat leaf index
            keys = np.asarray(slots, np.int64)
        else:
            keys = np.asarray(members, np.int64) * (self.n_blocks * b) + slots
        priorities = np.asarray(priorities, np.float64)
        leaves = self.priorities.reshape(-1)
        leaves[keys] = priorities
        if len(keys) > 1 and not (leaves[keys] == priorities).all():  # a key given twice with two priorities:
            order = np.argsort(keys, kind="stable")  # NumPy may have written either, so write each key's last
            keys, priorities = keys[order], priorities[order]
            last = np.append(keys[1:] != keys[:-1], True)
            leaves[keys[last]] = priorities[last]
        blocks = keys // b  # a block named twice is summed twice, to the same total
        self.totals.reshape(-1)[blocks] = block_sums(self.priorities.reshape(-1, b)[blocks])

    def find(self, members: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The slot of each prefix sum `u[i]` in `[0, total[members[i]])` of member `members[i]`.

        Returns slot j with `sum_{l < j} p_l <= u < sum_{l <= j} p_l` (up to the rounding of the sums), and never a
        zero-priority slot: a `u` that rounding puts at or past the total returns the member's last slot of positive
        priority, and a zero-priority slot that rounding would pick gives way to the nearest positive one before it.

        Args:
            members: `(n,)` int64.
            u: `(n,)` float64.

        Returns:
            `(n,)` int64 slots.
        """
        return self.find_with_priorities(members, u)[0]

    def find_with_priorities(self, members: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`find(members, u)` and the priorities of the slots found, `(n,)` each (one gather, not two)."""
        b = self.block
        cumulative = self._running_total()  # cumulative[k] = the sum of the first k blocks (every member's, joined)
        if self.members == 1:
            first, last, target = 0, self.n_blocks - 1, u
        else:  # u as a point on the members' joined running total
            first, last = self._first_block[members], self._last_block[members]
            target = u + cumulative[first]
        # the block whose running total passes u: searchsorted never returns below `first` (u >= 0), only past
        # the member's last block when rounding puts u at its total
        block = np.searchsorted(cumulative, target, side="right")
        block -= 1
        np.minimum(block, last, out=block)
        left = target - cumulative[block]  # what is left of u inside the block
        rows = self.priorities.reshape(-1, b).take(block, axis=0) @ self._upper  # (n, b) running sums in each block
        mask = self._masks.get(len(u))
        if mask is None:  # (n, b + 1): a last column that stays False, so argmin finds a leaf past the block too
            mask = self._masks[len(u)] = np.zeros((len(u), b + 1), bool)
        np.less_equal(rows, left[:, None], out=mask[:, :b])
        leaf = mask.argmin(axis=1)  # the first leaf whose running sum exceeds `left` (b if none does)
        flat = block * b
        flat += leaf  # the leaf's index in the flat priorities (one past its block if u was at the block's end)
        leaves = self.priorities.reshape(-1)
        if leaf.max() < b:
            p = leaves.take(flat)
            if p.min() > 0:  # the usual case: every draw in its block, at a positive priority
                return (flat - first * b if self.members > 1 else flat), p
        # a leaf past its block (u at or past the member's total, or the block's running sum short of its total by
        # rounding) or of zero priority (a BLAS that adds a row's prefix in another order can leave two running
        # sums around a zero leaf unequal): the nearest slot of positive priority at or before it (the cold path)
        slots = flat - first * b if self.members > 1 else flat
        bad = leaf >= b
        np.minimum(flat, leaves.size - 1, out=flat)
        bad |= leaves[flat] <= 0
        for i in np.flatnonzero(bad):
            s = int(members[i])
            positive = np.flatnonzero(self.priorities[s].reshape(-1) > 0)
            if len(positive):
                slots[i] = positive[max(np.searchsorted(positive, slots[i], side="right") - 1, 0)]
            else:
                slots[i] = 0
        return slots, self.get(members, slots)

    def _running_total(self) -> np.ndarray:
        """`0` then the running total of the joined blocks' totals, `(groups * GROUP + 1,)`: within each group of
        GROUP blocks by one matrix product (as a block's leaves in `find`), then each group's offset, the running
        total of the groups' sums, added on. `np.cumsum` would add the 3,125 totals of a 50,000-slot member one by
        one at about 4.5 ns each; this is a third of that."""
        within = self._cumulative[1:].reshape(self._groups, GROUP)
        np.matmul(self._totals_flat.reshape(self._groups, GROUP), self._upper_group, out=within)
        if self._groups > 1:
            offsets = np.cumsum(within[:-1, -1])
            within[1:] += offsets[:, None]
        return self._cumulative

    def state_dict(self) -> dict[str, np.ndarray]:
        """The leaves, `(S, n_blocks * b)`; the totals are rebuilt from them on load."""
        return {"priorities": self.priorities.reshape(self.members, -1).copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore `state_dict()`, recomputing every total from the leaves."""
        leaves = np.asarray(state["priorities"])
        want = (self.members, self.n_blocks * self.block)
        if leaves.shape != want or leaves.dtype != np.float64 or not (np.isfinite(leaves).all()
                                                                     and (leaves >= 0).all()):
            raise ValueError(f"sum tree priorities must be a finite, non-negative float64 array of shape {want}, "
                             f"got {leaves.shape} {leaves.dtype}")
        self.priorities[...] = leaves.reshape(self.priorities.shape)
        self.totals[...] = block_sums(self.priorities.reshape(-1, self.block)).reshape(self.totals.shape)
