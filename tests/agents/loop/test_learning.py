"""Learning tests: DQN trained on the diagnostic environments converges to their closed-form Q*.

The error is relative and taken over every state-action pair: max |Q(s, a) - Q*(s, a)| / |Q*(s, a)| < 5%. The same
check, with the truncation-as-termination bug switched on by a test double, must fail: that shows the tolerance is
tight enough to catch an agent that treats time limits as deaths.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest

import envs
from agents.config import DQNConfig
from agents.train import Trainer

pytestmark = pytest.mark.slow  # about 10 s together; each test trains for a few thousand steps

GAMMA = 0.9
TOLERANCE = 0.05
SEEDS = [0, 1, 2]

STEPS = {  # environment steps of training per diagnostic environment
    "dqn_np/Chain-v0": 3_000,  # Q*(s, right) = 0.9^(2 - s), Q*(s, left) = 0.9 V*(max(s - 1, 0))
    "dqn_np/TwoArmedBandit-v0": 2_000,  # Q* = (0.2, 0.8)
    "dqn_np/ConstantReward-v0": 4_000,  # Q* = (9.5, 10): reached only by bootstrapping through truncation
}


def config(dtype: str, **overrides) -> DQNConfig:
    """Exploration never falls below 0.3, so every action keeps being tried and its Q-value keeps being fitted;
    mse rather than huber, so the large early TD errors of ConstantReward are not slowed down."""
    base = dict(hidden_sizes=(32,), dtype=dtype, gamma=GAMMA, learning_rate=3e-3, loss="mse", batch_size=32,
                buffer_size=5_000, learning_starts=100, epsilon_start=1.0, epsilon_end=0.3, epsilon_decay_steps=500,
                target_update_interval=50, eval_freq=0, n_envs=1, n_step=1)
    return DQNConfig(**(base | overrides))


def q_relative_error(env_id: str, cfg: DQNConfig, steps: int, seed: int,
                     wrapper: Callable[[gym.Env], gym.Env] | None = None) -> float:
    """Train on `env_id` (optionally wrapped) and return max over (s, a) of |Q - Q*| / |Q*|."""
    wrappers = (wrapper,) if wrapper is not None else ()
    trainer = Trainer(lambda n, rng: envs.VecEnv(env_id, n, rng, wrappers=wrappers), cfg, seed=seed)
    trainer.run(steps)
    diagnostic = envs.make_env(env_id).unwrapped
    q = trainer.agent.q_values(diagnostic.state_observations())
    q_star = diagnostic.optimal_q(cfg.gamma)
    assert q.shape == q_star.shape
    return float(np.max(np.abs(q - q_star) / np.abs(q_star)))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("env_id", list(STEPS))
def test_converges_to_optimal_q(env_id, seed):
    error = q_relative_error(env_id, config("float64"), STEPS[env_id], seed)
    assert error < TOLERANCE


@pytest.mark.parametrize("env_id", list(STEPS))
def test_converges_to_optimal_q_in_float32(env_id):
    error = q_relative_error(env_id, config("float32"), STEPS[env_id], seed=0)
    assert error < TOLERANCE


# Uncorrected n-step returns follow the behaviour policy for n - 1 steps, so with epsilon = 0.3 they converge to a
# mix of Q* and the epsilon-greedy policy's values, not to Q* (measured: 5-12% off on Chain). Q* is their fixed point
# only where every episode ends within the window, as in the one-step bandit.
@pytest.mark.parametrize("env_id, n_envs, n_step", [(env_id, 4, 1) for env_id in STEPS] + [
    ("dqn_np/TwoArmedBandit-v0", 1, 3), ("dqn_np/TwoArmedBandit-v0", 4, 3)])
def test_converges_with_several_envs_and_n_step_returns(env_id, n_envs, n_step):
    error = q_relative_error(env_id, config("float64", n_envs=n_envs, n_step=n_step), STEPS[env_id], seed=0)
    assert error < TOLERANCE


@pytest.mark.parametrize("seed", SEEDS)
def test_treating_truncation_as_termination_is_caught(seed):
    env_id = "dqn_np/ConstantReward-v0"
    error = q_relative_error(env_id, config("float64"), STEPS[env_id], seed, wrapper=envs.TruncationAsTermination)
    assert error > TOLERANCE  # Q drops to about 1 / (1 - 0.9 * 19/20) ~ 6.9 instead of 10
