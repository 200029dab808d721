"""Tests for dqn_np.layers.Dueling: Q = V + A - mean_a A, its hand-written backward, gradient-checked in float64."""

from __future__ import annotations

import numpy as np
import pytest

from dqn_np import MLP, Dueling, Linear
from dqn_np.gradcheck import bind_losses, check_layer, check_mlp
from dqn_np.mlp import allocate

TOL = 1e-6


@pytest.mark.parametrize("members", [None, 3])
@pytest.mark.parametrize("n_actions", [1, 2, 5])
@pytest.mark.parametrize("batch", [1, 7])
def test_dueling_layer_gradients_match_central_differences(members, n_actions, batch):
    rng = np.random.default_rng(10 * n_actions + batch)
    lead = () if members is None else (members,)
    x = rng.standard_normal((*lead, batch, 6))
    reports = check_layer(Dueling(6, n_actions), x, rng, members=members)
    assert [r.name for r in reports] == ["W", "b", "x"]
    for r in reports:
        assert r.rel_error < TOL, r


@pytest.mark.parametrize("members", [None, 2])
def test_dueling_forward_is_value_plus_centred_advantage_per_row(members):
    rng = np.random.default_rng(1)
    layer = Dueling(5, 3)
    lead = () if members is None else (members,)
    allocate([layer], np.dtype(np.float64), members)
    for p in layer.params.values():
        p[...] = rng.standard_normal(p.shape)
    x = rng.standard_normal((*lead, 4, 5))
    z = x @ layer.params["W"].swapaxes(-1, -2) + layer.params["b"][..., None, :]
    value, advantage = z[..., :1], z[..., 1:]
    q = layer.forward(x)
    assert q.shape == (*lead, 4, 3)
    np.testing.assert_allclose(q, value + advantage - advantage.mean(axis=-1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(q.mean(axis=-1), value[..., 0], rtol=1e-12)  # the mean of Q over actions is V
    # the mean is over actions only: changing one row of the batch changes no other row's Q
    x2 = x.copy()
    x2[..., 0, :] += 1.0
    np.testing.assert_array_equal(layer.forward(x2)[..., 1:, :], q[..., 1:, :])


def test_dueling_backward_splits_dq_into_its_sum_and_its_centred_part():
    rng = np.random.default_rng(2)
    layer = Dueling(4, 3)
    allocate([layer], np.dtype(np.float64))
    layer.params["W"][...] = rng.standard_normal((4, 4))
    x, dq = rng.standard_normal((6, 4)), rng.standard_normal((6, 3))
    layer.forward(x)
    grad_x = layer.backward(dq)
    dz = np.concatenate([dq.sum(axis=1, keepdims=True), dq - dq.mean(axis=1, keepdims=True)], axis=1)
    np.testing.assert_allclose(layer.grads["W"], dz.T @ x, rtol=1e-12)  # dW = dz.T @ x
    np.testing.assert_allclose(layer.grads["b"], dz.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(grad_x, dz @ layer.params["W"], rtol=1e-12)  # the true gradient: no 1/sqrt(2)


@pytest.mark.parametrize("members", [None, 3])
@pytest.mark.parametrize("kind", ["td_mse", "td_huber"])
def test_a_dueling_mlp_passes_the_td_loss_gradient_check(members, kind):
    rng = np.random.default_rng(3)
    lead = () if members is None else (members,)
    net = MLP((4, 8, 8, 3), rng=rng if members is None else [rng] * members, dtype="float64", head=Dueling)
    for name, p in net.params.items():
        if name.startswith("b"):
            p[...] = rng.normal(scale=0.1, size=p.shape)  # away from the ReLU kink
    x = rng.standard_normal((*lead, 9, 4))
    actions, td_targets = rng.integers(0, 3, (*lead, 9)), rng.standard_normal((*lead, 9))
    loss = bind_losses(rng.standard_normal((*lead, 9, 3)), actions, td_targets,
                       weights=rng.uniform(0.1, 2.0, (*lead, 9)))[f"{kind}_weighted"]
    for r in check_mlp(net, x, loss):
        assert r.rel_error < TOL, r


def test_the_unchecked_route_of_a_dueling_mlp_equals_the_checked_one_exactly():
    rng = np.random.default_rng(4)
    net = MLP((4, 16, 2), rng=[np.random.default_rng(s) for s in range(3)], dtype="float32", head=Dueling)
    x = rng.standard_normal((3, 32, 4)).astype(np.float32)
    delta = rng.standard_normal((3, 32, 2)).astype(np.float32)
    q = net.forward(x)
    net.backward(delta)
    grads = {k: v.copy() for k, v in net.grads.items()}
    for _ in range(2):  # the second call reuses the buffers of the first
        np.testing.assert_array_equal(net.forward_unchecked(x), q)
        net.backward_unchecked(delta)
        for k, v in net.grads.items():
            np.testing.assert_array_equal(v, grads[k], err_msg=k)


def test_a_stacked_dueling_member_is_the_unstacked_network_of_its_generator():
    stacked = MLP((4, 8, 3), rng=[np.random.default_rng(s) for s in (5, 6)], head=Dueling)
    alone = MLP((4, 8, 3), rng=np.random.default_rng(6), head=Dueling)
    for k, v in alone.params.items():
        np.testing.assert_array_equal(stacked.member(1).params[k], v)
    assert stacked.member(1).head is Dueling and stacked.clone().head is Dueling


def test_a_linear_and_a_dueling_network_do_not_mix():
    linear = MLP((4, 8, 3), rng=np.random.default_rng(0))
    dueling = MLP((4, 8, 3), rng=np.random.default_rng(0), head=Dueling)
    assert dueling.params["W2"].shape == (4, 8) and linear.params["W2"].shape == (3, 8)  # row 0 is V
    with pytest.raises(ValueError, match="head"):
        dueling.copy_from(linear)
    with pytest.raises(ValueError, match="head"):
        MLP.stack([linear, dueling])
    assert isinstance(dueling.layers[-1], Linear)  # a Linear with n + 1 outputs and its own combine
