"""Optimizers that update parameters in place, and global-norm gradient clipping.

State is kept per parameter name (`"W1"`, `"b2"`, ...), so one optimizer serves one network, and
`state_dict()` / `load_state_dict()` give plain arrays for checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Params = dict[str, np.ndarray]


def _check_lr(lr: float) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating)) or not np.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    return float(lr)


def _check_grads(params: Params, grads: Params) -> None:
    if grads.keys() != params.keys():
        raise ValueError(f"grads must have the keys of params {sorted(params)}, got {sorted(grads)}")


class _Optimizer:
    """What the optimizers share: the step count `t`, one state array per (slot, parameter name), and the fused path.

    When the parameters and the gradients are consecutive views of one flat buffer each (as an `MLP`'s are), the
    state is laid out the same way and one update rule runs on the whole buffer: a handful of NumPy calls per step
    instead of a handful per parameter. Any other dict of arrays takes the per-parameter path, with the same rule.
    """

    slots: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.t = 0
        self.state: dict[str, Params] = {slot: {} for slot in self.slots}
        self._fused: tuple | None = None  # (param arrays, grad arrays, flat params, flat grads, flat slots, scratch)
        self._fused_dicts: tuple[Params, Params] | None = None  # the dicts the fused layout was built from

    def step(self, params: Params, grads: Params) -> None:
        """Update every `params[name]` in place from `grads[name]`."""
        _check_grads(params, grads)
        self._step(params, grads)

    def step_unchecked(self, params: Params, grads: Params) -> None:
        """`step` for an owner that always passes the same two dicts of fixed arrays (an `MLP`'s `params`, `grads`).

        Given the very dicts of the last step, it skips the key check and the per-array layout check and runs the
        fused update on the flat buffers directly; anything else takes `step`'s route.
        """
        dicts = self._fused_dicts
        if self._fused is not None and dicts is not None and params is dicts[0] and grads is dicts[1]:
            self.t += 1
            self._update(*self._fused[2:])
            return
        self.step(params, grads)

    def flat_slots(self) -> list[np.ndarray]:
        """The fused state: one flat buffer per slot (in `slots` order, parameters in their dict's order), of which
        every `state[slot][name]` is a view; `[]` before the first fused step or on the per-parameter path."""
        return [] if self._fused is None else self._fused[4]

    def _step(self, params: Params, grads: Params) -> None:
        self.t += 1
        fused = self._fuse(params, grads)
        if fused is not None:
            flat_p, flat_g, flat_slots, scratch = fused
            self._update(flat_p, flat_g, flat_slots, scratch)
            return
        for name, p in params.items():
            self._update(p, grads[name], [self._slot(slot, name, p) for slot in self.slots], np.empty_like(p))

    def _update(self, p: np.ndarray, g: np.ndarray, slots: list[np.ndarray], scratch: np.ndarray) -> None:
        raise NotImplementedError

    def _slot(self, slot: str, name: str, like: np.ndarray) -> np.ndarray:
        buf = self.state[slot].get(name)
        if buf is None:
            buf = self.state[slot][name] = np.zeros_like(like)
        return buf

    def _fuse(self, params: Params, grads: Params) -> tuple | None:
        p_arrays = tuple(params.values())
        g_arrays = tuple(grads[name] for name in params)
        cached = self._fused
        if cached is not None and _same(cached[0], p_arrays) and _same(cached[1], g_arrays):
            self._fused_dicts = (params, grads)
            return cached[2:]
        flat_p, flat_g = _tiled(p_arrays), _tiled(g_arrays)
        if flat_p is None or flat_g is None or flat_p.dtype != flat_g.dtype:
            self._fused = self._fused_dicts = None
            return None
        flat_slots = []
        for slot in self.slots:  # re-lay the state (zeros, or what was restored) as views of one buffer
            flat = np.concatenate([self._slot(slot, name, p).ravel() for name, p in params.items()])
            offset = 0
            for name, p in params.items():
                self.state[slot][name] = flat[offset:offset + p.size].reshape(p.shape)
                offset += p.size
            flat_slots.append(flat)
        self._fused = (p_arrays, g_arrays, flat_p, flat_g, flat_slots, np.empty_like(flat_p))
        self._fused_dicts = (params, grads)
        return self._fused[2:]

    def state_dict(self) -> dict[str, np.ndarray]:
        """Flat `{"t": 0-d int64, "<slot>.<param>": array}`: plain arrays, safe for `allow_pickle=False`."""
        out = {"t": np.array(self.t, dtype=np.int64)}
        for slot, arrays in self.state.items():
            out.update({f"{slot}.{name}": a.copy() for name, a in arrays.items()})
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what `state_dict()` returned; raises ValueError on unknown keys."""
        if "t" not in state:
            raise ValueError(f"optimizer state must hold 't', got keys {sorted(state)}")
        arrays: dict[str, Params] = {slot: {} for slot in self.slots}
        for key, value in state.items():
            if key == "t":
                continue
            slot, _, name = key.partition(".")
            if slot not in arrays or not name:
                raise ValueError(
                    f"optimizer state key {key!r} is not one of '<slot>.<param>' with slot in {self.slots}"
                )
            arrays[slot][name] = np.array(value)
        self.t = int(state["t"])
        self.state = arrays
        self._fused = self._fused_dicts = None  # the next step re-lays the restored state


def _same(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


def _tiled(arrays: tuple[np.ndarray, ...]) -> np.ndarray | None:
    """The 1-D buffer that `arrays` tile exactly, back to back and in order, or None."""
    base = arrays[0].base if arrays else None
    if base is None or base.ndim != 1 or not base.flags.c_contiguous:
        return None
    start = pos = base.__array_interface__["data"][0]
    for a in arrays:
        if a.base is not base or not a.flags.c_contiguous or a.__array_interface__["data"][0] != pos:
            return None
        pos += a.nbytes
    return base if pos == start + base.nbytes else None


class SGD(_Optimizer):
    """Stochastic gradient descent with optional momentum (PyTorch's form).

    Update: `v <- momentum * v + g` (`v = g` on the first step); `theta <- theta - lr * v`.

    Args:
        lr: learning rate.
        momentum: momentum coefficient in [0, 1); 0 is plain SGD.
    """

    def __init__(self, lr: float, momentum: float = 0.0) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        self.slots = ("velocity",) if self.momentum else ()
        super().__init__()
        self.lr = _check_lr(lr)

    def _update(self, p: np.ndarray, g: np.ndarray, slots: list[np.ndarray], scratch: np.ndarray) -> None:
        if self.momentum:
            (v,) = slots
            if self.t == 1:
                np.copyto(v, g)  # v = g on the first step
            else:
                v *= self.momentum
                v += g  # v <- momentum v + g
            g = v
        np.multiply(g, self.lr, out=scratch)
        p -= scratch  # theta <- theta - lr v


class Adam(_Optimizer):
    """Adam with bias correction (Kingma & Ba; PyTorch's form, eps outside the square root).

    Update: `m <- b1 m + (1-b1) g`, `v <- b2 v + (1-b2) g^2`,
    `theta <- theta - lr (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps)`.

    Args:
        lr: learning rate.
        betas: decay rates `(b1, b2)` of the first and second moment estimates, each in [0, 1).
        eps: added to the denominator for numerical stability.
    """

    slots = ("m", "v")

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        super().__init__()
        self.lr = _check_lr(lr)
        b1, b2 = betas
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"betas must both be in [0, 1), got {betas!r}")
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps!r}")
        self.betas = (float(b1), float(b2))
        self.eps = float(eps)

    def _update(self, p: np.ndarray, g: np.ndarray, slots: list[np.ndarray], scratch: np.ndarray) -> None:
        m, v = slots
        b1, b2 = self.betas
        step_size = self.lr / (1.0 - b1**self.t)  # folds the first-moment bias correction into the step
        sqrt_c2 = math.sqrt(1.0 - b2**self.t)  # sqrt(v / c2) = sqrt(v) / sqrt(c2); a Python float keeps float32 fast
        m *= b1
        np.multiply(g, 1.0 - b1, out=scratch)
        m += scratch  # m <- b1 m + (1 - b1) g
        v *= b2
        np.multiply(g, g, out=scratch)
        scratch *= 1.0 - b2
        v += scratch  # v <- b2 v + (1 - b2) g^2
        np.sqrt(v, out=scratch)
        scratch /= sqrt_c2
        scratch += self.eps  # sqrt(v_hat) + eps
        np.divide(m, scratch, out=scratch)
        scratch *= step_size  # lr * m_hat / (sqrt(v_hat) + eps)
        p -= scratch


def clip_grad_norm(grads: Params, max_norm: float, per_member: bool = False) -> float | np.ndarray:
    """Scale all gradients together so their global L2 norm is at most `max_norm`, in place.

    Args:
        grads: the gradients (an `MLP`'s `grads`).
        max_norm: the largest norm left unscaled.
        per_member: the gradients of a stacked network: the leading axis of every array is the member axis S, and
            each member is clipped by its own norm, never by another member's.

    Returns:
        The global norm before clipping, `sqrt(sum_k ||g_k||^2)`; with `per_member`, the `(S,)` norms.
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be positive, got {max_norm!r}")
    arrays = tuple(grads.values())
    if per_member:
        members = {np.shape(g)[:1] for g in arrays}
        if len(members) != 1 or any(np.ndim(g) < 2 for g in arrays):
            raise ValueError(f"per_member needs arrays that all lead with the member axis S, got shapes "
                             f"{[np.shape(g) for g in arrays]}")
        return clip_per_member(arrays, max_norm)
    return clip_by_global_norm(arrays, max_norm)


def clip_by_global_norm(arrays: Sequence[np.ndarray], max_norm: float) -> float:
    """`clip_grad_norm` without checks, on a sequence of arrays: one array (a flat gradient buffer) costs one dot.

    Scale: `g <- g * max_norm / (norm + 1e-6)` when `norm > max_norm`; `max_norm = inf` only measures.

    Returns:
        The global norm before clipping (NaN or inf if a gradient is not finite; nothing is scaled then).
    """
    squares = 0.0
    for g in arrays:
        squares += float(np.vdot(g, g))
    norm = math.sqrt(squares)
    if math.isfinite(norm) and norm > max_norm:
        scale = max_norm / (norm + 1e-6)
        for g in arrays:
            g *= scale
    return norm


def clip_per_member(arrays: Sequence[np.ndarray], max_norm: float) -> np.ndarray:
    """`clip_by_global_norm` for each member of a stacked network on its own, without checks.

    Args:
        arrays: gradients whose leading axis is the member axis S (`(S, n_out, n_in)`, `(S, n_out)`, ...).
        max_norm: as in `clip_by_global_norm`; `inf` only measures.

    Returns:
        `(S,)` float64: member s's norm `sqrt(sum_k ||g_k[s]||^2)` before clipping. Only the members whose norm
        exceeds `max_norm` are scaled, each by `max_norm / (norm_s + 1e-6)`; a non-finite norm scales nothing.
    """
    S = arrays[0].shape[0]
    squares = np.zeros(S)
    for g in arrays:
        rows = g.reshape(S, -1)
        squares += np.einsum("si,si->s", rows, rows, dtype=np.float64)  # ||g[s]||^2, summed in float64
    norms = np.sqrt(squares)
    over = np.isfinite(norms) & (norms > max_norm)  # a non-finite member is left for its caller to stop
    if over.any():
        scale = np.where(over, max_norm / (norms + 1e-6), 1.0)
        for g in arrays:
            g *= scale.reshape(S, *(1,) * (g.ndim - 1)).astype(g.dtype, copy=False)
    return norms


class FlatClipper:
    """`clip_per_member` for gradients that tile one flat buffer (an `MLP`'s `flat_grads`), in a fixed few calls.

    Member s's squared norm is `sum_k sum(g_k[s]^2)` over the parameter blocks k. Every square is formed in float64
    (exact for float32 gradients), one `reduceat` sums each (block, member) segment, and one reduction over a
    contiguous `(S, K)` copy adds member s's K block sums in layout order: the same additions in the same order for
    member s whatever S is, so a seed alone and the same seed in a batch get the same norm, bit for bit. It rounds
    differently from `clip_per_member` (whose per-array sums run inside `einsum`), at the last float64 bit.

    Args:
        arrays: the gradient views `(S, ...)` that tile `flat` back to back, in order (an unstacked network's
            arrays with a leading axis of 1, `g[None]`).
        flat: `(n_params,)`, the buffer they tile.
    """

    def __init__(self, arrays: Sequence[np.ndarray], flat: np.ndarray) -> None:
        S = arrays[0].shape[0]
        if _tiled(tuple(arrays)) is not flat or not all(g.size and g.shape[0] == S for g in arrays):
            raise ValueError("FlatClipper needs non-empty (S, ...) arrays that tile the flat buffer in order")
        starts, offset = [], 0
        for g in arrays:  # block k of member s starts at offset_k + s * size_k
            starts += range(offset, offset + g.size, g.size // S)
            offset += g.size
        self.arrays, self.flat, self.members = tuple(arrays), flat, S
        self._starts = np.array(starts, dtype=np.intp)  # (K S,), block-major
        self._squares = np.empty(flat.size, dtype=np.float64)  # g^2, exact for float32
        self._parts = np.empty(len(starts), dtype=np.float64)  # (K S,): sum(g_k[s]^2), block-major
        self._by_member = (self._parts.reshape(1, -1) if S == 1  # the same sums, member-major
                           else np.empty((S, len(arrays)), dtype=np.float64))
        self._scale_shapes = [(S, *(1,) * (g.ndim - 1)) for g in arrays]  # (S,) broadcast over each array

    def __call__(self, max_norm: float) -> np.ndarray:
        """Measure and clip, in place; returns the `(S,)` float64 norms before clipping (a new array).

        Members whose norm exceeds `max_norm` are scaled by `max_norm / (norm_s + 1e-6)`; a non-finite norm scales
        nothing; `max_norm = inf` only measures.
        """
        squares = self._squares
        np.copyto(squares, self.flat)  # to float64 first: a cast inside the multiply costs twice as much
        np.square(squares, out=squares)
        np.add.reduceat(squares, self._starts, out=self._parts)
        if self.members > 1:  # (K, S) -> (S, K); one member's K sums are in that order already
            np.copyto(self._by_member, self._parts.reshape(len(self.arrays), self.members).T)
        norms = np.sqrt(np.add.reduce(self._by_member, axis=1))  # each member's K block sums, in layout order
        if np.fmax.reduce(norms) > max_norm:  # the largest norm, NaN skipped: is any member over (inf included)?
            over = np.isfinite(norms) & (norms > max_norm)  # a non-finite member is left for its caller to stop
            scale = np.where(over, max_norm / (norms + 1e-6), 1.0).astype(self.flat.dtype)
            if self.members == 1:
                self.flat *= scale  # one member: one multiply, the same products as array by array
            else:
                for g, shape in zip(self.arrays, self._scale_shapes, strict=True):
                    g *= scale.reshape(shape)  # member s's rows by scale[s]
        return norms
