"""Layers with a forward pass and a hand-written backward pass.

Each layer's `forward(x)` caches what its `backward(grad_out)` needs; `backward` fills `grads` (same keys as
`params`) and returns the gradient with respect to the layer's input.

A layer may be *stacked*: with S members (independent networks trained side by side, one per seed) `W` is
`(S, n_out, n_in)`, `b` is `(S, n_out)` and activations are `(S, B, n)`. The same lines serve both: the matmuls
transpose the last two axes (`swapaxes(-1, -2)`), batched over S by `np.matmul`, and sums run over the batch axis
(`axis=-2`) only, so no member's gradient ever mixes with another's.

Every method takes an optional `out=` buffer (and ReLU's backward a `mask=` buffer): with None it allocates its
result, as a user calling a layer expects; `MLP`'s unchecked route passes preallocated arrays instead, so the same
line of math serves both.
"""

from __future__ import annotations

import numpy as np


class Linear:
    """Affine layer `z = x @ W.T + b` with `W: (n_out, n_in)`, `b: (n_out,)`; stacked `(S, n_out, n_in)`, `(S, n_out)`.

    Args:
        W: weight matrix `(n_out, n_in)`, or `(S, n_out, n_in)` for S members; the layer keeps a reference (it is
            updated in place by optimizers).
        b: bias vector `(n_out,)`, or `(S, n_out)`.
        dW: where backward writes dL/dW (same shape as `W`); a new zero array if None.
        db: where backward writes dL/db (same shape as `b`); a new zero array if None.
    """

    def __init__(
        self, W: np.ndarray, b: np.ndarray, dW: np.ndarray | None = None, db: np.ndarray | None = None
    ) -> None:
        self.params = {"W": W, "b": b}
        self.grads = {"W": np.zeros_like(W) if dW is None else dW, "b": np.zeros_like(b) if db is None else db}
        self._W_T = W.swapaxes(-1, -2)  # W.T per member: (n_in, n_out) or (S, n_in, n_out), a view
        self._b_row = b[..., None, :]  # b as one row per member, broadcast over the batch: (1, n_out) or (S, 1, n_out)
        self._x: np.ndarray | None = None

    def forward(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """`x: (B, n_in)` -> `z: (B, n_out)` (stacked: `(S, B, n_in)` -> `(S, B, n_out)`), into `out` if given.

        Caches `x` for `dW = delta.T @ x`.
        """
        self._x = x
        z = np.matmul(x, self._W_T, out=out)
        z += self._b_row
        return z

    def backward(self, delta: np.ndarray, out: np.ndarray | None = None, input_grad: bool = True) -> np.ndarray | None:
        """`delta = dL/dz: (B, n_out)` -> `dL/dx: (B, n_in)` (into `out` if given); fills `grads`.

        Stacked: `(S, B, n_out)` -> `(S, B, n_in)`, and member s's `dW[s]`, `db[s]` come from its rows alone.

        With `input_grad=False` the layer skips `dL/dx` and returns None (the first layer of a network whose input
        is data needs no gradient).
        """
        if self._x is None:
            raise RuntimeError("Linear.backward called before forward")
        np.matmul(delta.swapaxes(-1, -2), self._x, out=self.grads["W"])  # dW = delta.T @ x
        np.add.reduce(delta, axis=-2, out=self.grads["b"])  # db = sum over the batch of delta
        return np.matmul(delta, self.params["W"], out=out) if input_grad else None  # dL/dx = delta @ W


class ReLU:
    """`h = max(z, 0)`, with the subgradient convention ReLU'(z) = 1 where z > 0 and 0 elsewhere (0 included)."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}  # no parameters
        self.grads: dict[str, np.ndarray] = {}
        self._z: np.ndarray | None = None

    def forward(self, z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """`z: (..., B, n)` -> `h`, same shape (into `out` if given); caches `z` for the mask `z > 0`."""
        self._z = z
        return np.maximum(z, 0, out=out)

    def backward(
        self, grad_out: np.ndarray, out: np.ndarray | None = None, mask: np.ndarray | None = None
    ) -> np.ndarray:
        """`dL/dh: (B, n)` -> `dL/dz = dL/dh * (z > 0)`, into `out` (may be `grad_out` itself) if given.

        Args:
            grad_out: `dL/dh: (B, n)`.
            out: where to write `dL/dz`; a new array if None.
            mask: a `(B, n)` bool buffer for `z > 0`; a new array if None.
        """
        if self._z is None:
            raise RuntimeError("ReLU.backward called before forward")
        return np.multiply(grad_out, np.greater(self._z, 0, out=mask), out=out)


def relu_grad(z: np.ndarray) -> np.ndarray:
    """ReLU'(z) as 1.0 where `z > 0` and 0.0 elsewhere, exactly 0 included; same shape and dtype as `z`."""
    return (z > 0).astype(z.dtype)
