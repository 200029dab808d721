"""Tests for agents.algo.dqn: the update is one optimizer step on the gradient-checked TD loss, Double DQN targets,
target-network sync, epsilon-greedy acting, divergence detection and save/load."""

from __future__ import annotations

import time

import numpy as np
import pytest

from agents.algo.dqn import PHASES, DivergenceError, DQNAgent
from agents.config import DQNConfig
from agents.data.replay import Batch
from dqn_np import SGD, Adam, clip_grad_norm, td_loss
from dqn_np.gradcheck import check_gradients

OBS_DIM, N_ACTIONS, BATCH = 3, 3, 6


def make_config(**overrides) -> DQNConfig:
    """A small float64 agent config; no clipping and no target sync unless asked for."""
    base = dict(hidden_sizes=(8, 8), dtype="float64", batch_size=BATCH, buffer_size=100, learning_starts=BATCH,
                learning_rate=1e-2, max_grad_norm=0.0, target_update_interval=10_000, gamma=0.9)
    return DQNConfig(**{**base, **overrides})


def make_agent(config: DQNConfig, seed: int = 0, obs_dim: int = OBS_DIM, n_actions: int = N_ACTIONS) -> DQNAgent:
    """An agent whose biases (online and target) are small random values and whose target differs from online.

    Non-zero biases keep every pre-activation away from the ReLU kink, where central differences are meaningless.
    """
    rng = np.random.default_rng(seed)
    agent = DQNAgent(obs_dim, n_actions, config, rng)
    init = np.random.default_rng(seed + 1000)
    for net in (agent.online, agent.target):
        for name, p in net.params.items():
            if name.startswith("b"):
                p[...] = init.normal(scale=0.1, size=p.shape)
            else:
                p += init.normal(scale=0.05, size=p.shape)  # the target is not a copy of the online network
    return agent


GAMMA = 0.9  # make_config's gamma: one-step discounts are gamma * (1 - terminated)


def random_batch(seed: int, n: int = BATCH, obs_dim: int = OBS_DIM, n_actions: int = N_ACTIONS,
                 dtype=np.float64, reward_scale: float = 3.0) -> Batch:
    """Random one-step transitions, every other one terminal (discount 0), with TD errors on both sides of Huber's
    delta = 1."""
    rng = np.random.default_rng(seed)
    terminated = np.zeros(n, dtype=dtype)
    terminated[::2] = 1.0
    return Batch(
        obs=rng.standard_normal((n, obs_dim)).astype(dtype),
        actions=rng.integers(0, n_actions, size=n),
        rewards=(reward_scale * rng.standard_normal(n)).astype(dtype),
        next_obs=rng.standard_normal((n, obs_dim)).astype(dtype),
        discounts=(GAMMA * (1.0 - terminated)).astype(dtype),
    )


def copy_params(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in params.items()}


def assert_arrays_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def fresh_optimizer(config: DQNConfig) -> Adam | SGD:
    """An optimizer built independently of the agent, from the config alone."""
    if config.optimizer == "adam":
        return Adam(config.learning_rate)
    return SGD(config.learning_rate, config.momentum)


def checked_gradients(agent: DQNAgent, batch: Batch) -> dict[str, np.ndarray]:
    """The analytic TD-loss gradients after forward/backward, verified against central differences."""
    cfg = agent.config
    y = agent.td_targets(batch).copy()  # held fixed: the semi-gradient treats the target as a constant

    def loss_fn() -> float:
        return td_loss(agent.online.forward(batch.obs), batch.actions, y, kind=cfg.loss, delta=cfg.huber_delta)[0]

    _, delta2 = td_loss(agent.online.forward(batch.obs), batch.actions, y, kind=cfg.loss, delta=cfg.huber_delta)
    agent.online.backward(delta2)
    grads = copy_params(agent.online.grads)
    reports = check_gradients(loss_fn, agent.online.params, agent.online.grads)
    assert [r.name for r in reports] == list(agent.online.params)
    for r in reports:
        assert r.rel_error < 1e-6, r
    assert any(np.abs(g).max() > 1e-3 for g in grads.values())  # not a vacuous all-zero gradient
    return grads


