"""Diagnostic environments: closed-form Q* against brute-force value iteration, seeding, the wrong wrapper."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs import (
    ChainEnv,
    ConstantRewardEnv,
    TruncationAsTermination,
    TwoArmedBanditEnv,
    make_env,
    reset_env,
    step_env,
)

ENVS = {
    "chain4": lambda: ChainEnv(),
    "chain7": lambda: ChainEnv(n_states=7),
    "bandit": lambda: TwoArmedBanditEnv(),
    "bandit3": lambda: TwoArmedBanditEnv(means=(1.0, -0.5, 0.3)),
    "constant": lambda: ConstantRewardEnv(),
    "constant_equal": lambda: ConstantRewardEnv(rewards=(1.0, 1.0)),
}


def explore(env: gym.Env, max_depth: int = 12) -> tuple[list[bytes], dict]:
    """Discover a deterministic env's MDP by replaying every action sequence from reset.

    Returns the states (observation bytes) in discovery order and a model {(s, a): (reward, s', terminated)}.
    """
    start = env.reset(seed=0)[0].tobytes()
    states, model, frontier = [start], {}, [(start, ())]
    for _ in range(max_depth):
        next_frontier = []
        for state, prefix in frontier:
            for action in range(env.action_space.n):
                env.reset(seed=0)
                for a in prefix:
                    env.step(a)
                obs, reward, terminated, _, _ = env.step(action)
                model[state, action] = (reward, obs.tobytes(), terminated)
                if obs.tobytes() not in states and not terminated:
                    states.append(obs.tobytes())
                    next_frontier.append((obs.tobytes(), (*prefix, action)))
        frontier = next_frontier
    return states, model


def value_iteration(states: list[bytes], model: dict, n_actions: int, gamma: float) -> np.ndarray:
    """Q(s, a) <- r + gamma * (1 - terminated) * max_a' Q(s', a') until it stops changing: (n_states, n_actions)."""
    index = {s: i for i, s in enumerate(states)}
    q = np.zeros((len(states), n_actions))
    for _ in range(100_000):
        new_q = np.zeros_like(q)
        for (s, a), (r, s_next, terminated) in model.items():
            new_q[index[s], a] = r + (0.0 if terminated else gamma * q[index[s_next]].max())
        if np.max(np.abs(new_q - q)) < 1e-12:
            return new_q
        q = new_q
    raise AssertionError("value iteration did not converge")


@pytest.mark.parametrize("gamma", [0.5, 0.9, 0.99])
@pytest.mark.parametrize("name", ENVS)
def test_closed_form_matches_value_iteration(name, gamma):
    env = ENVS[name]()
    states, model = explore(env)
    q_brute = value_iteration(states, model, env.action_space.n, gamma)
    rows = [states.index(obs.tobytes()) for obs in env.state_observations()]
    assert sorted(rows) == list(range(len(states)))  # every reachable non-terminal state, each once
    np.testing.assert_allclose(env.optimal_q(gamma), q_brute[rows], rtol=1e-9)


@pytest.mark.parametrize("name", ENVS)
def test_shapes_and_gymnasium_checker(name):
    env = ENVS[name]()
    obs = env.state_observations()
    assert obs.dtype == np.float32 and obs.ndim == 2
    assert obs.shape[1:] == env.observation_space.shape
    assert all(env.observation_space.contains(o) for o in obs)
    assert env.optimal_q(0.9).shape == (len(obs), env.action_space.n)
    check_env(env, skip_render_check=True)


def test_chain_closed_form_values():
    q = ChainEnv(n_states=4).optimal_q(0.9)
    np.testing.assert_allclose(q, [[0.729, 0.81], [0.729, 0.9], [0.81, 1.0]])


def test_constant_reward_closed_form_values():
    np.testing.assert_allclose(ConstantRewardEnv().optimal_q(0.99), [[99.5, 100.0]])


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: ChainEnv(n_states=1), r"n_states=1.*at least 2"),
        (lambda: TwoArmedBanditEnv(means=(0.5,)), r"means=\(0.5,\).*at least 2"),
        (lambda: TwoArmedBanditEnv(noise=-1.0), r"noise=-1.0.*>= 0"),
        (lambda: ConstantRewardEnv(rewards=(1.0,)), r"rewards=\(1.0,\).*at least 2"),
        (lambda: ConstantRewardEnv().optimal_q(1.0), r"gamma=1.0.*0 <= gamma < 1"),
        (lambda: ChainEnv().optimal_q(-0.1), r"gamma=-0.1.*0 <= gamma <= 1"),
        (lambda: ChainEnv().step(2), r"action=2.*Discrete\(2\)"),
    ],
)
def test_invalid_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("env", [ChainEnv(n_states=2), TwoArmedBanditEnv()], ids=["chain", "bandit"])
def test_step_after_episode_end_requires_reset(env):
    env.reset(seed=0)
    env.step(1)  # reaches the goal / pulls the arm: terminated
    with pytest.raises(RuntimeError, match="reset"):
        env.step(1)


def test_noisy_bandit_is_seeded_and_unbiased():
    def rewards(seed: int) -> np.ndarray:
        env = make_env("dqn_np/TwoArmedBandit-v0", noise=1.0)
        out = []
        for episode in range(2000):
            reset_env(env, seed=seed if episode == 0 else None)
            out.append(step_env(env, 1).reward)
        return np.array(out)

    a, b, c = rewards(seed=3), rewards(seed=3), rewards(seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert abs(a.mean() - 0.8) < 0.1 and 0.9 < a.std() < 1.1


def test_truncation_as_termination_flips_the_time_limit():
    right = make_env("dqn_np/ConstantReward-v0")
    wrong = TruncationAsTermination(make_env("dqn_np/ConstantReward-v0"))
    for env in (right, wrong):
        reset_env(env, seed=0)
    right_steps = [step_env(right, 1) for _ in range(20)]
    wrong_steps = [step_env(wrong, 1) for _ in range(20)]
    assert [s.terminated for s in right_steps] == [False] * 20
    assert [s.terminated for s in wrong_steps] == [False] * 19 + [True]
    assert [s.truncated for s in wrong_steps] == [False] * 19 + [True]


def test_truncation_as_termination_keeps_real_terminations():
    env = TruncationAsTermination(make_env("dqn_np/Chain-v0", n_states=2))
    reset_env(env, seed=0)
    assert step_env(env, 1)[1:] == (1.0, True, False)
