"""Dueling heads and prioritized replay on the one engine: the same run alone and in a batch, exact resume through
a checkpoint, beta's annealing, and learning to the closed-form Q* of the diagnostic environments."""

from __future__ import annotations

import json

import numpy as np
import pytest

import envs
from agents.config import DQNConfig
from agents.data.prioritized import PrioritizedReplay
from agents.loop.engine import Engine
from agents.loop.events import Callback
from agents.run.checkpoint import flatten_state, load_checkpoint, save_checkpoint, unflatten_state
from agents.run.train import make_vec_env

OPTIONS = {"dueling": {"dueling": True}, "prioritized": {"prioritized": True},
           "both": {"dueling": True, "prioritized": True}}
TINY = dict(hidden_sizes=(16,), n_envs=4, batch_size=16, buffer_size=400, learning_starts=64, train_freq=16,
            gradient_steps=4, target_update_interval=8, epsilon_decay_steps=200, eval_freq=160, eval_episodes=2)


def cartpole(config: DQNConfig, seeds: list[int]) -> Engine:
    return Engine(make_vec_env("CartPole-v1", "numpy"), config, seeds)


def member_state(engine: Engine, s: int) -> dict[str, np.ndarray]:
    """Member s's parameters, target and optimizer moments, and its priorities when replay is prioritized."""
    agent = engine.agent.member(s)
    out = {f"online.{k}": v for k, v in agent.online.params.items()}
    out |= {f"target.{k}": v for k, v in agent.target.params.items()}
    out |= {f"optim.{k}": v for k, v in agent.optimizer.state_dict().items()}
    if isinstance(engine.replay, PrioritizedReplay):
        out["priorities"] = engine.replay.tree.state_dict()["priorities"][s]
        out["max_priority"] = engine.replay.max_priority[s]
    return out


def figures(summary: dict) -> dict:
    """A summary without its timings (which differ between any two runs)."""
    return {k: v for k, v in summary.items() if "seconds" not in k}


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("option", list(OPTIONS))
def test_seed_k_alone_and_in_a_batch_are_bit_identical_with_each_option(option, dtype):
    config = DQNConfig(**TINY, **OPTIONS[option], dtype=dtype)
    alone, batch = cartpole(config, [7]), cartpole(config, [3, 7, 11])
    rows_alone, rows_batch = alone.run(480), batch.run(480)
    assert alone.agent.n_updates > 0
    assert_same(member_state(alone, 0), member_state(batch, 1))
    assert figures(rows_alone[0]) == figures(rows_batch[1])
    assert not np.array_equal(member_state(batch, 0)["online.W1"], member_state(batch, 1)["online.W1"])


def test_prioritized_replay_moves_priorities_away_from_the_maximum():
    engine = cartpole(DQNConfig(**TINY, prioritized=True), [0, 1])
    engine.run(480)
    priorities = engine.replay.tree.state_dict()["priorities"]
    for s in range(2):
        stored = priorities[s][: len(engine.replay.buffers[s])]
        assert (stored > 0).all()
        assert len(np.unique(stored)) > len(stored) // 4  # set from TD errors, not all the new-transition maximum
        assert stored.max() <= engine.replay.max_priority[s]


@pytest.mark.parametrize("option", ["prioritized", "both"])
def test_a_prioritized_run_resumes_bit_identically_through_a_checkpoint(option, tmp_path):
    config = DQNConfig(**TINY, **OPTIONS[option], dtype="float64")
    straight = cartpole(config, [2, 5])
    straight.run(320)
    straight.run(640)
    first = cartpole(config, [2, 5])
    first.run(320)
    arrays, meta = flatten_state(first.state_dict())
    path = save_checkpoint(tmp_path / "ckpt.npz", config, 4, 2, arrays, {"state": meta})
    assert any(k.endswith("priorities") for k in arrays)  # the tree is in the checkpoint
    ckpt = load_checkpoint(path)
    resumed = cartpole(config, [2, 5])
    resumed.load_state_dict(unflatten_state(ckpt.arrays, json.loads(json.dumps(ckpt.meta["state"]))))
    resumed.run(640)
    for s in range(2):
        assert_same(member_state(resumed, s), member_state(straight, s))
    assert resumed.replay.beta == straight.replay.beta


