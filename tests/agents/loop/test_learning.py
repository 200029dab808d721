"""Learning tests: DQN trained by the engine on the diagnostic environments converges to their closed-form Q*, for a
single run (S = 1) and for every member of a batch (S = 3).

The error is relative and taken over every state-action pair: max |Q(s, a) - Q*(s, a)| / |Q*(s, a)| < 5%. Negative
controls show the check can fail: with the truncation-as-termination bug switched on by a test double, without any
update, or against the Q* of another discount factor, the same check must reject the same agents.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest

import envs
from agents.config import DQNConfig
from agents.loop import Engine

pytestmark = pytest.mark.slow  # about 15 s together; each run trains for a few thousand steps

GAMMA = 0.9
WRONG_GAMMA = 0.8  # Chain's Q*(0, right) is 0.81 at gamma 0.9, 0.64 at 0.8: 27% apart
TOLERANCE = 0.05
SEEDS = [0, 1, 2]

STEPS = {  # environment steps of training per diagnostic environment
    "dqn_np/Chain-v0": 3_000,  # Q*(s, right) = 0.9^(2 - s), Q*(s, left) = 0.9 V*(max(s - 1, 0))
    "dqn_np/TwoArmedBandit-v0": 2_000,  # Q* = (0.2, 0.8)
    "dqn_np/ConstantReward-v0": 4_000,  # Q* = (9.5, 10): reached only by bootstrapping through truncation
}
GAMMA_DEPENDENT = ["dqn_np/Chain-v0", "dqn_np/ConstantReward-v0"]  # the bandit's Q* is the same for any gamma


def config(dtype: str, **overrides) -> DQNConfig:
    """Exploration never falls below 0.3, so every action keeps being tried and its Q-value keeps being fitted;
    mse rather than huber, so the large early TD errors of ConstantReward are not slowed down."""
    base = dict(hidden_sizes=(32,), dtype=dtype, gamma=GAMMA, learning_rate=3e-3, loss="mse", batch_size=32,
                buffer_size=5_000, learning_starts=100, epsilon_start=1.0, epsilon_end=0.3, epsilon_decay_steps=500,
                target_update_interval=50, eval_freq=0, n_envs=1, n_step=1, train_freq=1, gradient_steps=1)
    return DQNConfig(**(base | overrides))


def train(env_id: str, cfg: DQNConfig, steps: int, seeds: list[int],
          wrapper: Callable[[gym.Env], gym.Env] | None = None) -> Engine:
    """The engine of `seeds` on `env_id` (optionally wrapped), trained for `steps` transitions per member."""
    wrappers = (wrapper,) if wrapper is not None else ()
    engine = Engine(lambda n, rngs: envs.VecEnv(env_id, n, rngs, wrappers=wrappers), cfg, seeds)
    engine.run(steps)
    assert engine.active.all() and engine.env_steps == steps
    return engine


def q_relative_errors(engine: Engine, env_id: str, gamma: float) -> np.ndarray:
    """`(S,)`: per member, max over (s, a) of |Q - Q*| / |Q*|, with Q* the closed form at `gamma`."""
    diagnostic = envs.make_env(env_id).unwrapped
    q_star = diagnostic.optimal_q(gamma)
    errors = []
    for s in range(engine.n_members):
        q = engine.agent.member(s).q_values(diagnostic.state_observations())
        assert q.shape == q_star.shape
        errors.append(np.max(np.abs(q - q_star) / np.abs(q_star)))
    return np.array(errors)


@pytest.mark.parametrize("seeds", [SEEDS[:1], SEEDS], ids=["S=1", "S=3"])
@pytest.mark.parametrize("env_id", list(STEPS))
def test_converges_to_optimal_q(env_id, seeds):
    engine = train(env_id, config("float64"), STEPS[env_id], seeds)
    errors = q_relative_errors(engine, env_id, GAMMA)
    assert errors.shape == (len(seeds),) and (errors < TOLERANCE).all(), errors
    if env_id in GAMMA_DEPENDENT:  # negative control: the same Q is far from the Q* of another discount factor
        assert (q_relative_errors(engine, env_id, WRONG_GAMMA) > TOLERANCE).all()


@pytest.mark.parametrize("seeds", [SEEDS[:1], SEEDS[:2]], ids=["S=1", "S=2"])
@pytest.mark.parametrize("env_id", list(STEPS))
def test_converges_to_optimal_q_in_float32(env_id, seeds):
    engine = train(env_id, config("float32"), STEPS[env_id], seeds)
    errors = q_relative_errors(engine, env_id, GAMMA)
    assert (errors < TOLERANCE).all(), errors


# Uncorrected n-step returns follow the behaviour policy for n - 1 steps, so with epsilon = 0.3 they converge to a
# mix of Q* and the epsilon-greedy policy's values, not to Q* (measured: 5-12% off on Chain). Q* is their fixed point
# only where every episode ends within the window, as in the one-step bandit.
@pytest.mark.parametrize("env_id, n_envs, n_step", [(env_id, 4, 1) for env_id in STEPS] + [
    ("dqn_np/TwoArmedBandit-v0", 1, 3), ("dqn_np/TwoArmedBandit-v0", 4, 3)])
def test_converges_with_several_envs_and_n_step_returns(env_id, n_envs, n_step):
    engine = train(env_id, config("float64", n_envs=n_envs, n_step=n_step), STEPS[env_id], SEEDS[:2])
    errors = q_relative_errors(engine, env_id, GAMMA)
    assert (errors < TOLERANCE).all(), errors


@pytest.mark.parametrize("seeds", [SEEDS[:1], SEEDS], ids=["S=1", "S=3"])
def test_treating_truncation_as_termination_is_caught(seeds):
    env_id = "dqn_np/ConstantReward-v0"
    engine = train(env_id, config("float64"), STEPS[env_id], seeds, wrapper=envs.TruncationAsTermination)
    errors = q_relative_errors(engine, env_id, GAMMA)
    assert (errors > TOLERANCE).all(), errors  # Q drops to about 1 / (1 - 0.9 * 19/20) ~ 6.9 instead of 10


@pytest.mark.parametrize("env_id", list(STEPS))
def test_without_updates_the_check_fails(env_id):
    steps = 500
    engine = train(env_id, config("float64", learning_starts=steps + 1), steps, SEEDS)
    assert engine.agent.n_updates == 0
    errors = q_relative_errors(engine, env_id, GAMMA)
    assert (errors > TOLERANCE).all(), errors  # the initial networks are nowhere near Q*
