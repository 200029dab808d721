"""The sum tree of prioritized replay: its sums stay the sums of their leaves, and `find` inverts the prefix sum."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.data.sumtree import SumTree, block_sums


def check_sums(tree: SumTree) -> None:
    """Every block's total is the sum of its leaves (to the rounding of b additions: BLAS may add in another order
    than np.sum), and each member's total is the sum of its leaves."""
    np.testing.assert_allclose(tree.totals, tree.priorities.sum(axis=2), rtol=tree.block * 2.3e-16, atol=0)
    np.testing.assert_allclose(tree.total(), tree.priorities.reshape(tree.members, -1).sum(axis=1), rtol=1e-12)
    assert (tree.priorities.reshape(tree.members, -1)[:, tree.capacity:] == 0).all()  # padding never written


@settings(max_examples=60, deadline=None)
@given(members=st.integers(1, 3), capacity=st.integers(1, 300), block=st.integers(1, 40),
       updates=st.lists(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 299),
                                           st.floats(0, 1e3, allow_nan=False)), min_size=1, max_size=40),
                        min_size=1, max_size=6))
def test_sums_hold_under_random_batched_updates(members, capacity, block, updates):
    tree = SumTree(members, capacity, block)
    expected = np.zeros((members, capacity))
    for batch in updates:
        m = np.array([e[0] % members for e in batch])
        s = np.array([e[1] % capacity for e in batch])
        p = np.array([e[2] for e in batch])
        tree.set(m, s, p)
        for mi, si, pi in zip(m, s, p, strict=True):  # sequential writes: the last of a duplicate wins
            expected[mi, si] = pi
        np.testing.assert_array_equal(tree.priorities.reshape(members, -1)[:, :capacity], expected)
        check_sums(tree)


def test_block_totals_have_the_same_bits_whichever_rows_they_are_summed_with():
    """Totals scale every draw: a block's total summed alone, in a batch of any size, or rebuilt on load must be the
    same float, or seed k in a batch would drift from seed k alone (or a resumed run from an unbroken one)."""
    rng = np.random.default_rng(3)
    rows = rng.random((997, 32)) * 10.0 ** rng.uniform(-3, 0, (997, 32))
    together = block_sums(rows)
    apart = np.concatenate([block_sums(rows[i:i + 7]) for i in range(0, 997, 7)])
    alone = np.array([block_sums(rows[i:i + 1])[0] for i in range(997)])
    np.testing.assert_array_equal(together, apart)
    np.testing.assert_array_equal(together, alone)
    tree = SumTree(1, 997 * 32, block=32)
    tree.set(np.zeros(997 * 32, np.int64), np.arange(997 * 32), rows.reshape(-1))
    np.testing.assert_array_equal(tree.totals[0], together)


def test_duplicates_keep_the_last_priority_whatever_their_order():
    tree = SumTree(2, 10, 4)
    tree.set(np.array([1, 0, 1, 1]), np.array([3, 3, 3, 5]), np.array([1.0, 2.0, 7.0, 4.0]))
    assert tree.get(np.array([1, 0, 1]), np.array([3, 3, 5])).tolist() == [7.0, 2.0, 4.0]
    check_sums(tree)


@settings(max_examples=40, deadline=None)
@given(capacity=st.integers(1, 500), block=st.integers(1, 64), seed=st.integers(0, 2**32 - 1))
def test_find_inverts_the_prefix_sum_and_never_returns_a_zero_priority(capacity, block, seed):
    rng = np.random.default_rng(seed)
    tree = SumTree(3, capacity, block)
    p = rng.random((3, capacity)) * (rng.random((3, capacity)) > 0.3)  # about a third are zero
    p[:, rng.integers(capacity)] = 0.5  # every member has a positive slot
    tree.set(np.repeat(np.arange(3), capacity), np.tile(np.arange(capacity), 3), p.reshape(-1))
    members = rng.integers(0, 3, 400)
    cum = np.cumsum(p, axis=1)
    u = rng.random(400) * cum[members, -1]
    got = tree.find(members, u)
    want = np.array([np.searchsorted(cum[m], x, side="right") for m, x in zip(members, u, strict=True)])
    np.testing.assert_array_equal(got, want)
    assert (p[members, got] > 0).all()
    edge = tree.find(np.arange(3), cum[:, -1])  # u at the total (rounding): the last positive slot
    assert [int(np.flatnonzero(p[m] > 0)[-1]) for m in range(3)] == edge.tolist()


def test_find_never_returns_a_zero_priority_slot_even_when_rounding_points_at_one():
    """Running sums that rounding made unequal across a zero leaf (as a BLAS summing in another order can): the
    zero slot gives way to the positive slot before it. Negative control: the raw leaf search would pick it."""
    tree = SumTree(1, 8, 4)
    tree.set(np.zeros(8, np.int64), np.arange(8), np.array([1.0, 0.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0]))
    tree._upper[0, 1] = np.nextafter(1.0, 2.0)  # running sum 1 = p_0 (1 + 2^-52): just above running sum 0
    u = np.array([1.0])  # lands exactly between the two running sums
    rows = tree.priorities[0, :1] @ tree._upper
    assert np.count_nonzero(rows[0] <= u[0]) == 1  # the unguarded search would return slot 1
    assert tree.find(np.zeros(1, np.int64), u).tolist() == [0]
    empty = SumTree(1, 8, 4)  # no positive slot at all: slot 0 (the sampler never asks for this)
    assert empty.find(np.zeros(1, np.int64), np.zeros(1)).tolist() == [0]


def test_sampling_frequencies_match_the_priorities():
    """Chi-square test with a fixed seed: 200,000 proportional draws over 50 slots of known priorities."""
    rng = np.random.default_rng(7)
    p = rng.random(50) + 0.05
    tree = SumTree(1, 50, 8)
    tree.set(np.zeros(50, np.int64), np.arange(50), p)
    n = 200_000
    slots = tree.find(np.zeros(n, np.int64), rng.random(n) * tree.total()[0])
    observed = np.bincount(slots, minlength=50)
    expected = n * p / p.sum()
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert chi2 < 85.4  # the 0.999 quantile of chi-square with 49 degrees of freedom
    # negative control: uniform draws over the same slots are rejected by the same test
    uniform = np.bincount(rng.integers(0, 50, n), minlength=50)
    assert ((uniform - expected) ** 2 / expected).sum() > 85.4


def test_state_round_trip_rebuilds_the_sums():
    rng = np.random.default_rng(0)
    tree = SumTree(2, 100, 16)
    tree.set(np.repeat([0, 1], 100), np.tile(np.arange(100), 2), rng.random(200))
    other = SumTree(2, 100, 16)
    other.load_state_dict(tree.state_dict())
    np.testing.assert_array_equal(other.priorities, tree.priorities)
    np.testing.assert_array_equal(other.totals, tree.totals)


@pytest.mark.parametrize("bad", [np.full((2, 112), -1.0), np.full((2, 112), np.nan), np.zeros((2, 96)),
                                 np.zeros((2, 112), np.float32)])
def test_load_refuses_bad_leaves(bad):
    tree = SumTree(2, 100, 16)
    with pytest.raises(ValueError, match="sum tree priorities"):
        tree.load_state_dict({"priorities": bad})
