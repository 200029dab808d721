"""VecEnv: both backends against single Gymnasium envs, seeding, episode ends, exact resume, validation."""

import json
import math
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from envs import EnvError, VecEnv, make_env, vector

SEED_BOUND = 2**31
# (env id, backend, kwargs): one of each backend, and the diagnostic env through sync
CASES = [
    ("CartPole-v1", "cartpole-vector", {}),
    ("Acrobot-v1", "acrobot-numpy", {}),
    ("MountainCar-v0", "mountaincar-numpy", {}),
    ("dqn_np/Chain-v0", "sync", {}),
]
CASE_IDS = [case[0] for case in CASES]


class UnseededEnv(gym.Env):
    """A deliberately non-reproducible env: its observations come from a generator that reset(seed) does not touch."""

    observation_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self) -> None:
        self._noise = np.random.default_rng()  # OS entropy: replaying the same actions gives other observations

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        return self._noise.random(1).astype(np.float32), 0.0, False, False, {}


class DriftingSpaceEnv(gym.Env):
    """Each instance has a different observation bound, so SyncVectorEnv refuses to batch two of them."""

    instances = 0
    action_space = gym.spaces.Discrete(2)

    def __init__(self) -> None:
        DriftingSpaceEnv.instances += 1
        self.observation_space = gym.spaces.Box(0.0, float(DriftingSpaceEnv.instances), shape=(1,), dtype=np.float32)


for _env_id, _entry_point in (("dqn_np_test/Unseeded-v0", UnseededEnv), ("dqn_np_test/Drifting-v0", DriftingSpaceEnv)):
    if _env_id not in gym.registry:
        gym.register(_env_id, entry_point=_entry_point, max_episode_steps=50)


def sync_cartpole(monkeypatch: pytest.MonkeyPatch, n_envs: int, seed: int, **kwargs: Any) -> VecEnv:
    """CartPole through the sync backend, as on a Gymnasium without the NumPy CartPoleVectorEnv."""
    with monkeypatch.context() as patch:
        patch.setattr(vector, "CartPoleVectorEnv", None)
        venv = VecEnv("CartPole-v1", n_envs, np.random.default_rng(seed), **kwargs)
    assert venv.backend == "sync"
    return venv


def rollout(venv: VecEnv, actions: np.ndarray) -> dict[str, np.ndarray]:
    """Step `venv` with actions (T, E); outputs stacked over T, with `.obs` and `.episode_seeds` after each step."""
    rows = []
    for a in actions:
        out = venv.step(a)
        rows.append((*out, venv.obs.copy(), venv.episode_seeds.copy()))
    names = ("next_obs", "reward", "terminated", "truncated", "obs", "episode_seeds")
    return {name: np.stack(column) for name, column in zip(names, zip(*rows, strict=True), strict=True)}


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def round_trip(state: dict[str, Any], tmp_path) -> dict[str, Any]:
    """Store `state` without pickle: arrays through np.savez / np.load(allow_pickle=False), the rest through JSON."""
    arrays = {key: value for key, value in state.items() if isinstance(value, np.ndarray)}
    rest = {key: value for key, value in state.items() if not isinstance(value, np.ndarray)}
    np.savez(tmp_path / "venv.npz", **arrays)
    with np.load(tmp_path / "venv.npz", allow_pickle=False) as data:
        loaded = {key: data[key] for key in data.files}
    loaded.update(json.loads(json.dumps(rest)))
    return loaded


