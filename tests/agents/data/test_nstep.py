"""n-step windows against returns computed by hand: across episode ends, termination, truncation and E > 1."""

from collections import Counter

import numpy as np
import pytest

from agents.data.nstep import NStepWindows


def scripted_steps(n_envs: int, length: int, seed: int, p_end: float = 0.15):
    """Per vector step: obs (E, 2) unique per env and step, actions, rewards, next_obs, terminated, truncated."""
    rng = np.random.default_rng(seed)
    steps = []
    for t in range(length):
        obs = np.stack([np.array([e, t], float) for e in range(n_envs)])
        next_obs = obs + np.array([0.0, 0.5])  # distinct from every obs, so a wrong next_obs is seen
        ends = rng.random(n_envs) < p_end
        terminated = ends & (rng.random(n_envs) < 0.5)
        truncated = ends & ~terminated
        steps.append((obs, rng.integers(0, 3, n_envs), rng.normal(size=n_envs), next_obs, terminated, truncated))
    return steps


def by_hand(steps, n: int, gamma: float) -> Counter:
    """Every n-step transition whose window is complete (n steps, or cut by the episode's end), computed directly."""
    out = Counter()
    n_envs = len(steps[0][1])
    for e in range(n_envs):
        episode = []  # this env's steps in the current episode
        for obs, actions, rewards, next_obs, terminated, truncated in steps:
            episode.append((obs[e], actions[e], rewards[e], next_obs[e], terminated[e], truncated[e]))
            ended = terminated[e] or truncated[e]
            if len(episode) == n and not ended:  # the oldest window is full and the episode goes on
                rs = [s[2] for s in episode]
                out[_key(episode[0][0], episode[0][1], sum(gamma**j * r for j, r in enumerate(rs)), next_obs[e],
                         gamma**n)] += 1
                episode.pop(0)
            elif ended:  # every pending window ends here
                for k in range(len(episode)):
                    rs = [s[2] for s in episode[k:]]
                    discount = 0.0 if terminated[e] else gamma ** len(rs)
                    out[_key(episode[k][0], episode[k][1], sum(gamma**j * r for j, r in enumerate(rs)), next_obs[e],
                             discount)] += 1
                episode = []
    return out


def _key(obs, action, ret, next_obs, discount):
    return (tuple(np.round(obs, 9)), int(action), round(float(ret), 9), tuple(np.round(next_obs, 9)),
            round(float(discount), 9))


def windows_output(steps, n: int, gamma: float) -> Counter:
    n_envs = len(steps[0][1])
    w = NStepWindows(n_envs, n, gamma, obs_dim=2, dtype=np.float64)
    out = Counter()
    for step in steps:
        t = w.push(*step)
        for i in range(len(t.actions)):
            out[_key(t.obs[i], t.actions[i], t.rewards[i], t.next_obs[i], t.discounts[i])] += 1
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("n_envs", [1, 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_windows_match_returns_computed_by_hand(n, n_envs, seed):
    steps = scripted_steps(n_envs, 200, seed)
    expected = by_hand(steps, n, gamma=0.9)
    assert sum(expected.values()) > 100
    assert windows_output(steps, n, gamma=0.9) == expected


def test_one_step_is_the_classic_transition():
    steps = scripted_steps(3, 100, seed=5)
    w = NStepWindows(3, 1, 0.99, obs_dim=2, dtype=np.float64)
    for obs, actions, rewards, next_obs, terminated, truncated in steps:
        t = w.push(obs, actions, rewards, next_obs, terminated, truncated)
        order = np.argsort(t.obs[:, 0])  # continuing envs come first, then those whose episode ended
        t = type(t)(*(column[order] for column in t))
        np.testing.assert_array_equal(t.obs, obs)
        np.testing.assert_array_equal(t.rewards, rewards)
        np.testing.assert_array_equal(t.next_obs, next_obs)
        np.testing.assert_array_equal(t.discounts, 0.99 * (1 - terminated))  # truncation still bootstraps


def test_termination_inside_a_window_stops_the_sum_and_truncation_bootstraps():
    gamma, n = 0.5, 3
    w = NStepWindows(2, n, gamma, obs_dim=1, dtype=np.float64)
    no = np.zeros(2, bool)
    obs = lambda t: np.array([[t], [10 + t]], float)  # noqa: E731
    r = np.array([1.0, 1.0])
    assert len(w.push(obs(0), np.array([0, 0]), r, obs(1), no, no).actions) == 0
    # step 1: env 0 terminates, env 1 is truncated; both flush their two pending windows
    t = w.push(obs(1), np.array([1, 1]), 2 * r, obs(2), np.array([True, False]), np.array([False, True]))
    assert t.rewards.tolist() == [1 + 0.5 * 2, 2, 1 + 0.5 * 2, 2]
    assert t.discounts.tolist() == [0.0, 0.0, gamma**2, gamma**1]
    assert t.next_obs[:, 0].tolist() == [2, 2, 12, 12]
    assert t.obs[:, 0].tolist() == [0, 1, 10, 11]


def test_state_round_trip_continues_identically():
    steps = scripted_steps(3, 120, seed=9)
    a = NStepWindows(3, 4, 0.9, obs_dim=2, dtype=np.float64)
    for step in steps[:50]:
        a.push(*step)
    b = NStepWindows(3, 4, 0.9, obs_dim=2, dtype=np.float64)
    b.load_state_dict({k: np.array(v) for k, v in a.state_dict().items()})
    for step in steps[50:]:
        ta, tb = a.push(*step), b.push(*step)
        for x, y in zip(ta, tb, strict=True):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("kwargs", [{"n_envs": 0}, {"n_step": 0}, {"obs_dim": -1}, {"n_step": 1.5}])
def test_bad_sizes_are_refused(kwargs):
    args = {"n_envs": 1, "n_step": 1, "gamma": 0.9, "obs_dim": 1, "dtype": np.float32} | kwargs
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        NStepWindows(**args)
