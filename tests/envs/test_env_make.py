"""make_env, check_spaces, reward_threshold, reset_env and step_env."""

import re
import sys

import gymnasium as gym
import numpy as np
import pytest

from envs import EnvError, Step, check_spaces, make_env, reset_env, reward_threshold, step_env


class SpacesEnv(gym.Env):
    """A do-nothing env with the given spaces, for exercising check_spaces."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        self.observation_space = observation_space
        self.action_space = action_space


FLAT_OBS = gym.spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)


def test_cartpole_dims_and_threshold():
    env = make_env("CartPole-v1")
    assert check_spaces(env) == (4, 2)
    assert reward_threshold(env) == 475.0


@pytest.mark.parametrize(
    ("env_id", "dims"),
    [("dqn_np/Chain-v0", (4, 2)), ("dqn_np/TwoArmedBandit-v0", (1, 2)), ("dqn_np/ConstantReward-v0", (1, 2))],
)
def test_diagnostic_ids_are_registered(env_id, dims):
    env = make_env(env_id)
    assert check_spaces(env) == dims
    assert reward_threshold(env) is None


def test_kwargs_reach_the_constructor():
    assert check_spaces(make_env("dqn_np/Chain-v0", n_states=6)) == (6, 2)


@pytest.mark.parametrize("env_id", ["NoSuchEnv-v0", "CartPole-v9", "nowhere/CartPole-v1"])
def test_unknown_id(env_id):
    with pytest.raises(EnvError, match=rf"{env_id}.*not a registered.*CartPole-v1.*dqn_np/Chain-v0"):
        make_env(env_id)


def test_continuous_actions_rejected():
    with pytest.raises(EnvError, match=r"Pendulum-v1: action space Box\(-2.0, 2.0, \(1,\), float32\).*Discrete"):
        make_env("Pendulum-v1")


IMAGE_OBS = gym.spaces.Box(0, 255, shape=(8, 8, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("obs_space", "action_space", "bad", "needs"),
    [
        (IMAGE_OBS, gym.spaces.Discrete(2), "observation", "a Box observation space with a 1-D shape"),
        (gym.spaces.Dict({"x": FLAT_OBS}), gym.spaces.Discrete(2), "observation", "a Box observation space"),
        (gym.spaces.Tuple((FLAT_OBS,)), gym.spaces.Discrete(2), "observation", "a Box observation space"),
        (gym.spaces.Box(0, 1, shape=(0,), dtype=np.float32), gym.spaces.Discrete(2), "observation", "a Box"),
        (gym.spaces.Box(0, 1, shape=(3,), dtype=bool), gym.spaces.Discrete(2), "observation", "a Box"),
        (FLAT_OBS, gym.spaces.MultiDiscrete([2, 2]), "action", "a Discrete action space"),
        (FLAT_OBS, gym.spaces.Discrete(3, start=1), "action", r"a Discrete action space \(n actions numbered from 0\)"),
    ],
)
def test_unsupported_spaces(obs_space, action_space, bad, needs):
    space = obs_space if bad == "observation" else action_space
    with pytest.raises(
        EnvError, match=rf"^SpacesEnv: {bad} space {re.escape(repr(space))} is not supported; dqn-np needs {needs}"
    ):
        check_spaces(SpacesEnv(obs_space, action_space))


def test_int_observations_accepted():
    obs_space = gym.spaces.Box(0, 10, shape=(5,), dtype=np.int64)
    assert check_spaces(SpacesEnv(obs_space, gym.spaces.Discrete(7))) == (5, 7)


def test_env_error_is_value_error():
    assert issubclass(EnvError, ValueError)


def _first_obs_and_samples(seed: int) -> tuple[np.ndarray, list[int]]:
    env = make_env("CartPole-v1", seed=seed)
    return reset_env(env, seed=seed), [int(env.action_space.sample()) for _ in range(32)]


def test_same_seed_same_start_and_samples():
    obs_a, actions_a = _first_obs_and_samples(seed=7)
    obs_b, actions_b = _first_obs_and_samples(seed=7)
    obs_c, actions_c = _first_obs_and_samples(seed=8)
    np.testing.assert_array_equal(obs_a, obs_b)
    assert actions_a == actions_b
    assert not np.array_equal(obs_a, obs_c)
    assert actions_a != actions_c


def test_reset_returns_flat_observation():
    obs = reset_env(make_env("CartPole-v1"), seed=0)
    assert isinstance(obs, np.ndarray) and obs.shape == (4,)


def test_step_returns_python_types():
    env = make_env("CartPole-v1")
    reset_env(env, seed=0)
    step = step_env(env, np.int64(1))  # argmax returns numpy integers
    assert isinstance(step, Step) and step.next_obs.shape == (4,)
    assert type(step.reward) is float and type(step.terminated) is bool and type(step.truncated) is bool


@pytest.mark.parametrize("action", [2, -1, 0.5, "1"])
def test_step_rejects_invalid_action(action):
    env = make_env("CartPole-v1")
    reset_env(env, seed=0)
    with pytest.raises(ValueError, match=r"action=.*expected an integer in Discrete\(2\)"):
        step_env(env, action)


def test_constant_reward_truncates_at_20_without_terminating():
    env = make_env("dqn_np/ConstantReward-v0")
    reset_env(env, seed=0)
    steps = [step_env(env, 1) for _ in range(20)]
    assert [s.truncated for s in steps] == [False] * 19 + [True]
    assert not any(s.terminated for s in steps)
    assert sum(s.reward for s in steps) == 20.0


def test_chain_terminates_at_goal_with_true_final_obs():
    env = make_env("dqn_np/Chain-v0")
    reset_env(env, seed=0)
    steps = [step_env(env, 1) for _ in range(3)]
    assert [(s.reward, s.terminated, s.truncated) for s in steps] == [(0.0, False, False)] * 2 + [(1.0, True, False)]
    np.testing.assert_array_equal(steps[-1].next_obs, [0, 0, 0, 1])  # the goal, not a reset observation


def test_chain_truncates_at_20_with_true_final_obs():
    env = make_env("dqn_np/Chain-v0")
    reset_env(env, seed=0)
    steps = [step_env(env, 0) for _ in range(20)]
    assert [s.truncated for s in steps] == [False] * 19 + [True]
    assert not any(s.terminated for s in steps)
    np.testing.assert_array_equal(steps[-1].next_obs, [1, 0, 0, 0])


def _without_box2d(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine without the [box2d] extra: `import Box2D` fails and Gymnasium's LunarLander module is
    imported afresh (it checks for Box2D when it is imported)."""
    monkeypatch.setitem(sys.modules, "Box2D", None)
    for name in [m for m in sys.modules if m.startswith("gymnasium.envs.box2d")]:
        monkeypatch.delitem(sys.modules, name)


