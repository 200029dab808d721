"""Tests for dqn_np.mlp: gradient checks at several depths, a backward pass worked by hand, shapes, target-network
updates, input validation and determinism."""

from __future__ import annotations

import re

import numpy as np
import pytest

from dqn_np.gradcheck import bind_losses, check_mlp, numerical_gradient, relative_error
from dqn_np.losses import mse, td_loss
from dqn_np.mlp import MLP

TOL = 1e-6
N_IN, N_HIDDEN, N_OUT = 4, 16, 3


def checkable_mlp(depth: int, rng: np.random.Generator) -> MLP:
    """A float64 MLP with `depth` hidden layers and small random biases (zero biases sit on the ReLU kink)."""
    mlp = MLP((N_IN,) + (N_HIDDEN,) * depth + (N_OUT,), rng=rng, dtype="float64")
    for name, p in mlp.params.items():
        if name.startswith("b"):
            p[...] = rng.normal(scale=0.1, size=p.shape)
    return mlp


def bound_loss(kind: str, y_hat: np.ndarray, rng: np.random.Generator):
    """`y_hat -> (loss, grad)` with targets drawn so that no residual sits within 0.1 of a kink."""
    n = y_hat.shape[0]
    residual = rng.choice([-1.0, 1.0], size=y_hat.shape) * rng.uniform(0.1, 3.0, size=y_hat.shape)
    y = y_hat + residual  # |residual| in [0.1, 3]: both sides of Huber's delta = 1, never an MAE tie
    actions = rng.integers(0, N_OUT, size=n)
    td_targets = y_hat[np.arange(n), actions] + residual[:, 0]
    return bind_losses(y, actions, td_targets)[kind]


@pytest.mark.parametrize("kind", ["mse", "mae", "huber", "td_mse", "td_huber"])
@pytest.mark.parametrize("batch", [1, 7, 64])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_every_parameter_passes_the_gradient_check(depth, batch, kind):
    rng = np.random.default_rng(100 * depth + batch)
    mlp = checkable_mlp(depth, rng)
    x = rng.standard_normal((batch, N_IN))
    reports = check_mlp(mlp, x, bound_loss(kind, mlp.forward(x), rng), tol=TOL)
    assert [r.name for r in reports] == list(mlp.params) and len(reports) == 2 * (depth + 1)
    for r in reports:
        assert r.n_checked == mlp.params[r.name].size
        assert r.passed and r.rel_error < TOL, r


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_backward_returns_the_input_gradient(depth):
    rng = np.random.default_rng(depth)
    mlp = checkable_mlp(depth, rng)
    x = rng.standard_normal((7, N_IN))
    loss = bound_loss("mse", mlp.forward(x), rng)
    grad_x = mlp.backward(loss(mlp.forward(x))[1])
    numeric = numerical_gradient(lambda: loss(mlp.forward(x))[0], x, list(np.ndindex(x.shape))).reshape(x.shape)
    assert grad_x.shape == x.shape and relative_error(grad_x, numeric) < TOL


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_forward_is_the_relu_chain_written_out(depth):
    rng = np.random.default_rng(depth)
    mlp = checkable_mlp(depth, rng)
    x = rng.standard_normal((5, N_IN))
    h = x
    for i in range(1, depth + 1):
        h = np.maximum(h @ mlp.params[f"W{i}"].T + mlp.params[f"b{i}"], 0.0)
    y_hat = h @ mlp.params[f"W{depth + 1}"].T + mlp.params[f"b{depth + 1}"]
    np.testing.assert_allclose(mlp.forward(x), y_hat, rtol=1e-14, atol=1e-14)
    np.testing.assert_array_equal(mlp(x), mlp.forward(x))


def test_seed_network_3_4_2_shapes_on_one_example():
    mlp = MLP((3, 4, 2), rng=np.random.default_rng(0))
    x = np.ones((1, 3))
    y_hat = mlp.forward(x)
    _, delta2 = mse(y_hat, np.zeros((1, 2)))
    grad_x = mlp.backward(delta2)
    assert x.shape == (1, 3) and y_hat.shape == (1, 2) and delta2.shape == (1, 2) and grad_x.shape == (1, 3)
    assert mlp.params["W1"].shape == (4, 3) and mlp.params["W2"].shape == (2, 4)
    assert mlp.params["b1"].shape == (4,) and mlp.params["b2"].shape == (2,)
    assert mlp.grads["W2"].shape == (2, 4) and mlp.grads["W1"].shape == (4, 3)
    assert mlp.grads["b2"].shape == (2,) and mlp.grads["b1"].shape == (4,)
    assert list(mlp.params) == ["W1", "b1", "W2", "b2"] and mlp.grads.keys() == mlp.params.keys()


