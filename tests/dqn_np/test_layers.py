"""Tests for dqn_np.layers: Linear and ReLU backward passes, and the ReLU subgradient convention at 0."""

from __future__ import annotations

import numpy as np
import pytest

from dqn_np.gradcheck import check_gradients, numerical_gradient, relative_error
from dqn_np.layers import Linear, ReLU, relu_grad

TOL = 1e-6


def linear(n_in: int, n_out: int, rng: np.random.Generator) -> Linear:
    return Linear.from_arrays(rng.standard_normal((n_out, n_in)), rng.normal(scale=0.1, size=n_out))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_grad_is_one_above_zero_and_zero_elsewhere_including_exactly_zero(dtype):
    z = np.array([[-2.0, -1e-30, -0.0, 0.0, 1e-30, 3.0]], dtype=dtype)
    g = relu_grad(z)
    np.testing.assert_array_equal(g, [[0.0, 0.0, 0.0, 0.0, 1.0, 1.0]])
    assert g.dtype == dtype and g.shape == z.shape


def test_relu_backward_passes_zero_gradient_where_z_is_exactly_zero():
    relu = ReLU()
    h = relu.forward(np.array([[-1.0, 0.0, 2.0], [0.0, 5.0, -0.0]]))
    np.testing.assert_array_equal(h, [[0.0, 0.0, 2.0], [0.0, 5.0, 0.0]])
    grad_in = relu.backward(np.array([[7.0, 7.0, 7.0], [-3.0, -3.0, -3.0]]))
    np.testing.assert_array_equal(grad_in, [[0.0, 0.0, 7.0], [0.0, -3.0, 0.0]])


def test_linear_forward_is_x_times_w_transpose_plus_b():
    layer = Linear.from_arrays(np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]]), np.array([10.0, -10.0]))
    z = layer.forward(np.array([[1.0, 1.0, 2.0]]))
    np.testing.assert_array_equal(z, [[1 + 2 + 6 + 10.0, -1 + 1 - 10.0]])


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_linear_gradients_match_central_differences(batch):
    rng = np.random.default_rng(batch)
    layer = linear(5, 3, rng)
    x = rng.standard_normal((batch, 5))
    weights = rng.standard_normal((batch, 3))  # L = sum(weights * z): a linear probe with dL/dz = weights

    def loss() -> float:
        return float(np.sum(weights * layer.forward(x)))

    loss()
    grad_x = layer.backward(weights)
    assert layer.grads["W"].shape == (3, 5) and layer.grads["b"].shape == (3,) and grad_x.shape == (batch, 5)
    reports = check_gradients(loss, {**layer.params, "x": x}, {**layer.grads, "x": grad_x})
    assert [r.name for r in reports] == ["W", "b", "x"]
    assert all(r.rel_error < TOL for r in reports), reports


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_relu_input_gradient_matches_central_differences_away_from_the_kink(batch):
    rng = np.random.default_rng(batch)
    z = rng.choice([-1.0, 1.0], size=(batch, 6)) * rng.uniform(0.1, 2.0, size=(batch, 6))  # |z| >= 0.1 >> eps
    weights = rng.standard_normal((batch, 6))
    relu = ReLU()

    def loss() -> float:
        return float(np.sum(weights * relu.forward(z)))

    loss()
    analytic = relu.backward(weights)
    idx = list(np.ndindex(z.shape))
    numeric = numerical_gradient(loss, z, idx).reshape(z.shape)
    assert relative_error(analytic, numeric) < TOL
    np.testing.assert_array_equal(analytic, weights * relu_grad(z))


def test_linear_backward_overwrites_grads_instead_of_accumulating():
    rng = np.random.default_rng(0)
    layer = linear(2, 2, rng)
    x = rng.standard_normal((3, 2))
    delta = rng.standard_normal((3, 2))
    for _ in range(2):
        layer.forward(x)
        layer.backward(delta)
    np.testing.assert_allclose(layer.grads["W"], delta.T @ x, rtol=1e-14)
    np.testing.assert_allclose(layer.grads["b"], delta.sum(axis=0), rtol=1e-14)


@pytest.mark.parametrize("layer", [Linear.from_arrays(np.ones((2, 3)), np.zeros(2)), ReLU()], ids=["Linear", "ReLU"])
def test_backward_before_forward_raises(layer):
    with pytest.raises(RuntimeError, match="backward called before forward"):
        layer.backward(np.ones((1, 2)))
