"""Tests for stacked networks (a member axis S, one member per seed): every member is exactly the unstacked network
it stands for (forward, losses, gradients, init, optimizer steps), members never leak into one another, and the
checks, clipping, gradient check and buffers all work per member."""

from __future__ import annotations

import re

import numpy as np
import pytest

from dqn_np.gradcheck import bind_losses, check_gradients, check_mlp
from dqn_np.losses import TDBuffers, huber, mae, mse, td_loss, td_loss_unchecked
from dqn_np.mlp import MLP
from dqn_np.optim import SGD, Adam, clip_grad_norm, clip_per_member

N_IN, N_HIDDEN, N_OUT = 4, 16, 3
DEPTHS = [1, 2, 3]
BATCHES = [1, 7, 64]
MEMBERS = [1, 2, 5]
LOSSES = ["mse", "mae", "huber", "td_mse", "td_huber"]
DTYPES = ["float32", "float64"]
TIGHT = {"rtol": 1e-12, "atol": 1e-12}
GRADCHECK_HIDDEN = 5  # narrow layers keep the central differences over every entry of every member quick


def sizes_of(depth: int, hidden: int = N_HIDDEN) -> tuple[int, ...]:
    return (N_IN,) + (hidden,) * depth + (N_OUT,)


def seeds_of(members: int) -> list[int]:
    """One distinct seed per member."""
    return [1000 + 17 * s for s in range(members)]


def generators(members: int) -> list[np.random.Generator]:
    return [np.random.default_rng(k) for k in seeds_of(members)]


def nets_with_random_biases(
    depth: int, members: int, rng: np.random.Generator, dtype: str = "float64", hidden: int = N_HIDDEN
) -> tuple[MLP, list[MLP]]:
    """A stacked net and, per member, an independently built unstacked net from that member's seed.

    Both get the same small random biases (zero biases put pre-activations on the ReLU kink); the weights are each
    net's own He init, so agreement shows that member s really is `MLP(sizes, rng=default_rng(seed_s))`.
    """
    sizes = sizes_of(depth, hidden)
    stacked = MLP(sizes, rng=generators(members), dtype=dtype)
    singles = [MLP(sizes, rng=np.random.default_rng(k), dtype=dtype) for k in seeds_of(members)]
    for name, p in stacked.params.items():
        if name.startswith("b"):
            p[...] = rng.normal(scale=0.1, size=p.shape)
            for s, single in enumerate(singles):
                single.params[name][...] = p[s]
    return stacked, singles