def test_cartpole_vector_matches_sync_backend_and_single_envs(monkeypatch):
    n_envs, n_steps, kwargs = 3, 3000, {"max_episode_steps": 30}  # random actions: ~22-step episodes, some truncated
    fast = VecEnv("CartPole-v1", n_envs, np.random.default_rng(0), **kwargs)
    slow = sync_cartpole(monkeypatch, n_envs, 0, **kwargs)
    assert fast.backend == "cartpole-vector"
    singles = [make_env("CartPole-v1", **kwargs) for _ in range(n_envs)]
    np.testing.assert_array_equal(fast.reset(), slow.reset())
    for i, env in enumerate(singles):
        np.testing.assert_array_equal(env.reset(seed=int(fast.episode_seeds[i]))[0], fast.obs[i])
    n_terminated = n_truncated = 0
    for a in np.random.default_rng(1).integers(2, size=(n_steps, n_envs)):
        f, s = fast.step(a), slow.step(a)
        # vectorized cos/sin may differ from the scalar ones in the last ulp
        np.testing.assert_allclose(f.next_obs, s.next_obs, rtol=0, atol=1e-6)
        np.testing.assert_allclose(fast.obs, slow.obs, rtol=0, atol=1e-6)
        for mine, theirs in zip(f[1:], s[1:], strict=True):
            np.testing.assert_array_equal(mine, theirs)
        np.testing.assert_array_equal(fast.episode_seeds, slow.episode_seeds)
        for i, env in enumerate(singles):
            obs, reward, terminated, truncated, _ = env.step(int(a[i]))
            np.testing.assert_allclose(f.next_obs[i], obs, rtol=0, atol=1e-6)
            assert (f.reward[i], f.terminated[i], f.truncated[i]) == (reward, terminated, truncated)
            if terminated or truncated:  # the next episode starts from the seed VecEnv drew, on the very next step
                np.testing.assert_array_equal(env.reset(seed=int(fast.episode_seeds[i]))[0], fast.obs[i])
        n_terminated += f.terminated.sum()
        n_truncated += f.truncated.sum()
    assert n_terminated > 100 and n_truncated > 10, (n_terminated, n_truncated)
    assert f.reward.dtype == np.float64 and f.terminated.dtype == np.bool_ and f.next_obs.shape == (n_envs, 4)


@pytest.mark.parametrize(("env_id", "backend", "kwargs"), CASES, ids=CASE_IDS)
def test_state_dict_resumes_exactly(env_id, backend, kwargs, tmp_path):
    n_envs, n_before, n_after = 3, 137, 150  # > 64 steps: the sync action log grows while episodes run
    actions = np.random.default_rng(2).integers(make_env(env_id).action_space.n, size=(n_before + n_after, n_envs))
    venv = VecEnv(env_id, n_envs, np.random.default_rng(3), **kwargs)
    assert venv.backend == backend
    venv.reset()
    rollout(venv, actions[:n_before])
    state = round_trip(venv.state_dict(), tmp_path)
    assert state["backend"] == backend and state["captured"] is True

    resumed = VecEnv(env_id, n_envs, np.random.default_rng(99), **kwargs)  # another seed: load must restore rng
    assert resumed.load_state_dict(state) is True
    np.testing.assert_array_equal(resumed.obs, venv.obs)
    assert_same(rollout(venv, actions[n_before:]), rollout(resumed, actions[n_before:]))
    assert resumed.rng.bit_generator.state == venv.rng.bit_generator.state


def test_state_dict_of_fresh_episodes_and_growing_log_resumes(tmp_path):
    venv = VecEnv("dqn_np/ConstantReward-v0", 2, np.random.default_rng(4), max_episode_steps=300)
    venv.reset()
    ones = np.ones((200, 2), dtype=np.int64)
    state0 = round_trip(venv.state_dict(), tmp_path)  # no action yet: an (E, 0) log
    assert state0["actions"].shape == (2, 0)
    rollout(venv, ones)  # 200 actions per episode: the log doubles from 64 to 256
    state = round_trip(venv.state_dict(), tmp_path)
    resumed = VecEnv("dqn_np/ConstantReward-v0", 2, np.random.default_rng(5), max_episode_steps=300)
    assert resumed.load_state_dict(state) is True
    assert_same(rollout(venv, ones), rollout(resumed, ones))  # through the truncation at step 300
    again = VecEnv("dqn_np/ConstantReward-v0", 2, np.random.default_rng(6), max_episode_steps=300)
    assert again.load_state_dict(state0) is True


def test_unreproducible_env_warns_and_starts_fresh_episodes(tmp_path):
    venv = VecEnv("dqn_np_test/Unseeded-v0", 2, np.random.default_rng(0))
    venv.reset()
    rollout(venv, np.zeros((5, 2), dtype=np.int64))
    state = round_trip(venv.state_dict(), tmp_path)
    resumed = VecEnv("dqn_np_test/Unseeded-v0", 2, np.random.default_rng(1))
    twin = np.random.default_rng()
    twin.bit_generator.state = state["rng"]  # the fresh episodes' seeds must come from the restored generator
    with pytest.warns(
        RuntimeWarning,
        match=r"^state of dqn_np_test/Unseeded-v0 could not be restored exactly.*"
        r"continuing with fresh episodes$",
    ):
        assert resumed.load_state_dict(state) is False
    np.testing.assert_array_equal(resumed.obs, np.zeros((2, 1), dtype=np.float32))  # first observations
    np.testing.assert_array_equal(resumed.episode_seeds, twin.integers(SEED_BOUND, size=2))  # from the restored rng


