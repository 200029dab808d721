"""A multilayer perceptron whose backward pass is the chain rule written out by hand.

For the default two layers (`sizes=(n_in, n_hidden, n_out)`) and a loss with gradient `delta2 = dL/dy_hat`:

    z1 = x @ W1.T + b1        h1 = relu(z1)        y_hat = h1 @ W2.T + b2
    dW2 = delta2.T @ h1       db2 = sum(delta2)
    delta1 = (delta2 @ W2) * (z1 > 0)
    dW1 = delta1.T @ x        db1 = sum(delta1)

Deeper networks repeat the middle line once per hidden layer.

A network may be stacked: `MLP(sizes, rng=[g_0, ..., g_(S-1)])` holds S members (one per seed) with
`W: (S, n_out, n_in)`, `b: (S, n_out)`, takes `x: (S, B, n_in)` and runs the same lines with batched matmuls; member
s's weights are drawn from `g_s` alone, and every sum runs over the batch axis only. An unstacked network is the same
code with no member axis.

Two routes run that same math. `forward` / `backward` check their inputs and return new arrays, as a user expects.
`forward_unchecked` / `backward_unchecked` are for the network's owner on the training hot path: they trust their
inputs, write every activation, mask and delta into buffers preallocated per batch size (`np.matmul(..., out=)`,
in-place bias add and ReLU), and allocate nothing after the first call with a given batch size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dqn_np._buffers import BufferCache
from dqn_np._validate import as_batch
from dqn_np.layers import Linear, ReLU


def _resolve_dtype(dtype: str | type | np.dtype) -> np.dtype:
    try:  # np.dtype raises TypeError on unknown names and maps None to float64; both are caller errors here
        dt = np.dtype(dtype) if dtype is not None else None
    except TypeError:
        dt = None
    if dt is None or dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return dt


def _member_generators(rng: object) -> list[np.random.Generator] | None:
    """None for one Generator (an unstacked network), the list for a sequence of them (one per member)."""
    if isinstance(rng, np.random.Generator):
        return None
    rngs = list(rng) if isinstance(rng, (list, tuple)) else None
    if not rngs or not all(isinstance(g, np.random.Generator) for g in rngs):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__} (or, for a stacked network, "
                        "a non-empty list of Generators, one per member)")
    return rngs


class _Activations:
    """The arrays one forward and backward pass of `B` rows write, or all None for the allocating route.

    Attributes:
        z: per linear layer `(B, n_i)`: the pre-activations `z_i`; the last one is the output `y_hat`.
        h: per hidden layer `(B, n_i)`: `h_i = relu(z_i)`.
        grad_h: per hidden layer `(B, n_i)`: `dL/dh_i`, turned into `delta_i` in place.
        mask: per hidden layer `(B, n_i)` bool: `z_i > 0`.
        grad_x: `(B, n_in)`: `dL/dx`.
    """

    __slots__ = ("z", "h", "grad_h", "mask", "grad_x")

    def __init__(self, sizes: tuple[int, ...], n: int | None, dtype: np.dtype, members: int | None = None) -> None:
        lead = () if members is None else (members,)  # stacked networks keep one (B, n_i) block per member

        def alloc(width: int, dt: np.dtype | type = dtype) -> np.ndarray | None:
            return None if n is None else np.empty((*lead, n, width), dtype=dt)

        hidden = sizes[1:-1]
        self.z = [alloc(w) for w in sizes[1:]]
        self.h = [alloc(w) for w in hidden]
        self.grad_h = [alloc(w) for w in hidden]
        self.mask = [alloc(w, bool) for w in hidden]
        self.grad_x = alloc(sizes[0])


class MLP:
    """ReLU hidden layers and a linear output, He-initialised from a seeded Generator.

    Args:
        sizes: layer widths `(n_in, n_hidden_1, ..., n_out)`, at least one hidden layer; `(3, 4, 2)` is the
            2-layer 3->4->2 net, `(4, 64, 64, 2)` a 3-layer one.
        rng: the Generator that draws the initial weights; or a sequence of S Generators for a stacked network of S
            members, member s drawn from `rng[s]` exactly as an unstacked network drawn from that Generator.
        dtype: `float32` (fast training) or `float64` (gradient checks).

    Attributes:
        members: S for a stacked network, None for an unstacked one.
        params: `{"W1": (n_1, n_0), "b1": (n_1,), "W2": ..., ...}` (stacked: `(S, n_1, n_0)`, `(S, n_1)`, ...);
            updated in place by the optimizers.
        grads: same keys and shapes as `params`, filled by `backward`.
        flat_params: `(n_params,)`, the buffer every array of `params` is a view of, in order.
        flat_grads: `(n_params,)`, the same for `grads`.

    Example:
        >>> import numpy as np
        >>> net = MLP((3, 4, 2), rng=np.random.default_rng(0))
        >>> y_hat = net.forward(np.ones((5, 3)))
        >>> y_hat.shape, net.backward(np.ones((5, 2))).shape, net.grads["W1"].shape
        ((5, 2), (5, 3), (4, 3))
        >>> stacked = MLP((3, 4, 2), rng=[np.random.default_rng(s) for s in range(8)])  # S = 8 members
        >>> stacked.forward(np.ones((8, 5, 3))).shape, stacked.params["W1"].shape, stacked.params["b1"].shape
        ((8, 5, 2), (8, 4, 3), (8, 4))
    """

    def __init__(self, sizes: Sequence[int], rng: np.random.Generator | Sequence[np.random.Generator],
                 dtype: str | type = "float64") -> None:
        sizes = tuple(sizes)
        if len(sizes) < 3:
            raise ValueError(f"sizes must be (n_in, hidden..., n_out) with at least one hidden layer, got {sizes}")
        for i, n in enumerate(sizes):
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
                raise ValueError(f"sizes[{i}] must be a positive integer layer width, got {n!r} in {sizes}")
        rngs = _member_generators(rng)
        self._allocate(tuple(int(n) for n in sizes), _resolve_dtype(dtype), None if rngs is None else len(rngs))
        for i, n_in in enumerate(self.sizes[:-1], start=1):
            # He (Kaiming) normal init for ReLU nets: Var(W) = 2 / fan_in; biases start at zero.
            W = self.params[f"W{i}"]
            if rngs is None:
                W[...] = rng.standard_normal(W.shape) * np.sqrt(2.0 / n_in)
            else:  # member s draws from its own Generator, layer by layer, as an unstacked network would
                for W_s, rng_s in zip(W, rngs, strict=True):
                    W_s[...] = rng_s.standard_normal(W_s.shape) * np.sqrt(2.0 / n_in)

    def _allocate(self, sizes: tuple[int, ...], dtype: np.dtype, members: int | None = None) -> None:
        """Layers whose parameters (and gradients) are consecutive views of one flat buffer each.

        One buffer lets an optimizer update every parameter with a handful of NumPy calls instead of a handful per
        parameter, and lets a target update copy the whole network at once.
        """
        self.sizes, self.dtype, self.members = sizes, dtype, members
        lead = () if members is None else (members,)
        shapes = [s for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)
                  for s in ((*lead, n_out, n_in), (*lead, n_out))]
        total = sum(int(np.prod(shape)) for shape in shapes)
        self.flat_params = np.zeros(total, dtype=dtype)  # (n_params,): W1, b1, W2, ... back to back
        self.flat_grads = np.zeros(total, dtype=dtype)
        views_p, views_g, offset = [], [], 0
        for shape in shapes:
            size = int(np.prod(shape))
            views_p.append(self.flat_params[offset:offset + size].reshape(shape))
            views_g.append(self.flat_grads[offset:offset + size].reshape(shape))
            offset += size
        self.linears = [Linear(W, b, dW, db) for W, b, dW, db in
                        zip(views_p[::2], views_p[1::2], views_g[::2], views_g[1::2], strict=True)]
        self.relus = [ReLU() for _ in self.linears[:-1]]
        self._unbuffered = _Activations(sizes, None, dtype)  # the allocating route: every out= is None
        self._buffers = BufferCache(lambda n: _Activations(sizes, n, dtype, members))  # unchecked route, per B
        self.params = {}
        self.grads = {}
        for i, layer in enumerate(self.linears, start=1):
            self.params[f"W{i}"], self.params[f"b{i}"] = layer.params["W"], layer.params["b"]
            self.grads[f"W{i}"], self.grads[f"b{i}"] = layer.grads["W"], layer.grads["b"]

    def clone(self) -> MLP:
        """A new network with the same sizes, dtype, members and parameter values (and its own buffers)."""
        twin = object.__new__(MLP)
        twin._allocate(self.sizes, self.dtype, self.members)
        np.copyto(twin.flat_params, self.flat_params)
        return twin

    def member(self, s: int) -> MLP:
        """Member s of a stacked network as a new unstacked network (a copy of its parameters)."""
        if self.members is None:
            raise ValueError("member() needs a stacked network; this one has no member axis")
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 0 <= s < self.members:
            raise ValueError(f"s must be a member index in [0, {self.members}), got {s!r}")
        single = object.__new__(MLP)
        single._allocate(self.sizes, self.dtype)
        for name, p in self.params.items():
            np.copyto(single.params[name], p[s])
        return single

    @classmethod
    def stack(cls, nets: Sequence[MLP]) -> MLP:
        """A stacked network whose member s is a copy of the unstacked `nets[s]` (same sizes and dtype)."""
        nets = list(nets)
        if not nets or any(not isinstance(n, MLP) or n.members is not None for n in nets):
            raise ValueError("stack needs one or more unstacked MLPs")
        first = nets[0]
        if any(n.sizes != first.sizes or n.dtype != first.dtype for n in nets):
            got = [(n.sizes, str(n.dtype)) for n in nets]
            raise ValueError(f"stack needs networks of one size and dtype, got {got}")
        stacked = object.__new__(cls)
        stacked._allocate(first.sizes, first.dtype, len(nets))
        for name, p in stacked.params.items():
            np.stack([n.params[name] for n in nets], out=p)
        return stacked

    @property
    def n_in(self) -> int:
        return self.sizes[0]

    @property
    def n_out(self) -> int:
        return self.sizes[-1]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """`x: (B, n_in)` -> `y_hat: (B, n_out)` (stacked: `(S, B, n_in)` -> `(S, B, n_out)`), a new array.

        Caches each layer's input for `backward`.

        Raises:
            ValueError: `x` is not a finite `(B, n_in)` array (stacked: `(S, B, n_in)`).
        """
        return self._forward(as_batch("x", x, self.n_in, self.dtype, self.members), self._unbuffered)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Same as `forward`."""
        return self.forward(x)

    def forward_unchecked(self, x: np.ndarray) -> np.ndarray:
        """`forward` without checks, into this network's buffers for batch size `B`.

        Args:
            x: `(B, n_in)` (stacked: `(S, B, n_in)`) in the network's dtype, trusted: neither its shape nor its
                finiteness is checked.

        Returns:
            `y_hat: (B, n_out)` (stacked: `(S, B, n_out)`), a view of a buffer that the next `forward_unchecked`
            with the same `B` overwrites.
        """
        return self._forward(x, self._buffers.get(x.shape[-2]))

    def _forward(self, x: np.ndarray, bufs: _Activations) -> np.ndarray:
        h = x
        hidden = zip(self.linears, self.relus, bufs.z, bufs.h, strict=False)  # one ReLU fewer: the output is linear
        for linear, relu, z_out, h_out in hidden:
            h = relu.forward(linear.forward(h, z_out), h_out)  # h_i = relu(z_i), z_i = h_{i-1} @ W_i.T + b_i
        return self.linears[-1].forward(h, bufs.z[-1])  # linear output: y_hat = h_L @ W_out.T + b_out

    def backward(self, delta_out: np.ndarray) -> np.ndarray:
        """Backpropagate `delta_out = dL/dy_hat: (B, n_out)`; fill `grads`; return `dL/dx: (B, n_in)`, a new array.

        Stacked: `(S, B, n_out)` -> `(S, B, n_in)`; member s's gradients come from its own rows only.

        Raises:
            RuntimeError: no forward pass came first.
            ValueError: `delta_out` does not have the shape of the last forward's output.
        """
        x = self.linears[0]._x
        if x is None:
            raise RuntimeError("MLP.backward called before forward")
        delta = np.asarray(delta_out, dtype=self.dtype)
        if delta.shape != (*x.shape[:-1], self.n_out):
            axes = "(batch, n_out)" if self.members is None else "(members, batch, n_out)"
            raise ValueError(
                f"delta_out must have shape {axes} = {(*x.shape[:-1], self.n_out)} to match the last forward, "
                f"got {delta.shape}"
            )
        return self._backward(delta, self._unbuffered, input_grad=True)

    def backward_unchecked(self, delta_out: np.ndarray, input_grad: bool = False) -> np.ndarray | None:
        """`backward` without checks, reusing the buffers of the last forward's batch size `B`.

        Args:
            delta_out: `dL/dy_hat: (B, n_out)` (stacked: `(S, B, n_out)`) in the network's dtype, for the last
                forward pass (trusted).
            input_grad: also compute `dL/dx`; a learner whose input is data does not need it.

        Returns:
            `dL/dx: (B, n_in)` (a reused buffer) if `input_grad`, else None.
        """
        return self._backward(delta_out, self._buffers.get(delta_out.shape[-2]), input_grad)

    def _backward(self, delta: np.ndarray, bufs: _Activations, input_grad: bool) -> np.ndarray | None:
        layers = zip(reversed(self.linears[1:]), reversed(self.relus), reversed(bufs.grad_h), reversed(bufs.mask),
                     strict=True)
        for linear, relu, grad_h_out, mask in layers:
            grad_h = linear.backward(delta, grad_h_out)  # dW2 = delta2.T @ h1, db2 = sum(delta2); returns delta2 @ W2
            delta = relu.backward(grad_h, grad_h, mask)  # delta1 = (delta2 @ W2) * (z1 > 0), in place
        return self.linears[0].backward(delta, bufs.grad_x, input_grad)  # dW1 = delta1.T @ x, db1 = sum(delta1)

    def copy_from(self, other: MLP) -> None:
        """Hard update: copy every parameter of `other` (same sizes) into this network, in place."""
        self.soft_update_from(other, tau=1.0)

    def soft_update_from(self, other: MLP, tau: float) -> None:
        """Polyak update `theta' <- tau * theta + (1 - tau) * theta'` with `theta` from `other`, in place."""
        if not isinstance(other, MLP) or other.sizes != self.sizes:
            got = other.sizes if isinstance(other, MLP) else type(other).__name__
            raise ValueError(f"other must be an MLP with sizes {self.sizes}, got {got}")
        if other.members != self.members:
            raise ValueError(f"other must have members={self.members} like this network, got {other.members}")
        if not 0.0 < tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {tau}")
        if tau == 1.0:
            np.copyto(self.flat_params, other.flat_params)
        else:
            self.flat_params *= 1.0 - tau
            self.flat_params += tau * other.flat_params

    def load_params(self, params: dict[str, np.ndarray]) -> None:
        """Copy `params` (same keys and shapes as `self.params`, finite) into this network, in place."""
        if set(params) != set(self.params):
            raise ValueError(f"params must have keys {sorted(self.params)}, got {sorted(params)}")
        for name, p in self.params.items():
            value = np.asarray(params[name])
            if value.shape != p.shape:
                raise ValueError(f"params[{name!r}] must have shape {p.shape}, got {value.shape}")
            if not np.isfinite(value).all():
                raise ValueError(f"params[{name!r}] must be finite")
        for name, p in self.params.items():
            np.copyto(p, params[name])
