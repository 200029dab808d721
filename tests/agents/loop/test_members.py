"""The engine's stacked parts, each doing per member what its unstacked version does: `MemberReplay` (S buffers in
one set of arrays), grouped `VecEnv` (one generator per member), stacked `evaluate`, `NStepWindows.last_envs` (which
member a transition belongs to) and the stacked `DQNAgent` (act, update, non-finite flags, member files, targets).
The engine built from them: test_engine_seeds.py."""

from __future__ import annotations

import numpy as np
import pytest
from statecheck import assert_states_equal

import envs
from agents.algo.dqn import DQNAgent
from agents.config import DQNConfig
from agents.data.nstep import NStepWindows
from agents.data.replay import Batch, MemberReplay, ReplayBuffer
from agents.loop.evaluation import evaluate

CARTPOLE = "CartPole-v1"
OBS_DIM, N_ACTIONS = 4, 2  # CartPole's


def small_config(**overrides) -> DQNConfig:
    base = dict(dtype="float64", hidden_sizes=(16,), batch_size=16, buffer_size=2_000, n_envs=2, learning_starts=64,
                train_freq=2, gradient_steps=1, target_update_interval=50, epsilon_decay_steps=500, eval_freq=0,
                eval_episodes=2, learning_rate=1e-3, n_step=1)
    return DQNConfig(**{**base, **overrides})


def assert_params_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# --- MemberReplay -----------------------------------------------------------------------------------------------------