def targets_for(y_hat: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Regression targets, actions and TD targets for stacked predictions `(S, B, A)`, no residual near a kink.

    Residuals lie in [0.1, 3] in magnitude: on both sides of Huber's delta = 1, never an MAE tie.
    """
    residual = rng.choice([-1.0, 1.0], size=y_hat.shape) * rng.uniform(0.1, 3.0, size=y_hat.shape)
    actions = rng.integers(0, y_hat.shape[-1], size=y_hat.shape[:-1])
    q_taken = np.take_along_axis(y_hat, actions[..., None], axis=-1)[..., 0]
    return y_hat + residual, actions, q_taken + residual[..., 0]


def stacked_and_member_losses(kind: str, y: np.ndarray, actions: np.ndarray, td_targets: np.ndarray):
    """The stacked loss and, per member s, the unstacked loss on member s's targets alone."""
    stacked = bind_losses(y, actions, td_targets)[kind]
    singles = [bind_losses(y[s], actions[s], td_targets[s])[kind] for s in range(y.shape[0])]
    return stacked, singles


def grads_copy(mlp: MLP) -> dict[str, np.ndarray]:
    return {name: g.copy() for name, g in mlp.grads.items()}


# --- 1. member equivalence: member s of a stacked net is the unstacked net of seed s ------------------------------


@pytest.mark.parametrize("kind", LOSSES)
@pytest.mark.parametrize("members", MEMBERS)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("depth", DEPTHS)
def test_every_member_equals_its_unstacked_network_forward_loss_and_gradients(depth, batch, members, kind):
    rng = np.random.default_rng(1000 * depth + 10 * batch + members)
    stacked, singles = nets_with_random_biases(depth, members, rng)
    x = rng.standard_normal((members, batch, N_IN))
    y_hat = stacked.forward(x)
    assert y_hat.shape == (members, batch, N_OUT)
    y, actions, td_targets = targets_for(y_hat, rng)
    loss, member_losses = stacked_and_member_losses(kind, y, actions, td_targets)
    value, delta = loss(y_hat)
    grad_x = stacked.backward(delta)
    assert np.shape(value) == (members,) and delta.shape == y_hat.shape and grad_x.shape == x.shape
    for s, single in enumerate(singles):
        copy = stacked.member(s)
        assert copy.members is None and single.members is None
        np.testing.assert_allclose(y_hat[s], copy.forward(x[s]), **TIGHT, err_msg=f"member() {s}")
        y_s = single.forward(x[s])
        np.testing.assert_allclose(y_hat[s], y_s, **TIGHT, err_msg=f"independent {s}")
        value_s, delta_s = member_losses[s](y_s)
        grad_x_s = single.backward(delta_s)
        np.testing.assert_allclose(value[s], value_s, **TIGHT, err_msg=f"loss {s}")
        np.testing.assert_allclose(delta[s], delta_s, **TIGHT, err_msg=f"delta {s}")
        np.testing.assert_allclose(grad_x[s], grad_x_s, **TIGHT, err_msg=f"dL/dx {s}")
        for name, g in stacked.grads.items():
            assert g.shape == (members, *single.grads[name].shape)
            np.testing.assert_allclose(g[s], single.grads[name], **TIGHT, err_msg=f"{name} member {s}")
    if members > 1:  # members really are different networks (each drew from its own seed)
        assert not np.allclose(stacked.params["W1"][0], stacked.params["W1"][1])


@pytest.mark.parametrize("kind", LOSSES)
@pytest.mark.parametrize("members", MEMBERS)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("depth", DEPTHS)
def test_unchecked_route_matches_the_checked_route_and_every_unstacked_member(depth, batch, members, kind):
    rng = np.random.default_rng(7 + 1000 * depth + 10 * batch + members)
    stacked, singles = nets_with_random_biases(depth, members, rng)
    x = rng.standard_normal((members, batch, N_IN))
    y_checked = stacked.forward(x)
    y, actions, td_targets = targets_for(y_checked, rng)
    loss, member_losses = stacked_and_member_losses(kind, y, actions, td_targets)
    value_checked, delta_checked = loss(y_checked)
    grad_x_checked = stacked.backward(delta_checked)
    grads_checked = stacked.flat_grads.copy()

    stacked.flat_grads[...] = np.nan  # the unchecked backward must overwrite every gradient
    y_fast = stacked.forward_unchecked(x)
    if kind.startswith("td_"):
        bufs = TDBuffers(batch, N_OUT, stacked.dtype, members=members)
        value, delta = td_loss_unchecked(y_fast, actions, td_targets, kind[3:], 1.0, bufs)
        assert delta is bufs.delta2 and delta.shape == (members, batch, N_OUT)
    else:
        value, delta = loss(y_fast)
    grad_x = stacked.backward_unchecked(delta, input_grad=True)
    # the same NumPy calls in the same order on the same data: bit for bit the checked route
    np.testing.assert_array_equal(y_fast, y_checked)
    np.testing.assert_array_equal(value, value_checked)
    np.testing.assert_array_equal(delta, delta_checked)
    np.testing.assert_array_equal(grad_x, grad_x_checked)
    np.testing.assert_array_equal(stacked.flat_grads, grads_checked)
    for s, single in enumerate(singles):
        value_s, delta_s = member_losses[s](single.forward(x[s]))
        grad_x_s = single.backward(delta_s)
        np.testing.assert_allclose(value[s], value_s, **TIGHT)
        np.testing.assert_allclose(grad_x[s], grad_x_s, **TIGHT)
        for name, g in stacked.grads.items():
            np.testing.assert_allclose(g[s], single.grads[name], **TIGHT, err_msg=f"{name} member {s}")


# --- 2. He init: member s draws from its own Generator exactly as an unstacked net would -------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("members", MEMBERS)
@pytest.mark.parametrize("depth", DEPTHS)
def test_he_init_of_member_s_is_the_unstacked_init_from_its_generator(depth, members, dtype):
    sizes = sizes_of(depth)
    stacked = MLP(sizes, rng=generators(members), dtype=dtype)
    from_tuple = MLP(sizes, rng=tuple(generators(members)), dtype=dtype)
    assert stacked.members == from_tuple.members == members and stacked.dtype == np.dtype(dtype)
    for s, seed in enumerate(seeds_of(members)):
        single = MLP(sizes, rng=np.random.default_rng(seed), dtype=dtype)
        for name, p in single.params.items():
            assert stacked.params[name].shape == (members, *p.shape) and stacked.params[name].dtype == p.dtype
            assert np.array_equal(stacked.params[name][s], p), (s, name)
            assert np.array_equal(from_tuple.params[name][s], p), (s, name)
            if name.startswith("b"):
                assert not p.any()
    for s in range(1, members):  # a stacked net whose members all drew from g_0 would fail here
        assert not np.array_equal(stacked.params["W1"][s], stacked.params["W1"][0])


def test_each_generator_is_advanced_as_by_an_unstacked_init():
    sizes = sizes_of(2)
    gens = generators(3)
    MLP(sizes, rng=gens)
    for gen, seed in zip(gens, seeds_of(3), strict=True):
        twin = np.random.default_rng(seed)
        MLP(sizes, rng=twin)
        assert gen.standard_normal() == twin.standard_normal()  # both consumed exactly the same draws


# --- 3. independence: no member's loss, gradient or output depends on another member's data -----------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", LOSSES)
@pytest.mark.parametrize("members", [2, 5])
@pytest.mark.parametrize("depth", DEPTHS)
def test_changing_member_1_leaves_member_0_bitwise_unchanged(depth, members, kind, dtype):
    rng = np.random.default_rng(depth + 10 * members)
    stacked, _ = nets_with_random_biases(depth, members, rng, dtype=dtype)
    x = rng.standard_normal((members, 7, N_IN)).astype(dtype)
    y, actions, td_targets = targets_for(stacked.forward(x), rng)

    def run(x, y, actions, td_targets):
        y_hat = stacked.forward(x)
        value, delta = bind_losses(y, actions, td_targets)[kind](y_hat)
        grad_x = stacked.backward(delta)
        return y_hat, np.asarray(value), grad_x, grads_copy(stacked)

    base = run(x, y, actions, td_targets)
    x2, y2, actions2, td2 = x.copy(), y.copy(), actions.copy(), td_targets.copy()
    x2[1:] = rng.standard_normal(x2[1:].shape) * 3.0  # member 1 (and the rest) see other inputs ...
    y2[1] += 5.0  # ... and other targets
    actions2[1] = (actions2[1] + 1) % N_OUT
    td2[1] -= 4.0
    moved = run(x2, y2, actions2, td2)
    for before, after in zip(base[:3], moved[:3], strict=True):
        np.testing.assert_array_equal(after[0], before[0])  # member 0: bit for bit
        assert not np.array_equal(after[1], before[1])  # member 1 did change
    for name in stacked.grads:
        np.testing.assert_array_equal(moved[3][name][0], base[3][name][0], err_msg=name)
        assert not np.array_equal(moved[3][name][1], base[3][name][1]), name


@pytest.mark.parametrize("kind", ["mse", "huber"])
@pytest.mark.parametrize("depth", DEPTHS)
def test_nan_in_member_1_inputs_leaves_member_0_finite_and_unchanged(depth, kind):
    rng = np.random.default_rng(depth)
    members, batch = 3, 7
    stacked, _ = nets_with_random_biases(depth, members, rng)
    x = rng.standard_normal((members, batch, N_IN))
    actions = rng.integers(0, N_OUT, size=(members, batch))
    td_targets = rng.standard_normal((members, batch))
    bufs = TDBuffers(batch, N_OUT, stacked.dtype, members=members)

    def run(x):
        y_hat = stacked.forward_unchecked(x).copy()
        value, delta = td_loss_unchecked(y_hat, actions, td_targets, kind, 1.0, bufs)
        grad_x = stacked.backward_unchecked(delta, input_grad=True).copy()
        return y_hat, np.array(value), grad_x, grads_copy(stacked)

    clean = run(x)
    x_nan = x.copy()
    x_nan[1, 3, 2] = np.nan
    dirty = run(x_nan)
    for a, b in zip(clean[:3], dirty[:3], strict=True):
        np.testing.assert_array_equal(b[0], a[0])
        np.testing.assert_array_equal(b[2:], a[2:])  # members after the bad one too
    assert np.isnan(dirty[1][1])  # the NaN did reach member 1's loss
    for name in stacked.grads:
        g0 = dirty[3][name][0]
        assert np.isfinite(g0).all(), name
        np.testing.assert_array_equal(g0, clean[3][name][0], err_msg=name)
        np.testing.assert_array_equal(dirty[3][name][2], clean[3][name][2], err_msg=name)
    assert np.isnan(dirty[3]["W1"][1]).any()
    norms = clip_per_member(tuple(dirty[3].values()), 1.0)  # and clipping keeps the bad member to itself
    assert np.isfinite(norms[[0, 2]]).all() and np.isnan(norms[1])
    assert np.isfinite(dirty[3]["W1"][0]).all()


# --- 4. per-member reduction: each member's loss is the mean over its own batch -----------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", LOSSES)
@pytest.mark.parametrize("members", MEMBERS)
@pytest.mark.parametrize("batch", BATCHES)
def test_stacked_loss_of_member_s_is_the_unstacked_loss_on_its_rows(batch, members, kind, dtype):
    rng = np.random.default_rng(batch + 100 * members)
    y_hat = rng.standard_normal((members, batch, N_OUT)).astype(dtype)
    y, actions, td_targets = targets_for(y_hat, rng)
    loss, member_losses = stacked_and_member_losses(kind, y, actions, td_targets)
    value, delta = loss(y_hat)
    assert isinstance(value, np.ndarray) and value.shape == (members,) and delta.shape == y_hat.shape
    tol = TIGHT if dtype == "float64" else {"rtol": 1e-6, "atol": 1e-6}
    for s in range(members):
        value_s, delta_s = member_losses[s](y_hat[s])
        assert isinstance(value_s, float)
        np.testing.assert_allclose(value[s], value_s, **tol)
        np.testing.assert_allclose(delta[s], delta_s, **tol)


@pytest.mark.parametrize("members", [2, 5])
@pytest.mark.parametrize("batch", BATCHES)
def test_stacked_losses_worked_by_hand_divide_by_the_batch_not_by_members_times_batch(batch, members):
    # Member s's residual is c_s everywhere: its loss is fixed by c_s alone, whatever the other members hold.
    c = 0.5 + np.arange(members, dtype=float)  # 0.5 inside Huber's quadratic zone, 1.5, 2.5, ... beyond it
    y_hat = np.zeros((members, batch, N_OUT))
    y = -np.broadcast_to(c[:, None, None], y_hat.shape)  # y_hat - y = c_s
    value, delta = mse(y_hat, y)
    np.testing.assert_allclose(value, N_OUT * c**2, rtol=1e-15)
    np.testing.assert_allclose(delta, np.broadcast_to(2.0 * c[:, None, None] / batch, y_hat.shape), rtol=1e-15)
    value, delta = mae(y_hat, y)
    np.testing.assert_allclose(value, N_OUT * c, rtol=1e-15)
    np.testing.assert_allclose(delta, np.full(y_hat.shape, 1.0 / batch), rtol=1e-15)
    huber_c = np.where(c <= 1.0, 0.5 * c**2, c - 0.5)
    value, delta = huber(y_hat, y)
    np.testing.assert_allclose(value, N_OUT * huber_c, rtol=1e-15)
    np.testing.assert_allclose(delta, np.broadcast_to(np.minimum(c, 1.0)[:, None, None] / batch, y_hat.shape))
    actions = np.zeros((members, batch), dtype=np.int64)
    td_targets = -np.broadcast_to(c[:, None], actions.shape)
    value, delta = td_loss(y_hat, actions, td_targets, kind="mse")
    np.testing.assert_allclose(value, c**2, rtol=1e-15)
    np.testing.assert_allclose(delta[..., 0], np.broadcast_to(2.0 * c[:, None] / batch, actions.shape), rtol=1e-15)
    assert not delta[..., 1:].any()
    value, _ = td_loss(y_hat, actions, td_targets, kind="huber")
    np.testing.assert_allclose(value, huber_c, rtol=1e-15)


# --- 5. gradient clipping per member ------------------------------------------------------------------------------


def member_grads(norms: list[float], rng: np.random.Generator, dtype: str = "float64") -> dict[str, np.ndarray]:
    """Stacked gradients shaped like a 4 -> 5 -> 3 net's, member s scaled to have norm `norms[s]` exactly-ish."""
    S = len(norms)
    grads = {
        "W1": rng.standard_normal((S, 5, 4)),
        "b1": rng.standard_normal((S, 5)),
        "W2": rng.standard_normal((S, 3, 5)),
        "b2": rng.standard_normal((S, 3)),
    }
    own = np.sqrt(sum(np.sum(g.reshape(S, -1) ** 2, axis=1) for g in grads.values()))
    for name, g in grads.items():
        grads[name] = (g * (np.asarray(norms) / own).reshape(S, *(1,) * (g.ndim - 1))).astype(dtype)
    return grads


def norm_of(grads: dict[str, np.ndarray], s: int) -> float:
    return float(np.sqrt(sum(np.sum(g[s].astype(np.float64) ** 2) for g in grads.values())))


@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_per_member_scales_only_the_member_over_the_limit(dtype):
    grads = member_grads([3.0, 50.0], np.random.default_rng(0), dtype)
    before = {name: g.copy() for name, g in grads.items()}
    norms = clip_grad_norm(grads, 10.0, per_member=True)
    assert isinstance(norms, np.ndarray) and norms.shape == (2,) and norms.dtype == np.float64
    rtol = 1e-12 if dtype == "float64" else 1e-6
    np.testing.assert_allclose(norms, [3.0, 50.0], rtol=rtol)
    for name, g in grads.items():
        assert g.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(g[0], before[name][0], err_msg=name)  # under the limit: untouched
        np.testing.assert_allclose(g[1], before[name][1] * (10.0 / (50.0 + 1e-6)), rtol=rtol, err_msg=name)
    assert norm_of(grads, 1) == pytest.approx(10.0, abs=1e-6 if dtype == "float64" else 1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("max_norm", [0.5, 10.0, np.inf])
@pytest.mark.parametrize("members", MEMBERS)
def test_clip_per_member_equals_the_unstacked_clip_of_each_member(members, max_norm, dtype):
    rng = np.random.default_rng(members)
    grads = member_grads(list(rng.uniform(0.1, 20.0, size=members)), rng, dtype)
    singles = [{name: g[s].copy() for name, g in grads.items()} for s in range(members)]
    unchecked = {name: g.copy() for name, g in grads.items()}
    norms = clip_grad_norm(grads, max_norm, per_member=True)
    norms_unchecked = clip_per_member(tuple(unchecked.values()), max_norm)
    np.testing.assert_array_equal(norms_unchecked, norms)
    rtol = 1e-12 if dtype == "float64" else 1e-6
    for s, single in enumerate(singles):
        assert norms[s] == pytest.approx(clip_grad_norm(single, max_norm), rel=rtol)
        for name, g in grads.items():
            np.testing.assert_allclose(g[s], single[name], rtol=rtol, atol=0, err_msg=f"{name} member {s}")
            np.testing.assert_array_equal(unchecked[name][s], g[s])


def test_clip_per_member_on_a_stacked_mlps_grads_clips_its_flat_buffer_in_place():
    rng = np.random.default_rng(0)
    stacked = MLP(sizes_of(2), rng=generators(3))
    stacked.flat_grads[...] = rng.standard_normal(stacked.flat_grads.size)
    stacked.grads["W1"][1] *= 100.0  # member 1 far over the limit
    norms = clip_grad_norm(stacked.grads, 5.0, per_member=True)
    assert norms.shape == (3,) and norms[1] > 5.0
    for s in range(3):
        assert norm_of(stacked.grads, s) == pytest.approx(min(norms[s], 5.0), rel=1e-6)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_clip_per_member_keeps_a_non_finite_member_to_itself(bad):
    grads = member_grads([3.0, 50.0, 40.0], np.random.default_rng(1))
    grads["W1"][1, 0, 0] = bad
    before = {name: g.copy() for name, g in grads.items()}
    with np.errstate(invalid="ignore"):
        norms = clip_grad_norm(grads, 10.0, per_member=True)
    assert norms[0] == pytest.approx(3.0, rel=1e-12) and np.isnan(norms[1]) == np.isnan(bad)
    assert not np.isfinite(norms[1]) and norms[2] == pytest.approx(40.0, rel=1e-12)
    for name, g in grads.items():
        np.testing.assert_array_equal(g[0], before[name][0])
        if np.isnan(bad):  # a NaN member is left as it was (what an inf member gets is not pinned here)
            np.testing.assert_array_equal(g[1], before[name][1])
        np.testing.assert_allclose(g[2], before[name][2] * (10.0 / (40.0 + 1e-6)), rtol=1e-12)
    assert norm_of(grads, 2) == pytest.approx(10.0, abs=1e-6)


@pytest.mark.parametrize(
    "grads",
    [
        {"W": np.ones((2, 3, 4)), "b": np.ones(3)},  # a 1-D array: no member axis
        {"W": np.ones((2, 3, 4)), "b": np.ones((3, 3))},  # leading axes 2 and 3
        {},
    ],
)
def test_clip_per_member_rejects_arrays_without_a_shared_member_axis(grads):
    with pytest.raises(ValueError, match="member axis"):
        clip_grad_norm(grads, 1.0, per_member=True)


def test_clip_per_member_rejects_an_unstacked_networks_grads():
    net = MLP(sizes_of(1), rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=re.escape(str(net.grads["b1"].shape))):
        clip_grad_norm(net.grads, 1.0, per_member=True)


# --- 6. optimizers on stacked networks ---------------------------------------------------------------------------


OPTIMIZERS = {
    "adam": lambda: Adam(lr=1e-2),
    "sgd": lambda: SGD(lr=1e-2),
    "sgd_momentum": lambda: SGD(lr=1e-2, momentum=0.9),
}


@pytest.mark.parametrize("unchecked", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", list(OPTIMIZERS))
@pytest.mark.parametrize("members", MEMBERS)
@pytest.mark.parametrize("depth", DEPTHS)
def test_optimizer_on_a_stacked_net_equals_one_optimizer_per_unstacked_member(depth, members, opt, dtype, unchecked):
    rng = np.random.default_rng(depth + 10 * members)
    stacked, _ = nets_with_random_biases(depth, members, rng, dtype=dtype)
    singles = [stacked.member(s) for s in range(members)]
    stacked_opt, single_opts = OPTIMIZERS[opt](), [OPTIMIZERS[opt]() for _ in range(members)]
    start = stacked.flat_params.copy()
    for _ in range(5):
        x = rng.standard_normal((members, 7, N_IN))
        y_hat = stacked.forward(x)
        _, delta = mse(y_hat, y_hat + rng.standard_normal(y_hat.shape))
        stacked.backward(delta)
        for s, single in enumerate(singles):  # the same gradients, member by member
            for name, g in stacked.grads.items():
                single.grads[name][...] = g[s]
            single_opts[s].step(single.params, single.grads)
        (stacked_opt.step_unchecked if unchecked else stacked_opt.step)(stacked.params, stacked.grads)
    assert stacked_opt._fused is not None  # the flat-buffer path ran on the stacked net
    assert stacked_opt.t == 5
    for s, single in enumerate(singles):
        for name, p in stacked.params.items():
            # elementwise updates: not merely close, equal
            np.testing.assert_array_equal(p[s], single.params[name], err_msg=f"{name} member {s}")
        for slot, arrays in stacked_opt.state.items():
            for name, a in arrays.items():
                np.testing.assert_array_equal(a[s], single_opts[s].state[slot][name], err_msg=f"{slot}.{name}")
    assert not np.array_equal(stacked.flat_params, start)  # the steps did move the parameters


@pytest.mark.parametrize("opt", list(OPTIMIZERS))
@pytest.mark.parametrize("members", [2, 5])
def test_td_training_of_a_stacked_net_tracks_each_unstacked_net_trained_alone(members, opt):
    # Each unstacked net computes its own gradients on its own member's data: a whole DQN-style update loop.
    rng = np.random.default_rng(members)
    stacked, singles = nets_with_random_biases(2, members, rng)
    stacked_opt, single_opts = OPTIMIZERS[opt](), [OPTIMIZERS[opt]() for _ in range(members)]
    start = stacked.flat_params.copy()
    for _ in range(8):
        x = rng.standard_normal((members, 32, N_IN))
        actions = rng.integers(0, N_OUT, size=(members, 32))
        td_targets = rng.standard_normal((members, 32))
        _, delta = td_loss(stacked.forward(x), actions, td_targets, kind="huber")
        stacked.backward(delta)
        stacked_opt.step(stacked.params, stacked.grads)
        for s, single in enumerate(singles):
            _, delta_s = td_loss(single.forward(x[s]), actions[s], td_targets[s], kind="huber")
            single.backward(delta_s)
            single_opts[s].step(single.params, single.grads)
    assert not np.allclose(stacked.flat_params, start)
    for s, single in enumerate(singles):
        for name, p in stacked.params.items():
            np.testing.assert_allclose(p[s], single.params[name], **TIGHT, err_msg=f"{name} member {s}")


# --- 7. the gradient check sees every member ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", LOSSES)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("members", [2, 3])
def test_check_mlp_passes_on_stacked_nets(members, depth, batch, kind):
    rng = np.random.default_rng(members + 10 * depth + 100 * batch)
    stacked, _ = nets_with_random_biases(depth, members, rng, hidden=GRADCHECK_HIDDEN)
    x = rng.standard_normal((members, batch, N_IN))
    loss, _ = stacked_and_member_losses(kind, *targets_for(stacked.forward(x), rng))
    reports = check_mlp(stacked, x, loss, tol=1e-6)
    assert [r.name for r in reports] == list(stacked.params)
    for r in reports:
        assert r.shape[0] == members and r.n_checked == stacked.params[r.name].size  # every member's entries
        assert r.passed and r.rel_error < 1e-6, r


def summed_loss(stacked: MLP, x: np.ndarray, loss):
    return lambda: float(np.sum(loss(stacked.forward(x))[0]))


@pytest.mark.parametrize(("kind", "broken"), [("mse", 0), ("td_huber", 1), ("mae", 2), ("td_mse", 2)])
def test_check_gradients_fails_when_one_members_gradient_is_wrong(kind, broken):
    rng = np.random.default_rng(broken)
    stacked, _ = nets_with_random_biases(2, 3, rng, hidden=GRADCHECK_HIDDEN)
    x = rng.standard_normal((3, 7, N_IN))
    loss, _ = stacked_and_member_losses(kind, *targets_for(stacked.forward(x), rng))
    stacked.backward(loss(stacked.forward(x))[1])
    grads = grads_copy(stacked)
    good = check_gradients(summed_loss(stacked, x, loss), stacked.params, grads)
    assert all(r.passed for r in good)
    grads["W1"][broken] += 1e-3  # one member's W1 only
    reports = check_gradients(summed_loss(stacked, x, loss), stacked.params, grads)
    verdicts = {r.name: r.passed for r in reports}
    assert not verdicts.pop("W1") and all(verdicts.values()), reports


def test_check_mlp_fails_when_backward_is_wrong_for_member_1_only(monkeypatch):
    rng = np.random.default_rng(0)
    stacked, _ = nets_with_random_biases(3, 2, rng, hidden=GRADCHECK_HIDDEN)
    x = rng.standard_normal((2, 7, N_IN))
    loss, _ = stacked_and_member_losses("huber", *targets_for(stacked.forward(x), rng))
    real_backward = stacked.backward

    def broken_backward(delta):
        grad_x = real_backward(delta)
        stacked.grads["b3"][1] *= -1.0  # member 1's third bias gradient has the wrong sign
        return grad_x

    monkeypatch.setattr(stacked, "backward", broken_backward)
    reports = check_mlp(stacked, x, loss, tol=1e-6)
    assert [r.name for r in reports if not r.passed] == ["b3"], reports


# --- 8. target updates, clones, member() and stack() -------------------------------------------------------------


@pytest.mark.parametrize("members", MEMBERS)
def test_clone_copy_from_soft_update_and_load_params_keep_the_member_axis(members):
    rng = np.random.default_rng(members)
    online = MLP(sizes_of(2), rng=generators(members))
    online.flat_params += rng.normal(size=online.flat_params.size)
    twin = online.clone()
    assert twin.members == members and twin.flat_params is not online.flat_params
    for name, p in online.params.items():
        assert twin.params[name].shape == p.shape and np.array_equal(twin.params[name], p)
    target = MLP(sizes_of(2), rng=generators(members))
    target.copy_from(online)
    np.testing.assert_array_equal(target.flat_params, online.flat_params)
    online.flat_params[0] += 1.0  # values were copied, not shared
    assert target.flat_params[0] != online.flat_params[0]
    before = target.flat_params.copy()
    target.soft_update_from(online, tau=0.25)
    np.testing.assert_allclose(target.flat_params, 0.75 * before + 0.25 * online.flat_params, rtol=1e-15)
    loaded = MLP(sizes_of(2), rng=generators(members))
    loaded.load_params({name: p.copy() for name, p in online.params.items()})
    np.testing.assert_array_equal(loaded.flat_params, online.flat_params)
    for net in (twin, target, loaded):
        assert {n: p.shape for n, p in net.params.items()} == {n: p.shape for n, p in online.params.items()}
        assert net.forward(rng.standard_normal((members, 3, N_IN))).shape == (members, 3, N_OUT)


@pytest.mark.parametrize(("self_members", "other_members"), [(2, None), (None, 2), (2, 3), (3, 1)])
def test_target_updates_reject_a_member_mismatch(self_members, other_members):
    def build(members):
        rng = np.random.default_rng(0)
        return MLP(sizes_of(1), rng=rng if members is None else [rng] * members)

    net, other = build(self_members), build(other_members)
    before = net.flat_params.copy()
    with pytest.raises(ValueError, match="members"):
        net.copy_from(other)
    with pytest.raises(ValueError, match="members"):
        net.soft_update_from(other, tau=0.5)
    np.testing.assert_array_equal(net.flat_params, before)


def test_load_params_rejects_unstacked_params_on_a_stacked_net():
    stacked = MLP(sizes_of(1), rng=generators(2))
    single = MLP(sizes_of(1), rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=re.escape(str(stacked.params["W1"].shape))):
        stacked.load_params(single.params)


@pytest.mark.parametrize("s", [2, 3, -1, 1.0, True, "0"])
def test_member_out_of_range_raises_naming_the_value(s):
    stacked = MLP(sizes_of(1), rng=generators(2))
    with pytest.raises(ValueError, match=re.escape(repr(s))):
        stacked.member(s)


def test_member_of_an_unstacked_net_raises():
    net = MLP(sizes_of(1), rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="stacked"):
        net.member(0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("members", MEMBERS)
def test_stack_then_member_round_trips_exactly(members, dtype):
    rng = np.random.default_rng(members)
    nets = [MLP(sizes_of(2), rng=np.random.default_rng(k), dtype=dtype) for k in seeds_of(members)]
    for net in nets:
        net.flat_params += rng.normal(size=net.flat_params.size).astype(dtype)  # non-zero biases too
    stacked = MLP.stack(nets)
    assert stacked.members == members and stacked.dtype == np.dtype(dtype) and stacked.sizes == nets[0].sizes
    x = rng.standard_normal((members, 5, N_IN)).astype(dtype)
    y_hat = stacked.forward(x)
    for k, net in enumerate(nets):
        back = stacked.member(k)
        assert back.members is None and back.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(back.flat_params, net.flat_params)
        for name, p in net.params.items():
            np.testing.assert_array_equal(stacked.params[name][k], p)
        np.testing.assert_array_equal(back.forward(x[k]), net.forward(x[k]))
        tol = TIGHT if dtype == "float64" else {"rtol": 1e-5, "atol": 1e-5}
        np.testing.assert_allclose(y_hat[k], net.forward(x[k]), **tol)
    nets[0].flat_params += 1.0  # stack copied the values
    assert not np.array_equal(stacked.params["W1"][0], nets[0].params["W1"])
    # and an unstacked member is a copy, too
    copy = stacked.member(0)
    copy.flat_params += 1.0
    assert not np.array_equal(stacked.params["W1"][0], copy.params["W1"])


def test_stack_rejects_nets_of_other_sizes_or_dtype_and_stacked_or_no_nets():
    a = MLP(sizes_of(1), rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=re.escape(str(sizes_of(2)))):
        MLP.stack([a, MLP(sizes_of(2), rng=np.random.default_rng(1))])
    with pytest.raises(ValueError, match="float32"):
        MLP.stack([a, MLP(sizes_of(1), rng=np.random.default_rng(1), dtype="float32")])
    with pytest.raises(ValueError, match="unstacked"):
        MLP.stack([a, MLP(sizes_of(1), rng=generators(2))])
    with pytest.raises(ValueError, match="unstacked"):
        MLP.stack([])


# --- 9. bad input ---------------------------------------------------------------------------------------------------


def bad_forward_inputs() -> list[tuple[np.ndarray, str]]:
    x_nan = np.zeros((2, 5, N_IN))
    x_nan[1, 3, 2] = np.nan
    return [
        (np.zeros((3, 5, N_IN)), re.escape("got shape (3, 5, 4)")),  # S + 1 members
        (np.zeros((2, 5, N_IN + 1)), re.escape("got shape (2, 5, 5)")),  # n_in + 1
        (np.zeros((5, N_IN)), re.escape("got shape (5, 4)")),  # 2-D: no member axis
        (np.zeros((2, 0, N_IN)), re.escape("got shape (2, 0, 4)")),  # empty batch
        (x_nan, re.escape("nan at index (1, 3, 2)")),
    ]


@pytest.mark.parametrize("unchecked_before", [False, True])
@pytest.mark.parametrize(("x", "match"), bad_forward_inputs())
def test_stacked_forward_rejects_bad_x_naming_the_shape_or_value(x, match, unchecked_before):
    stacked = MLP(sizes_of(2), rng=generators(2))
    if unchecked_before:  # buffers from the fast route change nothing about the checks
        stacked.forward_unchecked(np.zeros((2, 5, N_IN)))
    with pytest.raises(ValueError, match=match) as info:
        stacked.forward(x)
    assert "(2, batch, 4)" in str(info.value) or "finite" in str(info.value)


@pytest.mark.parametrize("shape", [(2, 5, N_OUT + 1), (3, 5, N_OUT), (2, 4, N_OUT), (5, N_OUT), (2, 5)])
def test_stacked_backward_rejects_delta_of_the_wrong_shape(shape):
    stacked = MLP(sizes_of(2), rng=generators(2))
    stacked.forward(np.zeros((2, 5, N_IN)))
    with pytest.raises(ValueError, match=re.escape(f"(2, 5, 3) to match the last forward, got {shape}")):
        stacked.backward(np.zeros(shape))


@pytest.mark.parametrize(
    ("actions_shape", "targets_shape", "match"),
    [
        ((5,), (2, 5), r"actions must have shape \(members, batch\) = \(2, 5\)"),
        ((5, 2), (2, 5), r"actions must have shape"),
        ((2, 5), (5,), r"td_targets must have shape \(members, batch\) = \(2, 5\)"),
    ],
)
def test_stacked_td_loss_rejects_unstacked_actions_or_targets(actions_shape, targets_shape, match):
    q = np.zeros((2, 5, N_OUT))
    with pytest.raises(ValueError, match=match):
        td_loss(q, np.zeros(actions_shape, dtype=np.int64), np.zeros(targets_shape))


@pytest.mark.parametrize("loss", [mse, mae, huber])
def test_stacked_losses_reject_targets_of_another_shape_and_non_finite_predictions(loss):
    y_hat = np.zeros((2, 5, N_OUT))
    with pytest.raises(ValueError, match=re.escape("(2, 5, 3), got (5, 3)")):
        loss(y_hat, np.zeros((5, N_OUT)))
    y_hat[1, 2, 0] = np.inf
    with pytest.raises(ValueError, match=re.escape("at index (1, 2, 0)")):
        loss(y_hat, np.zeros((2, 5, N_OUT)))


@pytest.mark.parametrize("rng", [[], (), [0, 1], [np.random.default_rng(0), 1], np.random.default_rng(0).integers])
def test_rng_that_is_not_a_non_empty_list_of_generators_raises_type_error(rng):
    with pytest.raises(TypeError, match="Generator"):
        MLP(sizes_of(1), rng=rng)


# --- 10. the unchecked route's buffers ----------------------------------------------------------------------------


@pytest.mark.parametrize("members", MEMBERS)
def test_stacked_unchecked_route_reuses_its_buffers_per_batch_size(members):
    rng = np.random.default_rng(members)
    stacked, _ = nets_with_random_biases(2, members, rng)
    x7, x64 = rng.standard_normal((members, 7, N_IN)), rng.standard_normal((members, 64, N_IN))
    y7 = stacked.forward_unchecked(x7)
    assert y7.shape == (members, 7, N_OUT)
    expected7 = y7.copy()
    delta7 = rng.standard_normal(y7.shape)
    gx7 = stacked.backward_unchecked(delta7, input_grad=True)
    y7_again = stacked.forward_unchecked(2.0 * x7)
    assert y7_again is y7  # the same output buffer, overwritten: no new array
    assert stacked.backward_unchecked(delta7, input_grad=True) is gx7
    assert not np.array_equal(y7, expected7)  # it was overwritten by the second call
    y64 = stacked.forward_unchecked(x64)  # another batch size: its own buffers
    assert y64.shape == (members, 64, N_OUT) and not np.shares_memory(y64, y7)
    assert stacked.forward_unchecked(x7) is y7  # the size-7 buffers survived the size-64 call
    np.testing.assert_array_equal(y7, expected7)
    np.testing.assert_array_equal(y7, stacked.forward(x7))
    assert stacked.forward(x7) is not stacked.forward(x7)  # the checked route returns fresh arrays
    assert len(stacked._buffers) == 2
    twin = stacked.clone()
    assert not np.shares_memory(twin.forward_unchecked(x7), y7)  # a clone has buffers of its own


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


def test_stacked_unchecked_forward_and_backward_allocate_no_activations_after_the_first_call():
    members, batch, width = 4, 64, 128
    stacked = MLP((N_IN, width, width, 2), rng=generators(members))
    x, delta = np.ones((members, batch, N_IN)), np.ones((members, batch, 2))
    activation = members * batch * width * 8  # bytes of one (S, B, width) float64 activation
    stacked.forward_unchecked(x)
    stacked.backward_unchecked(delta)  # the first call with this batch size allocates the buffers
    # as for an unstacked net, only NumPy's own iterator buffers remain (at most 8192 elements each)
    assert traced_peak(lambda: stacked.forward_unchecked(x)) < activation // 3
    assert traced_peak(lambda: stacked.backward_unchecked(delta)) < activation // 3
    assert traced_peak(lambda: stacked.forward(x)) > 2 * activation  # the checked route allocates z, h and y_hat


def test_clip_per_member_leaves_an_inf_member_unscaled_and_clips_the_others():
    grads = {"W": np.array([[[30.0, 0.0]], [[np.inf, 1.0]]]), "b": np.array([[40.0], [2.0]])}
    norms = clip_grad_norm(grads, 1.0, per_member=True)
    assert norms[0] == pytest.approx(50.0) and np.isinf(norms[1])
    np.testing.assert_array_equal(grads["W"][1], [[np.inf, 1.0]])  # untouched: its caller stops that member
    np.testing.assert_array_equal(grads["b"][1], [2.0])
    assert np.hypot(grads["W"][0, 0, 0], grads["b"][0, 0]) == pytest.approx(1.0, rel=1e-5)


def test_clip_per_member_sums_float32_squares_without_overflow():
    grads = {"W": np.full((2, 1, 3), 1e20, dtype=np.float32), "b": np.ones((2, 1), dtype=np.float32)}
    norms = clip_grad_norm(grads, 1.0, per_member=True)
    assert np.isfinite(norms).all() and norms[0] == pytest.approx(np.sqrt(3) * 1e20, rel=1e-5)
    assert np.linalg.norm(np.concatenate([grads["W"][0].ravel(), grads["b"][0]])) == pytest.approx(1.0, rel=1e-4)


def test_unstacked_clip_leaves_an_infinite_gradient_unscaled():
    grads = {"W": np.array([[np.inf, 1.0]]), "b": np.array([2.0])}
    assert np.isinf(clip_grad_norm(grads, 1.0))
    np.testing.assert_array_equal(grads["W"], [[np.inf, 1.0]])
    np.testing.assert_array_equal(grads["b"], [2.0])
