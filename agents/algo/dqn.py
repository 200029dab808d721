"""The DQN agent: an online and a target `dqn_np.MLP`, epsilon-greedy acting, and the TD update.

One update reads top to bottom like the derivation:

    y      = R + discount * Q_target(s', a')                       the TD target, held constant
             (R the k-step discounted reward; discount = gamma^k, or 0 where the episode terminated)
    q      = Q(s, .)                                               the prediction
    delta2 = dL/dq, nonzero only in the column of the action taken
    grads  = backward(delta2); clip; optimizer step

`time_phases` times each of these steps.

A stacked agent (`rng` a list of S Generators) holds S independent agents on stacked networks: every array gains a
leading member axis (`obs: (S, B, obs_dim)`, `q: (S, B, A)`), member s draws its weights and exploration from
`rng[s]` alone, and the loss, clipping and divergence checks run per member. It is the same code with one more axis.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from agents.config import DQNConfig
from agents.data.replay import Batch
from agents.validate import integer, positive_int
from dqn_np import MLP, SGD, Adam, Dueling, Linear
from dqn_np._buffers import BufferCache
from dqn_np._validate import as_2d, as_batch
from dqn_np.losses import TDBuffers, td_loss_unchecked
from dqn_np.optim import FlatClipper

PHASES = ("check", "target", "online_forward", "loss", "backward", "clip", "optimizer", "sync", "metrics")
"""The phases of `DQNAgent.update`, in order, as `time_phases` names them."""


def _no_lap(phase: str | None) -> None:
    """The phase clock while it is off."""


class _PhaseClock:
    """`lap(phase)` adds the seconds since the last lap to `seconds[phase]`; `lap(None)` only restarts."""

    __slots__ = ("seconds", "_t")

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds, self._t = seconds, time.perf_counter()

    def __call__(self, phase: str | None) -> None:
        now = time.perf_counter()
        if phase is not None:
            self.seconds[phase] += now - self._t
        self._t = now


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss, gradient, TD target or Q-value; parameters were left untouched."""


class _UpdateBuffers:
    """The agent's own work arrays for one update of B transitions (the networks keep their activations)."""

    def __init__(self, n: int, n_actions: int, dtype: np.dtype, members: int | None) -> None:
        lead = (n,) if members is None else (members, n)  # (B,), or (S, B) for a stacked agent
        self.a_next = np.empty(lead, dtype=np.int64)  # a'
        self.next_index = np.empty(lead, dtype=np.int64)  # flat index of Q'(s'_i, a'_i)
        self.q_next = np.empty(lead, dtype=dtype)  # Q'(s', a')
        self.td_target = np.empty(lead, dtype=dtype)  # y
        self.td = TDBuffers(n, n_actions, dtype, members)  # the loss's arrays, delta2 among them
        self.stat_sums = np.empty((2, *lead[:-1]), dtype=dtype)  # per member: sums of Q(s, a) and |Q(s, a) - y|


def step_can_overflow(config: DQNConfig, learning_rate: float | None = None) -> bool:
    """Whether one optimizer step from finite parameters and a finite gradient can write a non-finite value.

    With clipping (`max_grad_norm = G > 0`) it cannot, for steps far below the dtype's largest value: SGD moves a
    parameter by at most `lr G / (1 - momentum)` (its velocity sums clipped gradients geometrically); Adam by at
    most about `7.3 lr` with its default betas (by Cauchy-Schwarz, `|m| / sqrt(v) <= (1 - b1) / sqrt(1 - b2) /
    sqrt(1 - b1^2 / b2)`), and its `v` stays below `G^2`. Then `update` skips the backup and the check (about 5% of
    an update at S = 1). Without clipping, or with a step within a millionth of the dtype's range, it guards.
    """
    lr = config.learning_rate if learning_rate is None else learning_rate  # the optimizer's, if changed since
    big = float(np.finfo(config.dtype).max)
    G = config.max_grad_norm
    if G == 0:
        return True
    if config.optimizer == "sgd":
        return not lr * G / (1.0 - config.momentum) < big * 1e-6  # `not <`: an inf or NaN lr guards too
    limit = big * 1e-6
    return not (10.0 * lr < limit and abs(G) < math.sqrt(limit))