def random_rows(rng: np.random.Generator, k: int, obs_dim: int, dtype) -> tuple[np.ndarray, ...]:
    return (rng.normal(size=(k, obs_dim)).astype(dtype), rng.integers(0, 3, size=k), rng.normal(size=k).astype(dtype),
            rng.normal(size=(k, obs_dim)).astype(dtype), rng.random(k).astype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_member_replay_routes_rows_and_samples_as_separate_buffers(dtype):
    S, cap, obs_dim, B = 3, 10, 2, 7
    rng = np.random.default_rng(0)
    replay = MemberReplay(cap, obs_dim, [np.random.default_rng(100 + s) for s in range(S)], dtype)
    twins = [ReplayBuffer(cap, obs_dim, np.random.default_rng(100 + s), dtype) for s in range(S)]
    counts = np.zeros(S, np.int64)
    for k in (5, 1, 9, 4, 12, 3):  # wraps every ring; member 2 gets nothing in some writes
        members = rng.choice([0, 1], size=k) if k < 6 else rng.integers(0, S, size=k)
        rows = random_rows(rng, k, obs_dim, dtype)
        replay.write(*rows, members)
        for s in range(S):
            mine = members == s
            if mine.any():
                twins[s].write(*(c[mine] for c in rows))
        counts += np.bincount(members, minlength=S)
        np.testing.assert_array_equal(replay.sizes(), np.minimum(counts, cap))
        assert len(replay) == min(np.minimum(counts, cap))
    for s in range(S):
        assert_states_equal(replay.buffers[s].state_dict(), twins[s].state_dict(), f"member {s}")
    out = replay.empty_batch(B)
    assert out.obs.shape == (S, B, obs_dim) and out.actions.shape == (S, B) and out.obs.dtype == dtype
    for _ in range(3):
        batch = replay.sample(B, out)
        assert batch is out
        for s in range(S):
            mine = twins[s].sample(B)
            for name, got, want in zip(Batch._fields[:5], batch[:5], mine[:5], strict=True):
                np.testing.assert_array_equal(got[s], want, err_msg=f"member {s} {name}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_member_replay_nbytes_for(dtype):
    S, cap, obs_dim = 3, 50, 4
    replay = MemberReplay(cap, obs_dim, [np.random.default_rng(s) for s in range(S)], dtype)
    need = MemberReplay.nbytes_for(S, cap, obs_dim, dtype)
    itemsize = np.dtype(dtype).itemsize
    assert need == S * cap * ((2 * obs_dim + 2) * itemsize + 8)
    assert need == S * ReplayBuffer.nbytes_for(cap, obs_dim, dtype) == sum(b.nbytes for b in replay.buffers)
    with pytest.raises(ValueError, match="one Generator per member"):
        MemberReplay(cap, obs_dim, [], dtype)


# --- VecEnv with a list of generators ---------------------------------------------------------------------------------


@pytest.mark.parametrize("groups", [1, 3])
def test_grouped_vecenv_is_separate_envs_each_with_its_generator(groups):
    E, steps = 2, 300
    grouped = envs.VecEnv(CARTPOLE, groups * E, [np.random.default_rng(40 + g) for g in range(groups)])
    separate = [envs.VecEnv(CARTPOLE, E, np.random.default_rng(40 + g)) for g in range(groups)]
    obs = grouped.reset()
    np.testing.assert_array_equal(obs, np.concatenate([env.reset() for env in separate]))
    np.testing.assert_array_equal(grouped.episode_seeds, np.concatenate([env.episode_seeds for env in separate]))
    actions_rng = np.random.default_rng(1)
    ends = np.zeros(groups, np.int64)
    for _ in range(steps):
        actions = actions_rng.integers(0, N_ACTIONS, size=groups * E)
        out = grouped.step(actions)
        outs = [env.step(actions[g * E:(g + 1) * E]) for g, env in enumerate(separate)]
        for field, got in zip(out._fields, out, strict=True):
            np.testing.assert_array_equal(got, np.concatenate([getattr(o, field) for o in outs]), err_msg=field)
        np.testing.assert_array_equal(grouped.obs, np.concatenate([env.obs for env in separate]))
        np.testing.assert_array_equal(grouped.episode_seeds, np.concatenate([env.episode_seeds for env in separate]))
        ends += (out.terminated | out.truncated).reshape(groups, E).any(axis=1)
    assert (ends > 5).all()  # every group re-seeded several times


@pytest.mark.parametrize("groups", [1, 3])
def test_grouped_vecenv_state_round_trip_restores_every_generator(groups):
    E = 2
    env = envs.VecEnv(CARTPOLE, groups * E, [np.random.default_rng(40 + g) for g in range(groups)])
    env.reset()
    actions_rng = np.random.default_rng(2)
    for _ in range(50):
        env.step(actions_rng.integers(0, N_ACTIONS, size=groups * E))
    state = env.state_dict()
    assert sorted(state["rng"]) == [str(g) for g in range(groups)]
    restored = envs.VecEnv(CARTPOLE, groups * E, [np.random.default_rng(900 + g) for g in range(groups)])
    assert restored.load_state_dict(state) is True
    for g in range(groups):
        assert restored.rng[g].bit_generator.state == env.rng[g].bit_generator.state
    seeds_seen = 0
    for _ in range(200):
        actions = actions_rng.integers(0, N_ACTIONS, size=groups * E)
        a, b = env.step(actions), restored.step(actions)
        for field, x, y in zip(a._fields, a, b, strict=True):
            np.testing.assert_array_equal(x, y, err_msg=field)
        np.testing.assert_array_equal(env.obs, restored.obs)
        np.testing.assert_array_equal(env.episode_seeds, restored.episode_seeds)
        seeds_seen += int((a.terminated | a.truncated).sum())
    assert seeds_seen > 5 * groups
    for g in range(groups):
        assert restored.rng[g].bit_generator.state == env.rng[g].bit_generator.state


def test_grouped_vecenv_refuses_envs_not_a_multiple_of_the_groups():
    with pytest.raises(TypeError, match="multiple"):
        envs.VecEnv(CARTPOLE, 5, [np.random.default_rng(0), np.random.default_rng(1)])


# --- evaluate with a stacked agent ------------------------------------------------------------------------------------


@pytest.mark.parametrize("envs_per_member", [2, 5])  # 2: episodes in waves; 5: all at once
def test_stacked_evaluate_is_each_member_evaluated_alone(envs_per_member):
    S, E, N = 3, envs_per_member, 5
    cfg = small_config()
    agent = DQNAgent(OBS_DIM, N_ACTIONS, cfg, [np.random.default_rng(60 + s) for s in range(S)])
    biases = np.random.default_rng(1)
    for k, p in agent.online.params.items():  # random biases: greedy policies that do not always push one way
        if k.startswith("b"):
            p[...] = biases.normal(scale=0.5, size=p.shape)
    rng_states = [g.bit_generator.state for g in agent.rng]
    seeds = np.array([10, 500, 9_000])
    env = envs.VecEnv(CARTPOLE, S * E, [np.random.default_rng(s) for s in range(S)])
    returns = evaluate(agent, env, N, seeds)
    assert returns.shape == (S, N)
    for s in range(S):
        alone = evaluate(agent.member(s), envs.VecEnv(CARTPOLE, E, np.random.default_rng(0)), N, int(seeds[s]))
        np.testing.assert_array_equal(returns[s], alone, err_msg=f"member {s}")
    assert [g.bit_generator.state for g in agent.rng] == rng_states  # greedy: draws nothing
    assert len(np.unique(returns)) > 1
    with pytest.raises(ValueError, match="3 seeds"):
        evaluate(agent, env, N, seeds[:2])


# --- NStepWindows.last_envs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_step", [1, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_last_envs_names_the_env_of_every_transition(n_step, seed):
    E, T = 4, 300
    rng = np.random.default_rng(seed)
    w = NStepWindows(E, n_step, 0.9, obs_dim=2, dtype=np.float64)
    emitted = np.zeros(E, np.int64)
    envs_idx = np.arange(E)
    for t in range(T):
        obs = np.stack([envs_idx, np.full(E, t)], axis=1).astype(float)  # obs[i] = (env i, step t)
        next_obs = obs + [0.0, 0.5]
        ends = rng.random(E) < 0.2
        terminated = ends & (rng.random(E) < 0.5)
        truncated = ends & ~terminated
        if t == T - 1:  # end every episode, so every step is emitted exactly once
            truncated = ~terminated
        out = w.push(obs, envs_idx + E * t, rng.normal(size=E), next_obs, terminated, truncated)
        assert w.last_envs.shape == out.actions.shape
        np.testing.assert_array_equal(out.obs[:, 0], w.last_envs)
        np.testing.assert_array_equal(out.next_obs[:, 0], w.last_envs)
        np.testing.assert_array_equal(out.actions % E, w.last_envs)
        np.testing.assert_array_equal(out.next_obs[:, 1], t + 0.5)  # emitted by this step
        emitted += np.bincount(w.last_envs, minlength=E)
    np.testing.assert_array_equal(emitted, T)


# --- the stacked DQNAgent ---------------------------------------------------------------------------------------------


def stacked_and_singles(S: int, cfg: DQNConfig) -> tuple[DQNAgent, list[DQNAgent]]:
    stacked = DQNAgent(OBS_DIM, N_ACTIONS, cfg, [np.random.default_rng(70 + s) for s in range(S)])
    singles = [DQNAgent(OBS_DIM, N_ACTIONS, cfg, np.random.default_rng(70 + s)) for s in range(S)]
    return stacked, singles


@pytest.mark.parametrize("epsilon", [0.0, 0.5, 1.0])
def test_stacked_act_draws_per_member_what_a_single_agent_draws(epsilon):
    S, E = 3, 6
    stacked, singles = stacked_and_singles(S, small_config())
    rng = np.random.default_rng(5)
    for _ in range(10):
        obs = rng.normal(size=(S, E, OBS_DIM))
        before = [g.bit_generator.state for g in stacked.rng]
        actions = stacked.act(obs, epsilon)
        assert actions.shape == (S, E) and actions.dtype == np.int64
        greedy = stacked.online.forward(obs).argmax(axis=-1)
        np.testing.assert_array_equal(stacked.greedy(obs), greedy)
        for s in range(S):
            np.testing.assert_array_equal(actions[s], singles[s].act(obs[s], epsilon), err_msg=f"member {s}")
            assert stacked.rng[s].bit_generator.state == singles[s].rng.bit_generator.state
            replay = np.random.default_rng()
            replay.bit_generator.state = before[s]
            explore = replay.random(E) < epsilon
            want = greedy[s].copy()
            want[explore] = replay.integers(N_ACTIONS, size=int(explore.sum()))
            np.testing.assert_array_equal(actions[s], want)
        if epsilon == 0.0:
            np.testing.assert_array_equal(actions, greedy)
            assert [g.bit_generator.state for g in stacked.rng] != before  # one uniform per env is still drawn


def random_batch(rng: np.random.Generator, lead: tuple[int, ...], dtype="float64") -> Batch:
    return Batch(rng.normal(size=(*lead, OBS_DIM)).astype(dtype), rng.integers(0, N_ACTIONS, size=lead),
                 rng.normal(size=lead).astype(dtype), rng.normal(size=(*lead, OBS_DIM)).astype(dtype),
                 (0.99 * (rng.random(lead) < 0.9)).astype(dtype))


def test_stacked_update_is_each_member_updated_alone():
    S, B = 3, 16
    cfg = small_config(target_update_interval=2)
    stacked, singles = stacked_and_singles(S, cfg)
    rng = np.random.default_rng(8)
    for _ in range(5):
        batch = random_batch(rng, (S, B))
        metrics = stacked.update(batch)
        assert set(metrics) == {"loss", "q_mean", "grad_norm", "td_abs", "finite", "td_errors"}
        for key, value in metrics.items():
            assert np.shape(value) == ((S, B) if key == "td_errors" else (S,)), key
        assert metrics["finite"].dtype == bool and metrics["finite"].all()
        td_errors = metrics["td_errors"].copy()  # a view of the agent's buffer, valid until its next update
        for s in range(S):
            alone = singles[s].update(Batch(*(a[s] for a in batch[:5])))
            for key in ("loss", "q_mean", "grad_norm", "td_abs"):
                np.testing.assert_allclose(metrics[key][s], alone[key], rtol=1e-12, atol=1e-12, err_msg=key)
            np.testing.assert_allclose(td_errors[s], alone["td_errors"], rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(td_errors[s].mean(), alone["td_abs"], rtol=1e-12)
    for s in range(S):
        member = stacked.member(s)
        for net in ("online", "target"):
            for k, v in getattr(singles[s], net).params.items():
                np.testing.assert_allclose(getattr(member, net).params[k], v, rtol=1e-12, atol=1e-12, err_msg=k)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_stacked_update_flags_a_non_finite_member_and_spares_the_others():
    S, B = 3, 16
    clean, _ = stacked_and_singles(S, small_config())
    dirty, _ = stacked_and_singles(S, small_config())
    batch = random_batch(np.random.default_rng(9), (S, B))
    bad = batch._replace(rewards=batch.rewards.copy())
    bad.rewards[1, 3] = np.nan
    assert clean.update(batch)["finite"].all()
    metrics = dirty.update(bad)
    assert metrics["finite"].tolist() == [True, False, True]
    for s in (0, 2):
        assert_params_equal({k: v[s] for k, v in dirty.online.params.items()},
                            {k: v[s] for k, v in clean.online.params.items()})


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_member_save_then_load_is_that_member(tmp_path, dtype):
    S, B = 3, 8
    cfg = small_config(dtype=dtype, target_update_interval=3)
    stacked, _ = stacked_and_singles(S, cfg)
    rng = np.random.default_rng(3)
    for _ in range(4):
        stacked.update(random_batch(rng, (S, B), dtype))
    stacked.act(rng.normal(size=(S, 2, OBS_DIM)), 0.5)
    for s in range(S):
        path = stacked.member(s).save(tmp_path / f"member{s}.npz")
        loaded = DQNAgent.load(path)
        assert loaded.members is None and loaded.n_updates == stacked.n_updates == 4
        assert loaded.config == cfg
        for net in ("online", "target"):
            want = {k: v[s] for k, v in getattr(stacked, net).params.items()}
            assert_params_equal(getattr(loaded, net).params, want)
            assert all(v.dtype == np.dtype(dtype) for v in getattr(loaded, net).params.values())
        for slot, arrays in stacked.optimizer.state.items():
            for name, a in arrays.items():
                np.testing.assert_array_equal(loaded.optimizer.state[slot][name], a[s], err_msg=f"{slot}.{name}")
        assert loaded.optimizer.t == stacked.optimizer.t
        assert loaded.rng.bit_generator.state == stacked.rng[s].bit_generator.state
    with pytest.raises(ValueError, match=f"<= {S - 1}, got {S}"):
        stacked.member(S)


def test_stacked_td_targets_are_each_members_own():
    cfg = small_config(dtype="float64")
    stacked, singles = stacked_and_singles(3, cfg)
    batch = random_batch(np.random.default_rng(5), (3, 7))
    y = stacked.td_targets(batch)
    assert y.shape == (3, 7)
    for s, single in enumerate(singles):
        member_batch = Batch(*(a[s] for a in batch[:5]))
        np.testing.assert_allclose(y[s], single.td_targets(member_batch), rtol=1e-12, atol=1e-12)
