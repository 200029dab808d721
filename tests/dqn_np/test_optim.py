"""Tests for dqn_np.optim: SGD and Adam against per-step formulas written out, clipping, state round trip."""

from __future__ import annotations

import io

import numpy as np
import pytest

from dqn_np.losses import mse
from dqn_np.mlp import MLP
from dqn_np.optim import SGD, Adam, FlatClipper, clip_by_global_norm, clip_grad_norm, clip_per_member

N_STEPS = 4


def start() -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    """Parameters W (2, 3), b (2,) and a different gradient for each of N_STEPS steps."""
    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((2, 3)), "b": rng.standard_normal(2)}
    grads = [
        {name: rng.standard_normal(p.shape) * 10.0 ** rng.integers(-3, 3) for name, p in params.items()}
        for _ in range(N_STEPS)
    ]
    return params, grads


def run(optimizer, params, grads) -> list[dict[str, np.ndarray]]:
    """Step `optimizer` once per gradient; return a copy of the parameters after each step."""
    history = []
    for g in grads:
        optimizer.step(params, {name: a.copy() for name, a in g.items()})
        history.append({name: p.copy() for name, p in params.items()})
    return history


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_matches_the_per_step_formula(momentum):
    lr = 0.1
    params, grads = start()
    history = run(SGD(lr=lr, momentum=momentum), params, grads)
    theta, _ = start()
    for name in theta:
        v = 0.0
        for t, g in enumerate(grads):
            # PyTorch's momentum: v_1 = g_1, v_t = momentum * v_{t-1} + g_t; theta -= lr * v_t
            v = g[name] if t == 0 else momentum * v + g[name]
            theta[name] = theta[name] - lr * v
            np.testing.assert_allclose(history[t][name], theta[name], rtol=1e-13, atol=1e-13, err_msg=f"{name} {t}")


def test_sgd_with_momentum_differs_from_plain_sgd_after_the_first_step():
    params0, grads = start()
    params9 = {name: p.copy() for name, p in params0.items()}
    plain, heavy = run(SGD(lr=0.1), params0, grads), run(SGD(lr=0.1, momentum=0.9), params9, grads)
    np.testing.assert_array_equal(plain[0]["W"], heavy[0]["W"])  # v_1 = g_1
    assert not np.allclose(plain[1]["W"], heavy[1]["W"])


@pytest.mark.parametrize(("lr", "betas", "eps"), [(1e-3, (0.9, 0.999), 1e-8), (0.05, (0.5, 0.9), 1e-3)])
def test_adam_matches_the_per_step_formula_with_bias_correction(lr, betas, eps):
    b1, b2 = betas
    params, grads = start()
    history = run(Adam(lr=lr, betas=betas, eps=eps), params, grads)
    theta, _ = start()
    for name in theta:
        m = v = 0.0
        for t, g in enumerate(grads, start=1):
            m = b1 * m + (1 - b1) * g[name]
            v = b2 * v + (1 - b2) * g[name] ** 2
            m_hat = m / (1 - b1**t)
            v_hat = v / (1 - b2**t)
            theta[name] = theta[name] - lr * m_hat / (np.sqrt(v_hat) + eps)
            np.testing.assert_allclose(history[t - 1][name], theta[name], rtol=1e-13, atol=1e-15, err_msg=name)


def test_adam_first_step_moves_every_parameter_by_lr_times_sign_of_its_gradient():
    lr = 1e-3
    g = np.array([1e-3, -2e-2, 5.0, -300.0, 7e4])  # magnitudes over eight orders
    p = np.zeros_like(g)
    Adam(lr=lr).step({"p": p}, {"p": g})
    np.testing.assert_allclose(p, -lr * np.sign(g), rtol=1e-4)


