"""Stopped members leave the compute: with `stop_when_solved` (and on divergence) the stacked parts are rebuilt for
the live members only, and nothing changes for anyone. Member k of a batch whose neighbours stop is bit for bit its
single run (which stops when it solves too); a batch resumes bit-identically from a checkpoint taken after members
left, and a checkpoint saved before members could leave (no `live`) still loads, its stopped members leaving then."""

from __future__ import annotations

import numpy as np
import pytest
from statecheck import assert_states_equal

import envs
from agents.config import DQNConfig
from agents.loop import Callback, Engine
from agents.run.checkpoint import flatten_state, load_checkpoint, save_checkpoint, unflatten_state

CARTPOLE = "CartPole-v1"
SEEDS = [0, 1, 2, 3, 4, 5]
THRESHOLD = 30.0  # easy on purpose: seeds 1, 3 and 4 solve at 100-200 steps, the others never within 1,500
TIMING_KEYS = ("train_seconds", "solved_at_seconds", "eval_seconds", "phase_seconds", "wall_seconds")


def make_env(n_envs: int, rngs) -> envs.VecEnv:
    return envs.VecEnv(CARTPOLE, n_envs, rngs)


def config(**overrides) -> DQNConfig:
    base = dict(dtype="float64", hidden_sizes=(16,), batch_size=16, buffer_size=2_000, n_envs=2, learning_starts=64,
                train_freq=2, gradient_steps=1, target_update_interval=50, epsilon_decay_steps=500, eval_freq=100,
                eval_episodes=20, learning_rate=1e-3, n_step=3, stop_when_solved=True)
    return DQNConfig(**{**base, **overrides})


def untimed(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in TIMING_KEYS}


class LiveCounts(Callback):
    """How many members the parts hold after each step."""

    def __init__(self) -> None:
        self.counts: list[int] = []

    def on_step(self, loop, steps_before: int) -> None:
        self.counts.append(len(loop.agent.rng))


@pytest.mark.parametrize("prioritized", [False, True])
def test_members_that_solve_leave_and_every_member_is_its_single_run(prioritized):
    cfg = config(prioritized=prioritized)
    counts = LiveCounts()
    batch = Engine(make_env, cfg, SEEDS, solve_threshold=THRESHOLD, callbacks=[counts])
    summaries = batch.run(1_500)
    solved = [s for s, summary in enumerate(summaries) if summary["stopped_solved"]]
    assert solved and len(solved) < len(SEEDS)  # some left, some trained to the end
    assert batch.live.tolist() == [s for s in range(len(SEEDS)) if s not in solved]
    assert batch.agent.members == len(batch.replay.buffers) == len(batch.live)  # the parts hold the live only
    assert batch.env.n_envs == 2 * len(batch.live) and batch.evaluator.env.n_envs == 20 * len(batch.live)
    assert counts.counts[0] == len(SEEDS) > counts.counts[-1] == len(batch.live)
    for s in solved:
        assert summaries[s]["status"] == "completed" and summaries[s]["error"] is None
        assert summaries[s]["env_steps"] == summaries[s]["solved_at_step"] < 1_500  # it ended where it solved
        assert batch.stopped[s] == f"solved at env step {summaries[s]['solved_at_step']}"
    for s, seed in enumerate(SEEDS):
        single = Engine(make_env, cfg, [seed], solve_threshold=THRESHOLD)
        alone = single.run(1_500)[0]
        assert untimed(summaries[s]) == untimed(alone), seed
        assert_states_equal(batch.member_agent(s).state_dict(), single.member_agent(0).state_dict())
        np.testing.assert_array_equal(batch.evaluator.best_params["W1"][s], single.evaluator.best_params["W1"][0])


@pytest.mark.parametrize("prioritized", [False, True])
def test_a_batch_resumes_bit_identically_after_members_left(tmp_path, prioritized):
    cfg = config(prioritized=prioritized)

    def build() -> Engine:
        return Engine(make_env, cfg, SEEDS, solve_threshold=THRESHOLD)

    uninterrupted = build()
    uninterrupted.run(600)
    assert 0 < len(uninterrupted.live) < len(SEEDS)  # members have left before the checkpoint
    arrays, meta = flatten_state(uninterrupted.state_dict())
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "batch.npz", cfg, 4, 2, arrays, meta))
    resumed = build()
    assert resumed.load_state_dict(unflatten_state(ckpt.arrays, ckpt.meta)) == []
    assert resumed.live.tolist() == uninterrupted.live.tolist()
    final_a, final_b = uninterrupted.run(1_500), resumed.run(1_500)
    assert [untimed(s) for s in final_a] == [untimed(s) for s in final_b]
    for s in range(len(SEEDS)):
        assert_states_equal(uninterrupted.member_agent(s).state_dict(), resumed.member_agent(s).state_dict())
    for a, b in zip(uninterrupted.replay.buffers, resumed.replay.buffers, strict=True):
        assert_states_equal(a.state_dict(), b.state_dict())
        assert a.rng.bit_generator.state == b.rng.bit_generator.state
    assert_states_equal(uninterrupted.collector.state_dict(), resumed.collector.state_dict())


def test_a_state_without_live_members_loads_and_its_stopped_members_leave_then():
    cfg = config(stop_when_solved=False)
    reference = Engine(make_env, cfg, SEEDS[:3], solve_threshold=None)
    reference.run(400)
    state = unflatten_state(*flatten_state(reference.state_dict()))
    for key in ("live", "retired", "stopped_solved"):  # what a checkpoint of the earlier format lacks
        del state[key]
    state["active"] = np.array([True, False, True])  # member 1 was stopped (frozen in the parts) when it was saved
    state["stopped"], state["stopped_at"] = {"1": "diverged for the test"}, {"1": [400, reference.agent.n_updates]}
    resumed = Engine(make_env, cfg, SEEDS[:3], solve_threshold=None)
    resumed.load_state_dict(state)
    assert resumed.live.tolist() == [0, 2] and resumed.agent.members == 2
    assert_states_equal(resumed.member_agent(1).state_dict(), reference.member_agent(1).state_dict())
    reference.run(800)  # member 1 trains on there; 0 and 2 never notice either way
    resumed.run(800)
    for s in (0, 2):
        assert_states_equal(resumed.member_agent(s).state_dict(), reference.member_agent(s).state_dict())
    assert resumed.summary(1)["status"] == "diverged" and resumed.summary(1)["env_steps"] == 400


def test_stop_when_solved_needs_evaluations_that_can_solve():
    with pytest.raises(ValueError, match="eval_episodes >= 20"):
        Engine(make_env, config(eval_episodes=5), [0])