def test_state_from_the_other_backend_warns(monkeypatch, tmp_path):
    fast = VecEnv("CartPole-v1", 2, np.random.default_rng(0))
    fast.reset()
    slow = sync_cartpole(monkeypatch, 2, 0)
    with pytest.warns(RuntimeWarning, match="state of CartPole-v1 could not be restored exactly"):
        assert slow.load_state_dict(round_trip(fast.state_dict(), tmp_path)) is False
    assert slow.obs.shape == (2, 4)


def test_state_of_another_env_is_rejected():
    venv = VecEnv("CartPole-v1", 2, np.random.default_rng(0))
    venv.reset()
    with pytest.raises(ValueError, match=r"state\['n_envs'\]=2 does not match this VecEnv's n_envs 3"):
        VecEnv("CartPole-v1", 3, np.random.default_rng(0)).load_state_dict(venv.state_dict())
    with pytest.raises(ValueError, match=r"state\['name'\]='CartPole-v1' does not match"):
        VecEnv("dqn_np/Chain-v0", 2, np.random.default_rng(0)).load_state_dict(venv.state_dict())


@pytest.mark.parametrize(("env_id", "backend", "kwargs"), CASES, ids=CASE_IDS)
def test_same_rng_seed_same_trajectory(env_id, backend, kwargs):
    actions = np.random.default_rng(0).integers(make_env(env_id).action_space.n, size=(120, 2))
    runs = []
    for seed in (7, 7, 8):
        venv = VecEnv(env_id, 2, np.random.default_rng(seed), **kwargs)
        runs.append((venv.reset(), rollout(venv, actions)))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert_same(runs[0][1], runs[1][1])
    assert not np.array_equal(runs[0][1]["episode_seeds"], runs[2][1]["episode_seeds"])


@pytest.mark.parametrize(("env_id", "backend", "kwargs"), CASES, ids=CASE_IDS)
def test_seeds_are_drawn_from_the_rng_in_one_call_per_step(env_id, backend, kwargs):
    venv = VecEnv(env_id, 4, np.random.default_rng(11), max_episode_steps=8)
    twin = np.random.default_rng(11)  # replays the draws VecEnv must make, and nothing else
    venv.reset()
    np.testing.assert_array_equal(venv.episode_seeds, twin.integers(SEED_BOUND, size=4))
    n_ended = 0
    for a in np.random.default_rng(1).integers(venv.n_actions, size=(40, 4)):
        before = venv.episode_seeds.copy()
        out = venv.step(a)
        ended = out.terminated | out.truncated
        if ended.any():
            np.testing.assert_array_equal(venv.episode_seeds[ended], twin.integers(SEED_BOUND, size=ended.sum()))
        np.testing.assert_array_equal(venv.episode_seeds[~ended], before[~ended])
        n_ended += ended.sum()
    assert n_ended >= 16  # every 8 steps at the latest
    assert venv.rng.bit_generator.state == twin.bit_generator.state


@pytest.mark.parametrize(("env_id", "backend", "kwargs"), CASES, ids=CASE_IDS)
def test_first_obs_matches_make_env_reset(env_id, backend, kwargs):
    venv = VecEnv(env_id, 3, np.random.default_rng(0), **kwargs)
    for seeds in (np.array([0, 1, 2**40]), None):
        obs = venv.reset(seeds)
        assert obs.shape == (3, venv.obs_dim) and obs.dtype == np.float32
        np.testing.assert_array_equal(obs, venv.obs)
        for i, seed in enumerate(venv.episode_seeds):
            np.testing.assert_array_equal(make_env(env_id, **kwargs).reset(seed=int(seed))[0], obs[i])
    np.testing.assert_array_equal(venv.reset([5, 6, 7]), venv.reset(np.array([5, 6, 7], dtype=np.uint32)))


