"""Layers with a forward pass and a hand-written backward pass.

Each layer's `forward(x)` caches what its `backward(grad_out)` needs; `backward` fills `grads` (same keys as
`params`) and returns the gradient with respect to the layer's input.
"""

from __future__ import annotations

import numpy as np


class Linear:
    """Affine layer `z = x @ W.T + b` with `W: (n_out, n_in)` and `b: (n_out,)`.

    Args:
        W: weight matrix `(n_out, n_in)`; the layer keeps a reference (it is updated in place by optimizers).
        b: bias vector `(n_out,)`.
        dW: where backward writes dL/dW (same shape as `W`); a new zero array if None.
        db: where backward writes dL/db (same shape as `b`); a new zero array if None.
    """

    def __init__(
        self, W: np.ndarray, b: np.ndarray, dW: np.ndarray | None = None, db: np.ndarray | None = None
    ) -> None:
        self.params = {"W": W, "b": b}
        self.grads = {"W": np.zeros_like(W) if dW is None else dW, "b": np.zeros_like(b) if db is None else db}
        self._x: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """`x: (batch, n_in)` -> `z: (batch, n_out)`; caches `x` for `dW = delta.T @ x`."""
        self._x = x
        z = x @ self.params["W"].T
        z += self.params["b"]
        return z

    def backward(self, delta: np.ndarray) -> np.ndarray:
        """`delta = dL/dz: (batch, n_out)` -> `dL/dx: (batch, n_in)`; fills `grads`."""
        if self._x is None:
            raise RuntimeError("Linear.backward called before forward")
        np.matmul(delta.T, self._x, out=self.grads["W"])  # dW = delta.T @ x
        np.sum(delta, axis=0, out=self.grads["b"])  # db = sum over the batch of delta
        return delta @ self.params["W"]  # dL/dx = delta @ W


class ReLU:
    """`h = max(z, 0)`, with the subgradient convention ReLU'(z) = 1 where z > 0 and 0 elsewhere (0 included)."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}  # no parameters
        self.grads: dict[str, np.ndarray] = {}
        self._z: np.ndarray | None = None

    def forward(self, z: np.ndarray) -> np.ndarray:
        """`z: (batch, n)` -> `h: (batch, n)`; caches `z` for the mask `z > 0`."""
        self._z = z
        return np.maximum(z, 0)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """`dL/dh: (batch, n)` -> `dL/dz = dL/dh * (z > 0)`."""
        if self._z is None:
            raise RuntimeError("ReLU.backward called before forward")
        return grad_out * (self._z > 0)


def relu_grad(z: np.ndarray) -> np.ndarray:
    """ReLU'(z) as 1.0 where `z > 0` and 0.0 elsewhere, exactly 0 included; same shape and dtype as `z`."""
    return (z > 0).astype(z.dtype)