def test_beta_is_annealed_linearly_to_one_over_the_run():
    config = DQNConfig(**TINY, prioritized=True, prioritized_beta=0.2)
    engine = cartpole(config, [0])
    assert engine.replay.beta == 0.2
    engine.run(320)
    assert engine.replay.beta == pytest.approx(0.2 + 0.8 * 320 / 320)  # the last learning step was at step 320
    half = cartpole(config, [0])
    seen = []

    class Beta(Callback):
        def on_step(self, loop, steps_before):
            seen.append((loop.env_steps, half.replay.beta))

    half.callbacks.append(Beta())
    half.run(640)
    betas = [b for steps, b in seen if steps >= config.learning_starts and steps % config.train_freq == 0]
    assert betas == sorted(betas) and betas[-1] == pytest.approx(1.0)
    steps, beta = next((s, b) for s, b in seen if s == 320)
    assert beta == pytest.approx(0.2 + 0.8 * steps / 640)


# --- learning: the diagnostic environments' closed-form Q* --------------------------------------------------------

GAMMA, TOLERANCE = 0.9, 0.05


def diagnostic_config(**overrides) -> DQNConfig:
    """The learning tests' settings (tests/agents/loop/test_learning.py): exploration stays at 0.3 or more, mse."""
    base = dict(hidden_sizes=(32,), dtype="float64", gamma=GAMMA, learning_rate=3e-3, loss="mse", batch_size=32,
                buffer_size=5_000, learning_starts=100, epsilon_start=1.0, epsilon_end=0.3, epsilon_decay_steps=500,
                target_update_interval=50, eval_freq=0, n_envs=1, n_step=1, train_freq=1, gradient_steps=1)
    return DQNConfig(**(base | overrides))


def q_error(env_id: str, config: DQNConfig, steps: int, seeds: list[int]) -> list[float]:
    """Per member: max over (s, a) of |Q - Q*| / |Q*| after `steps` transitions."""
    engine = Engine(lambda n, rngs: envs.VecEnv(env_id, n, rngs), config, seeds, solve_threshold=None)
    engine.run(steps)
    diagnostic = envs.make_env(env_id).unwrapped
    q_star = diagnostic.optimal_q(config.gamma)
    errors = []
    for s in range(len(seeds)):
        q = engine.agent.member(s).q_values(diagnostic.state_observations())
        errors.append(float(np.max(np.abs(q - q_star) / np.abs(q_star))))
    return errors


@pytest.mark.slow
@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("env_id, steps", [("dqn_np/Chain-v0", 3_000), ("dqn_np/TwoArmedBandit-v0", 2_000)])
def test_each_option_converges_to_optimal_q(env_id, steps, option):
    errors = q_error(env_id, diagnostic_config(**OPTIONS[option]), steps, [0, 1, 2])
    assert max(errors) < TOLERANCE, errors


@pytest.mark.slow
@pytest.mark.parametrize("option", ["dueling", "prioritized"])
def test_the_q_check_catches_an_agent_that_learns_the_wrong_discount(option):
    # the same check on an agent trained with gamma 0.8 against Q* of gamma 0.9 must fail: the tolerance is tight
    config = diagnostic_config(**OPTIONS[option], gamma=0.8)
    engine_errors = []
    engine = Engine(lambda n, rngs: envs.VecEnv("dqn_np/Chain-v0", n, rngs), config, [0], solve_threshold=None)
    engine.run(3_000)
    chain = envs.make_env("dqn_np/Chain-v0").unwrapped
    q = engine.agent.member(0).q_values(chain.state_observations())
    engine_errors.append(float(np.max(np.abs(q - chain.optimal_q(GAMMA)) / chain.optimal_q(GAMMA))))
    q_own = np.max(np.abs(q - chain.optimal_q(0.8)) / chain.optimal_q(0.8))
    assert q_own < TOLERANCE < engine_errors[0]