def test_backward_worked_by_hand_on_the_3_4_2_network():
    mlp = MLP((3, 4, 2), rng=np.random.default_rng(0))
    W1 = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 1.0, 0.0], [1.0, -1.0, 1.0]])
    b1 = np.array([0.5, -1.0, 0.5, 1.0])
    W2 = np.array([[1.0, 2.0, 0.0, -1.0], [0.0, -1.0, 1.0, 2.0]])
    b2 = np.array([0.0, 1.0])
    mlp.load_params({"W1": W1, "b1": b1, "W2": W2, "b2": b2})
    x = np.array([[1.0, 2.0, -1.0]])
    y = np.array([[1.0, 2.0]])

    # z1 = W1 x + b1 = [1+0-1+0.5, 0+2+0-1, -1+2+0+0.5, 1-2-1+1] = [0.5, 1, 1.5, -1]
    z1 = np.array([[0.5, 1.0, 1.5, -1.0]])
    # h1 = relu(z1): the last unit is off
    h1 = np.array([[0.5, 1.0, 1.5, 0.0]])
    # y_hat = W2 h1 + b2 = [0.5+2+0-0+0, 0-1+1.5+0+1] = [2.5, 1.5]
    y_hat = np.array([[2.5, 1.5]])
    # MSE on one example: L = (2.5-1)^2 + (1.5-2)^2 = 2.25 + 0.25; delta2 = 2 (y_hat - y) = [3, -1]
    delta2 = np.array([[3.0, -1.0]])
    # dW2 = delta2.T @ h1 = [3 * h1, -1 * h1]; db2 = delta2
    dW2 = np.array([[1.5, 3.0, 4.5, 0.0], [-0.5, -1.0, -1.5, 0.0]])
    db2 = np.array([3.0, -1.0])
    # delta2 @ W2 = 3 [1, 2, 0, -1] - [0, -1, 1, 2] = [3, 7, -1, -5]; masked by z1 > 0 -> [3, 7, -1, 0]
    delta1 = np.array([[3.0, 7.0, -1.0, 0.0]])
    # dW1 = delta1.T @ x = outer([3, 7, -1, 0], [1, 2, -1]); db1 = delta1
    dW1 = np.array([[3.0, 6.0, -3.0], [7.0, 14.0, -7.0], [-1.0, -2.0, 1.0], [0.0, 0.0, 0.0]])
    db1 = np.array([3.0, 7.0, -1.0, 0.0])
    # dL/dx = delta1 @ W1 = 3 [1, 0, 1] + 7 [0, 1, 0] - [-1, 1, 0] = [4, 6, 3]
    grad_x = np.array([[4.0, 6.0, 3.0]])

    out = mlp.forward(x)
    np.testing.assert_array_equal(mlp.linears[0]._x, x)
    np.testing.assert_array_equal(mlp.relus[0]._z, z1)
    np.testing.assert_array_equal(mlp.linears[1]._x, h1)
    np.testing.assert_array_equal(out, y_hat)
    loss, d2 = mse(out, y)
    assert loss == 2.5
    np.testing.assert_array_equal(d2, delta2)
    np.testing.assert_array_equal(mlp.backward(d2), grad_x)
    np.testing.assert_array_equal(delta1, (delta2 @ W2) * (z1 > 0))
    for name, expected in {"W2": dW2, "b2": db2, "W1": dW1, "b1": db1}.items():
        np.testing.assert_array_equal(mlp.grads[name], expected, err_msg=name)


def test_copy_from_copies_values_not_references():
    target = MLP((3, 5, 2), rng=np.random.default_rng(1))
    online = MLP((3, 5, 2), rng=np.random.default_rng(2))
    target.copy_from(online)
    for name in online.params:
        np.testing.assert_array_equal(target.params[name], online.params[name])
        assert target.params[name] is not online.params[name]
    x = np.ones((1, 3))
    np.testing.assert_array_equal(target.forward(x), online.forward(x))
    snapshot = target.params["W1"].copy()
    online.params["W1"] += 1.0  # the copy is independent of later updates to the source
    np.testing.assert_array_equal(target.params["W1"], snapshot)