@pytest.mark.parametrize("use_sync", [False, True], ids=["cartpole-vector", "sync"])
def test_cartpole_termination_reports_the_true_final_obs(use_sync, monkeypatch):
    venv = sync_cartpole(monkeypatch, 2, 0) if use_sync else VecEnv("CartPole-v1", 2, np.random.default_rng(0))
    venv.reset()
    for _ in range(100):
        out = venv.step(np.ones(2, dtype=np.int64))  # always push right: the pole falls within ~10 steps
        if out.terminated.any():
            break
    assert out.terminated.any() and not out.truncated.any()
    for i in np.flatnonzero(out.terminated):
        x, _, theta, _ = out.next_obs[i]
        assert abs(theta) > 12 * 2 * math.pi / 360 or abs(x) > 2.4
        assert np.all(np.abs(venv.obs[i]) <= 0.05)


def balance(obs: np.ndarray) -> np.ndarray:
    """A linear controller that keeps CartPole up for 500 steps from the usual start states: (E, 4) -> (E,)."""
    x, x_dot, theta, theta_dot = obs.T
    return (theta + 0.3 * theta_dot + 0.03 * x + 0.1 * x_dot > 0).astype(np.int64)


@pytest.mark.parametrize("use_sync", [False, True], ids=["cartpole-vector", "sync"])
def test_cartpole_truncates_at_500_steps(use_sync, monkeypatch):
    venv = sync_cartpole(monkeypatch, 3, 0) if use_sync else VecEnv("CartPole-v1", 3, np.random.default_rng(0))
    venv.reset()
    singles = [make_env("CartPole-v1") for _ in range(3)]
    for env, seed in zip(singles, venv.episode_seeds, strict=True):
        env.reset(seed=int(seed))
    for t in range(1, 501):
        a = balance(venv.obs)
        out = venv.step(a)
        finals = [env.step(int(a_i))[0] for env, a_i in zip(singles, a, strict=True)]
        if t < 500:
            assert not (out.terminated | out.truncated).any()
    assert out.truncated.all() and not out.terminated.any()
    np.testing.assert_allclose(out.next_obs, np.stack(finals), rtol=0, atol=1e-6)
    assert not np.allclose(out.next_obs, venv.obs)
    assert np.all(np.abs(venv.obs) <= 0.05)


@pytest.mark.parametrize("use_sync", [False, True], ids=["cartpole-vector", "sync"])
def test_cartpole_max_episode_steps_kwarg(use_sync, monkeypatch):
    kwargs = {"max_episode_steps": 5}
    venv = (
        sync_cartpole(monkeypatch, 2, 0, **kwargs)
        if use_sync
        else VecEnv("CartPole-v1", 2, np.random.default_rng(0), **kwargs)
    )
    venv.reset()
    flags = [venv.step(balance(venv.obs)).truncated.copy() for _ in range(10)]
    np.testing.assert_array_equal(np.stack(flags).any(axis=1), [False] * 4 + [True] + [False] * 4 + [True])


def test_chain_truncation_reports_the_true_final_obs():
    venv = VecEnv("dqn_np/Chain-v0", 2, np.random.default_rng(0))
    venv.reset()
    pattern = [1] + [1, 0] * 9 + [1]  # right, then back and forth between states 1 and 2: never the goal (3)
    for t, a in enumerate(pattern, start=1):
        out = venv.step(np.full(2, a))
        assert not out.terminated.any()
        assert out.truncated.all() == (t == 20)
    np.testing.assert_array_equal(out.next_obs, np.tile(np.float32([0, 0, 1, 0]), (2, 1)))  # state 2
    np.testing.assert_array_equal(venv.obs, np.tile(np.float32([1, 0, 0, 0]), (2, 1)))  # a new start
    assert out.reward.dtype == np.float64


@pytest.mark.parametrize(("env_id", "backend", "kwargs"), CASES, ids=CASE_IDS)
def test_one_env(env_id, backend, kwargs):
    venv = VecEnv(env_id, 1, np.random.default_rng(0), **kwargs)
    assert (venv.n_envs, venv.backend, venv.reset().shape) == (1, backend, (1, venv.obs_dim))
    out = rollout(venv, np.zeros((30, 1), dtype=np.int64))
    assert out["next_obs"].shape == (30, 1, venv.obs_dim) and out["reward"].shape == (30, 1)


