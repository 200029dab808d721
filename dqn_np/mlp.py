"""A multilayer perceptron whose backward pass is the chain rule written out by hand.

For the default two layers (`sizes=(n_in, n_hidden, n_out)`) and a loss with gradient `delta2 = dL/dy_hat`:

    z1 = x @ W1.T + b1        h1 = relu(z1)        y_hat = h1 @ W2.T + b2
    dW2 = delta2.T @ h1       db2 = sum(delta2)
    delta1 = (delta2 @ W2) * (z1 > 0)
    dW1 = delta1.T @ x        db1 = sum(delta1)

Deeper networks repeat the middle line once per hidden layer.

The network is a list of layers, `[Linear, ReLU, ..., Linear, ReLU, head]`, that declare their parameters
(`dqn_np.layers.Layer`); `allocate` lays them out on one flat buffer, so another output head (`MLP(sizes, rng,
head=...)`) needs no edit here, in the optimizers or in the checkpoints.

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

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from dqn_np._buffers import BufferCache
from dqn_np._validate import as_batch
from dqn_np.layers import Layer, Linear, ReLU, Shape


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


class FlatLayout(NamedTuple):
    """Parameters of a sequence of layers as consecutive views of one flat buffer each (see `allocate`)."""

    flat_params: np.ndarray  # (n_params,)
    flat_grads: np.ndarray  # (n_params,)
    params: dict[str, np.ndarray]  # network names, in layout order
    grads: dict[str, np.ndarray]


def allocate(layers: Sequence[Layer], dtype: np.dtype, members: int | None = None) -> FlatLayout:
    """Lay out every parameter the `layers` declare, in order, as views of one zeroed flat buffer; `bind` them.

    A layer's parameter `name` is called `f"{name}{i}"` in the network, `i` counting the layers that declare
    parameters from 1 (`W1, b1, W2, b2, ...` for Linear, ReLU, Linear): unique names, so optimizer state and
    checkpoints keyed by them never share an entry. One buffer lets an optimizer update every parameter with a
    handful of NumPy calls instead of a handful per parameter, and lets a target update copy the whole network at once.

    Args:
        layers: the layers, input to output.
        dtype: of both buffers.
        members: S for a stacked network: every shape gains a leading S; None for an unstacked one.

    Returns:
        The flat buffers `(n_params,)` and the network-named views of them.

    Raises:
        ValueError: two parameters would get the same name.
    """
    lead = () if members is None else (members,)
    entries, i = [], 0  # (layer, local name, network name, shape)
    for layer in layers:
        shapes = layer.param_shapes()
        i += bool(shapes)
        entries += [(layer, name, f"{name}{i}", (*lead, *shape)) for name, shape in shapes.items()]
    names = [e[2] for e in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"parameter names must be unique across layers, got {names}")
    total = sum(int(np.prod(shape)) for *_, shape in entries)
    flat_params = np.zeros(total, dtype=dtype)  # (n_params,): W1, b1, W2, ... back to back
    flat_grads = np.zeros(total, dtype=dtype)
    params, grads, local = {}, {}, {id(layer): ({}, {}) for layer in layers}
    offset = 0
    for layer, name, full, shape in entries:
        size = int(np.prod(shape))
        params[full] = local[id(layer)][0][name] = flat_params[offset:offset + size].reshape(shape)
        grads[full] = local[id(layer)][1][name] = flat_grads[offset:offset + size].reshape(shape)
        offset += size
    for layer in layers:
        layer.bind(*local[id(layer)])
    return FlatLayout(flat_params, flat_grads, params, grads)


class _Pass:
    """What one forward and backward pass of inputs shaped `x_shape` runs: per layer, its buffers, in call order.

    With `x_shape` None every buffer is None: the allocating route.

    Attributes:
        forward: `(layer, out, work)` input to output: `out` receives the layer's output (`z_i: (B, n_i)` for a
            Linear, `h_i` for a ReLU; the last is `y_hat`), `work` is what its `workspace` made.
        backward: `(layer, grad_in, work)` output to input, the first layer left out: `grad_in` receives `dL/dx` of
            the layer; an in-place layer (ReLU) writes over the buffer its `dL/dy` arrived in.
        first: `(layer, grad_x, work)` for the first layer: `grad_x: (B, n_in)` receives `dL/dx` if asked for.
    """

    __slots__ = ("forward", "backward", "first")

    def __init__(self, layers: Sequence[Layer], x_shape: Shape | None, dtype: np.dtype) -> None:
        k_top = len(layers) - 1
        outs, works, grad_in = [None] * len(layers), [None] * len(layers), [None] * len(layers)
        if x_shape is not None:
            shapes = [x_shape]  # shapes[k]: the input of layer k
            for k, layer in enumerate(layers):
                shapes.append(layer.output_shape(shapes[k]))
                outs[k] = np.empty(shapes[k + 1], dtype=dtype)
                works[k] = layer.workspace(shapes[k], dtype)
            for k in range(k_top, -1, -1):  # an in-place layer reuses the buffer of the layer above; not the caller's
                in_place = 0 < k < k_top and layers[k].backward_in_place
                grad_in[k] = grad_in[k + 1] if in_place else np.empty(shapes[k], dtype=dtype)
        self.forward = list(zip(layers, outs, works, strict=True))
        self.backward = list(zip(layers, grad_in, works, strict=True))[:0:-1]
        self.first = (layers[0], grad_in[0], works[0])


def hidden_layers(sizes: Sequence[int]) -> list[Layer]:
    """`Linear(n_0, n_1), ReLU(), ..., Linear(n_(L-1), n_L), ReLU()` for `sizes = (n_0, ..., n_L)`."""
    return [layer for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True) for layer in (Linear(n_in, n_out), ReLU())]


class MLP:
    """ReLU hidden layers and an output head (linear by default), He-initialised from a seeded Generator.

    Args:
        sizes: layer widths `(n_in, n_hidden_1, ..., n_out)`, at least one hidden layer; `(3, 4, 2)` is the
            2-layer 3->4->2 net, `(4, 64, 64, 2)` a 3-layer one.
        rng: the Generator that draws the initial weights; or a sequence of S Generators for a stacked network of S
            members, member s drawn from `rng[s]` exactly as an unstacked network drawn from that Generator.
        dtype: `float32` (fast training) or `float64` (gradient checks).
        head: `head(n_hidden_last, n_out)` makes the output layer, any `Layer`; a layer class whose constructor
            takes the two widths qualifies. Called again by `clone`, `member` and `stack`.

    Attributes:
        members: S for a stacked network, None for an unstacked one.
        layers: `[Linear, ReLU, ..., Linear, ReLU, head]`, input to output.
        params: `{"W1": (n_1, n_0), "b1": (n_1,), "W2": ..., ...}` (stacked: `(S, n_1, n_0)`, `(S, n_1)`, ...), the
            head's parameters last, numbered like a layer (`W3`, `b3`, `g3` after two hidden layers); updated in
            place by the optimizers.
        grads: same keys and shapes as `params`, filled by `backward`.
        flat_params: `(n_params,)`, the buffer every array of `params` is a view of, in order.
        flat_grads: `(n_params,)`, the same for `grads`.
        linears: the `Linear` layers of `layers` (the head among them when it is one); `relus`: the `ReLU` layers.

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
                 dtype: str | type = "float64", head: Callable[[int, int], Layer] = Linear) -> None:
        sizes = tuple(sizes)
        if len(sizes) < 3:
            raise ValueError(f"sizes must be (n_in, hidden..., n_out) with at least one hidden layer, got {sizes}")
        for i, n in enumerate(sizes):
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
                raise ValueError(f"sizes[{i}] must be a positive integer layer width, got {n!r} in {sizes}")
        if not callable(head):
            raise TypeError(f"head must be a callable (n_in, n_out) -> Layer, got {type(head).__name__}")
        rngs = _member_generators(rng)
        self._allocate(tuple(int(n) for n in sizes), _resolve_dtype(dtype), None if rngs is None else len(rngs), head)
        for layer in self.layers:  # layer by layer, so each Generator draws W1, then W2, ... as an unstacked net's
            if rngs is None:
                layer.init_params(layer.params, rng)
            else:  # member s draws from its own Generator
                for s, rng_s in enumerate(rngs):
                    layer.init_params({name: p[s] for name, p in layer.params.items()}, rng_s)

    def _allocate(self, sizes: tuple[int, ...], dtype: np.dtype, members: int | None, head: Callable) -> None:
        """Fresh layers on zeroed flat buffers (`allocate`), and the buffers of both routes."""
        self.sizes, self.dtype, self.members, self.head = sizes, dtype, members, head
        top = head(sizes[-2], sizes[-1])
        if not isinstance(top, Layer):
            raise TypeError(f"head must make a dqn_np.layers.Layer, got {type(top).__name__}")
        self.layers: list[Layer] = [*hidden_layers(sizes[:-1]), top]
        self.flat_params, self.flat_grads, self.params, self.grads = allocate(self.layers, dtype, members)
        self.linears = [layer for layer in self.layers if isinstance(layer, Linear)]
        self.relus = [layer for layer in self.layers if isinstance(layer, ReLU)]
        self._x: np.ndarray | None = None  # the last forward's input
        self._unbuffered = _Pass(self.layers, None, dtype)  # the allocating route: every out= is None
        lead = () if members is None else (members,)
        layers = self.layers
        self._buffers = BufferCache(lambda n: _Pass(layers, (*lead, n, sizes[0]), dtype))  # unchecked route, per B

    def _twin(self, members: int | None) -> MLP:
        """A network of the same sizes, dtype and head with `members`, its parameters zero."""
        twin = object.__new__(type(self))
        twin._allocate(self.sizes, self.dtype, members, self.head)
        return twin

    def clone(self) -> MLP:
        """A new network with the same sizes, dtype, head, members and parameter values (and its own buffers)."""
        twin = self._twin(self.members)
        np.copyto(twin.flat_params, self.flat_params)
        return twin

    def member(self, s: int) -> MLP:
        """Member s of a stacked network as a new unstacked network (a copy of its parameters)."""
        if self.members is None:
            raise ValueError("member() needs a stacked network; this one has no member axis")
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 0 <= s < self.members:
            raise ValueError(f"s must be a member index in [0, {self.members}), got {s!r}")
        single = self._twin(None)
        for name, p in self.params.items():
            np.copyto(single.params[name], p[s])
        return single

    @classmethod
    def stack(cls, nets: Sequence[MLP]) -> MLP:
        """A stacked network whose member s is a copy of the unstacked `nets[s]` (same sizes, dtype and head)."""
        nets = list(nets)
        if not nets or any(not isinstance(n, MLP) or n.members is not None for n in nets):
            raise ValueError("stack needs one or more unstacked MLPs")
        first = nets[0]
        if any(n.sizes != first.sizes or n.dtype != first.dtype or n.head != first.head for n in nets):
            got = [(n.sizes, str(n.dtype), getattr(n.head, "__name__", n.head)) for n in nets]
            raise ValueError(f"stack needs networks of one size, dtype and head, got {got}")
        stacked = first._twin(len(nets))
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

    def _forward(self, x: np.ndarray, bufs: _Pass) -> np.ndarray:
        self._x = x
        h = x
        for layer, out, work in bufs.forward:
            h = layer.forward(h, out, work)  # z_i = h_{i-1} @ W_i.T + b_i, then h_i = relu(z_i); the head gives y_hat
        return h

    def backward(self, delta_out: np.ndarray) -> np.ndarray:
        """Backpropagate `delta_out = dL/dy_hat: (B, n_out)`; fill `grads`; return `dL/dx: (B, n_in)`, a new array.

        Stacked: `(S, B, n_out)` -> `(S, B, n_in)`; member s's gradients come from its own rows only.

        Raises:
            RuntimeError: no forward pass came first.
            ValueError: `delta_out` does not have the shape of the last forward's output.
        """
        x = self._x
        if x is None:
            raise RuntimeError("MLP.backward called before forward")
        delta = np.asarray(delta_out, dtype=self.dtype)
        want = x.shape
        for layer in self.layers:
            want = layer.output_shape(want)
        if delta.shape != want:
            axes = "(batch, n_out)" if self.members is None else "(members, batch, n_out)"
            raise ValueError(f"delta_out must have shape {axes} = {want} to match the last forward, got {delta.shape}")
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

    def _backward(self, delta: np.ndarray, bufs: _Pass, input_grad: bool) -> np.ndarray | None:
        for layer, grad_in, work in bufs.backward:
            # Linear: dW2 = delta2.T @ h1, db2 = sum(delta2), returns delta2 @ W2; ReLU: delta1 = (...) * (z1 > 0)
            delta = layer.backward(delta, grad_in, True, work)
        layer, grad_x, work = bufs.first
        return layer.backward(delta, grad_x, input_grad, work)  # dW1 = delta1.T @ x, db1 = sum(delta1)

    def copy_from(self, other: MLP) -> None:
        """Hard update: copy every parameter of `other` (same sizes, members and head) into this network, in place."""
        self.soft_update_from(other, tau=1.0)

    def soft_update_from(self, other: MLP, tau: float) -> None:
        """Polyak update `theta' <- tau * theta + (1 - tau) * theta'` with `theta` from `other`, in place."""
        if not isinstance(other, MLP) or other.sizes != self.sizes:
            got = other.sizes if isinstance(other, MLP) else type(other).__name__
            raise ValueError(f"other must be an MLP with sizes {self.sizes}, got {got}")
        if other.members != self.members:
            raise ValueError(f"other must have members={self.members} like this network, got {other.members}")
        if other.head != self.head:
            raise ValueError(f"other must have the head {self.head!r} like this network, got {other.head!r}")
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
