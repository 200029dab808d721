"""Tests for the seed-batched engine (agents.seeds) and its stacked parts: member s of a `SeedBatch` is the single run
`Trainer(seed=seeds[s])` (actions, parameters, evaluation figures), members never couple (another seed beside it,
a diverged neighbour), the batch resumes bit-identically from a checkpoint, and `MemberReplay`, grouped `VecEnv`,
stacked `evaluate`, `NStepWindows.last_envs` and the stacked `DQNAgent` each do per member what the unstacked
version does."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import agents.data.replay
import envs
from agents.run.checkpoint import flatten_state, load_checkpoint, save_checkpoint, unflatten_state
from agents.config import DQNConfig
from agents.algo.dqn import DQNAgent
from agents.loop.evaluation import evaluate
from agents.data.nstep import NStepWindows
from agents.data.replay import Batch, MemberReplay, ReplayBuffer
from agents.seeds import SeedBatch, SeedCallback, check_seeds
from agents.train import Trainer

CARTPOLE = "CartPole-v1"
OBS_DIM, N_ACTIONS = 4, 2  # CartPole's
TIMING_KEYS = ("train_seconds", "solved_at_seconds", "eval_seconds", "phase_seconds")


def make_env(n_envs: int, rng) -> envs.VecEnv:
    return envs.VecEnv(CARTPOLE, n_envs, rng)


def small_config(**overrides) -> DQNConfig:
    """Tiny float64 runs: one update every vector step of 2 envs once 64 transitions are in."""
    base = dict(dtype="float64", hidden_sizes=(16,), batch_size=16, buffer_size=2_000, n_envs=2, learning_starts=64,
                train_freq=2, gradient_steps=1, target_update_interval=50, epsilon_decay_steps=500, eval_freq=0,
                eval_episodes=2, learning_rate=1e-3)
    return DQNConfig(**{**base, **overrides})


class RecordingVecEnv(envs.VecEnv):
    """A VecEnv that appends every action vector it is given to `log` (when it has one)."""

    def __init__(self, *args, log: list | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.log = log

    def step(self, actions):
        if self.log is not None:
            self.log.append(actions.copy())
        return super().step(actions)


def recording(log: list, n_train: int):
    """make_env whose training env (the one of `n_train` envs, not the evaluation env) records into `log`."""
    return lambda n, rng: RecordingVecEnv(CARTPOLE, n, rng, log=log if n == n_train else None)


class NaNRewardVecEnv(envs.VecEnv):
    """Returns NaN rewards in envs `bad` from its `after + 1`-th step on."""

    def __init__(self, *args, bad: slice = slice(0, 0), after: int = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.bad, self.after, self.calls = bad, after, 0

    def step(self, actions):
        out = super().step(actions)
        self.calls += 1
        if self.calls > self.after:
            out.reward[self.bad] = np.nan
        return out


class EventRecorder(SeedCallback):
    def __init__(self) -> None:
        self.stopped: list[tuple[int, str, int]] = []
        self.evals: list[list] = []

    def on_stopped(self, batch, member, reason):
        self.stopped.append((member, reason, int(batch.episodes[member])))

    def on_eval(self, batch, rows):
        self.evals.append(list(rows))


def untimed(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in TIMING_KEYS}


def member_params(batch: SeedBatch, s: int) -> dict[str, np.ndarray]:
    return {k: v[s] for k, v in batch.agent.online.params.items()}


def assert_params_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def assert_states_equal(a, b, path: str = "") -> None:
    """Nested state (dicts, lists, arrays, scalars) equal, NaN equal to NaN; arrays bit for bit, dtype included."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for k in a:
            assert_states_equal(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_states_equal(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=path)
        assert np.asarray(a).dtype == np.asarray(b).dtype, path
    else:
        assert a == b or (a != a and b != b), f"{path}: {a!r} != {b!r}"


# --- 1. the acceptance test: member s is the single run of seed seeds[s] -------------------------------------------


def test_member_reproduces_the_single_run_of_its_seed():
    """Seeds [3, 7, 11] batched vs Trainer(seed=7): the same actions over 5,000 steps, parameters within 1e-9 after
    exactly 100 updates and at the end, and the same evaluation figures (20 episodes, so solving counts)."""
    cfg = DQNConfig(dtype="float64", hidden_sizes=(32,), batch_size=32, buffer_size=5_000, n_envs=4,
                    learning_starts=200, train_freq=4, gradient_steps=1, target_update_interval=64,
                    epsilon_decay_steps=2_000, eval_freq=1_000, eval_episodes=20)
    seeds, S, E = [3, 7, 11], 3, cfg.n_envs
    batch_log: list[np.ndarray] = []
    single_log: list[np.ndarray] = []
    threshold = 12.0  # low enough for an early solve, so solved_at_step is compared as a step, not as None
    batch = SeedBatch(recording(batch_log, S * E), cfg, seeds, solve_threshold=threshold)
    single = Trainer(recording(single_log, E), cfg, seed=7, solve_threshold=threshold)

    # one update per vector step from env step 200 on: update 100 comes at env step 200 + 99 * 4
    batch.run(596)
    single.run(596)
    assert batch.agent.n_updates == single.agent.n_updates == 100
    member = batch.agent.member(1).online.params
    for k, v in single.agent.online.params.items():
        np.testing.assert_allclose(member[k], v, rtol=0, atol=1e-9, err_msg=k)

    batch_summaries = batch.run(5_000)
    summary = single.run(5_000)
    assert len(batch_log) == len(single_log) == 5_000 // E
    actions = np.array(batch_log).reshape(-1, S, E)[:, 1]  # member 1 owns env slots 4..7
    np.testing.assert_array_equal(actions, np.array(single_log))
    member = batch.agent.member(1).online.params
    for k, v in single.agent.online.params.items():
        np.testing.assert_allclose(member[k], v, rtol=0, atol=1e-9, err_msg=k)

    mine = batch_summaries[1]
    assert mine["status"] == "completed" and mine["error"] is None
    assert summary["n_evals"] == 5 and summary["solved_at_step"] is not None
    for key in ("best_eval_mean", "best_eval_step", "solved", "solved_at_step", "last_eval_mean", "n_evals",
                "env_steps", "episodes", "updates", "last_episode_return", "seed"):
        assert mine[key] == summary[key], key
    for k, v in single.evaluator.best_params.items():
        np.testing.assert_allclose(batch.evaluator.best_params[k][1], v, rtol=0, atol=1e-9, err_msg=k)
    # the other members are other runs: they did not act as seed 7 did
    assert not np.array_equal(np.array(batch_log).reshape(-1, S, E)[:, 0], actions)


# --- 2. members are independent -------------------------------------------------------------------------------------


def test_a_member_does_not_depend_on_the_seeds_beside_it():
    cfg = small_config()
    logs = {}
    batches = {}
    for other in (1, 5):
        logs[other] = []
        batches[other] = SeedBatch(recording(logs[other], 2 * cfg.n_envs), cfg, [0, other])
        batches[other].run(2_000)
    a, b = batches[1], batches[5]
    assert a.agent.n_updates == b.agent.n_updates > 900
    acts = {k: np.array(v).reshape(-1, 2, cfg.n_envs) for k, v in logs.items()}
    np.testing.assert_array_equal(acts[1][:, 0], acts[5][:, 0])
    assert_params_equal(member_params(a, 0), member_params(b, 0))
    assert a.summary(0)["episodes"] == b.summary(0)["episodes"]
    # member 1 is another seed in each batch, so it differs: the comparison above could have failed
    assert not np.array_equal(acts[1][:, 1], acts[5][:, 1])
    assert not np.array_equal(member_params(a, 1)["W1"], member_params(b, 1)["W1"])


# --- 3. one member diverges, the others go on -----------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("how", ["nan_reward", "nan_weights", "inf_weights"])
def test_a_diverged_member_is_stopped_and_the_others_go_on_untouched(how):
    cfg = small_config(eval_freq=300, eval_episodes=2)
    seeds, S, E = [0, 1, 2], 3, cfg.n_envs
    poison_step, total = 400, 1_000
    if how == "nan_reward":  # member 1 owns env slots E..2E-1
        def poisoned_env(n, rng):
            bad = slice(E, 2 * E) if n == S * E else slice(0, 0)
            return NaNRewardVecEnv(CARTPOLE, n, rng, bad=bad, after=poison_step // E)
    else:
        poisoned_env = make_env
    recorder = EventRecorder()
    batch = SeedBatch(poisoned_env, cfg, seeds, callbacks=[recorder])
    clean = SeedBatch(make_env, cfg, seeds)
    batch.run(poison_step)
    clean.run(poison_step)
    assert batch.active.all() and not batch.stopped
    if how != "nan_reward":
        batch.agent.online.params["W1"][1, 0, 0] = np.nan if how == "nan_weights" else np.inf
    summaries = batch.run(total)
    clean.run(total)

    assert batch.active.tolist() == [True, False, True]
    assert list(batch.stopped) == [1]
    what = "non-finite reward or observation" if how == "nan_reward" else "non-finite loss, Q-value or gradient"
    assert what in batch.stopped[1] and f"env step {poison_step + E}" in batch.stopped[1]  # the first bad step
    assert [(m, reason) for m, reason, _ in recorder.stopped] == [(1, batch.stopped[1])]
    assert summaries[1]["status"] == "diverged" and summaries[1]["error"] == batch.stopped[1]
    assert summaries[1]["env_steps"] == poison_step + E < total  # its count ends where it stopped
    assert summaries[1]["updates"] < batch.agent.n_updates
    assert [summaries[s]["status"] for s in (0, 2)] == ["completed", "completed"]
    assert summaries[0]["error"] is None and summaries[2]["error"] is None
    # the stopped member counts no more episodes and gets no more evaluation rows
    assert batch.episodes[1] == recorder.stopped[0][2] < clean.episodes[1]
    assert all(rows[1] is None for rows in recorder.evals[-2:]) and recorder.evals[-1][0] is not None
    # the others trained to the end, finite, exactly as in the batch that never diverged
    assert batch.env_steps == clean.env_steps == total and batch.agent.n_updates == clean.agent.n_updates
    for s in (0, 2):
        for k, v in member_params(batch, s).items():
            assert np.isfinite(v).all(), (s, k)
        assert_params_equal(member_params(batch, s), member_params(clean, s))
        assert untimed(summaries[s]) == untimed(clean.summary(s))


# --- 4. MemberReplay ------------------------------------------------------------------------------------------------


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
            for name, got, want in zip(Batch._fields, batch, mine, strict=True):
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


# --- 5. VecEnv with a list of generators ----------------------------------------------------------------------------


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


# --- 6. evaluate with a stacked agent -------------------------------------------------------------------------------


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


# --- 7. NStepWindows.last_envs --------------------------------------------------------------------------------------


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


# --- 8. SeedBatch state round trip ----------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("diverged", [False, True])
def test_seed_batch_resumes_bit_identically_from_a_checkpoint(tmp_path, dtype, diverged):
    cfg = small_config(dtype=dtype, eval_freq=200, eval_episodes=20)
    seeds = [3, 7]

    def build() -> SeedBatch:
        return SeedBatch(make_env, cfg, seeds, solve_threshold=10.0)

    uninterrupted = build()
    uninterrupted.run(400)
    if diverged:  # member 1 stopped before the checkpoint: active and stopped must come back too
        # its Q-values blow up (their sum overflows) while every array of the state stays finite
        uninterrupted.agent.online.params["b2"][1] = np.finfo(dtype).max / 2
        uninterrupted.run(404)
        assert list(uninterrupted.stopped) == [1]
    arrays, meta = flatten_state(uninterrupted.state_dict())
    path = save_checkpoint(tmp_path / "batch.npz", cfg, OBS_DIM, N_ACTIONS, arrays, meta)
    ckpt = load_checkpoint(path)
    resumed = build()
    assert resumed.load_state_dict(unflatten_state(ckpt.arrays, ckpt.meta)) == []
    final_a = uninterrupted.run(1_000)
    final_b = resumed.run(1_000)

    assert uninterrupted.env_steps == resumed.env_steps == 1_000
    assert_states_equal(uninterrupted.agent.state_dict(), resumed.agent.state_dict())
    assert [untimed(s) for s in final_a] == [untimed(s) for s in final_b]
    assert final_a[0]["n_evals"] == 5 and final_a[0]["best_eval_mean"] is not None
    np.testing.assert_array_equal(uninterrupted.episodes, resumed.episodes)
    np.testing.assert_array_equal(uninterrupted.active, resumed.active)
    assert uninterrupted.stopped == resumed.stopped
    assert_states_equal(uninterrupted.evaluator.best_params, resumed.evaluator.best_params)
    assert uninterrupted.evaluator.solved_at_step == resumed.evaluator.solved_at_step
    for a, b in zip(uninterrupted.replay.buffers, resumed.replay.buffers, strict=True):
        assert_states_equal(a.state_dict(), b.state_dict())
        assert a.rng.bit_generator.state == b.rng.bit_generator.state
    for a, b in zip(uninterrupted.agent.rng, resumed.agent.rng, strict=True):
        assert a.bit_generator.state == b.bit_generator.state


def test_seed_batch_refuses_the_state_of_other_seeds():
    cfg = small_config()
    batch = SeedBatch(make_env, cfg, [3, 7])
    batch.run(100)
    other = SeedBatch(make_env, cfg, [3, 8])
    with pytest.raises(ValueError, match=re.escape("[3, 7]") + ".*" + re.escape("[3, 8]")):
        other.load_state_dict(batch.state_dict())


# --- 9. bad input ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seeds, named", [
    ([], "none"),
    ([0, -1], "-1"),
    ([1, 2, 1], "[1]"),
    ([4, 2, 4, 2], "[2, 4]"),
    ([True], "True"),
    ([1, False], "False"),
    ([1.5], "1.5"),
    ([2.0], "2.0"),
    (["3"], "'3'"),
    ([None], "None"),
    ([np.bool_(True)], "True"),
])
def test_bad_seeds_are_refused_naming_the_value(seeds, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        check_seeds(seeds)

    def never(n, rng):
        raise AssertionError("make_env must not be called with bad seeds")

    with pytest.raises(ValueError, match=re.escape(named)):
        SeedBatch(never, small_config(), seeds)


def test_check_seeds_takes_numpy_integers_and_returns_ints():
    got = check_seeds(np.array([4, 0, 2]))
    assert got == [4, 0, 2] and all(type(s) is int for s in got)


def test_replay_memory_is_refused_before_allocation(monkeypatch):
    cfg = small_config(buffer_size=100_000, dtype="float32")
    need = MemberReplay.nbytes_for(3, 100_000, OBS_DIM, "float32")
    monkeypatch.setattr(agents.data.replay, "available_memory", lambda: need - 1)

    def never(*args, **kwargs):
        raise AssertionError("allocated before the memory check")

    monkeypatch.setattr(MemberReplay, "__init__", never)
    monkeypatch.setattr(DQNAgent, "__init__", never)
    with pytest.raises(ValueError, match=re.escape("3 seeds x buffer_size 100000") + f".*{need} bytes"):
        SeedBatch(make_env, cfg, [0, 1, 2])


def test_replay_memory_that_fits_is_allocated(monkeypatch):
    cfg = small_config(buffer_size=1_000)
    need = MemberReplay.nbytes_for(2, 1_000, OBS_DIM, cfg.dtype)
    monkeypatch.setattr(agents.data.replay, "available_memory", lambda: need)
    batch = SeedBatch(make_env, cfg, [0, 1])
    assert batch.replay.capacity == 1_000 and batch.replay.members == 2


# --- 10. the stacked DQNAgent ---------------------------------------------------------------------------------------


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
        assert set(metrics) == {"loss", "q_mean", "grad_norm", "td_abs", "finite"}
        for key, value in metrics.items():
            assert np.shape(value) == (S,), key
        assert metrics["finite"].dtype == bool and metrics["finite"].all()
        for s in range(S):
            alone = singles[s].update(Batch(*(a[s] for a in batch)))
            for key in ("loss", "q_mean", "grad_norm", "td_abs"):
                np.testing.assert_allclose(metrics[key][s], alone[key], rtol=1e-12, atol=1e-12, err_msg=key)
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
    with pytest.raises(ValueError, match="member index"):
        stacked.member(S)


class _PoisonedEnv(envs.VecEnv):
    """Member 1's env (slot 1 of two) returns a NaN observation or reward from its `at`-th step on (training env)."""

    def __init__(self, env_id, n_envs, rng, what: str, at: int) -> None:
        super().__init__(env_id, n_envs, rng)
        self.what, self.at, self.calls = what, at, 0

    def step(self, actions):
        out = super().step(actions)
        self.calls += 1
        if self.n_envs == 2 and self.calls >= self.at:
            if self.what == "obs":  # the physics of member 1's env blows up: its state, and so its observations
                self._backend.vec.state[:, 1] = np.nan
                out.next_obs[1] = np.nan
                self.obs = self.obs.copy()
                self.obs[1] = np.nan
            else:
                out.reward[1] = np.nan
        return out


def _one_env_config() -> DQNConfig:
    return DQNConfig(hidden_sizes=(8,), n_envs=1, batch_size=8, learning_starts=8, buffer_size=100, eval_freq=0,
                     eval_episodes=1, train_freq=1, gradient_steps=1, dtype="float64")


@pytest.mark.parametrize("what", ["obs", "reward"])
def test_a_member_whose_env_turns_non_finite_is_frozen_and_its_checkpoint_loads(what):
    def make(n, rng):
        return _PoisonedEnv(CARTPOLE, n, rng, what, at=12)

    batch = SeedBatch(make, _one_env_config(), [0, 1])
    batch.run(20)  # a NaN observation used to crash every member at the next act; now only member 1 stops
    assert not batch.active[1] and "non-finite" in batch.stopped[1] and batch.active[0]
    frozen = {k: v[1].copy() for k, v in batch.agent.online.params.items()}
    moments = {k: v[1].copy() for k, v in batch.agent.optimizer.state["m"].items()}
    stored = len(batch.replay.buffers[1])
    batch.run(200)
    assert batch.env_steps == 200 and batch.agent.n_updates > 150
    for k, v in batch.agent.online.params.items():  # a stopped member never changes again
        np.testing.assert_array_equal(v[1], frozen[k])
        np.testing.assert_array_equal(batch.agent.optimizer.state["m"][k][1], moments[k])
        assert np.isfinite(v[0]).all()
    assert len(batch.replay.buffers[1]) == stored  # nothing more stored for it, and nothing non-finite before
    state = batch.replay.buffers[1].state_dict()
    assert all(np.isfinite(state[k]).all() for k in ("obs", "rewards", "next_obs"))
    resumed = SeedBatch(make, _one_env_config(), [0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the envs restore exactly, NaN state included: no member starts afresh
        assert resumed.load_state_dict(unflatten_state(*flatten_state(batch.state_dict()))) == []
    assert resumed.stopped == batch.stopped and resumed.agent.frozen.tolist() == [False, True]
    batch.run(260)
    resumed.run(260)  # the member that went on is unaffected by the resume
    assert_params_equal(member_params(resumed, 0), member_params(batch, 0))


def test_a_stopped_member_with_a_small_buffer_does_not_hold_the_others_back():
    def make(n, rng):
        return _PoisonedEnv(CARTPOLE, n, rng, "reward", at=3)  # member 1 stops with 2 transitions, below B = 8

    batch = SeedBatch(make, _one_env_config(), [0, 1])
    batch.run(100)
    assert batch.stopped and len(batch.replay.buffers[1]) < 8
    single = Trainer(make_env, _one_env_config(), seed=0)
    single.run(100)
    assert batch.agent.n_updates == single.agent.n_updates > 80  # member 0 trains as it would alone
    assert_params_equal(member_params(batch, 0), single.agent.online.params)


def test_stacked_td_targets_are_each_members_own():
    cfg = small_config(dtype="float64")
    stacked, singles = stacked_and_singles(3, cfg)
    batch = random_batch(np.random.default_rng(5), (3, 7))
    y = stacked.td_targets(batch)
    assert y.shape == (3, 7)
    for s, single in enumerate(singles):
        member_batch = Batch(*(a[s] for a in batch))
        np.testing.assert_allclose(y[s], single.td_targets(member_batch), rtol=1e-12, atol=1e-12)


def test_in_float32_with_clipping_a_member_is_bit_identical_to_its_single_run():
    # max_grad_norm 1 keeps clipping active: an unstacked agent computes its norm as a stacked one of one member does
    cfg = DQNConfig(hidden_sizes=(32, 32), n_envs=4, batch_size=32, learning_starts=200, train_freq=8,
                    gradient_steps=8, eval_freq=0, max_grad_norm=1.0, dtype="float32")
    single = Trainer(make_env, cfg, seed=4)
    single.run(1200)
    batch = SeedBatch(make_env, cfg, [9, 4])
    batch.run(1200)
    assert single.agent.n_updates == batch.agent.n_updates > 900
    assert single.learner.last_metrics["grad_norm"] > 1.0  # the last step was clipped
    assert_params_equal(member_params(batch, 1), single.agent.online.params)