@pytest.mark.parametrize("tau", [0.005, 0.25, 1.0])
def test_soft_update_moves_tau_of_the_way_towards_the_source(tau):
    target = MLP((3, 5, 5, 2), rng=np.random.default_rng(1))
    online = MLP((3, 5, 5, 2), rng=np.random.default_rng(2))
    for name in online.params:
        online.params[name] += 0.3  # nonzero biases too
    before = {name: p.copy() for name, p in target.params.items()}
    target.soft_update_from(online, tau=tau)
    for name, p in target.params.items():
        np.testing.assert_allclose(p, tau * online.params[name] + (1 - tau) * before[name], rtol=1e-14, atol=1e-15)


def test_soft_update_converges_to_the_source():
    target = MLP((2, 3, 1), rng=np.random.default_rng(1))
    online = MLP((2, 3, 1), rng=np.random.default_rng(2))
    gap = np.abs(target.params["W1"] - online.params["W1"]).max()
    for _ in range(10):
        target.soft_update_from(online, tau=0.5)
    assert np.abs(target.params["W1"] - online.params["W1"]).max() == pytest.approx(gap / 2**10, rel=1e-6)


@pytest.mark.parametrize("other_sizes", [(3, 6, 2), (3, 5, 5, 2), (4, 5, 2)])
def test_target_updates_reject_a_network_of_other_sizes(other_sizes):
    net = MLP((3, 5, 2), rng=np.random.default_rng(0))
    other = MLP(other_sizes, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=re.escape(f"other must be an MLP with sizes (3, 5, 2), got {other_sizes}")):
        net.copy_from(other)
    with pytest.raises(ValueError, match="other must be an MLP with sizes"):
        net.soft_update_from(other, tau=0.5)
    with pytest.raises(ValueError, match="other must be an MLP with sizes .* got dict"):
        net.copy_from(dict(net.params))


@pytest.mark.parametrize("tau", [0.0, -0.1, 1.5, float("nan")])
def test_soft_update_rejects_tau_outside_0_1(tau):
    net, other = MLP((3, 5, 2), rng=np.random.default_rng(0)), MLP((3, 5, 2), rng=np.random.default_rng(1))
    before = net.params["W1"].copy()
    with pytest.raises(ValueError, match=rf"tau must be in \(0, 1\], got {tau}"):
        net.soft_update_from(other, tau=tau)
    np.testing.assert_array_equal(net.params["W1"], before)


@pytest.mark.parametrize(
    ("sizes", "match"),
    [
        ((4, 0, 2), r"sizes\[1\] must be a positive integer layer width, got 0 in \(4, 0, 2\)"),
        ((4, 8, 0), r"sizes\[2\] must be a positive integer layer width, got 0 in \(4, 8, 0\)"),
        ((4, -3, 2), r"sizes\[1\] must be a positive integer layer width, got -3"),
        ((4, 2.5, 2), r"sizes\[1\] must be a positive integer layer width, got 2.5"),
        ((4, True, 2), r"sizes\[1\] must be a positive integer layer width, got True"),
        ((4, 2), r"at least one hidden layer, got \(4, 2\)"),
    ],
)
def test_bad_sizes_raise_naming_the_entry(sizes, match):
    with pytest.raises(ValueError, match=match):
        MLP(sizes, rng=np.random.default_rng(0))


@pytest.mark.parametrize("dtype", ["float16", "int32", np.int64, "complex128", "not-a-dtype", None])
def test_dtype_other_than_float32_or_float64_raises(dtype):
    with pytest.raises(ValueError, match=rf"dtype must be float32 or float64, got {dtype!r}"):
        MLP((3, 4, 2), rng=np.random.default_rng(0), dtype=dtype)


def test_rng_must_be_a_generator():
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator, got int"):
        MLP((3, 4, 2), rng=0)


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.zeros((2, 5)), r"x must have shape \(batch, 3\) with batch >= 1, got shape \(2, 5\)"),
        (np.zeros(3), r"x must have shape \(batch, 3\) with batch >= 1, got shape \(3,\)"),
        (np.zeros((0, 3)), r"x must have shape \(batch, 3\) with batch >= 1, got shape \(0, 3\)"),
        (np.zeros((1, 2, 3)), r"x must have shape \(batch, 3\) with batch >= 1, got shape \(1, 2, 3\)"),
        (np.array([[0.0, np.nan, 0.0]]), r"x must be finite, got nan at index \(0, 1\)"),
        (np.array([[0.0, 0.0, 0.0], [np.inf, 0.0, 0.0]]), r"x must be finite, got inf at index \(1, 0\)"),
    ],
)
def test_forward_rejects_bad_x_naming_the_shape(x, match):
    with pytest.raises(ValueError, match=match):
        MLP((3, 4, 2), rng=np.random.default_rng(0)).forward(x)