def test_lunar_lander_without_box2d_names_the_extra_in_one_line(monkeypatch):
    _without_box2d(monkeypatch)
    with pytest.raises(EnvError) as error:
        make_env("LunarLander-v3")
    assert str(error.value) == ("env_id 'LunarLander-v3' needs Box2D, which is not installed: "
                                "pip install -e '.[box2d]'")


def test_a_training_command_without_box2d_is_one_line_status_2_and_writes_nothing(monkeypatch, tmp_path, capsys):
    from agents.loop.events import StopFlag
    from agents.run.cli import _main as cli_main

    _without_box2d(monkeypatch)
    with pytest.raises(SystemExit) as exit_:
        cli_main(["--env-id", "LunarLander-v3", "--out", str(tmp_path / "run"), "--no-progress"], "single",
                 "train_cartpole.py", "", StopFlag())
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["train_cartpole.py: error: env_id 'LunarLander-v3' needs Box2D, which is not installed: "
                   "pip install -e '.[box2d]'"]
    assert list(tmp_path.iterdir()) == []


def test_lunar_lander_with_box2d_trains_through_the_one_engine(tmp_path):
    """The extra installed (dev includes it): LunarLander-v3's spaces and threshold, and a short run end to end."""
    from agents.config import DQNConfig
    from agents.run import train_one

    env = make_env("LunarLander-v3")
    assert check_spaces(env) == (8, 4) and reward_threshold(env) == 200
    env.close()
    config = DQNConfig(hidden_sizes=(16,), n_envs=2, learning_starts=200, eval_freq=400, eval_episodes=2,
                       batch_size=32)
    summary = train_one(config, "LunarLander-v3", 0, tmp_path / "run", 400)
    assert summary["status"] == "completed" and summary["env_steps"] == 400 and summary["updates"] > 0
    assert summary["best_eval_step"] == 400 and (tmp_path / "run" / "best.npz").exists()
