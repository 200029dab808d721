"""Learning tests: DQN trained by the engine on the diagnostic environments converges to their closed-form Q*, for a
single run (S = 1) and for every member of a batch (S = 3).

The error is relative and taken over every state-action pair: max |Q(s, a) - Q*(s, a)| / |Q*(s, a)|. The claim is
convergence, and the targets here are exact (deterministic rewards, a constant or one-hot input). On Chain and the
bandit the networks reach Q* to rounding: measured (2026-12-07, these seeds and budgets) at most 1.4e-15 in float64
and 2.2e-7 in float32; the tolerances, 1e-12 and 2e-6, keep a margin for another CPU's or BLAS's rounding (about
700 and 9 times the largest error; 2e-6 is some 17 float32 units in the last place of 1). ConstantReward's values
come only by bootstrapping over a horizon of 1 / (1 - gamma) = 10 steps through target copies, so after 4,000 steps
they are still closing in: measured 2.4e-4 to 3.6e-4 in both dtypes, so its tolerance is 1e-3 (a margin of about 3).

Negative controls show the check can fail where a near-miss is plausible: an agent trained with the discount 0.903
instead of 0.9 (its Q* is 1.0% off on Chain and 3.2% on ConstantReward), the same agents against the Q* of 0.903,
the truncation-as-termination bug switched on by a test double, and no update at all must each be rejected.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest

import envs
from agents.config import DQNConfig
from agents.loop import Engine

pytestmark = pytest.mark.slow  # about 40 s together on a shared 2-core machine; each run trains a few thousand steps

GAMMA = 0.9
WRONG_GAMMA = 0.903  # a near-miss: Chain's Q*(0, left) is 0.9^3 = 0.729 at 0.9, 0.736 at 0.903 (1.0% apart)
TOLERANCE = {"float64": 1e-12, "float32": 2e-6}  # Chain and the bandit; measured errors and margins: the docstring
BOOTSTRAPPED_TOLERANCE = 1e-3  # ConstantReward, still closing in on Q* after its budget (the docstring)
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


def tolerance(env_id: str, dtype: str) -> float:
    """The largest relative error the convergence claim allows on `env_id` in `dtype` (see the module docstring)."""
    return BOOTSTRAPPED_TOLERANCE if env_id == "dqn_np/ConstantReward-v0" else TOLERANCE[dtype]


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
    assert errors.shape == (len(seeds),) and (errors < tolerance(env_id, "float64")).all(), errors
    if env_id in GAMMA_DEPENDENT:  # negative control: the same Q is far from the Q* of a discount 0.3% away
        assert (q_relative_errors(engine, env_id, WRONG_GAMMA) > 0.009).all()


@pytest.mark.parametrize("env_id", GAMMA_DEPENDENT)
def test_an_agent_trained_with_a_slightly_wrong_discount_fails_the_check(env_id):
    engine = train(env_id, config("float64", gamma=WRONG_GAMMA), STEPS[env_id], SEEDS)
    assert (q_relative_errors(engine, env_id, WRONG_GAMMA) < tolerance(env_id, "float64")).all()  # its own Q*
    errors = q_relative_errors(engine, env_id, GAMMA)
    assert (errors > 9 * tolerance(env_id, "float64")).all(), errors  # 1.0% (Chain), 3.2% (ConstantReward) off


@pytest.mark.parametrize("seeds", [SEEDS[:1], SEEDS[:2]], ids=["S=1", "S=2"])
@pytest.mark.parametrize("env_id", list(STEPS))
def test_converges_to_optimal_q_in_float32(env_id, seeds):
    engine = train(env_id, config("float32"), STEPS[env_id], seeds)
    errors = q_relative_errors(engine, env_id, GAMMA)
    assert (errors < tolerance(env_id, "float32")).all(), errors


# Uncorrected n-step returns follow the behaviour policy for n - 1 steps, so with epsilon = 0.3 they converge to a
# mix of Q* and the epsilon-greedy policy's values, not to Q* (measured: 5-12% off on Chain). Q* is their fixed point
# only where every episode ends within the window, as in the one-step bandit.
# Learning rate 1e-3 here: at 3e-3, Adam settles into a limit cycle on 1 of 12 bandit runs (seed 1 at E = 4: 0.06% to
# 1.2% off, moving with the budget), an optimizer effect this test is not about; at 1e-3 Chain and the bandit reach
# <= 1.4e-15 on every seed tried (6).
@pytest.mark.parametrize("env_id, n_envs, n_step", [(env_id, 4, 1) for env_id in STEPS] + [
    ("dqn_np/TwoArmedBandit-v0", 1, 3), ("dqn_np/TwoArmedBandit-v0", 4, 3)])
def test_converges_with_several_envs_and_n_step_returns(env_id, n_envs, n_step):
    cfg = config("float64", n_envs=n_envs, n_step=n_step, learning_rate=1e-3)
    engine = train(env_id, cfg, STEPS[env_id], SEEDS[:2])
    errors = q_relative_errors(engine, env_id, GAMMA)
    assert (errors < tolerance(env_id, "float64")).all(), errors


@pytest.mark.parametrize("seeds", [SEEDS[:1], SEEDS], ids=["S=1", "S=3"])
def test_treating_truncation_as_termination_is_caught(seeds):
    env_id = "dqn_np/ConstantReward-v0"
    engine = train(env_id, config("float64"), STEPS[env_id], seeds, wrapper=envs.TruncationAsTermination)
    errors = q_relative_errors(engine, env_id, GAMMA)
    assert (errors > 0.25).all(), errors  # measured 28-33%: Q drops to about 1 / (1 - 0.9 * 19/20) ~ 6.9, not 10


@pytest.mark.parametrize("env_id", list(STEPS))
def test_without_updates_the_check_fails(env_id):
    steps = 500
    engine = train(env_id, config("float64", learning_starts=steps + 1), steps, SEEDS)
    assert engine.agent.n_updates == 0
    errors = q_relative_errors(engine, env_id, GAMMA)
    assert (errors > tolerance(env_id, "float64")).all(), errors  # the initial networks are 20-410% off Q*
