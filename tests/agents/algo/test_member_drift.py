"""A member of a stacked agent whose update goes non-finite keeps its exact state on that update and after it."""

import numpy as np
import pytest

from agents.config import DQNConfig
from agents.algo.dqn import DQNAgent
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
