"""Proportional prioritized experience replay (Schaul et al., 2016) for S members at once.

Member s samples slot i with probability `P(i) = p_i / sum_j p_j`, where `p_i = (|delta_i| + eps)^alpha` is set from
the TD error of the last update that sampled it, and a new transition gets the largest priority its member has
seen, so it is sampled at least once soon. The bias this introduces is corrected by importance-sampling weights

    w_i = (N P(i))^-beta / max_j (N P(j))^-beta        N = transitions stored, beta annealed from beta_0 to 1

which ride in on the batch (`Batch.weights`) into the weighted TD loss. The maximum is taken over the sampled batch,
not the whole buffer: the buffer's maximum weight belongs to its lowest-priority slot, which needs a second (min)
tree to find at every step, while the batch's is one `max` over B numbers; both bound the weights by 1, so the step
size never grows, and the batch's is the one most implementations (and the paper's Algorithm 1, which divides by
`max_i w_i` over the sampled i) use.

Sampling is stratified: member s's B draws are `u_j = (j + U_j) T_s / B` for `j = 0 .. B-1`, `U_j` uniform from its
own generator, `T_s` its total priority, so every batch spans the whole priority mass. Every member's draws are
found in one pass over the stacked sum tree (`agents.data.sumtree.SumTree`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from agents.data.replay import Batch, MemberReplay
from agents.data.sumtree import SumTree
from agents.validate import real


class PrioritizedReplay(MemberReplay):
    """S members' replay buffers sampled in proportion to their transitions' priorities.

    Args:
        capacity, obs_dim, rngs, dtype: as for `MemberReplay`.
        alpha: how much prioritization is used, in [0, 1] (0 is uniform).
        beta: the importance-sampling exponent at the start of the run, in [0, 1]; `set_progress` anneals it
            linearly to 1 at the end.
        eps: added to every |TD error| (> 0), so no transition's probability falls to zero.

    Attributes:
        beta: the importance-sampling exponent of the next `sample`.
        tree: the stacked sum tree of the priorities `p_i = (|delta_i| + eps)^alpha`.
        max_priority: `(S,)` the largest priority each member has seen (new transitions get it).
    """

    def __init__(self, capacity: int, obs_dim: int, rngs: list[np.random.Generator],
                 dtype: npt.DTypeLike = np.float32, *, alpha: float = 0.6, beta: float = 0.4,
                 eps: float = 1e-6) -> None:
        super().__init__(capacity, obs_dim, rngs, dtype)
        self.alpha, self.beta0, self.eps = real("alpha", alpha), real("beta", beta), real("eps", eps)
        for name, value in (("alpha", self.alpha), ("beta", self.beta0)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if not self.eps > 0.0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.beta = self.beta0
        self.tree = SumTree(self.members, capacity)
        self.max_priority = np.ones(self.members)
        self._cache: dict[tuple, tuple] = {}  # (B, live mask) -> what `_work` returns
        self._rows: dict[int, np.ndarray] = {}  # B -> (S, B) rows of the merged arrays
        self._first_row_col = np.array(self._first_rows, np.int64)[:, None]  # (S, 1) member s's first row

    def write(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
              discounts: np.ndarray, members: np.ndarray) -> None:
        """Store k transitions (as `MemberReplay.write`), each with its member's largest priority so far."""
        counts = np.bincount(members, minlength=self.members)
        slots, owners = [], []
        for s in np.flatnonzero(counts):  # the slots each member's rows land in, oldest first
            buf, k = self.buffers[s], int(counts[s])
            slots.append((buf._pos + np.arange(max(0, k - self.capacity), k)) % self.capacity)
            owners.append(np.full(len(slots[-1]), s))
        super().write(obs, actions, rewards, next_obs, discounts, members)
        owners_flat = np.concatenate(owners)
        self.tree.set(owners_flat, np.concatenate(slots), self.max_priority[owners_flat])

    def sample(self, batch_size: int, out: Batch) -> Batch:
        """B transitions per member, slot i with probability `P(i)`; `out.weights` `(S, B)` and `out.indices`
        `(S, B)` are filled too. A stopped member draws nothing and keeps its last batch."""
        B = batch_size
        live, u, members, strata = self._work(B)
        if len(live):
            for row, s in zip(u, live, strict=True):
                self.buffers[s].rng.random(out=row)  # U_j, each member from its own generator
            u += strata
            if self.members == 1:  # stratified: draw j lies in [j T / B, (j + 1) T / B)
                u *= self.tree.totals.sum() * (1.0 / B)
            else:
                u *= (self.tree.total()[live] * (1.0 / B))[:, None]
            slots, p = self.tree.find_with_priorities(members, u.reshape(-1))
            p = p.reshape(len(live), B)
            # w_i = (N P(i))^-beta / max_j (N P(j))^-beta = (min_j p_j / p_i)^beta: N and the total cancel per member
            weights = np.divide(p.min(axis=1, keepdims=True), p, out=p)
            weights **= self.beta
            if len(live) == self.members:  # everyone draws (the usual case): plain copies, no fancy indexing
                np.copyto(out.weights, weights, casting="same_kind")
                np.copyto(out.indices, slots.reshape(len(live), B))
            else:
                out.weights[live] = weights
                out.indices[live] = slots.reshape(len(live), B)
        rows = self._rows.get(B)
        if rows is None:
            rows = self._rows[B] = np.empty((self.members, B), np.int64)
        idx = np.add(out.indices, self._first_row_col, out=rows)  # rows of the merged (S * capacity) arrays
        for ring, dest in zip(self._flat, out[:5], strict=True):
            np.take(ring, idx, axis=0, out=dest)
        return out

    def _work(self, B: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The live members and, for B draws each, the `(S_live, B)` draw buffer, the `(S_live * B,)` member of each
        draw and the `(B,)` strata `0 .. B-1`; rebuilt only when B or the set of live members changes."""
        key = (B, self.active.tobytes())
        cached = self._cache.get(key)
        if cached is None:
            live = np.flatnonzero(self.active)
            cached = self._cache[key] = (live, np.empty((len(live), B)), np.repeat(live, B),
                                         np.arange(B, dtype=np.float64))
        return cached

    def empty_batch(self, batch_size: int) -> Batch:
        """`MemberReplay.empty_batch` with `weights` `(S, B)` and `indices` `(S, B)` arrays too."""
        S, B = self.members, batch_size
        return super().empty_batch(B)._replace(weights=np.ones((S, B), self.dtype),
                                               indices=np.zeros((S, B), np.int64))

    def set_progress(self, fraction: float) -> None:
        """Anneal beta linearly from its start to 1 as the run goes from 0 to 1 (`fraction` of its total steps)."""
        self.beta = self.beta0 + (1.0 - self.beta0) * min(max(fraction, 0.0), 1.0)

    def update_priorities(self, batch: Batch, td_errors: np.ndarray) -> None:
        """Set the sampled transitions' priorities to `(|delta| + eps)^alpha` (active members only; a stopped
        member's tree is frozen); a slot sampled twice keeps its last row's."""
        B = td_errors.shape[-1]
        live, _, members, _ = self._work(B)
        if not len(live):
            return
        everyone = len(live) == self.members
        priorities = np.abs(td_errors if everyone else td_errors[live], dtype=np.float64)  # (S_live, B)
        priorities += self.eps
        priorities **= self.alpha  # (|delta| + eps)^alpha
        slots = batch.indices if everyone else batch.indices[live]
        if self.members == 1:  # a single run: one largest priority, compared as a Python float
            top1 = float(priorities.max())
            if top1 < math.inf:  # False for inf and NaN: the update diverged, the loop stops the run
                self.tree.set(members, slots.reshape(-1), priorities.reshape(-1))
                if top1 > self.max_priority[0]:
                    self.max_priority[0] = top1
            return
        top = priorities.max(axis=1)  # NaN or inf if a member's update diverged
        if not np.isfinite(top).all():  # a member diverged on this update: the loop stops it; its tree keeps what
            keep = np.isfinite(priorities).all(axis=1)  # it had
            live, priorities, slots, top = live[keep], priorities[keep], slots[keep], top[keep]
            members, everyone = np.repeat(live, B), False
        self.tree.set(members, slots.reshape(-1), priorities.reshape(-1))
        if everyone:
            np.maximum(self.max_priority, top, out=self.max_priority)
        else:
            self.max_priority[live] = np.maximum(self.max_priority[live], top)

    def state_dict(self, include_replay: bool = True) -> dict[str, Any]:
        """`MemberReplay.state_dict` plus the priorities (the sum tree's leaves) and each member's maximum."""
        state = super().state_dict(include_replay)
        if include_replay:
            state["priorities"] = self.tree.state_dict()["priorities"]
            state["max_priority"] = self.max_priority.copy()
        return state

    def _like(self, rngs: list[np.random.Generator]) -> PrioritizedReplay:
        out = PrioritizedReplay(self.capacity, self.obs_dim, rngs, self.dtype, alpha=self.alpha, beta=self.beta0,
                                eps=self.eps)
        out.beta = self.beta  # annealed so far
        return out

    def _select_state(self, state: dict[str, Any], members: np.ndarray) -> dict[str, Any]:
        out = super()._select_state(state, members)
        if "priorities" in state:
            out["priorities"] = state["priorities"][members]
            out["max_priority"] = state["max_priority"][members]
        return out

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        """Restore `state_dict()`; without the buffers the priorities start afresh too."""
        if not super().load_state_dict(state):
            return False
        self.tree.load_state_dict({"priorities": state["priorities"]})
        self.max_priority[...] = np.asarray(state["max_priority"], np.float64)
        return True