# --- the update is one optimizer step on the checked gradient -------------------------------------------


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("loss", ["mse", "huber"])
@pytest.mark.parametrize("double_dqn", [True, False])
def test_update_is_one_optimizer_step_on_the_checked_td_gradient(double_dqn, loss, optimizer):
    cfg = make_config(double_dqn=double_dqn, loss=loss, optimizer=optimizer)
    agent = make_agent(cfg, seed=1)
    batch = random_batch(seed=2)
    grads = checked_gradients(agent, batch)
    if loss == "huber":  # the batch exercises both the quadratic and the linear zone
        td_error = np.abs(agent.q_values(batch.obs)[np.arange(BATCH), batch.actions] - agent.td_targets(batch))
        assert (td_error < cfg.huber_delta).any() and (td_error > cfg.huber_delta).any()

    before = copy_params(agent.online.params)
    expected = copy_params(before)
    fresh_optimizer(cfg).step(expected, grads)
    td_errors = np.abs(agent.q_values(batch.obs)[np.arange(BATCH), batch.actions] - agent.td_targets(batch))
    metrics = agent.update(batch)

    assert agent.n_updates == 1
    for name, p in agent.online.params.items():
        assert not np.array_equal(p, before[name]), name
        np.testing.assert_allclose(p, expected[name], rtol=1e-12, atol=1e-15, err_msg=name)
    assert set(metrics) == {"loss", "q_mean", "grad_norm", "td_abs", "td_errors"}
    # the per-sample |TD error| a prioritized replay needs: |Q(s_i, a_i) - y_i| before the step
    np.testing.assert_allclose(metrics["td_errors"], td_errors, rtol=1e-12, atol=1e-15)
    assert metrics["td_abs"] == pytest.approx(td_errors.mean(), rel=1e-12)
    assert metrics["grad_norm"] == pytest.approx(np.sqrt(sum(float((g * g).sum()) for g in grads.values())))


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_update_clips_the_checked_gradient_to_max_grad_norm(optimizer):
    cfg = make_config(optimizer=optimizer, max_grad_norm=0.05)
    agent = make_agent(cfg, seed=3)
    batch = random_batch(seed=4)
    grads = checked_gradients(agent, batch)
    norm = np.sqrt(sum(float((g * g).sum()) for g in grads.values()))
    assert norm > 10 * cfg.max_grad_norm  # clipping is active
    clipped = {k: g * (cfg.max_grad_norm / (norm + 1e-6)) for k, g in grads.items()}
    expected = copy_params(agent.online.params)
    fresh_optimizer(cfg).step(expected, clipped)

    metrics = agent.update(batch)

    assert metrics["grad_norm"] == pytest.approx(norm, rel=1e-12)
    for name, p in agent.online.params.items():
        np.testing.assert_allclose(p, expected[name], rtol=1e-12, atol=1e-15, err_msg=name)


# --- the unchecked update against the validated route and against the equations written out ----------------------


def validated_update(agent: DQNAgent, batch: Batch) -> None:
    """One update through the public, checked, allocating calls only: the route `update` must reproduce."""
    cfg = agent.config
    q_next_target = agent.target.forward(batch.next_obs)
    q_next_select = agent.online.forward(batch.next_obs) if cfg.double_dqn else q_next_target
    rows = np.arange(len(batch.actions))
    y = batch.rewards + batch.discounts * q_next_target[rows, q_next_select.argmax(axis=1)]
    _, delta2 = td_loss(agent.online.forward(batch.obs), batch.actions, y, kind=cfg.loss, delta=cfg.huber_delta)
    agent.online.backward(delta2)
    if cfg.max_grad_norm:
        clip_grad_norm(agent.online.grads, cfg.max_grad_norm)
    agent.optimizer.step(agent.online.params, agent.online.grads)
    agent.n_updates += 1
    if agent.n_updates % cfg.target_update_interval == 0:
        agent.sync_target()


