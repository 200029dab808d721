"""A member of a stacked agent whose update goes non-finite keeps its exact state on that update and after it."""

import numpy as np
import pytest

from agents.algo.dqn import DQNAgent
from agents.config import DQNConfig
from agents.data.replay import Batch


def _state(agent: DQNAgent, s: int) -> dict[str, np.ndarray]:
    """Member s's online and target parameters and optimizer moments, copied."""
    out = {f"online.{k}": v[s].copy() for k, v in agent.online.params.items()}
    out.update({f"target.{k}": v[s].copy() for k, v in agent.target.params.items()})
    for slot, arrays in agent.optimizer.state.items():
        out.update({f"{slot}.{k}": v[s].copy() for k, v in arrays.items()})
    return out


def _batch(rng: np.random.Generator, S: int, B: int, bad: int | None, what: str) -> Batch:
    obs = rng.normal(size=(S, B, 4))
    rewards = rng.normal(size=(S, B))
    next_obs = rng.normal(size=(S, B, 4))
    if bad is not None:
        if what == "reward":
            rewards[bad, 3] = np.nan
        else:
            next_obs[bad, 5, 1] = np.inf
    return Batch(obs, rng.integers(0, 2, size=(S, B)), rewards, next_obs, np.full((S, B), 0.9))


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("what", ["reward", "next_obs"])
@pytest.mark.parametrize("first_bad_update", [0, 3])
def test_a_member_going_non_finite_keeps_its_state_on_that_update_and_after(optimizer, what, first_bad_update):
    config = DQNConfig(hidden_sizes=(8,), dtype="float64", optimizer=optimizer, momentum=0.5 * (optimizer == "sgd"),
                       batch_size=16, learning_starts=16, target_update_interval=2, tau=0.5)
    agent = DQNAgent(4, 2, config, [np.random.default_rng(s) for s in (1, 2, 3)])
    rng = np.random.default_rng(0)
    for _ in range(first_bad_update):
        assert agent.update(_batch(rng, 3, 16, None, what))["finite"].all()
    before = _state(agent, 1)
    others = _state(agent, 0)
    metrics = agent.update(_batch(rng, 3, 16, 1, what))  # member 1's batch is non-finite
    assert metrics["finite"].tolist() == [True, False, True]
    for k, v in _state(agent, 1).items():  # moments created by this very step start (and stay) at zero
        np.testing.assert_array_equal(v, before.get(k, np.zeros_like(v)),
                                      err_msg=f"member 1's {k} moved on the update that diverged")
    before = _state(agent, 1)
    assert any(not np.array_equal(v, others[k]) for k, v in _state(agent, 0).items() if k.startswith("online"))
    for _ in range(4):  # later updates, whatever member 1's batches hold, never move it again
        agent.update(_batch(rng, 3, 16, 1 if _ % 2 else None, what))
    for k, v in _state(agent, 1).items():
        np.testing.assert_array_equal(v, before[k], err_msg=f"member 1's {k} moved after it diverged")
    assert agent.frozen.tolist() == [False, True, False]


def _overflow_batch(rng: np.random.Generator, S: int, B: int, big: int | None) -> Batch:
    """Small finite rewards, but member `big`'s are 1e150: a finite gradient whose SGD step (at lr 1e160) overflows."""
    rewards = rng.normal(size=(S, B)) * 1e-3
    if big is not None:
        rewards[big] = 1e150
    obs, next_obs = rng.normal(size=(S, B, 4)), rng.normal(size=(S, B, 4))
    return Batch(obs, rng.integers(0, 2, size=(S, B)), rewards, next_obs, np.full((S, B), 0.9))


OVERFLOW = dict(hidden_sizes=(8,), dtype="float64", optimizer="sgd", learning_rate=1e-2, momentum=0.5,
                max_grad_norm=0.0, loss="mse", batch_size=16, learning_starts=16)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("first_bad_update", [0, 2])