def test_attributes():
    venv = VecEnv("CartPole-v1", 2, rng := np.random.default_rng(0))
    assert (venv.name, venv.n_envs, venv.obs_dim, venv.n_actions, venv.reward_threshold) == (
        "CartPole-v1",
        2,
        4,
        2,
        475.0,
    )
    assert venv.rng is rng and venv.obs is None
    chain = VecEnv("dqn_np/Chain-v0", 2, rng, n_states=6)
    assert (chain.name, chain.obs_dim, chain.reward_threshold, chain.backend) == ("dqn_np/Chain-v0", 6, None, "sync")
    chain.close()
    venv.close()


@pytest.mark.parametrize("n_envs", [0, -1, 1.5, True, "2", None])
def test_bad_n_envs(n_envs):
    with pytest.raises(ValueError, match=rf"n_envs={n_envs!r} .*expected an int >= 1"):
        VecEnv("CartPole-v1", n_envs, np.random.default_rng(0))


def test_rng_must_be_a_generator():
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator, got int"):
        VecEnv("CartPole-v1", 2, 0)


@pytest.mark.parametrize(("env_id", "backend", "kwargs"), CASES[:2], ids=CASE_IDS[:2])
@pytest.mark.parametrize(
    ("actions", "problem"),
    [
        (np.zeros(3, dtype=np.int64), r"actions has shape \(3,\) and dtype int64; expected shape \(2,\) integers"),
        (np.zeros((2, 1), dtype=np.int64), r"actions has shape \(2, 1\) and dtype int64; expected shape \(2,\)"),
        (np.zeros(2), r"actions has shape \(2,\) and dtype float64; expected shape \(2,\) integers"),
        (np.array([0, -1]), r"actions=\[-1\] \(of envs \[1\]\) are out of range; expected integers in \[0, "),
        (np.array([0, 9], dtype=np.int32), r"actions=\[9\] \(of envs \[1\]\) are out of range"),
        (np.array([9, 0], dtype=np.uint8), r"actions=\[9\] \(of envs \[0\]\) are out of range"),
    ],
)
def test_bad_actions(env_id, backend, kwargs, actions, problem):
    venv = VecEnv(env_id, 2, np.random.default_rng(0), **kwargs)
    venv.reset()
    with pytest.raises(ValueError, match=rf"^{problem}"):
        venv.step(actions)
    venv.step([0, 1])  # a list of ints is fine, and the envs are still usable


@pytest.mark.parametrize("seeds", [[1, 2], [1, 2, -3], [[1, 2, 3]], [0.5, 1.0, 2.0]])
def test_bad_seeds(seeds):
    with pytest.raises(ValueError, match=r"seeds=.* expected shape \(3,\) non-negative integers, or None"):
        VecEnv("dqn_np/Chain-v0", 3, np.random.default_rng(0)).reset(seeds)


def test_step_before_reset():
    with pytest.raises(RuntimeError, match=r"call reset\(\) first"):
        VecEnv("CartPole-v1", 2, np.random.default_rng(0)).step(np.zeros(2, dtype=np.int64))


@pytest.mark.parametrize("env_id", ["NoSuchEnv-v0", "CartPole-v9"])
def test_unknown_id(env_id):
    with pytest.raises(EnvError, match=rf"{env_id}.*not a registered"):
        VecEnv(env_id, 2, np.random.default_rng(0))


def test_unsupported_spaces():
    with pytest.raises(EnvError, match=r"Pendulum-v1: action space .* Discrete"):
        VecEnv("Pendulum-v1", 2, np.random.default_rng(0))


def test_env_that_cannot_be_vectorized():
    with pytest.raises(EnvError, match=r"^cannot vectorize env_id 'dqn_np_test/Drifting-v0': RuntimeError: .*spaces"):
        VecEnv("dqn_np_test/Drifting-v0", 2, np.random.default_rng(0))


def test_falls_back_to_sync_when_the_cartpole_internals_differ(monkeypatch):
    original_reset = vector.CartPoleVectorEnv.reset

    def reset_without_prev_done(self, **kwargs):
        out = original_reset(self, **kwargs)
        del self.prev_done  # as if another Gymnasium version kept its autoreset bookkeeping elsewhere
        return out

    monkeypatch.setattr(vector.CartPoleVectorEnv, "reset", reset_without_prev_done)
    venv = VecEnv("CartPole-v1", 2, np.random.default_rng(0))
    assert venv.backend == "sync"
    assert venv.reset().shape == (2, 4)