def _restore(arrays: dict[str, np.ndarray], names: list[str], saved: np.ndarray | None,
             members: np.ndarray | slice) -> None:
    """Put `members` of every `arrays[name]` back from `saved`, their flat copy in `names` order (None: zeros)."""
    offset = 0
    for k in names:
        v = arrays[k]
        v[members] = 0 if saved is None else saved[offset:offset + v.size].reshape(v.shape)[members]
        offset += v.size


class DQNAgent:
    """Deep Q-network agent on a flat observation vector and `n_actions` discrete actions.

    Public methods check their inputs once; inside `update` and `act` the networks take their unchecked route,
    with activations, deltas and TD arrays preallocated per batch size.

    Args:
        obs_dim: length of an observation.
        n_actions: number of discrete actions.
        config: the hyperparameters.
        rng: draws the initial weights and, afterwards, exploration; a list of S Generators makes a stacked agent of
            S members, member s drawing exactly what an unstacked agent given `rng[s]` draws.

    Attributes:
        members: S for a stacked agent, None otherwise.

    Example:
        >>> import numpy as np
        >>> agent = DQNAgent(4, 2, DQNConfig(hidden_sizes=(16,)), np.random.default_rng(0))
        >>> agent.q_values(np.zeros(4)).shape, agent.act(np.zeros(4), epsilon=0.0) in (0, 1)
        ((2,), True)
        >>> agent.act(np.zeros((3, 4)), epsilon=0.5).shape  # E = 3 environments at once
        (3,)
    """

    @staticmethod
    def nbytes_for(obs_dim: int, n_actions: int, config: DQNConfig, members: int = 1) -> int:
        """About the bytes `members` members of this agent take: per member its parameters eight times over (the
        online network and its gradients, the target, Adam's two moments, clipping and step scratch) and the
        activations of three forward passes and one backward pass on a batch. An estimate to refuse a network too
        large for memory before allocating it (numpy would fail part-way, or the kernel kill the process)."""
        sizes = (int(obs_dim), *map(int, config.hidden_sizes), int(n_actions) + (1 if config.dueling else 0))
        n_params = sum((n_in + 1) * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True))
        activations = 8 * config.batch_size * sum(sizes)
        return int(members) * (8 * n_params + activations) * np.dtype(config.dtype).itemsize

    def __init__(self, obs_dim: int, n_actions: int, config: DQNConfig, rng: np.random.Generator) -> None:
        if not isinstance(config, DQNConfig):
            raise TypeError(f"config must be a DQNConfig, got {type(config).__name__}")
        self.config = config
        self.obs_dim, self.n_actions = positive_int("obs_dim", obs_dim), positive_int("n_actions", n_actions)
        self.rng = rng
        self.online = MLP((self.obs_dim, *config.hidden_sizes, self.n_actions), rng=rng, dtype=config.dtype,
                          head=Dueling if config.dueling else Linear)
        self.members = self.online.members
        self.target = self.online.clone()  # starts equal to the online network, with its own buffers
        self.optimizer: Adam | SGD = (
            Adam(config.learning_rate) if config.optimizer == "adam" else SGD(config.learning_rate, config.momentum)
        )
        self.n_updates = 0
        self._frozen: dict[str, np.ndarray] | None = None  # stopped members' state, put back after every step
        self.frozen = np.zeros(self.members or 0, bool)
        self.frozen_at: dict[int, int] = {}  # member -> the update on which `update` found it non-finite
        dtype = self.online.dtype
        self._buffers = BufferCache(lambda n: _UpdateBuffers(n, self.n_actions, dtype, self.members))
        self._pre: list[np.ndarray] = []  # flat parameters and optimizer slots before the last step
        self._guard_lr = config.learning_rate
        self._guard_step = step_can_overflow(config)
        # per-member clipping reads these views; an unstacked agent is one member (the same sums, the same bits)
        grads = tuple(self.online.grads.values())
        self._grad_arrays = grads if self.members is not None else tuple(g[None] for g in grads)
        self._clip = FlatClipper(self._grad_arrays, self.online.flat_grads)  # one pass over the flat gradient
        self._max_norm = config.max_grad_norm or math.inf  # 0 disables clipping; the norm is still measured
        self.phase_seconds: dict[str, float] | None = None  # seconds per phase of `update`, while `time_phases` is on
        self._lap: Callable[[str | None], None] = _no_lap

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """Online Q-values: `obs: (obs_dim,)` -> `(A,)`, or `(B, obs_dim)` -> `(B, A)`; a new array."""
        obs = np.asarray(obs, dtype=self.online.dtype)
        if obs.ndim == 1:
            return self.online.forward(obs[None, :])[0]
        return self.online.forward(obs)

    def act(self, obs: np.ndarray, epsilon: float) -> int | np.ndarray:
        """Epsilon-greedy actions: uniform with probability epsilon, else argmax Q.

        Args:
            obs: one observation `(obs_dim,)`, or one per environment `(E, obs_dim)`; finite.
            epsilon: the exploration probability.

        Returns:
            An int for `(obs_dim,)` (one uniform draw, then one integer draw if it explores: the stream of earlier
            versions); `(E,)` int64 for `(E, obs_dim)`: `rng.random(E) < epsilon` picks the exploring envs, then
            `rng.integers(A, size=k)` their actions, and one forward pass the greedy ones. A stacked agent takes
            `(S, E, obs_dim)` and returns `(S, E)`: member s makes exactly those draws from `rng[s]`.

        Raises:
            ValueError: `obs` has another shape or is not finite.
        """
        obs = np.asarray(obs, dtype=self.online.dtype)
        if self.members is not None:  # one member's non-finite observations are its own affair (its loop stops it)
            return self._act_members(as_batch("obs", obs, self.obs_dim, None, self.members, finite=False), epsilon)
        if obs.ndim == 1:
            x = as_2d("obs", obs[None, :], self.obs_dim)  # (1, obs_dim)
            if self.rng.random() < epsilon:
                return int(self.rng.integers(self.n_actions))
            return int(self.online.forward_unchecked(x).argmax())
        obs = as_2d("obs", obs, self.obs_dim)  # (E, obs_dim)
        explore = self.rng.random(len(obs)) < epsilon  # one uniform per environment
        k = int(np.count_nonzero(explore))
        actions = np.empty(len(obs), dtype=np.int64)
        if k < len(obs):
            self.online.forward_unchecked(obs).argmax(axis=1, out=actions)  # greedy for every env; some replaced
        if k:
            actions[explore] = self.rng.integers(self.n_actions, size=k)
        return actions

    def _act_members(self, obs: np.ndarray, epsilon: float) -> np.ndarray:
        """`act` for a stacked agent: `obs: (S, E, obs_dim)` -> `(S, E)`; one forward pass for all members."""
        S, E = obs.shape[:2]
        explore = (self.rng[0].random(E)[None] < epsilon if S == 1 else  # (S, E): one uniform per env, per member
                   np.stack([rng.random(E) < epsilon for rng in self.rng]))
        actions = np.empty((S, E), dtype=np.int64)
        if not explore.all():
            self.online.forward_unchecked(obs).argmax(axis=-1, out=actions)
        for s in np.flatnonzero(explore.any(axis=1)):
            actions[s, explore[s]] = self.rng[s].integers(self.n_actions, size=int(np.count_nonzero(explore[s])))
        return actions

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """argmax_a Q(obs, a) for `obs: (E, obs_dim)` -> `(E,)` int64 (stacked: `(S, E, obs_dim)` -> `(S, E)`).

        One forward pass; draws nothing. As in `act`, a stacked agent does not refuse one member's non-finite input.
        """
        obs = as_batch("obs", np.asarray(obs, dtype=self.online.dtype), self.obs_dim, None, self.members,
                       finite=False)
        return self.online.forward_unchecked(obs).argmax(axis=-1)

    def td_targets(self, batch: Batch) -> np.ndarray:
        """`y = R + discount * Q_target(s', a')`, shape `(B,)` (stacked: `(S, B)`), treated as a constant; a new array.

        For one step, `discount = gamma * (1 - terminated)`: the familiar `y = r + gamma (1 - terminated) Q'`.
        With Double DQN, `a' = argmax_a Q_online(s', a)`; otherwise `a' = argmax_a Q_target(s', a)`.
        Truncated transitions keep `discount = gamma^k`, so they bootstrap.
        """
        batch = self._check_batch(batch)
        return self._td_targets(batch, self._buffers.get(batch.actions.shape[-1])).copy()

    def _td_targets(self, batch: Batch, bufs: _UpdateBuffers) -> np.ndarray:
        q_next_target = self.target.forward_unchecked(batch.next_obs)  # Q'(s', .): (B, A), stacked (S, B, A)
        if self.config.double_dqn:  # the online net picks a'; this pass on s' must precede the one on s (same buffers)
            self.online.forward_unchecked(batch.next_obs).argmax(axis=-1, out=bufs.a_next)
        else:
            q_next_target.argmax(axis=-1, out=bufs.a_next)
        np.add(bufs.td.row_offsets, bufs.a_next, out=bufs.next_index)
        q_next = q_next_target.take(bufs.next_index, out=bufs.q_next, mode="clip")  # Q'(s', a'): (B,) or (S, B)
        td_target = np.multiply(batch.discounts, q_next, out=bufs.td_target)
        td_target += batch.rewards  # y = R + discount * Q'(s', a'); discount = 0 where the episode terminated
        return td_target

    def compute_gradients(self, batch: Batch) -> tuple[float, np.ndarray, np.ndarray]:
        """Target, prediction, loss and backward: fills `online.grads` with dL/dtheta and changes no parameter.

        Returns:
            The loss, `Q(s, a)` of the actions taken `(B,)`, and the TD targets `(B,)` (new arrays).

        Raises:
            DivergenceError: a TD target, Q-value or the loss is not finite.
        """
        batch = self._check_batch(batch)
        bufs = self._buffers.get(batch.actions.shape[-1])
        loss, q = self._gradients(batch, bufs, _no_lap)
        if not (np.isfinite(loss).all() and math.isfinite(np.add.reduce(q, axis=None))):
            raise self._divergence(bufs, q, loss, 0.0)
        return loss, bufs.td.q_taken.copy(), bufs.td_target.copy()

    def _gradients(self, batch: Batch, bufs: _UpdateBuffers,
                   lap: Callable[[str | None], None]) -> tuple[float, np.ndarray]:
        cfg = self.config
        td_target = self._td_targets(batch, bufs)  # y, constant: no gradient flows into the target network
        lap("target")
        q = self.online.forward_unchecked(batch.obs)  # Q(s, .): (B, A), caches activations for backward
        lap("online_forward")
        if batch.weights is None:
            loss, delta2 = td_loss_unchecked(q, batch.actions, td_target, cfg.loss, cfg.huber_delta, bufs.td)
        else:  # per-sample weights w_i (importance sampling): L = (1/B) sum_i w_i l(Q(s_i, a_i) - y_i)
            loss, delta2 = td_loss_unchecked(q, batch.actions, td_target, cfg.loss, cfg.huber_delta, bufs.td,
                                             weights=batch.weights)
        lap("loss")
        self.online.backward_unchecked(delta2)  # delta2 = dL/dQ is nonzero only in the taken action's column
        lap("backward")
        return loss, q

    def time_phases(self, on: bool = True) -> dict[str, float] | None:
        """Switch `update`'s phase clock on (every counter back to zero) or off; returns `phase_seconds`.

        While it is on, `phase_seconds[p]` accumulates the wall seconds that updates spend in each phase p of
        `PHASES`: `check` (the batch's shapes, the divergence checks), `target` (y: the target pass on s', and with
        Double DQN the online pass on s' that picks a'), `online_forward` (the pass on s), `loss` (the TD loss and
        delta2), `backward`, `clip` (per-member norms and clipping), `optimizer` (the step, and its guard where the
        config needs one), `sync` (the target update, frozen members put back) and `metrics`. Off, the clock costs
        one no-op call per phase (about 0.05 µs each).
        """
        if on:
            self.phase_seconds = dict.fromkeys(PHASES, 0.0)
            self._lap = _PhaseClock(self.phase_seconds)
        else:
            self._lap = _no_lap
        return self.phase_seconds

    def update(self, batch: Batch) -> dict[str, Any]:
        """One gradient step on a batch; returns metrics `loss`, `q_mean`, `grad_norm`, `td_abs`, and `td_errors`.

        `td_errors` is the per-sample `|Q(s_i, a_i) - y_i|`, `(B,)` (stacked `(S, B)`), the magnitudes a prioritized
        replay turns into priorities: a view of the agent's buffer, valid until the next update. If the batch carries
        `weights`, each sample's loss is weighted by it.

        A stacked agent returns each metric as `(S,)`, plus `finite: (S,)` bool: a member whose TD target, Q-value,
        loss or gradient is not finite is frozen (`freeze`) before the optimizer step, so neither this step nor any
        later one changes its parameters, target or optimizer state; no other member notices. Where the config
        lets a step overflow a parameter from a finite gradient (`step_can_overflow`), the step is checked too: a
        member it broke is put back bit for bit and frozen the same way.

        `time_phases` times the phases below (each `lap` closes one).

        Raises:
            ValueError: the batch's arrays do not have the shapes of B transitions for this agent.
            DivergenceError: (unstacked) a TD target, Q-value, loss or gradient is not finite; no parameter is
                changed.
        """
        lap = self._lap
        lap(None)  # the clock starts (a no-op unless `time_phases` is on)
        batch = self._check_batch(batch)
        n = batch.actions.shape[-1]
        bufs = self._buffers.get(n)
        lap("check")
        loss, q = self._gradients(batch, bufs, lap)
        # Clipping bounds the step when one TD error is huge; each member by its own norm (an unstacked agent is one).
        norms = self._clip(self._max_norm)
        lap("clip")
        if self.members is None:
            grad_norm = float(norms[0])
            # A non-finite y or Q(s, a) makes the loss non-finite; the sum catches Q of actions not taken.
            if not (math.isfinite(loss) and math.isfinite(grad_norm) and math.isfinite(np.add.reduce(q, axis=None))):
                raise self._divergence(bufs, q, loss, grad_norm)
        else:
            grad_norm = norms  # (S,)
            # finite iff all three are: the float64 sum of finite parts overflows only near 1e308, long diverged
            finite = np.isfinite(np.add.reduce(q, axis=(1, 2)) + loss + grad_norm)
            if not finite.all() and not finite[~self.frozen].all():  # freeze before the step: it must not move them
                newly = np.flatnonzero(~finite & ~self.frozen)
                self.frozen_at.update({int(s): self.n_updates + 1 for s in newly})
                self.freeze(newly)
            if self._frozen is not None:
                for g in self._grad_arrays:
                    g[self.frozen] = 0.0  # a diverged or stopped member takes no gradient; the others go on untouched
        lap("check")
        if self.optimizer.lr != self._guard_lr:  # the step size was changed from outside: judge it again
            self._guard_lr = self.optimizer.lr
            self._guard_step = step_can_overflow(self.config, self._guard_lr)
        if self._guard_step:
            self._save_pre_step()
        self.optimizer.step_unchecked(self.online.params, self.online.grads)
        # A finite gradient can still overflow a parameter (a huge step): where the config allows it, check the step.
        if self._guard_step and not self._step_was_finite():
            newly = self._undo_non_finite_step()  # raises for an unstacked agent
            finite[newly] = False
        lap("optimizer")
        self.n_updates += 1
        if self.n_updates % self.config.target_update_interval == 0:
            self.sync_target()  # the target moves only every so often, which keeps y still
        if self._frozen is not None:
            self._restore_frozen()
        lap("sync")
        sums = np.add.reduce(bufs.td.stats, axis=-1, out=bufs.stat_sums)  # one reduction: Q(s, a) and |TD error|
        if self.members is None:
            q_sum, td_abs_sum = sums.tolist()
            metrics = {"loss": loss, "q_mean": q_sum / n, "grad_norm": grad_norm, "td_abs": td_abs_sum / n,
                       "td_errors": bufs.td.abs_error}
        else:
            means = sums / n  # (2, S), a new array: the metrics outlive the buffers
            metrics = {"loss": loss, "q_mean": means[0], "grad_norm": grad_norm, "td_abs": means[1],
                       "finite": finite, "td_errors": bufs.td.abs_error}
        lap("metrics")
        return metrics

    def _save_pre_step(self) -> None:
        """Copy the flat parameters and optimizer slots into `_pre` (a few memcpy's; what a non-finite step undoes).

        Slots that do not exist yet (before the first step) are not copied: the undo puts zeros back.
        """
        slots = self.optimizer.flat_slots()
        if not slots:  # not fused yet (a new or just loaded optimizer): lay its slots out the fused way, once
            names = list(self.online.params)
            slots = [np.concatenate([self.optimizer.state[slot][k].ravel() for k in names])
                     for slot in self.optimizer.slots if len(self.optimizer.state[slot]) == len(names)]
        flats = [self.online.flat_params, *slots]
        if [f.shape for f in self._pre] != [f.shape for f in flats]:
            self._pre = [np.empty_like(f) for f in flats]
        for saved, flat in zip(self._pre, flats, strict=True):
            np.copyto(saved, flat)

    def _step_was_finite(self) -> bool:
        """One sum per flat buffer: finite unless a value is not (or, rarely, the sum overflows: the cold path
        then looks member by member)."""
        return all(math.isfinite(np.add.reduce(f)) for f in (self.online.flat_params, *self.optimizer.flat_slots()))

    def _undo_non_finite_step(self) -> np.ndarray:
        """The cold path after a step that wrote a non-finite value: put back the members it broke and freeze them.

        Returns:
            The members (stacked) newly frozen; an unstacked agent is restored whole and raises DivergenceError.
        """
        names = list(self.online.params)
        slots = self.optimizer.flat_slots()
        live = [(self.online.params, self._pre[0])]  # (arrays by name, their pre-step flat copy)
        live += [(self.optimizer.state[slot], self._pre[1 + i] if 1 + i < len(self._pre) else None)
                 for i, slot in enumerate(self.optimizer.slots) if i < len(slots)]
        if self.members is None:
            for arrays, saved in live:
                _restore(arrays, names, saved, slice(None))
            self.optimizer.t -= 1
            raise DivergenceError(f"non-finite parameters after the optimizer step at update {self.n_updates + 1} "
                                  f"(gradient finite, norm within max_grad_norm; is the learning rate "
                                  f"{self.config.learning_rate} too large?); the step was undone")
        bad = np.zeros(self.members, bool)
        for arrays, _saved in live:
            for k in names:
                bad |= ~np.isfinite(arrays[k].reshape(self.members, -1)).all(axis=1)
        newly = np.flatnonzero(bad & ~self.frozen)
        if newly.size:
            for arrays, saved in live:
                _restore(arrays, names, saved, newly)
            self.frozen_at.update({int(s): self.n_updates + 1 for s in newly})
            self.freeze(newly)  # snapshots the restored state (the target has not been synced from the step)
        return newly

    def _check_batch(self, batch: Batch) -> Batch:
        """Check B transitions' shapes once, at the boundary; cast observations to the networks' dtype if needed."""
        obs, actions, rewards, next_obs, discounts = batch[:5]
        n_rows = actions.shape
        want = (*n_rows, self.obs_dim)
        lead = "B" if self.members is None else f"{self.members}, B"
        if (len(n_rows) != (1 if self.members is None else 2) or n_rows[-1] == 0
                or (self.members is not None and n_rows[0] != self.members) or obs.shape != want
                or next_obs.shape != want or rewards.shape != n_rows or discounts.shape != n_rows):
            got = {k: np.shape(v) for k, v in zip(Batch._fields, batch, strict=True) if v is not None}
            raise ValueError(f"batch must hold B >= 1 transitions: obs and next_obs ({lead}, {self.obs_dim}), "
                             f"actions, rewards and discounts ({lead}); got shapes {got}")
        if actions.dtype.kind not in "iu":
            raise ValueError(f"batch.actions must be integers, got dtype {actions.dtype}")
        dtype = self.online.dtype
        if obs.dtype != dtype or next_obs.dtype != dtype:
            batch = batch._replace(obs=obs.astype(dtype), next_obs=next_obs.astype(dtype))
        return batch

    def _divergence(self, bufs: _UpdateBuffers, q: np.ndarray, loss: float, grad_norm: float) -> DivergenceError:
        """Name what went non-finite first (the cold path: only after a failed check)."""
        if not np.isfinite(bufs.td_target).all():
            what = "TD target"
        elif not np.isfinite(q).all():
            what = "Q-value"
        else:
            what = "loss" if not math.isfinite(loss) else "gradient"
        return DivergenceError(f"non-finite {what} at update {self.n_updates + 1} (loss={loss}, grad_norm={grad_norm})")

    def sync_target(self) -> None:
        """Target update: a copy of the online network when `tau == 1`, else `theta' <- tau theta + (1-tau) theta'`."""
        self.target.soft_update_from(self.online, self.config.tau)

    # --- state ----------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything the agent holds: parameters, target parameters, optimizer state, update count and the state of
        its exploration generator(s) (keys `online.W1`, ..., `optim.m.W1`, ..., `rng`: one state, or one per
        member), as arrays and JSON values."""
        state: dict[str, Any] = {"agent.n_updates": np.array(self.n_updates, dtype=np.int64)}
        state.update({f"online.{k}": v.copy() for k, v in self.online.params.items()})
        state.update({f"target.{k}": v.copy() for k, v in self.target.params.items()})
        state.update({f"optim.{k}": v for k, v in self.optimizer.state_dict().items()})
        state["rng"] = (self.rng.bit_generator.state if self.members is None
                        else [g.bit_generator.state for g in self.rng])
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict()` returned (shapes must match this agent's networks); a state without `rng`
        (a model file of format 1) leaves the generators as they are."""
        self.online.load_params(_strip(state, "online."))
        self.target.load_params(_strip(state, "target."))
        self.optimizer.load_state_dict(_strip(state, "optim."))
        self.n_updates = int(state["agent.n_updates"])
        rng = state.get("rng")
        if rng is not None and self.members is None:
            self.rng.bit_generator.state = rng
        elif rng is not None:
            if len(rng) != self.members:
                raise ValueError(f"state['rng'] holds {len(rng)} generator states for {self.members} members")
            for g, g_state in zip(self.rng, rng, strict=True):
                g.bit_generator.state = g_state

    def freeze(self, members: np.ndarray | list[int]) -> None:
        """Stop members of a stacked agent: from now on their networks and optimizer state never change (each
        update puts them back), so a diverged member keeps the last parameters it had, and its checkpoint loads."""
        self.frozen[np.asarray(members, dtype=np.int64)] = True
        idx = np.flatnonzero(self.frozen)
        self._frozen = {"idx": idx,
                        **{f"online.{k}": v[idx].copy() for k, v in self.online.params.items()},
                        **{f"target.{k}": v[idx].copy() for k, v in self.target.params.items()},
                        **{f"{slot}.{k}": v[idx].copy() for slot, arrays in self.optimizer.state.items()
                           for k, v in arrays.items()}}

    def _restore_frozen(self) -> None:
        frozen = self._frozen
        idx = frozen["idx"]
        for prefix, arrays in (("online", self.online.params), ("target", self.target.params),
                               *self.optimizer.state.items()):
            for k, v in arrays.items():
                saved = frozen.get(f"{prefix}.{k}")  # optimizer slots exist only after the first step
                if saved is not None:
                    v[idx] = saved

    def member(self, s: int) -> DQNAgent:
        """Member s of a stacked agent as an unstacked agent: copies of its networks, optimizer state, update count
        and exploration generator state, so `member(s).save(path)` writes the file a single run would."""
        if self.members is None:
            raise ValueError("member() needs a stacked agent; this one has no member axis")
        s = integer("s", s, 0, self.members - 1)
        rng = np.random.default_rng(0)  # takes member s's state after the constructor's init draws
        single = DQNAgent(self.obs_dim, self.n_actions, self.config, rng)  # its init draws are overwritten below
        rng.bit_generator.state = self.rng[s].bit_generator.state
        single.online.load_params({k: v[s] for k, v in self.online.params.items()})
        single.target.load_params({k: v[s] for k, v in self.target.params.items()})
        optim = {f"{slot}.{name}": a[s] for slot, arrays in self.optimizer.state.items() for name, a in arrays.items()}
        single.optimizer.load_state_dict({"t": np.array(self.optimizer.t, np.int64), **optim})
        single.n_updates = self.n_updates
        return single

    def save(self, path: str | Path, meta: dict | None = None) -> Path:
        """Write the agent to a model file (`agents.run.models.save_agent`: one `.npz`, written atomically)."""
        from agents.run.models import save_agent  # the file format lives with the run folders, not the agent

        return save_agent(self, path, meta)

    @classmethod
    def load(cls, path: str | Path) -> DQNAgent:
        """An agent from a model file or a training checkpoint, of any format version (`agents.run.models`)."""
        from agents.run.models import load_agent

        return load_agent(path)


def _strip(state: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}

