"""Tests for the layer seam: a network is a list of layers that declare their parameters, so a layer defined here, in a
test, plugs in as the output head with no edit to dqn_np: laid out on the flat buffers, gradient-checked, optimized,
cloned, split into members, stacked and loaded like the built-in layers."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from dqn_np.gradcheck import bind_losses, check_layer, check_mlp
from dqn_np.layers import Layer, Linear, ReLU, Shape
from dqn_np.mlp import MLP, allocate
from dqn_np.optim import SGD, Adam

TOL = 1e-6
SIZES = (4, 5, 5, 3)  # two hidden layers, so the head's parameters are numbered 3
HEAD_NAMES = ["W1", "b1", "W2", "b2", "W3", "b3", "g3"]


class ScaledLinear(Layer):
    """A test-only head `z = (x @ W.T + b) * g` with a learned per-unit scale `g: (n_out,)`.

    Backward, with `u = x @ W.T + b` and `delta = dL/dz`: `dg = sum_B(delta * u)`, `du = delta * g`, then as Linear:
    `dW = du.T @ x`, `db = sum_B(du)`, `dL/dx = du @ W`. Its workspace holds `u` and `du`: `(B, n_out)` each.
    """

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.n_in, self.n_out = n_in, n_out
        self._x: np.ndarray | None = None
        self._u: np.ndarray | None = None

    def param_shapes(self) -> dict[str, Shape]:
        return {"W": (self.n_out, self.n_in), "b": (self.n_out,), "g": (self.n_out,)}

    def init_params(self, params: dict[str, np.ndarray], rng: np.random.Generator) -> None:
        W = params["W"]
        W[...] = rng.standard_normal(W.shape) * np.sqrt(2.0 / self.n_in)  # He, as Linear draws it
        params["g"][...] = 1.0

    def output_shape(self, x_shape: Shape) -> Shape:
        return (*x_shape[:-1], self.n_out)

    def workspace(self, x_shape: Shape, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        return np.empty(self.output_shape(x_shape), dtype), np.empty(self.output_shape(x_shape), dtype)

    def forward(self, x, out=None, work=None):
        u, _ = (None, None) if work is None else work
        u = np.matmul(x, self.params["W"].swapaxes(-1, -2), out=u)
        u += self.params["b"][..., None, :]
        self._x, self._u = x, u
        return np.multiply(u, self.params["g"][..., None, :], out=out)

    def backward(self, grad_out, out=None, input_grad=True, work=None):
        du = None if work is None else work[1]
        du = np.multiply(grad_out, self._u, out=du)
        np.add.reduce(du, axis=-2, out=self.grads["g"])  # dg = sum_B(delta * u)
        du = np.multiply(grad_out, self.params["g"][..., None, :], out=du)  # du = delta * g
        np.matmul(du.swapaxes(-1, -2), self._x, out=self.grads["W"])
        np.add.reduce(du, axis=-2, out=self.grads["b"])
        return np.matmul(du, self.params["W"], out=out) if input_grad else None


def generators(members: int | None) -> np.random.Generator | list[np.random.Generator]:
    return np.random.default_rng(7) if members is None else [np.random.default_rng(100 + s) for s in range(members)]


def head_net(members: int | None, rng: np.random.Generator, dtype: str = "float64") -> MLP:
    """A float64 network with the ScaledLinear head; random biases and scales, so no ReLU input sits on its kink."""
    net = MLP(SIZES, rng=generators(members), dtype=dtype, head=ScaledLinear)
    for name, p in net.params.items():
        if name[0] in "bg":
            p[...] = rng.normal(scale=0.1, size=p.shape) + (name[0] == "g")
    return net


def traced_peak(fn, repeats: int = 3) -> int:
    """Peak bytes traced (NumPy reports its array data to tracemalloc) over `repeats` calls of `fn`."""
    tracemalloc.start()
    try:
        for _ in range(repeats):
            fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --- the allocator -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("members", [None, 3])
def test_allocate_lays_out_declared_parameters_in_order_as_numbered_views(members):
    layers = [Linear(3, 4), ReLU(), ScaledLinear(4, 2)]
    layout = allocate(layers, np.dtype(np.float64), members)
    lead = () if members is None else (members,)
    assert list(layout.params) == list(layout.grads) == ["W1", "b1", "W2", "b2", "g2"]
    shapes = [(4, 3), (4,), (2, 4), (2,), (2,)]
    assert [p.shape for p in layout.params.values()] == [(*lead, *s) for s in shapes]
    offset = 0
    for name, p in layout.params.items():  # consecutive views: exactly what the optimizers' fused path needs
        assert p.base is layout.flat_params and layout.grads[name].base is layout.flat_grads
        assert p.__array_interface__["data"][0] == layout.flat_params.__array_interface__["data"][0] + offset
        offset += p.nbytes
    assert offset == layout.flat_params.nbytes and not layout.flat_params.any()
    assert layers[1].params == {} and layers[0].params["W"] is layout.params["W1"]
    assert layers[2].params["g"] is layout.params["g2"] and layers[2].grads["g"] is layout.grads["g2"]


class OneParam(Layer):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def param_shapes(self) -> dict[str, Shape]:
        return {self.name: (1,)}


def test_allocate_refuses_two_parameters_of_one_name():
    layers = [OneParam("b1"), *(OneParam("a") for _ in range(9)), OneParam("b")]  # b1 of layer 1, b of layer 11
    with pytest.raises(ValueError, match=r"parameter names must be unique across layers, got \['b11', .*'b11'\]"):
        allocate(layers, np.dtype(np.float64))


def test_the_default_network_keeps_its_names_layout_and_he_draws():
    net = MLP(SIZES, rng=np.random.default_rng(3), dtype="float32")
    assert [type(layer) for layer in net.layers] == [Linear, ReLU, Linear, ReLU, Linear]
    assert net.linears == net.layers[::2] and net.relus == net.layers[1::2] and net.head is Linear
    assert list(net.params) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    np.testing.assert_array_equal(net.flat_params, np.concatenate([p.ravel() for p in net.params.values()]))
    twin = np.random.default_rng(3)  # the same draws, in the same order: W1, W2, W3; the biases stay zero
    for i, (n_in, n_out) in enumerate(zip(SIZES[:-1], SIZES[1:], strict=True), start=1):
        W = twin.standard_normal((n_out, n_in)) * np.sqrt(2.0 / n_in)
        np.testing.assert_array_equal(net.params[f"W{i}"], W.astype(np.float32))
        assert not net.params[f"b{i}"].any()


# --- a head defined in a test --------------------------------------------------------------------------------------


@pytest.mark.parametrize("members", [None, 3])
def test_a_head_with_g_1_computes_exactly_what_the_linear_head_does(members):
    rng = np.random.default_rng(0)
    linear, scaled = MLP(SIZES, rng=generators(members)), MLP(SIZES, rng=generators(members), head=ScaledLinear)
    assert list(scaled.params) == HEAD_NAMES and not (scaled.params["g3"] - 1.0).any()
    for name, p in linear.params.items():  # the same He draws from the same Generators
        np.testing.assert_array_equal(scaled.params[name], p)
    x = rng.standard_normal((*(() if members is None else (members,)), 6, SIZES[0]))
    np.testing.assert_array_equal(scaled.forward(x), linear.forward(x))
    np.testing.assert_array_equal(scaled.forward_unchecked(x), linear.forward_unchecked(x))


@pytest.mark.parametrize("kind", ["mse", "td_huber"])
@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("members", [None, 3])
def test_every_parameter_of_a_network_with_the_head_passes_the_gradient_check(members, batch, kind):
    rng = np.random.default_rng(batch)
    net = head_net(members, rng)
    lead = () if members is None else (members,)
    x = rng.standard_normal((*lead, batch, SIZES[0]))
    y_hat = net.forward(x)
    actions = rng.integers(0, SIZES[-1], size=(*lead, batch))
    loss = bind_losses(y_hat + rng.uniform(0.1, 3.0, y_hat.shape), actions, rng.standard_normal((*lead, batch)))[kind]
    reports = check_mlp(net, x, loss, tol=TOL)
    assert [r.name for r in reports] == HEAD_NAMES
    assert all(r.passed and r.rel_error < TOL and r.n_checked == net.params[r.name].size for r in reports), reports


LAYERS = {"scaled": lambda: ScaledLinear(4, 3), "linear": lambda: Linear(4, 3), "relu": ReLU}


@pytest.mark.parametrize("members", [None, 3])
@pytest.mark.parametrize("make", list(LAYERS.values()), ids=list(LAYERS))
def test_check_layer_passes_on_every_layer_alone_with_its_input_gradient(make, members):
    rng = np.random.default_rng(1)
    lead = () if members is None else (members,)
    x = rng.choice([-1.0, 1.0], size=(*lead, 7, 4)) * rng.uniform(0.1, 2.0, size=(*lead, 7, 4))  # off ReLU's kink
    layer = make()
    reports = check_layer(layer, x, rng, members)
    assert [r.name for r in reports] == [*layer.param_shapes(), "x"]
    assert all(r.passed and r.rel_error < TOL for r in reports), reports


def test_check_layer_fails_a_head_whose_backward_forgets_a_term(monkeypatch):
    rng = np.random.default_rng(2)
    real = ScaledLinear.backward

    def forgets_g(self, grad_out, out=None, input_grad=True, work=None):
        grad_x = real(self, grad_out, out, input_grad, work)
        self.grads["g"][...] = 0.0
        return grad_x

    monkeypatch.setattr(ScaledLinear, "backward", forgets_g)
    reports = check_layer(ScaledLinear(4, 3), rng.standard_normal((7, 4)), rng)
    assert [r.name for r in reports if not r.passed] == ["g"]


@pytest.mark.parametrize("members", [None, 3])
def test_the_unchecked_route_runs_the_head_bit_for_bit_and_allocates_nothing_after_the_first_call(members):
    rng = np.random.default_rng(4)
    net = head_net(members, rng)
    lead = () if members is None else (members,)
    for n in [7, 64, 7]:
        x, delta = rng.standard_normal((*lead, n, SIZES[0])), rng.standard_normal((*lead, n, SIZES[-1]))
        y_hat, grad_x = net.forward(x), net.backward(delta)
        grads = net.flat_grads.copy()
        net.flat_grads[...] = np.nan
        np.testing.assert_array_equal(net.forward_unchecked(x), y_hat)
        np.testing.assert_array_equal(net.backward_unchecked(delta, input_grad=True), grad_x)
        np.testing.assert_array_equal(net.flat_grads, grads)
    wide = MLP((4, 256, 256, 2), rng=generators(members), head=ScaledLinear)
    x, delta = np.ones((*lead, 128, 4)), np.ones((*lead, 128, 2))
    wide.forward_unchecked(x)
    wide.backward_unchecked(delta)
    activation = int(np.prod(lead)) * 128 * 256 * 8
    assert traced_peak(lambda: wide.forward_unchecked(x)) < activation // 3  # only NumPy's own iterator buffers
    assert traced_peak(lambda: wide.backward_unchecked(delta)) < activation // 3


@pytest.mark.parametrize("members", [None, 3])
def test_adam_keeps_the_heads_moments_under_its_own_names_on_the_fused_path(members):
    rng = np.random.default_rng(5)
    net = head_net(members, rng)
    adam = Adam(lr=1e-2)
    lead = () if members is None else (members,)
    for _ in range(3):
        net.forward_unchecked(rng.standard_normal((*lead, 8, SIZES[0])))
        net.backward_unchecked(rng.standard_normal((*lead, 8, SIZES[-1])))
        adam.step_unchecked(net.params, net.grads)
    assert adam._fused is not None  # the head's parameters tile the flat buffer with the rest
    state = adam.state_dict()
    assert set(state) == {"t"} | {f"{slot}.{name}" for slot in ("m", "v") for name in HEAD_NAMES}
    assert state["m.g3"].shape == net.params["g3"].shape and state["m.g3"].any()
    restored = Adam(lr=1e-2)  # through a checkpoint's plain arrays, it goes on exactly
    restored.load_state_dict(state)
    twin = net.clone()
    net.forward(rng.standard_normal((*lead, 8, SIZES[0])))
    net.backward(rng.standard_normal((*lead, 8, SIZES[-1])))
    np.copyto(twin.flat_grads, net.flat_grads)
    adam.step(net.params, net.grads)
    restored.step(twin.params, twin.grads)
    np.testing.assert_array_equal(twin.flat_params, net.flat_params)


def test_a_stacked_head_steps_as_each_member_alone():
    rng = np.random.default_rng(6)
    stacked = head_net(3, rng)
    singles = [stacked.member(s) for s in range(3)]
    opt, opts = SGD(lr=1e-2, momentum=0.9), [SGD(lr=1e-2, momentum=0.9) for _ in range(3)]
    for _ in range(3):
        stacked.forward(rng.standard_normal((3, 8, SIZES[0])))
        stacked.backward(rng.standard_normal((3, 8, SIZES[-1])))
        opt.step(stacked.params, stacked.grads)
        for s, single in enumerate(singles):
            for name, g in stacked.grads.items():
                single.grads[name][...] = g[s]
            opts[s].step(single.params, single.grads)
    for s, single in enumerate(singles):
        np.testing.assert_array_equal(stacked.member(s).flat_params, single.flat_params)


def test_clone_member_stack_and_load_params_keep_the_head():
    rng = np.random.default_rng(8)
    stacked = head_net(3, rng)
    twin = stacked.clone()
    assert twin.head is ScaledLinear and isinstance(twin.layers[-1], ScaledLinear)
    assert twin.layers[-1] is not stacked.layers[-1] and not np.shares_memory(twin.flat_params, stacked.flat_params)
    np.testing.assert_array_equal(twin.flat_params, stacked.flat_params)
    x = rng.standard_normal((3, 5, SIZES[0]))
    y_hat = stacked.forward(x)
    members = [stacked.member(s) for s in range(3)]
    for s, single in enumerate(members):
        assert single.members is None and list(single.params) == HEAD_NAMES and single.head is ScaledLinear
        np.testing.assert_allclose(single.forward(x[s]), y_hat[s], rtol=1e-12, atol=1e-12)
    again = MLP.stack(members)
    np.testing.assert_array_equal(again.flat_params, stacked.flat_params)
    loaded = MLP(SIZES, rng=generators(3), head=ScaledLinear)
    loaded.load_params({name: p.copy() for name, p in stacked.params.items()})
    np.testing.assert_array_equal(loaded.forward(x), y_hat)
    fresh = MLP(SIZES, rng=generators(3), head=ScaledLinear)  # member s of a fresh stack: the net of seed 100 + s
    for s in range(3):
        single = MLP(SIZES, rng=np.random.default_rng(100 + s), head=ScaledLinear)
        np.testing.assert_array_equal(fresh.member(s).flat_params, single.flat_params)
    with pytest.raises(ValueError, match=r"params must have keys .*'g3'"):
        loaded.load_params({name: p for name, p in stacked.params.items() if name != "g3"})


def test_networks_of_other_heads_do_not_mix():
    linear, scaled = MLP(SIZES, rng=generators(None)), MLP(SIZES, rng=generators(None), head=ScaledLinear)
    with pytest.raises(ValueError, match="one size, dtype and head"):
        MLP.stack([linear, scaled])
    with pytest.raises(ValueError, match="other must have the head"):
        linear.copy_from(scaled)
    with pytest.raises(ValueError, match="other must have the head"):
        scaled.soft_update_from(linear, tau=0.5)


@pytest.mark.parametrize(("head", "match"), [(3, "head must be a callable"), (lambda n_in, n_out: object(),
                                                                              "head must make a dqn_np.layers.Layer")])
def test_a_head_that_is_not_a_layer_factory_is_refused(head, match):
    with pytest.raises(TypeError, match=match):
        MLP(SIZES, rng=np.random.default_rng(0), head=head)


def test_backward_checks_delta_against_the_heads_output_shape():
    net = MLP(SIZES, rng=np.random.default_rng(0), head=ScaledLinear)
    net.forward(np.zeros((4, SIZES[0])))
    with pytest.raises(ValueError, match=r"delta_out must have shape \(batch, n_out\) = \(4, 3\) .* got \(4, 2\)"):
        net.backward(np.zeros((4, 2)))