@pytest.mark.parametrize("shape", [(5, 3), (4, 2), (2,), (4, 2, 1)])
def test_backward_rejects_delta_out_of_the_wrong_shape(shape):
    mlp = MLP((3, 4, 3), rng=np.random.default_rng(0))
    mlp.forward(np.zeros((4, 3)))
    want = f"delta_out must have shape (batch, n_out) = (4, 3) to match the last forward, got {shape}"
    with pytest.raises(ValueError, match=re.escape(want)):
        mlp.backward(np.zeros(shape))


def test_backward_before_forward_raises():
    with pytest.raises(RuntimeError, match="MLP.backward called before forward"):
        MLP((3, 4, 2), rng=np.random.default_rng(0)).backward(np.zeros((1, 2)))


def test_load_params_rejects_wrong_keys_shapes_and_non_finite_values():
    mlp = MLP((3, 4, 2), rng=np.random.default_rng(0))
    good = {name: p.copy() for name, p in mlp.params.items()}
    with pytest.raises(ValueError, match=r"params must have keys \['W1', 'W2', 'b1', 'b2'\], got \['W1', 'W2', 'b1'\]"):
        mlp.load_params({k: v for k, v in good.items() if k != "b2"})
    with pytest.raises(ValueError, match=r"params\['W1'\] must have shape \(4, 3\), got \(3, 4\)"):
        mlp.load_params({**good, "W1": good["W1"].T})
    with pytest.raises(ValueError, match=r"params\['b1'\] must be finite"):
        mlp.load_params({**good, "b1": np.array([0.0, np.nan, 0.0, 0.0])})


def test_biases_start_at_zero_and_weights_follow_he_init():
    mlp = MLP((256, 512, 1), rng=np.random.default_rng(0))
    assert not mlp.params["b1"].any() and not mlp.params["b2"].any()
    assert mlp.params["W1"].std() == pytest.approx(np.sqrt(2 / 256), rel=0.02)
    assert mlp.params["W2"].std() == pytest.approx(np.sqrt(2 / 512), rel=0.2)


@pytest.mark.parametrize("sizes", [(3, 4, 2), (4, 16, 16, 3)])
def test_same_seed_gives_identical_parameters_and_outputs_and_different_seeds_differ(sizes):
    a, b, c = (MLP(sizes, rng=np.random.default_rng(seed)) for seed in (7, 7, 8))
    x = np.random.default_rng(0).standard_normal((5, sizes[0]))
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])
        if name.startswith("W"):
            assert not np.array_equal(a.params[name], c.params[name])
    np.testing.assert_array_equal(a.forward(x), b.forward(x))
    assert not np.array_equal(a.forward(x), c.forward(x))


@pytest.mark.parametrize("dtype", ["float32", np.float32, "float64", np.float64])
def test_dtype_flows_through_params_outputs_and_grads(dtype):
    mlp = MLP((3, 8, 8, 2), rng=np.random.default_rng(0), dtype=dtype)
    want = np.dtype(dtype)
    x = np.random.default_rng(1).standard_normal((4, 3))  # float64 input is cast to the network's dtype
    y_hat = mlp.forward(x)
    _, delta2 = td_loss(y_hat, np.array([0, 1, 1, 0]), np.zeros(4))
    grad_x = mlp.backward(delta2)
    assert y_hat.dtype == want and grad_x.dtype == want and mlp.dtype == want
    assert all(p.dtype == want for p in mlp.params.values())
    assert all(g.dtype == want for g in mlp.grads.values())


def test_float32_and_float64_networks_agree():
    x = np.random.default_rng(1).standard_normal((4, 3))
    y32 = MLP((3, 8, 2), rng=np.random.default_rng(0), dtype="float32").forward(x)
    y64 = MLP((3, 8, 2), rng=np.random.default_rng(0), dtype="float64").forward(x)
    np.testing.assert_allclose(y32, y64, rtol=1e-5, atol=1e-6)


# --- the unchecked route: same math into preallocated buffers -----------------------------------------------------