def test_clip_grad_norm_scales_all_gradients_together_and_returns_the_pre_clip_norm():
    grads = {"W": np.array([[3.0, 0.0]]), "b": np.array([0.0, 4.0])}  # global norm 5
    w, b = grads["W"], grads["b"]
    norm = clip_grad_norm(grads, max_norm=1.0)
    assert norm == 5.0
    assert grads["W"] is w and grads["b"] is b  # in place
    np.testing.assert_allclose(grads["W"], [[0.6, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(grads["b"], [0.0, 0.8], rtol=1e-6)
    assert grads["W"][0, 0] / 3.0 == grads["b"][1] / 4.0  # one common factor, direction kept
    new_norm = np.sqrt(np.sum(grads["W"] ** 2) + np.sum(grads["b"] ** 2))
    assert new_norm <= 1.0 and new_norm == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("max_norm", [5.0, 10.0])
def test_clip_grad_norm_leaves_gradients_untouched_at_or_below_max_norm(max_norm):
    grads = {"W": np.array([[3.0, 0.0]]), "b": np.array([0.0, 4.0])}
    assert clip_grad_norm(grads, max_norm=max_norm) == 5.0
    np.testing.assert_array_equal(grads["W"], [[3.0, 0.0]])
    np.testing.assert_array_equal(grads["b"], [0.0, 4.0])


@pytest.mark.parametrize("max_norm", [0.0, -1.0, float("nan")])
def test_clip_grad_norm_rejects_non_positive_max_norm(max_norm):
    with pytest.raises(ValueError, match=f"max_norm must be positive, got {max_norm}"):
        clip_grad_norm({"W": np.ones(2)}, max_norm=max_norm)


OPTIMIZERS = {"sgd": lambda: SGD(lr=0.1), "momentum": lambda: SGD(lr=0.1, momentum=0.9), "adam": lambda: Adam(lr=0.01)}


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_restored_optimizer_continues_bit_identically(kind):
    params, grads = start()
    uninterrupted = run(OPTIMIZERS[kind](), {name: p.copy() for name, p in params.items()}, grads)

    first = OPTIMIZERS[kind]()
    run(first, params, grads[:2])
    buffer = io.BytesIO()  # through a checkpoint file: plain arrays, no pickle
    np.savez(buffer, **first.state_dict())
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as saved:
        state = dict(saved)
    resumed = OPTIMIZERS[kind]()
    resumed.load_state_dict(state)
    assert resumed.t == 2
    continued = run(resumed, params, grads[2:])
    for name in params:
        np.testing.assert_array_equal(continued[-1][name], uninterrupted[-1][name])


def test_state_dict_is_a_copy_and_keyed_per_parameter():
    mlp = MLP((3, 4, 4, 2), rng=np.random.default_rng(0))
    adam = Adam(lr=0.01)
    _, delta2 = mse(mlp.forward(np.ones((2, 3))), np.zeros((2, 2)))
    mlp.backward(delta2)
    adam.step(mlp.params, mlp.grads)
    state = adam.state_dict()
    assert set(state) == {"t"} | {f"{slot}.{name}" for slot in ("m", "v") for name in mlp.params}
    for name in mlp.params:  # one moment per parameter: no two layers share state
        assert state[f"m.{name}"].shape == mlp.params[name].shape
        np.testing.assert_allclose(state[f"m.{name}"], 0.1 * mlp.grads[name], rtol=1e-14)
    state["m.W1"] += 1.0
    assert not np.array_equal(adam.state["m"]["W1"], state["m.W1"])


@pytest.mark.parametrize(
    ("state", "match"),
    [
        ({"m.W": np.zeros(2)}, r"optimizer state must hold 't', got keys \['m.W'\]"),
        ({"t": np.array(1), "velocity.W": np.zeros(2)}, r"optimizer state key 'velocity.W' is not one of"),
        ({"t": np.array(1), "m": np.zeros(2)}, r"optimizer state key 'm' is not one of"),
    ],
)
def test_load_state_dict_rejects_unknown_keys(state, match):
    with pytest.raises(ValueError, match=match):
        Adam().load_state_dict(state)


@pytest.mark.parametrize("lr", [0.0, -0.1, float("nan"), float("inf"), True, "0.1"])
def test_optimizers_reject_bad_learning_rates(lr):
    for cls in (SGD, Adam):
        with pytest.raises(ValueError, match=f"lr must be a positive finite number, got {lr!r}"):
            cls(lr=lr)


@pytest.mark.parametrize("momentum", [-0.1, 1.0, float("nan")])
def test_sgd_rejects_momentum_outside_0_1(momentum):
    with pytest.raises(ValueError, match=rf"momentum must be in \[0, 1\), got {momentum}"):
        SGD(lr=0.1, momentum=momentum)


@pytest.mark.parametrize(("betas", "eps"), [((1.0, 0.999), 1e-8), ((0.9, -0.1), 1e-8), ((0.9, 0.999), 0.0)])
def test_adam_rejects_bad_betas_and_eps(betas, eps):
    with pytest.raises(ValueError, match="betas must both be in|eps must be positive"):
        Adam(betas=betas, eps=eps)


@pytest.mark.parametrize("opt", [SGD(lr=0.1), Adam()], ids=["SGD", "Adam"])
def test_step_rejects_grads_with_other_keys(opt):
    params = {"W1": np.zeros(2), "b1": np.zeros(1)}
    with pytest.raises(ValueError, match=r"grads must have the keys of params \['W1', 'b1'\], got \['W1'\]"):
        opt.step(params, {"W1": np.ones(2)})
    np.testing.assert_array_equal(params["W1"], 0.0)


@pytest.mark.parametrize("make_opt", [lambda: Adam(lr=1e-2), lambda: SGD(lr=1e-2, momentum=0.9), lambda: SGD(lr=1e-2)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_flat_path_equals_per_parameter_path(make_opt, dtype):
    """An MLP's parameters tile one flat buffer and take the fused path; independent copies of the same arrays take
    the per-parameter path. Both must give bit-identical parameters and state, also across a state round trip."""
    rng = np.random.default_rng(7)
    net = MLP((3, 5, 4, 2), rng=rng, dtype=dtype)
    loose = {k: v.copy() for k, v in net.params.items()}  # separate arrays: not tiled
    fused_opt, loose_opt = make_opt(), make_opt()
    for step in range(6):
        grads = {k: rng.normal(size=v.shape).astype(dtype) for k, v in net.params.items()}
        np.copyto(net.flat_grads, np.concatenate([g.ravel() for g in grads.values()]))
        fused_opt.step(net.params, net.grads)
        loose_opt.step(loose, grads)
        if step == 2:  # a restored optimizer re-lays its state and continues identically
            restored = make_opt()
            restored.load_state_dict(fused_opt.state_dict())
            fused_opt = restored
        assert fused_opt._fused is not None or step == 2
        assert loose_opt._fused is None
        for k in loose:
            assert np.array_equal(net.params[k], loose[k]), (step, k)
    fs, ls = fused_opt.state_dict(), loose_opt.state_dict()
    assert fs.keys() == ls.keys()
    for k in fs:
        assert np.array_equal(fs[k], ls[k]), k


@pytest.mark.parametrize("make_opt", [lambda: Adam(lr=1e-2), lambda: SGD(lr=1e-2, momentum=0.9)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_step_unchecked_equals_step_and_falls_back_for_other_dicts(make_opt, dtype):
    rng = np.random.default_rng(3)
    net = MLP((3, 5, 2), rng=rng, dtype=dtype)
    twin = net.clone()
    loose = {k: v.copy() for k, v in net.params.items()}
    fast, checked = make_opt(), make_opt()
    for step in range(5):
        g = rng.normal(size=net.flat_grads.size).astype(dtype)
        np.copyto(net.flat_grads, g)
        np.copyto(twin.flat_grads, g)
        fast.step_unchecked(net.params, net.grads)
        checked.step(twin.params, twin.grads)
        if step == 1:  # after a restore the layout is rebuilt by the first step, unchecked or not
            restored = make_opt()
            restored.load_state_dict(fast.state_dict())
            fast = restored
        np.testing.assert_array_equal(net.flat_params, twin.flat_params, err_msg=f"step {step}")
    assert fast.t == checked.t == 5
    before = net.flat_params.copy()
    grads = {k: np.ones_like(v) for k, v in loose.items()}
    fast.step_unchecked(loose, grads)  # other dicts: the checked route, which updates them and not the net
    np.testing.assert_array_equal(net.flat_params, before)
    assert not np.array_equal(loose["W1"], net.params["W1"])


def test_clip_by_global_norm_on_a_flat_buffer_matches_the_per_parameter_clip():
    rng = np.random.default_rng(0)
    net = MLP((3, 5, 2), rng=rng)
    net.flat_grads[...] = rng.normal(size=net.flat_grads.size)
    per_param = {k: g.copy() for k, g in net.grads.items()}
    norm_dict = clip_grad_norm(per_param, max_norm=1.0)
    norm_flat = clip_by_global_norm((net.flat_grads,), 1.0)
    # Within 1e-12, not equal: one dot product over the buffer sums in another order than per-parameter dots.
    assert norm_flat == pytest.approx(norm_dict, rel=1e-12) and norm_flat > 1.0
    for k, g in net.grads.items():
        np.testing.assert_allclose(g, per_param[k], rtol=1e-12, atol=0)
    assert np.sqrt(np.dot(net.flat_grads, net.flat_grads)) == pytest.approx(1.0, rel=1e-5)


def test_clip_by_global_norm_with_inf_only_measures_and_a_nan_gradient_is_not_scaled():
    g = np.array([3.0, 4.0])
    assert clip_by_global_norm((g,), np.inf) == 5.0
    np.testing.assert_array_equal(g, [3.0, 4.0])
    g = np.array([3.0, np.nan, 40.0])
    assert np.isnan(clip_by_global_norm((g,), 1.0))
    np.testing.assert_array_equal(g, [3.0, np.nan, 40.0])


def _stacked_grads(sizes: tuple[int, ...], members: int, dtype: str, seed: int) -> MLP:
    """A stacked network whose gradient buffer holds values spread over six orders of magnitude."""
    net = MLP(sizes, rng=[np.random.default_rng(s) for s in range(members)], dtype=dtype)
    rng = np.random.default_rng(seed)
    net.flat_grads[:] = rng.standard_normal(net.flat_grads.size) * 10.0 ** rng.integers(-3, 3, net.flat_grads.size)
    return net


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sizes", [(3, 5, 2), (4, 7, 6, 3), (2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 1)])  # K = 4, 6, 20 blocks
def test_flat_clipper_matches_the_per_array_clip_and_a_member_alone_gets_the_same_bits(dtype, sizes):
    net = _stacked_grads(sizes, 5, dtype, seed=len(sizes))
    copies = tuple(g.copy() for g in net.grads.values())
    measured = np.sort(clip_per_member(copies, np.inf))
    max_norm = float(measured[1] + measured[2]) / 2  # two members under, three over, none at it
    want = clip_per_member(copies, max_norm)  # scales the copies
    norms = FlatClipper(tuple(net.grads.values()), net.flat_grads)(max_norm)
    np.testing.assert_allclose(norms, want, rtol=1e-13)  # the same squares, added in another order
    for g, c in zip(net.grads.values(), copies, strict=True):
        np.testing.assert_allclose(g, c, rtol=2e-7 if dtype == "float32" else 1e-15)
    for s in range(5):  # member s alone (stacked S = 1, and unstacked): the same norm and clipped values, bit for bit
        fresh = _stacked_grads(sizes, 5, dtype, seed=len(sizes))
        alone = MLP(sizes, rng=[np.random.default_rng(0)], dtype=dtype)
        single = MLP(sizes, rng=np.random.default_rng(0), dtype=dtype)
        for k in alone.grads:
            alone.grads[k][0] = single.grads[k][...] = fresh.grads[k][s]
        assert FlatClipper(tuple(alone.grads.values()), alone.flat_grads)(max_norm)[0] == norms[s]
        assert FlatClipper(tuple(g[None] for g in single.grads.values()), single.flat_grads)(max_norm)[0] == norms[s]
        for k in net.grads:
            np.testing.assert_array_equal(alone.grads[k][0], net.grads[k][s], err_msg=k)
            np.testing.assert_array_equal(single.grads[k], net.grads[k][s], err_msg=k)


def test_flat_clipper_leaves_a_non_finite_member_alone_and_inf_only_measures():
    net = _stacked_grads((3, 4, 2), 3, "float64", seed=1)
    net.grads["W1"][1, 0, 0] = np.nan
    before = {k: g.copy() for k, g in net.grads.items()}
    clip = FlatClipper(tuple(net.grads.values()), net.flat_grads)
    norms = clip(np.inf)
    assert np.isnan(norms[1]) and (np.isfinite(norms[[0, 2]]) & (norms[[0, 2]] > 1e-3)).all()
    for k, g in net.grads.items():
        np.testing.assert_array_equal(g, before[k])  # inf: measured, nothing scaled
    clip(1e-3)
    for k, g in net.grads.items():
        np.testing.assert_array_equal(g[1], before[k][1])  # the NaN member is left for its caller to stop
    np.testing.assert_allclose(clip(np.inf)[[0, 2]], 1e-3, rtol=1e-5)  # the others scaled to the threshold


def test_flat_clipper_refuses_arrays_that_do_not_tile_the_buffer():
    net = _stacked_grads((3, 4, 2), 2, "float64", seed=2)
    arrays = tuple(net.grads.values())
    with pytest.raises(ValueError, match="tile the flat buffer"):
        FlatClipper(arrays[1:], net.flat_grads)
    with pytest.raises(ValueError, match="tile the flat buffer"):
        FlatClipper(tuple(g.copy() for g in arrays), net.flat_grads)
