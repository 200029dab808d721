"""Layers with a forward pass and a hand-written backward pass, and the protocol a network builds them by.

Each layer's `forward(x)` caches what its `backward(grad_out)` needs; `backward` fills `grads` (same keys as
`params`) and returns the gradient with respect to the layer's input.

A layer *declares* its parameters and owns none: `param_shapes()` names them with one member's shapes
(`{"W": (n_out, n_in), "b": (n_out,)}`; ReLU declares none), the network lays them out as consecutive views of its
flat parameter and gradient buffers (with a leading member axis S when stacked) and hands them over with
`bind(params, grads)`, then draws their initial values with `init_params`. So a new layer needs no edit to the
allocator, the optimizers or the checkpoints: they only ever see the network's flat buffers and its names.

A layer may be *stacked*: with S members (independent networks trained side by side, one per seed) `W` is
`(S, n_out, n_in)`, `b` is `(S, n_out)` and activations are `(S, B, n)`. The same lines serve both: the matmuls
transpose the last two axes (`swapaxes(-1, -2)`), batched over S by `np.matmul`, and sums run over the batch axis
(`axis=-2`) only, so no member's gradient ever mixes with another's.

Every method takes an optional `out=` buffer and a `work=` buffer (whatever the layer's `workspace` made): with None
it allocates its result, as a user calling a layer expects; a network's unchecked route passes arrays preallocated per
batch size instead, so the same line of math serves both.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Shape = tuple[int, ...]


class Layer:
    """What a network needs of a layer. Subclasses override what they use; the defaults suit a parameter-free,
    shape-preserving layer.

    The network calls, in this order: `param_shapes()` once to lay out the flat buffers, `bind(params, grads)` with
    the views, `init_params(params_s, rng_s)` once per member; per batch size `output_shape(x_shape)` and
    `workspace(x_shape, dtype)` to preallocate; then `forward(x, out, work)` and
    `backward(grad_out, out, input_grad, work)` on every pass, positionally.

    Attributes:
        params: `{name: array}`, the views bound by the network (`(S, ...)` when stacked); `{}` before `bind`.
        grads: the same names and shapes; `backward` writes into them.
        backward_in_place: True if `backward` may write `dL/dx` over `grad_out` (an elementwise layer); the network
            then gives it no buffer of its own.

    Example, a layer `y = x * g` with a learned per-unit scale `g: (n,)` (backward: `dg = sum_B(dy * x)`,
    `dx = dy * g`)::

        class Scale(Layer):
            def __init__(self, n: int) -> None:
                super().__init__()
                self.n, self._x = n, None
            def param_shapes(self) -> dict[str, Shape]:
                return {"g": (self.n,)}  # named g1, g2, ... in the network, keyed so by Adam and checkpoints
            def init_params(self, params, rng) -> None:
                params["g"][...] = 1.0
            def forward(self, x, out=None, work=None):
                self._x = x
                return np.multiply(x, self.params["g"][..., None, :], out=out)
            def backward(self, grad_out, out=None, input_grad=True, work=None):
                np.add.reduce(grad_out * self._x, axis=-2, out=self.grads["g"])
                return np.multiply(grad_out, self.params["g"][..., None, :], out=out) if input_grad else None
    """

    backward_in_place = False

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def param_shapes(self) -> dict[str, Shape]:
        """One member's parameter shapes by local name, in layout order; the network prepends S when stacked."""
        return {}

    def bind(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        """Take the parameter and gradient views the network allocated (keys of `param_shapes`)."""
        self.params, self.grads = params, grads

    def init_params(self, params: dict[str, np.ndarray], rng: np.random.Generator) -> None:
        """Draw the initial values of one member's `params` (views without the member axis) from `rng`, in place.

        The network starts every parameter at zero and calls this layer by layer, member s with `rng[s]`.
        """

    def output_shape(self, x_shape: Shape) -> Shape:
        """The shape of `forward`'s output for an input of shape `x_shape`, e.g. `(S, B, n_in)` -> `(S, B, n_out)`."""
        return x_shape

    def workspace(self, x_shape: Shape, dtype: np.dtype) -> Any:
        """Scratch arrays for one forward and backward pass on inputs of `x_shape`, passed back as `work`; or None."""
        return None

    def forward(self, x: np.ndarray, out: np.ndarray | None = None, work: Any = None) -> np.ndarray:
        """`x` -> the layer's output (into `out` if given); caches what `backward` needs."""
        raise NotImplementedError

    def backward(
        self, grad_out: np.ndarray, out: np.ndarray | None = None, input_grad: bool = True, work: Any = None
    ) -> np.ndarray | None:
        """`dL/dy` -> `dL/dx` (into `out` if given, or None unless `input_grad`); fills `grads`."""
        raise NotImplementedError


class Linear(Layer):
    """Affine layer `z = x @ W.T + b` with `W: (n_out, n_in)`, `b: (n_out,)`; stacked `(S, n_out, n_in)`, `(S, n_out)`.

    A network binds its parameters; `Linear.from_arrays(W, b)` makes one on arrays of your own.

    Args:
        n_in: input width.
        n_out: output width.
    """

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.n_in, self.n_out = int(n_in), int(n_out)
        self._x: np.ndarray | None = None

    @classmethod
    def from_arrays(
        cls, W: np.ndarray, b: np.ndarray, dW: np.ndarray | None = None, db: np.ndarray | None = None
    ) -> Linear:
        """A layer bound to `W: (n_out, n_in)`, `b: (n_out,)` (or `(S, ...)`), kept by reference (optimizers update
        them in place); backward writes into `dW`, `db` (same shapes), new zero arrays if None."""
        layer = cls(W.shape[-1], W.shape[-2])
        layer.bind({"W": W, "b": b}, {"W": np.zeros_like(W) if dW is None else dW,
                                      "b": np.zeros_like(b) if db is None else db})
        return layer

    def param_shapes(self) -> dict[str, Shape]:
        return {"W": (self.n_out, self.n_in), "b": (self.n_out,)}

    def bind(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        super().bind(params, grads)
        W, b = params["W"], params["b"]
        self._W_T = W.swapaxes(-1, -2)  # W.T per member: (n_in, n_out) or (S, n_in, n_out), a view
        self._b_row = b[..., None, :]  # b as one row per member, broadcast over the batch: (1, n_out) or (S, 1, n_out)

    def init_params(self, params: dict[str, np.ndarray], rng: np.random.Generator) -> None:
        """He (Kaiming) normal init for ReLU nets: `Var(W) = 2 / n_in`; `b` stays zero."""
        W = params["W"]
        W[...] = rng.standard_normal(W.shape) * np.sqrt(2.0 / self.n_in)

    def output_shape(self, x_shape: Shape) -> Shape:
        return (*x_shape[:-1], self.n_out)

    def forward(self, x: np.ndarray, out: np.ndarray | None = None, work: Any = None) -> np.ndarray:
        """`x: (B, n_in)` -> `z: (B, n_out)` (stacked: `(S, B, n_in)` -> `(S, B, n_out)`), into `out` if given.

        Caches `x` for `dW = delta.T @ x`.
        """
        self._x = x
        z = np.matmul(x, self._W_T, out=out)
        z += self._b_row
        return z

    def backward(
        self, delta: np.ndarray, out: np.ndarray | None = None, input_grad: bool = True, work: Any = None
    ) -> np.ndarray | None:
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


class Dueling(Linear):
    """Dueling head (Wang et al., 2016): `Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a')` from one affine map.

    One `Linear(n_in, 1 + n_actions)` gives `z = [V, A_1, ..., A_n]` (row 0 of `W: (1 + n, n_in)` and `b[0]` are the
    value stream, the other rows the advantage stream), so both streams cost one matmul. The combine is linear too:
    `Q = z @ C` with the constant `C: (1 + n, n)` whose first row is all ones (V enters every Q) and whose other rows
    are `I - 1/n` (each A_a, minus the mean of the A's). With `dQ = dL/dQ: (B, n)`, backward is `dz = dQ @ C.T`:

        dV = sum_a dQ            dA = dQ - mean_a dQ            dz = [dV, dA]
        dW = dz.T @ x            db = sum_B dz                  dL/dx = dz @ W

    The mean runs over the action axis only, per row (never over the batch). The gradient entering the trunk is
    the true one: the paper's 1/sqrt(2) rescaling is not applied (see docs/backprop.md).

    Args:
        n_in: input width (the last hidden layer's).
        n_actions: output width, the number of actions n.
    """

    def __init__(self, n_in: int, n_actions: int) -> None:
        super().__init__(n_in, int(n_actions) + 1)
        n = self.n_actions = int(n_actions)
        self._combine = np.vstack([np.ones((1, n)), np.eye(n) - 1.0 / n])  # C: (1 + n, n), Q = z @ C
        self._combine_T = {}  # dtype -> C.T, (n, 1 + n), contiguous

    def output_shape(self, x_shape: Shape) -> Shape:
        return (*x_shape[:-1], self.n_actions)

    def workspace(self, x_shape: Shape, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        """`z: (B, 1 + n)` (the two streams) and `dz: (B, 1 + n)`."""
        lead = tuple(x_shape[:-1])
        return np.empty((*lead, self.n_out), dtype), np.empty((*lead, self.n_out), dtype)

    def _c(self, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        cached = self._combine_T.get(dtype)
        if cached is None:
            c = self._combine.astype(dtype)
            cached = self._combine_T[dtype] = (c, np.ascontiguousarray(c.T))
        return cached

    def forward(self, x: np.ndarray, out: np.ndarray | None = None, work: Any = None) -> np.ndarray:
        """`x: (B, n_in)` -> `Q: (B, n)` (stacked `(S, B, ...)`), into `out` if given; caches `x`."""
        z = super().forward(x, None if work is None else work[0])  # [V, A_1, ..., A_n] per row
        return np.matmul(z, self._c(z.dtype)[0], out=out)  # Q = V + A - mean_a A

    def backward(
        self, grad_out: np.ndarray, out: np.ndarray | None = None, input_grad: bool = True, work: Any = None
    ) -> np.ndarray | None:
        """`dQ: (B, n)` -> `dL/dx: (B, n_in)` (into `out` if given, None unless `input_grad`); fills `grads`."""
        dz = np.matmul(grad_out, self._c(grad_out.dtype)[1], out=None if work is None else work[1])  # [dV, dA]
        return super().backward(dz, out, input_grad)


class ReLU(Layer):
    """`h = max(z, 0)`, with the subgradient convention ReLU'(z) = 1 where z > 0 and 0 elsewhere (0 included)."""

    backward_in_place = True  # elementwise: dL/dz may overwrite dL/dh

    def __init__(self) -> None:
        super().__init__()  # no parameters
        self._z: np.ndarray | None = None

    def workspace(self, x_shape: Shape, dtype: np.dtype) -> np.ndarray:
        """The bool buffer for the mask `z > 0`, shaped like `z`."""
        return np.empty(x_shape, dtype=bool)

    def forward(self, z: np.ndarray, out: np.ndarray | None = None, work: Any = None) -> np.ndarray:
        """`z: (..., B, n)` -> `h`, same shape (into `out` if given); caches `z` for the mask `z > 0`."""
        self._z = z
        return np.maximum(z, 0, out=out)

    def backward(
        self, grad_out: np.ndarray, out: np.ndarray | None = None, input_grad: bool = True, work: Any = None
    ) -> np.ndarray | None:
        """`dL/dh: (B, n)` -> `dL/dz = dL/dh * (z > 0)`, into `out` (may be `grad_out` itself) if given.

        Args:
            grad_out: `dL/dh: (B, n)`.
            out: where to write `dL/dz`; a new array if None.
            input_grad: False skips `dL/dz` and returns None (there are no parameters to fill).
            work: the `(B, n)` bool buffer of `workspace`, for `z > 0`; a new array if None.
        """
        if self._z is None:
            raise RuntimeError("ReLU.backward called before forward")
        if not input_grad:
            return None
        return np.multiply(grad_out, np.greater(self._z, 0, out=work), out=out)


def relu_grad(z: np.ndarray) -> np.ndarray:
    """ReLU'(z) as 1.0 where `z > 0` and 0.0 elsewhere, exactly 0 included; same shape and dtype as `z`."""
    return (z > 0).astype(z.dtype)