def test_a_member_whose_step_overflows_with_a_finite_gradient_is_put_back_and_frozen(first_bad_update):
    agent = DQNAgent(4, 2, DQNConfig(**OVERFLOW), [np.random.default_rng(s) for s in (1, 2, 3)])
    twin = DQNAgent(4, 2, DQNConfig(**OVERFLOW), [np.random.default_rng(s) for s in (1, 2, 3)])
    rng, twin_rng = np.random.default_rng(0), np.random.default_rng(0)
    for _ in range(first_bad_update):  # ordinary steps first: the momentum buffer then holds something to keep
        agent.update(_overflow_batch(rng, 3, 16, None))
        twin.update(_overflow_batch(twin_rng, 3, 16, None))
    agent.optimizer.lr = twin.optimizer.lr = 1e160  # member 0's and 2's steps stay finite (about 1e159)
    before = _state(agent, 1)
    metrics = agent.update(_overflow_batch(rng, 3, 16, 1))
    twin_batch = _overflow_batch(twin_rng, 3, 16, 1)
    assert metrics["finite"].tolist() == [True, False, True]
    assert agent.frozen_at == {1: first_bad_update + 1}
    for k, v in _state(agent, 1).items():  # bit for bit the state before the step that overflowed
        np.testing.assert_array_equal(v, before.get(k, np.zeros_like(v)), err_msg=f"member 1's {k}")
    assert np.isfinite(agent.online.flat_params).all() and np.isfinite(agent.target.flat_params).all()
    # the others take exactly the step they would have taken had member 1's batch been harmless
    twin_batch.rewards[1] = 0.0
    twin.update(twin_batch)
    for s in (0, 2):
        for k, v in _state(agent, s).items():
            np.testing.assert_array_equal(v, _state(twin, s)[k], err_msg=f"member {s}'s {k}")


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_an_unstacked_agent_whose_step_overflows_raises_and_keeps_every_parameter():
    from agents.algo.dqn import DivergenceError

    agent = DQNAgent(4, 2, DQNConfig(**OVERFLOW), np.random.default_rng(1))
    rng = np.random.default_rng(0)
    agent.update(Batch(*(a[0] for a in _overflow_batch(rng, 1, 16, None)[:5])))
    agent.optimizer.lr = 1e160
    params = {k: v.copy() for k, v in agent.online.params.items()}
    optim = agent.optimizer.state_dict()
    with pytest.raises(DivergenceError, match="non-finite parameters after the optimizer step at update 2"):
        agent.update(Batch(*(a[0] for a in _overflow_batch(rng, 1, 16, 0)[:5])))
    for k, v in agent.online.params.items():
        np.testing.assert_array_equal(v, params[k], err_msg=k)
    after = agent.optimizer.state_dict()
    assert after.keys() == optim.keys() and all(np.array_equal(after[k], optim[k]) for k in optim)
    assert agent.n_updates == 1


@pytest.mark.parametrize(("overrides", "guarded"), [
    ({}, False),  # Adam, clipped at 10: a step moves a parameter by at most ~7.3 lr
    ({"max_grad_norm": 0.0}, True),  # unclipped: v = g^2 can overflow
    ({"optimizer": "sgd", "learning_rate": 1e-2, "momentum": 0.9}, False),  # at most lr G / (1 - m) = 1
    ({"optimizer": "sgd", "learning_rate": 1e40, "dtype": "float32"}, True),  # 1e41: near float32's 3.4e38
    ({"optimizer": "sgd", "learning_rate": 1e40, "dtype": "float64"}, False),
])
def test_the_step_is_guarded_exactly_where_the_config_lets_it_overflow(overrides, guarded):
    from agents.algo.dqn import step_can_overflow

    config = DQNConfig(**overrides)
    assert step_can_overflow(config) is guarded
    agent = DQNAgent(4, 2, config, [np.random.default_rng(0)])
    agent.update(_overflow_batch(np.random.default_rng(1), 1, 128, None))
    assert (len(agent._pre) > 0) is guarded  # the backup is taken only where it can matter
