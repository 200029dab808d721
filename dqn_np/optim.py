"""Optimizers that update parameters in place, and global-norm gradient clipping.

State is kept per parameter name (`"W1"`, `"b2"`, ...), so one optimizer serves one network, and
`state_dict()` / `load_state_dict()` give plain arrays for checkpoints.
"""

from __future__ import annotations

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
    """State bookkeeping shared by the optimizers: `t` (steps taken) and one array per (slot, parameter name)."""

    slots: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.t = 0
        self.state: dict[str, Params] = {slot: {} for slot in self.slots}

    def _slot(self, slot: str, name: str, like: np.ndarray) -> np.ndarray:
        buf = self.state[slot].get(name)
        if buf is None:
            buf = self.state[slot][name] = np.zeros_like(like)
        return buf

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


class SGD(_Optimizer):
    """Stochastic gradient descent with optional momentum (PyTorch's form).

    Update: `v <- momentum * v + g` (`v = g` on the first step); `theta <- theta - lr * v`.

    Args:
        lr: learning rate.
        momentum: momentum coefficient in [0, 1); 0 is plain SGD.
    """

    slots = ("velocity",)

    def __init__(self, lr: float, momentum: float = 0.0) -> None:
        super().__init__()
        self.lr = _check_lr(lr)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)

    def step(self, params: Params, grads: Params) -> None:
        """Update every `params[name]` in place from `grads[name]`."""
        _check_grads(params, grads)
        first = self.t == 0
        self.t += 1
        for name, p in params.items():
            g = grads[name]
            if self.momentum:
                v = self._slot("velocity", name, p)
                if first:
                    np.copyto(v, g)
                else:
                    v *= self.momentum
                    v += g
                g = v
            p -= self.lr * g


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

    def step(self, params: Params, grads: Params) -> None:
        """Update every `params[name]` in place from `grads[name]`."""
        _check_grads(params, grads)
        self.t += 1
        b1, b2 = self.betas
        step_size = self.lr / (1.0 - b1**self.t)  # folds the first-moment bias correction into the step
        sqrt_c2 = np.sqrt(1.0 - b2**self.t)  # sqrt(v / c2) = sqrt(v) / sqrt(c2)
        for name, p in params.items():
            g = grads[name]
            m = self._slot("m", name, p)
            v = self._slot("v", name, p)
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * (g * g)
            denom = np.sqrt(v)
            denom /= sqrt_c2
            denom += self.eps
            p -= step_size * m / denom


def clip_grad_norm(grads: Params, max_norm: float) -> float:
    """Scale all gradients together so their global L2 norm is at most `max_norm`, in place.

    Returns:
        The global norm before clipping, `sqrt(sum_k ||g_k||^2)`.
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be positive, got {max_norm!r}")
    norm = float(np.sqrt(sum(float(np.vdot(g, g)) for g in grads.values())))
    if norm > max_norm:
        scale = max_norm / (norm + 1e-6)
        for g in grads.values():
            g *= scale
    return norm
