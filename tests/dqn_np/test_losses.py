"""Tests for dqn_np.losses: values, mean reduction, gradient checks, the TD loss's column mask, bad input."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from dqn_np.gradcheck import bind_losses, check_gradients
from dqn_np.losses import TDBuffers, huber, mae, mse, td_loss, td_loss_unchecked

TOL = 1e-6
N_OUT = 3


def data(batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """y_hat (batch, N_OUT); y with every residual 0.1..3 away (both sides of Huber's delta = 1, never a tie);
    actions (batch,); td_targets (batch,) with TD errors 0.1..3 away."""
    rng = np.random.default_rng(seed)
    y_hat = rng.standard_normal((batch, N_OUT))
    y = y_hat + rng.choice([-1.0, 1.0], size=y_hat.shape) * rng.uniform(0.1, 3.0, size=y_hat.shape)
    actions = rng.integers(0, N_OUT, size=batch)
    td_targets = y_hat[np.arange(batch), actions] + rng.choice([-1.0, 1.0], batch) * rng.uniform(0.1, 3.0, batch)
    return y_hat, y, actions, td_targets


def bind(kind: str, y: np.ndarray, actions: np.ndarray, td_targets: np.ndarray) -> Callable:
    """`y_hat -> (loss, grad)` for the loss named `kind`, with its targets bound."""
    return bind_losses(y, actions, td_targets)[kind]


KINDS = ["mse", "mae", "huber", "td_mse", "td_huber"]


@pytest.mark.parametrize("batch", [1, 7, 64])
@pytest.mark.parametrize("kind", KINDS)
def test_loss_gradient_matches_central_differences(kind, batch):
    y_hat, y, actions, td_targets = data(batch)
    loss = bind(kind, y, actions, td_targets)
    _, grad = loss(y_hat)
    (report,) = check_gradients(lambda: loss(y_hat)[0], {"y_hat": y_hat}, {"y_hat": grad})
    assert report.rel_error < TOL, report


def test_huber_test_data_has_residuals_on_both_sides_of_delta():
    y_hat, y, actions, td_targets = data(7)
    residual = np.abs(y_hat - y)
    td_error = np.abs(y_hat[np.arange(7), actions] - td_targets)
    assert (residual < 1.0).any() and (residual > 1.0).any()
    assert (td_error < 1.0).any() and (td_error > 1.0).any()


@pytest.mark.parametrize("kind", KINDS)
def test_duplicating_the_batch_leaves_loss_and_per_example_gradient_times_n_unchanged(kind):
    y_hat, y, actions, td_targets = data(5)
    loss1, grad1 = bind(kind, y, actions, td_targets)(y_hat)
    loss2, grad2 = bind(kind, np.tile(y, (2, 1)), np.tile(actions, 2), np.tile(td_targets, 2))(np.tile(y_hat, (2, 1)))
    assert loss2 == pytest.approx(loss1, rel=1e-14)
    # mean reduction: the gradient of each example, times the batch size, does not depend on the batch size
    np.testing.assert_allclose(grad2[:5] * 10, grad1 * 5, rtol=1e-14)
    np.testing.assert_allclose(grad2[5:] * 10, grad1 * 5, rtol=1e-14)


def test_mse_value_and_gradient_by_hand():
    loss, grad = mse(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[0.0, 2.0], [5.0, 4.0]]))
    assert loss == (1.0 + 4.0) / 2  # residuals 1, 0, -2, 0; sum of squares over outputs, mean over the batch of 2
    np.testing.assert_array_equal(grad, [[1.0, 0.0], [-2.0, 0.0]])  # (2/n) * residual


def test_mae_value_and_gradient_and_zero_gradient_at_an_exact_tie():
    loss, grad = mae(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[0.0, 2.0], [5.0, 4.5]]))
    assert loss == (1.0 + 0.0 + 2.0 + 0.5) / 2
    np.testing.assert_array_equal(grad, [[0.5, 0.0], [-0.5, -0.5]])  # sign(residual) / n, 0 at the tie y_hat == y


@pytest.mark.parametrize("delta", [0.5, 1.0, 2.0])
def test_huber_gradient_is_clipped_residual_over_n_and_loss_is_piecewise(delta):
    d = np.array([[-3.0, -1.0, -0.25, 0.0], [0.25, 1.0, 1.5, 4.0]])  # residuals on both sides of every delta
    y = np.zeros_like(d)
    loss, grad = huber(d, y, delta=delta)
    np.testing.assert_array_equal(grad, np.clip(d, -delta, delta) / 2)
    pointwise = np.where(np.abs(d) <= delta, 0.5 * d**2, delta * (np.abs(d) - 0.5 * delta))
    assert loss == pytest.approx(pointwise.sum() / 2, rel=1e-14)


def test_huber_is_half_mse_inside_delta():
    y_hat, y = np.array([[0.2, -0.3]]), np.array([[0.0, 0.1]])
    assert huber(y_hat, y, delta=1.0)[0] == pytest.approx(mse(y_hat, y)[0] / 2, rel=1e-14)


@pytest.mark.parametrize("kind", ["mse", "huber"])
def test_td_loss_gradient_is_zero_outside_the_taken_action(kind):
    q = np.array([[1.0, 5.0, -2.0], [0.5, 0.0, 3.0], [2.0, 2.0, 2.0], [-1.0, 4.0, 0.0]])
    actions = np.array([1, 2, 0, 1])
    td_targets = np.array([4.0, 3.5, 0.0, 4.2])
    loss, delta2 = td_loss(q, actions, td_targets, kind=kind)
    td_error = q[np.arange(4), actions] - td_targets  # [1, -0.5, 2, -0.2]
    expected = np.zeros_like(q)
    if kind == "mse":
        expected[np.arange(4), actions] = (2 / 4) * td_error
        assert loss == pytest.approx(np.sum(td_error**2) / 4, rel=1e-14)
    else:
        expected[np.arange(4), actions] = np.clip(td_error, -1.0, 1.0) / 4
        assert loss == pytest.approx((0.5 + 0.125 + 1.5 + 0.02) / 4, rel=1e-14)
    np.testing.assert_allclose(delta2, expected, rtol=1e-15, atol=0)
    mask = np.ones_like(q, dtype=bool)
    mask[np.arange(4), actions] = False
    assert (delta2[mask] == 0).all()


def test_td_loss_huber_delta_moves_the_clip():
    q, actions, td_targets = np.array([[3.0, 0.0]]), np.array([0]), np.array([0.0])
    assert td_loss(q, actions, td_targets, kind="huber", delta=2.0)[1][0, 0] == 2.0
    assert td_loss(q, actions, td_targets, kind="huber", delta=5.0)[1][0, 0] == 3.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", KINDS)
def test_gradient_keeps_the_prediction_dtype(kind, dtype):
    y_hat, y, actions, td_targets = data(4)
    _, grad = bind(kind, y, actions, td_targets)(y_hat.astype(dtype))
    assert grad.dtype == dtype and grad.shape == (4, N_OUT)


@pytest.mark.parametrize("loss", [mse, mae, huber])
@pytest.mark.parametrize(
    ("y_hat", "y", "match"),
    [
        (np.zeros((2, 3)), np.zeros((2, 2)), r"y must have the shape of y_hat \(2, 3\), got \(2, 2\)"),
        (np.zeros((2, 3)), np.zeros(6), r"y must have the shape of y_hat \(2, 3\), got \(6,\)"),
        (np.zeros(3), np.zeros(3), r"y_hat must have shape \(batch, n\) with batch >= 1, got shape \(3,\)"),
        (np.zeros((0, 3)), np.zeros((0, 3)), r"y_hat must have shape .* got shape \(0, 3\)"),
        (np.zeros((2, 2)), np.array([[0.0, np.nan], [0.0, 0.0]]), r"y must be finite, got nan at index \(0, 1\)"),
        (np.array([[0.0, 0.0], [np.inf, 0.0]]), np.zeros((2, 2)), r"y_hat must be finite, got inf at index \(1, 0\)"),
        (np.zeros((1, 2)), np.array([[0.0, -np.inf]]), r"y must be finite, got -inf at index \(0, 1\)"),
    ],
)
def test_loss_rejects_bad_input_naming_the_argument(loss, y_hat, y, match):
    with pytest.raises(ValueError, match=match):
        loss(y_hat, y)


@pytest.mark.parametrize("delta", [0.0, -1.0, float("nan")])
def test_huber_rejects_non_positive_delta(delta):
    with pytest.raises(ValueError, match=f"delta must be a positive number, got {delta}"):
        huber(np.zeros((1, 1)), np.ones((1, 1)), delta=delta)
    with pytest.raises(ValueError, match=f"delta must be a positive number, got {delta}"):
        td_loss(np.zeros((1, 2)), np.array([0]), np.ones(1), kind="huber", delta=delta)


Q = np.zeros((3, 2))


@pytest.mark.parametrize(
    ("actions", "td_targets", "kwargs", "match"),
    [
        (np.array([0, 2, 1]), np.zeros(3), {}, r"actions must be in \[0, 2\) for 2 actions, got 2"),
        (np.array([0, -1, 1]), np.zeros(3), {}, r"actions must be in \[0, 2\) for 2 actions, got -1"),
        (np.array([0.0, 1.0, 1.0]), np.zeros(3), {}, "actions must be integers, got dtype float64"),
        (np.array([True, False, True]), np.zeros(3), {}, "actions must be integers, got dtype bool"),
        (np.array([0, 1]), np.zeros(3), {}, r"actions must have shape \(batch,\) = \(3,\) .* got \(2,\)"),
        (np.array([[0], [1], [1]]), np.zeros(3), {}, r"actions must have shape \(batch,\) = \(3,\) .* got \(3, 1\)"),
        (np.array([0, 1, 1]), np.zeros(4), {}, r"td_targets must have shape \(batch,\) = \(3,\) .* got \(4,\)"),
        (np.array([0, 1, 1]), np.zeros((3, 1)), {}, r"td_targets must have shape .* got \(3, 1\)"),
        (np.array([0, 1, 1]), np.array([0.0, np.nan, 0.0]), {}, r"td_targets must be finite, got nan at index \(1,\)"),
        (np.array([0, 1, 1]), np.array([0.0, 0.0, np.inf]), {}, r"td_targets must be finite, got inf at index \(2,\)"),
        (np.array([0, 1, 1]), np.zeros(3), {"kind": "mae"}, r"kind must be one of \('mse', 'huber'\), got 'mae'"),
    ],
)
def test_td_loss_rejects_bad_input_naming_the_argument(actions, td_targets, kwargs, match):
    with pytest.raises(ValueError, match=match):
        td_loss(Q, actions, td_targets, **kwargs)


@pytest.mark.parametrize(
    ("q_values", "match"),
    [
        (np.zeros(3), r"q_values must have shape \(batch, n\) with batch >= 1, got shape \(3,\)"),
        (np.array([[0.0, np.nan]] * 3), r"q_values must be finite, got nan at index \(0, 1\)"),
    ],
)
def test_td_loss_rejects_bad_q_values(q_values, match):
    with pytest.raises(ValueError, match=match):
        td_loss(q_values, np.array([0, 1, 1]), np.zeros(3))


@pytest.mark.parametrize("kind", ["mse", "huber"])
def test_td_loss_unchecked_reuses_its_buffers_and_equals_td_loss_exactly(kind):
    bufs = TDBuffers(7, N_OUT, np.dtype(np.float64))
    for seed in range(3):  # later calls take other actions: the columns of earlier calls must be zeroed again
        q, _, actions, td_targets = data(7, seed=seed)
        loss, delta2 = td_loss(q, actions, td_targets, kind=kind, delta=1.0)
        fast_loss, fast_delta2 = td_loss_unchecked(q, actions, td_targets, kind, 1.0, bufs)
        assert fast_delta2 is bufs.delta2
        assert fast_loss == loss
        np.testing.assert_array_equal(fast_delta2, delta2)
        np.testing.assert_array_equal(bufs.q_taken, q[np.arange(7), actions])
        np.testing.assert_array_equal(bufs.abs_error, np.abs(q[np.arange(7), actions] - td_targets))
    assert np.count_nonzero(bufs.delta2) == 7


@pytest.mark.parametrize("batch", [1, 7, 64])
@pytest.mark.parametrize("kind", ["td_mse", "td_huber"])
def test_weighted_td_loss_gradient_matches_central_differences(kind, batch):
    y_hat, y, actions, td_targets = data(batch, seed=batch)
    weights = np.random.default_rng(batch).uniform(0.1, 2.0, batch)
    loss = bind_losses(y, actions, td_targets, weights=weights)[f"{kind}_weighted"]
    _, grad = loss(y_hat)
    (report,) = check_gradients(lambda: loss(y_hat)[0], {"y_hat": y_hat}, {"y_hat": grad})
    assert report.rel_error < TOL, report


@pytest.mark.parametrize("kind", ["mse", "huber"])
def test_weighted_td_loss_is_the_mean_of_weighted_per_sample_losses_divided_by_n(kind):
    q, _, actions, td_targets = data(9, seed=4)
    weights = np.random.default_rng(4).uniform(0.0, 3.0, 9)
    loss, delta2 = td_loss(q, actions, td_targets, kind=kind, weights=weights)
    rows = np.arange(9)
    per_sample = [td_loss(q[i : i + 1], actions[i : i + 1], td_targets[i : i + 1], kind=kind)[0] for i in rows]
    np.testing.assert_allclose(loss, np.mean(weights * np.array(per_sample)), rtol=1e-12)
    _, plain = td_loss(q, actions, td_targets, kind=kind)
    np.testing.assert_allclose(delta2, plain * weights[:, None], rtol=1e-12)
    ones_loss, ones_delta2 = td_loss(q, actions, td_targets, kind=kind, weights=np.ones(9))
    assert ones_loss == td_loss(q, actions, td_targets, kind=kind)[0]
    np.testing.assert_array_equal(ones_delta2, plain)


def test_weighted_td_loss_keeps_abs_error_unweighted_for_the_priorities():
    q, _, actions, td_targets = data(5, seed=2)
    bufs = TDBuffers(5, N_OUT, np.dtype(np.float64))
    td_loss_unchecked(q, actions, td_targets, "mse", 1.0, bufs, np.full(5, 0.25))
    np.testing.assert_array_equal(bufs.abs_error, np.abs(q[np.arange(5), actions] - td_targets))


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        (np.ones(2), r"weights must have shape .* got \(2,\)"),
        (np.array([1.0, np.nan, 1.0]), r"weights must be finite, got nan at index \(1,\)"),
        (np.array([1.0, -0.5, 1.0]), r"weights must be >= 0, got -0.5 at index \(1,\)"),
    ],
)
def test_td_loss_rejects_bad_weights(weights, match):
    with pytest.raises(ValueError, match=match):
        td_loss(Q, np.array([0, 1, 1]), np.zeros(3), weights=weights)