def validated_pass(mlp: MLP, x: np.ndarray, delta_out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(y_hat, dL/dx, flat grads)` through the checked, allocating route."""
    y_hat = mlp.forward(x)
    grad_x = mlp.backward(delta_out)
    return y_hat, grad_x, mlp.flat_grads.copy()


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_unchecked_route_is_bit_identical_to_the_validated_one_across_updates_and_batch_sizes(depth):
    # Exactly equal, not merely close: both routes make the same NumPy calls in the same order; only out= differs.
    rng = np.random.default_rng(depth)
    mlp = checkable_mlp(depth, rng)
    for step, n in enumerate([7, 64, 1, 7, 64, 1]):  # every size comes back after another: its buffers are reused
        x = rng.standard_normal((n, N_IN))
        delta_out = rng.standard_normal((n, N_OUT))
        y_hat, grad_x, grads = validated_pass(mlp, x, delta_out)
        mlp.flat_grads[...] = np.nan  # the unchecked backward must overwrite every gradient
        y_fast = mlp.forward_unchecked(x)
        np.testing.assert_array_equal(y_fast, y_hat, err_msg=f"step {step}")
        np.testing.assert_array_equal(mlp.backward_unchecked(delta_out, input_grad=True), grad_x)
        np.testing.assert_array_equal(mlp.flat_grads, grads, err_msg=f"step {step}")
        assert mlp.backward_unchecked(delta_out) is None  # no dL/dx unless asked; the same gradients again
        np.testing.assert_array_equal(mlp.flat_grads, grads)
        mlp.flat_params -= 0.1 * mlp.flat_grads  # a gradient step, so later rounds run on other weights
    assert len(mlp._buffers) == 3


def test_unchecked_buffers_of_one_batch_size_do_not_corrupt_another_or_another_network():
    rng = np.random.default_rng(0)
    online = checkable_mlp(2, rng)
    target = online.clone()
    target.flat_params += 0.1
    xa, xb, xt = rng.standard_normal((7, N_IN)), rng.standard_normal((64, N_IN)), rng.standard_normal((64, N_IN))
    delta_b = rng.standard_normal((64, N_OUT))
    y_a = online.forward_unchecked(xa)
    y_b = online.forward_unchecked(xb)
    y_t = target.forward_unchecked(xt)  # same batch size, another network: its own buffers
    online.backward_unchecked(delta_b)  # backward of the last forward (batch B), after A's and the target's
    fast_grads = online.flat_grads.copy()

    np.testing.assert_array_equal(y_a, online.forward(xa))
    np.testing.assert_array_equal(y_b, online.forward(xb))
    np.testing.assert_array_equal(y_t, target.forward(xt))
    online.forward(xb)
    online.backward(delta_b)
    np.testing.assert_array_equal(fast_grads, online.flat_grads)
    assert not np.shares_memory(y_b, y_t) and not np.shares_memory(y_a, y_b)


def test_unchecked_forward_returns_the_same_buffer_and_the_cache_stays_bounded():
    mlp = MLP((3, 8, 2), rng=np.random.default_rng(0))
    x = np.ones((5, 3))
    assert mlp.forward_unchecked(x) is mlp.forward_unchecked(2 * x)  # no new output array per call
    assert mlp.forward(x) is not mlp.forward(x)  # the checked route returns arrays the caller may keep
    for n in range(1, 20):
        y = mlp.forward_unchecked(np.full((n, 3), 0.5))
        np.testing.assert_array_equal(y, mlp.forward(np.full((n, 3), 0.5)))
    assert len(mlp._buffers) == 4  # the oldest sizes were dropped


def traced_peak(fn, repeats: int = 3) -> int:
    """Peak bytes traced (NumPy reports its array data to tracemalloc) over `repeats` calls of `fn`."""
    import tracemalloc

    tracemalloc.start()
    try:
        for _ in range(repeats):
            fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_unchecked_forward_and_backward_allocate_no_arrays_after_the_first_call():
    mlp = MLP((4, 256, 256, 2), rng=np.random.default_rng(0), dtype="float64")
    x, delta_out = np.ones((128, 4)), np.ones((128, 2))
    activation = 128 * 256 * 8  # bytes of one (128, 256) float64 activation
    mlp.forward_unchecked(x)
    mlp.backward_unchecked(delta_out)  # the first call with this batch size allocates the buffers
    # What remains is NumPy's own iterator buffer (at most 8192 elements) for the broadcast bias add `z += b` and the
    # bool -> float cast of `delta * mask`: a quarter of one activation here, whatever the batch size.
    assert traced_peak(lambda: mlp.forward_unchecked(x)) < activation // 3
    assert traced_peak(lambda: mlp.backward_unchecked(delta_out)) < activation // 3
    assert traced_peak(lambda: mlp.forward(x)) > 2 * activation  # the checked route allocates z, h and y_hat
    assert traced_peak(lambda: mlp.backward(delta_out)) > 2 * activation