@pytest.mark.parametrize("max_grad_norm", [0.0, 0.5])
@pytest.mark.parametrize("double_dqn", [True, False])
def test_update_equals_the_validated_route_across_batch_sizes(double_dqn, max_grad_norm):
    cfg = make_config(double_dqn=double_dqn, max_grad_norm=max_grad_norm, target_update_interval=2)
    fast, checked = make_agent(cfg, seed=30), make_agent(cfg, seed=30)
    for step, n in enumerate([6, 11, 6, 1, 11, 6]):  # sizes come back: the per-size buffers are reused
        batch = random_batch(seed=31 + step, n=n)
        fast.update(batch)
        validated_update(checked, batch)
        for net in ("online", "target"):
            got, want = getattr(fast, net).flat_params, getattr(checked, net).flat_params
            if max_grad_norm:  # the clip's norm sums block by block, in another order than per-parameter dots
                np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15, err_msg=f"{net} step {step}")
            else:  # otherwise the same NumPy calls in the same order: bit-identical
                np.testing.assert_array_equal(got, want, err_msg=f"{net} step {step}")
    assert not np.array_equal(fast.online.flat_params, make_agent(cfg, seed=30).online.flat_params)


def test_double_dqn_update_with_discounts_matches_the_equations_by_hand():
    """1 hidden layer, SGD (so the step is lr times the clipped gradient), Huber, Double DQN, discounts 0, gamma and
    gamma^3: the target, the four backprop equations, the clip and the step written out in float64."""
    lr, max_norm, n = 0.1, 0.3, 10
    cfg = make_config(hidden_sizes=(8,), optimizer="sgd", learning_rate=lr, loss="huber", double_dqn=True,
                      max_grad_norm=max_norm, batch_size=n, learning_starts=n)
    agent = make_agent(cfg, seed=40)
    agent.target.flat_params += np.random.default_rng(42).normal(scale=0.5, size=agent.target.flat_params.size)
    batch = random_batch(seed=41, n=n)._replace(discounts=np.array([0.0, 0.9, 0.729, 0.0, 0.9] * 2))
    p = copy_params(agent.online.params)
    t = copy_params(agent.target.params)
    rows, obs, a = np.arange(n), batch.obs, batch.actions

    def net(params: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        z1 = x @ params["W1"].T + params["b1"]
        h1 = np.maximum(z1, 0.0)
        return z1, h1, h1 @ params["W2"].T + params["b2"]

    a_next = net(p, batch.next_obs)[2].argmax(axis=1)  # the online net picks a'
    assert (a_next != net(t, batch.next_obs)[2].argmax(axis=1)).any()  # ... which the target would not always pick
    y = batch.rewards + batch.discounts * net(t, batch.next_obs)[2][rows, a_next]  # ... and the target evaluates it
    z1, h1, q = net(p, obs)
    err = q[rows, a] - y
    assert (np.abs(err) < 1).any() and (np.abs(err) > 1).any()  # both Huber zones
    delta2 = np.zeros_like(q)
    delta2[rows, a] = np.clip(err, -1.0, 1.0) / n
    grads = {"W2": delta2.T @ h1, "b2": delta2.sum(axis=0)}
    delta1 = (delta2 @ p["W2"]) * (z1 > 0)
    grads.update(W1=delta1.T @ obs, b1=delta1.sum(axis=0))
    norm = np.sqrt(sum(float((g * g).sum()) for g in grads.values()))
    assert norm > max_norm  # clipping is active
    expected = {k: p[k] - lr * (max_norm / (norm + 1e-6)) * grads[k] for k in p}

    metrics = agent.update(batch)

    for k in p:
        np.testing.assert_allclose(agent.online.params[k], expected[k], rtol=1e-12, atol=1e-15, err_msg=k)
    abs_err = np.abs(err)
    quad = np.minimum(abs_err, 1.0)
    assert metrics["loss"] == pytest.approx(float((quad * (abs_err - 0.5 * quad)).sum()) / n, rel=1e-12)
    assert metrics["grad_norm"] == pytest.approx(norm, rel=1e-12)
    assert metrics["td_abs"] == pytest.approx(abs_err.mean(), rel=1e-12)
    assert metrics["q_mean"] == pytest.approx(q[rows, a].mean(), rel=1e-12)


def test_update_rejects_a_batch_of_the_wrong_shape_and_changes_nothing():
    agent = make_agent(make_config(), seed=42)
    batch = random_batch(seed=43)
    before = agent.online.flat_params.copy()
    for bad in (batch._replace(obs=batch.obs[:, :2]), batch._replace(discounts=batch.discounts[:-1]),
                batch._replace(next_obs=batch.next_obs[:-1]), batch._replace(actions=batch.actions.astype(float))):
        with pytest.raises(ValueError, match="batch"):
            agent.update(bad)
    np.testing.assert_array_equal(agent.online.flat_params, before)
    assert agent.n_updates == 0


# --- TD targets ------------------------------------------------------------------------------------------


def hand_built_agent(double_dqn: bool) -> DQNAgent:
    """2 inputs, 4 hidden units, 2 actions; h = relu(x) on the first two units, so Q is linear in a positive s'.

    Online: Q(s', .) = (s'_0, s'_1). Target: Q'(s', .) = (3 s'_1, 5 s'_0). At s' = (2, 1) the online argmax is 0
    (Q = (2, 1)) but the target's is 1 (Q' = (3, 10)).
    """
    cfg = DQNConfig(hidden_sizes=(4,), dtype="float64", gamma=0.9, double_dqn=double_dqn, batch_size=3,
                    learning_starts=3, buffer_size=10)
    agent = DQNAgent(2, 2, cfg, np.random.default_rng(0))
    W1 = np.zeros((4, 2))
    W1[0, 0] = W1[1, 1] = 1.0
    for net, W2 in ((agent.online, [[1.0, 0, 0, 0], [0, 1.0, 0, 0]]), (agent.target, [[0, 3.0, 0, 0], [5.0, 0, 0, 0]])):
        net.params["W1"][...] = W1
        net.params["b1"][...] = 0.0
        net.params["W2"][...] = W2
        net.params["b2"][...] = 0.0
    return agent


@pytest.mark.parametrize("double_dqn, bootstrap_value", [(True, 3.0), (False, 10.0)])
def test_td_targets_by_hand(double_dqn, bootstrap_value):
    agent = hand_built_agent(double_dqn)
    next_obs = np.array([[2.0, 1.0], [2.0, 1.0], [2.0, 1.0]])
    np.testing.assert_array_equal(agent.online.forward(next_obs)[0], [2.0, 1.0])
    np.testing.assert_array_equal(agent.target.forward(next_obs)[0], [3.0, 10.0])
    batch = Batch(obs=np.zeros((3, 2)), actions=np.array([0, 1, 0]), rewards=np.array([0.5, -1.25, 2.0]),
                  next_obs=next_obs, discounts=0.9 * (1.0 - np.array([0.0, 1.0, 0.0])))  # row 2: a truncation

    y = agent.td_targets(batch)

    assert y.shape == (3,)
    # Double DQN: a' = argmax online = 0, evaluated by the target (3); plain DQN: max of the target (10).
    assert y[0] == pytest.approx(0.5 + 0.9 * bootstrap_value, rel=1e-15)
    assert y[1] == -1.25  # terminated: y = r exactly, no bootstrap
    assert y[2] == pytest.approx(2.0 + 0.9 * bootstrap_value, rel=1e-15)  # truncated transitions still bootstrap


def test_td_targets_use_the_target_network_and_not_the_online_one():
    agent = make_agent(make_config(double_dqn=False), seed=5)
    batch = random_batch(seed=6)
    q_next = agent.target.forward(batch.next_obs)
    expected = batch.rewards + batch.discounts * q_next.max(axis=1)
    assert (batch.discounts == 0).any() and (batch.discounts == GAMMA).any()
    np.testing.assert_allclose(agent.td_targets(batch), expected, rtol=1e-14)
    online = agent.online.forward(batch.next_obs).max(axis=1)
    assert not np.allclose(online, q_next.max(axis=1))  # the check above could tell the two apart


# --- target network --------------------------------------------------------------------------------------


def nets_equal(agent: DQNAgent) -> bool:
    return all(np.array_equal(agent.online.params[k], agent.target.params[k]) for k in agent.online.params)


@pytest.mark.parametrize("interval", [1, 3, 5])
def test_hard_target_sync_every_interval(interval):
    agent = make_agent(make_config(target_update_interval=interval, tau=1.0), seed=7)
    batch = random_batch(seed=8)
    for n in range(1, 2 * interval + 2):
        agent.update(batch)
        assert agent.n_updates == n
        assert nets_equal(agent) == (n % interval == 0), n


@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_soft_target_update_at_the_interval(tau):
    interval = 3
    agent = make_agent(make_config(target_update_interval=interval, tau=tau), seed=9)
    batch = random_batch(seed=10)
    old_target = copy_params(agent.target.params)
    for _ in range(interval - 1):
        agent.update(batch)
        assert_arrays_equal(agent.target.params, old_target)  # the target stays still between syncs
    agent.update(batch)
    for name, p in agent.target.params.items():
        expected = tau * agent.online.params[name] + (1 - tau) * old_target[name]
        np.testing.assert_allclose(p, expected, rtol=1e-12, atol=1e-15, err_msg=name)
        assert not np.allclose(p, agent.online.params[name])


# --- acting ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_actions", [2, 5])
def test_act_greedy_is_argmax(n_actions):
    agent = make_agent(make_config(), seed=11, n_actions=n_actions)
    obs = np.random.default_rng(12).standard_normal((200, OBS_DIM))
    actions = [agent.act(o, epsilon=0.0) for o in obs]
    np.testing.assert_array_equal(actions, agent.q_values(obs).argmax(axis=1))
    assert len(set(actions)) > 1  # the inputs reach more than one greedy action


@pytest.mark.parametrize("n_actions, lo, hi", [(2, 0.4, 0.6), (4, 0.2, 0.3)])
def test_act_epsilon_one_is_uniform(n_actions, lo, hi):
    agent = make_agent(make_config(), seed=13, n_actions=n_actions)
    obs = np.ones(OBS_DIM)
    counts = np.bincount([agent.act(obs, epsilon=1.0) for _ in range(2000)], minlength=n_actions)
    assert counts.shape == (n_actions,)
    freq = counts / counts.sum()
    assert ((freq > lo) & (freq < hi)).all(), freq


def test_act_on_one_observation_keeps_its_random_stream():
    agent = make_agent(make_config(), seed=50)
    twin = np.random.default_rng(0)
    twin.bit_generator.state = agent.rng.bit_generator.state
    obs = np.random.default_rng(51).standard_normal((100, OBS_DIM))
    for o in obs:
        action = agent.act(o, epsilon=0.3)
        greedy = int(np.argmax(agent.q_values(o)))
        assert action == (int(twin.integers(N_ACTIONS)) if twin.random() < 0.3 else greedy)
        assert type(action) is int
    assert agent.rng.bit_generator.state == twin.bit_generator.state


@pytest.mark.parametrize("epsilon", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("n_envs", [1, 16])
def test_act_on_e_observations_draws_e_uniforms_then_k_integers(epsilon, n_envs):
    agent = make_agent(make_config(), seed=52)
    twin = np.random.default_rng(0)
    twin.bit_generator.state = agent.rng.bit_generator.state
    data = np.random.default_rng(53)
    for _ in range(5):
        obs = data.standard_normal((n_envs, OBS_DIM))
        actions = agent.act(obs, epsilon)
        explore = twin.random(n_envs) < epsilon  # exactly one uniform per environment ...
        expected = agent.q_values(obs).argmax(axis=1)  # ... greedy where it does not explore ...
        expected[explore] = twin.integers(N_ACTIONS, size=int(explore.sum()))  # ... k integers where it does
        assert actions.shape == (n_envs,) and actions.dtype == np.int64
        np.testing.assert_array_equal(actions, expected)
        assert agent.rng.bit_generator.state == twin.bit_generator.state


def test_act_greedy_on_e_observations_is_the_argmax_of_one_forward_pass():
    agent = make_agent(make_config(), seed=54)
    obs = np.random.default_rng(55).standard_normal((64, OBS_DIM))
    agent.update(random_batch(seed=56))  # the training buffers (B = 6) and acting buffers (E = 64) coexist
    actions = agent.act(obs, epsilon=0.0)
    np.testing.assert_array_equal(actions, agent.q_values(obs).argmax(axis=1))
    assert len(set(actions.tolist())) > 1
    np.testing.assert_array_equal(agent.act(obs[:5], epsilon=0.0), actions[:5])  # another E, then back
    np.testing.assert_array_equal(agent.act(obs, epsilon=0.0), actions)


@pytest.mark.parametrize("obs", [np.zeros(OBS_DIM + 1), np.zeros((2, OBS_DIM - 1)), np.zeros((1, 2, OBS_DIM)),
                                 np.array([0.0, np.nan, 0.0]), np.array([[0.0, 0.0, 0.0], [np.inf, 0.0, 0.0]])])
def test_act_rejects_observations_of_the_wrong_shape_or_not_finite(obs):
    with pytest.raises(ValueError, match="obs must"):
        make_agent(make_config(), seed=57).act(obs, epsilon=0.0)


def test_act_is_reproducible_with_the_same_seed():
    obs = np.random.default_rng(14).standard_normal((300, OBS_DIM))

    def actions(seed: int) -> list[int]:
        agent = DQNAgent(OBS_DIM, N_ACTIONS, make_config(), np.random.default_rng(seed))
        return [agent.act(o, epsilon=0.5) for o in obs]

    assert actions(0) == actions(0)
    assert actions(0) != actions(1)


# --- divergence ------------------------------------------------------------------------------------------


# A NaN in the online network reaches Q(s, .) from any parameter; one in the target reaches the TD target from the
# first layer (every Q' becomes NaN), whereas a NaN confined to one action's output may never be selected as a'.
@pytest.mark.parametrize("net, param", [("online", "W1"), ("online", "b2"), ("online", "W3"), ("target", "W1"),
                                        ("target", "b1")])
def test_nan_parameter_raises_and_changes_nothing(net, param):
    agent = make_agent(make_config(), seed=15)
    batch = random_batch(seed=16)
    agent.update(batch)  # the optimizer has state worth protecting
    getattr(agent, net).params[param].flat[0] = np.nan
    online, target = copy_params(agent.online.params), copy_params(agent.target.params)
    optim = agent.optimizer.state_dict()

    with pytest.raises(DivergenceError, match="non-finite"):
        agent.update(batch)

    assert agent.n_updates == 1
    assert_arrays_equal(agent.online.params, online)  # assert_array_equal treats NaN == NaN
    assert_arrays_equal(agent.target.params, target)
    assert_arrays_equal(agent.optimizer.state_dict(), optim)


def test_nan_q_value_of_an_action_not_taken_raises_and_changes_nothing():
    # Neither the loss nor the gradient sees the NaN (the output bias of action 0, which the batch never takes):
    # only the check on Q itself can.
    agent = make_agent(make_config(), seed=58)
    batch = random_batch(seed=59)._replace(actions=np.array([1, 2, 1, 2, 1, 2]))
    agent.online.params["b3"][0] = np.nan
    before = agent.online.flat_params.copy()
    with pytest.raises(DivergenceError, match="non-finite Q-value"):
        agent.update(batch)
    np.testing.assert_array_equal(agent.online.flat_params, before)
    assert agent.n_updates == 0 and agent.optimizer.t == 0


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_non_finite_reward_raises_and_changes_nothing(bad):
    agent = make_agent(make_config(), seed=17)
    batch = random_batch(seed=18)
    batch.rewards[3] = bad
    online, optim = copy_params(agent.online.params), agent.optimizer.state_dict()
    with pytest.raises(DivergenceError, match="TD target"):
        agent.update(batch)
    assert agent.n_updates == 0
    assert_arrays_equal(agent.online.params, online)
    assert_arrays_equal(agent.optimizer.state_dict(), optim)


# --- persistence -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer, momentum", [("adam", 0.0), ("sgd", 0.9)])
def test_save_load_round_trip(tmp_path, dtype, optimizer, momentum):
    cfg = make_config(dtype=dtype, optimizer=optimizer, momentum=momentum, target_update_interval=2, tau=0.5)
    agent = make_agent(cfg, seed=19)
    batch = random_batch(seed=20, dtype=np.dtype(dtype))
    for _ in range(3):
        agent.update(batch)
        agent.act(np.ones(OBS_DIM), epsilon=0.5)

    path = agent.save(tmp_path / "agent.npz")
    loaded = DQNAgent.load(path)

    assert loaded.config == cfg
    assert (loaded.obs_dim, loaded.n_actions, loaded.n_updates) == (OBS_DIM, N_ACTIONS, 3)
    obs = np.random.default_rng(21).standard_normal((10, OBS_DIM))
    np.testing.assert_array_equal(loaded.q_values(obs), agent.q_values(obs))
    assert loaded.q_values(obs).dtype == np.dtype(dtype)
    assert_arrays_equal(loaded.online.params, agent.online.params)
    assert_arrays_equal(loaded.target.params, agent.target.params)
    assert_arrays_equal(loaded.optimizer.state_dict(), agent.optimizer.state_dict())
    assert loaded.rng.bit_generator.state == agent.rng.bit_generator.state
    # ... so both continue identically: exploration and the next update.
    assert [loaded.act(o, 0.5) for o in obs] == [agent.act(o, 0.5) for o in obs]
    loaded.update(batch)
    agent.update(batch)
    assert_arrays_equal(loaded.online.params, agent.online.params)
    assert_arrays_equal(loaded.target.params, agent.target.params)


@pytest.mark.parametrize("stacked", [False, True])
def test_the_phase_clock_times_every_phase_and_changes_no_result(stacked):
    cfg = make_config(double_dqn=True, max_grad_norm=0.5, target_update_interval=2)
    clocked, plain = (DQNAgent(OBS_DIM, N_ACTIONS, cfg, [np.random.default_rng(3)] if stacked
                               else np.random.default_rng(3)) for _ in range(2))
    assert clocked.phase_seconds is None
    phases = clocked.time_phases()
    assert list(phases) == list(PHASES) and set(phases.values()) == {0.0}
    start = time.perf_counter()
    for step in range(4):
        batch = random_batch(seed=50 + step)
        if stacked:
            batch = Batch(*(None if v is None else v[None] for v in batch))
        a, b = clocked.update(batch), plain.update(batch)
        for k in ("loss", "q_mean", "grad_norm", "td_abs", "td_errors"):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    wall = time.perf_counter() - start
    np.testing.assert_array_equal(clocked.online.flat_params, plain.online.flat_params)
    assert all(v > 0 for v in phases.values()) and sum(phases.values()) < wall  # each phase inside the updates
    assert clocked.time_phases(False) is phases and phases == clocked.phase_seconds
    frozen = dict(phases)
    clocked.update(batch)
    assert clocked.phase_seconds == frozen  # off: nothing more is added
    assert clocked.time_phases() is not phases and set(clocked.phase_seconds.values()) == {0.0}  # on again: zeros
