"""Proportional prioritized replay: priorities, sampling in proportion to them, importance-sampling weights."""

import numpy as np
import pytest

from agents.data.prioritized import PrioritizedReplay

OBS = 3


def filled(S: int = 2, capacity: int = 20, n: int = 20, seed: int = 0, **kw) -> PrioritizedReplay:
    replay = PrioritizedReplay(capacity, OBS, [np.random.default_rng(seed + s) for s in range(S)], np.float64, **kw)
    for s in range(S):
        t = np.arange(n, dtype=np.float64)
        obs = np.repeat(t[:, None], OBS, axis=1) + 100 * s  # row i of member s holds 100 s + i everywhere
        replay.write(obs, np.zeros(n, np.int64), t, obs, np.full(n, 0.9), np.full(n, s))
    return replay


def test_new_transitions_get_the_largest_priority_seen():
    replay = filled(S=2, capacity=8, n=4)
    assert replay.tree.get(np.zeros(4, np.int64), np.arange(4)).tolist() == [1.0] * 4  # nothing seen yet: 1
    batch = replay.sample(4, replay.empty_batch(4))
    td = np.array([[3.0, 0.5, 0.5, 0.5], [0.1, 0.1, 0.1, 0.1]])
    replay.update_priorities(batch, td)
    assert replay.max_priority[0] == pytest.approx((3.0 + replay.eps) ** 0.6)
    replay.write(np.zeros((2, OBS)), np.zeros(2, np.int64), np.zeros(2), np.zeros((2, OBS)), np.ones(2),
                 np.array([0, 1]))
    assert replay.tree.get(np.array([0]), np.array([4]))[0] == replay.max_priority[0]
    assert replay.tree.get(np.array([1]), np.array([4]))[0] == 1.0  # member 1 never saw more than 1


def test_update_sets_priorities_from_td_errors_and_weights_follow_the_formula():
    replay = filled(S=1, capacity=10, n=10, alpha=0.7, beta=0.5, eps=0.01)
    batch = replay.sample(10, replay.empty_batch(10))
    td = np.linspace(0.0, 2.0, 10)[None]
    replay.update_priorities(batch, td)
    want = (np.abs(td[0]) + 0.01) ** 0.7
    got = replay.tree.get(np.zeros(10, np.int64), batch.indices[0])
    last = {int(i): w for i, w in zip(batch.indices[0], want, strict=True)}  # a slot sampled twice: its last row
    np.testing.assert_allclose(got, [last[int(i)] for i in batch.indices[0]], rtol=1e-15)
    batch = replay.sample(10, replay.empty_batch(10))
    p = replay.tree.get(np.zeros(10, np.int64), batch.indices[0])
    w = (10 * p / replay.tree.total()[0]) ** -0.5
    np.testing.assert_allclose(batch.weights[0], w / w.max(), rtol=1e-12)
    assert batch.weights.max() == 1.0
    rows = batch.obs[0, :, 0].astype(int)  # the gathered transitions are the sampled slots'
    assert rows.tolist() == batch.indices[0].tolist()


def test_sampling_frequencies_follow_the_priorities():
    """Chi-square with a fixed seed over 4,000 batches of 32 from 12 slots of known priorities."""
    replay = filled(S=1, capacity=12, n=12, alpha=1.0, eps=1e-9)
    td = np.arange(1.0, 13.0)  # slot i's priority is i + 1 (alpha 1)
    replay.tree.set(np.zeros(12, np.int64), np.arange(12), td)
    counts = np.zeros(12)
    out = replay.empty_batch(32)
    for _ in range(4000):
        counts += np.bincount(replay.sample(32, out).indices[0], minlength=12)
    expected = counts.sum() * td / td.sum()
    assert ((counts - expected) ** 2 / expected).sum() < 31.3  # chi-square 0.999 quantile, 11 dof


def test_a_stopped_member_is_neither_sampled_nor_updated():
    replay = filled(S=2)
    replay.active[1] = False
    before = replay.tree.priorities[1].copy()
    state = replay.buffers[1].rng.bit_generator.state
    batch = replay.sample(8, replay.empty_batch(8))
    replay.update_priorities(batch, np.full((2, 8), 5.0))
    np.testing.assert_array_equal(replay.tree.priorities[1], before)
    assert replay.buffers[1].rng.bit_generator.state == state
    assert not np.array_equal(replay.tree.priorities[0], before)


def test_a_non_finite_td_error_leaves_that_members_priorities_alone():
    replay = filled(S=2)
    batch = replay.sample(8, replay.empty_batch(8))
    before, top = replay.tree.priorities[1].copy(), replay.max_priority.copy()
    td = np.full((2, 8), 50.0)  # member 0's priorities rise above every earlier one
    td[1, 3] = np.nan
    replay.update_priorities(batch, td)
    np.testing.assert_array_equal(replay.tree.priorities[1], before)
    assert replay.max_priority[1] == top[1] and replay.max_priority[0] == pytest.approx((50.0 + replay.eps) ** 0.6)


def test_beta_anneals_to_one():
    replay = filled(S=1, beta=0.4)
    replay.set_progress(0.5)
    assert replay.beta == pytest.approx(0.7)
    replay.set_progress(2.0)
    assert replay.beta == 1.0


def test_state_round_trip_continues_the_same_draws():
    a = filled(S=2)
    a.update_priorities(a.sample(8, a.empty_batch(8)), np.arange(16.0).reshape(2, 8))
    b = filled(S=2, seed=5)
    b.load_state_dict(a.state_dict())
    for _ in range(3):
        x, y = a.sample(8, a.empty_batch(8)), b.sample(8, b.empty_batch(8))
        np.testing.assert_array_equal(x.indices, y.indices)
        np.testing.assert_array_equal(x.weights, y.weights)


@pytest.mark.parametrize("kw, match", [({"alpha": 1.5}, "alpha must be in"), ({"beta": -0.1}, "beta must be in"),
                                       ({"eps": 0.0}, "eps must be > 0"), ({"alpha": float("nan")}, "finite")])
def test_bad_settings_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        PrioritizedReplay(10, OBS, [np.random.default_rng(0)], **kw)
