"""Tests for agents.data.replay: ring semantics, sampling (also into preallocated arrays), add_batch and write
equivalence, per-transition discounts, state round trip, validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.data.replay import Batch, ReplayBuffer

OBS_DIM = 3
GAMMA = 0.9


def transition(t: int, obs_dim: int = OBS_DIM) -> tuple[np.ndarray, int, float, np.ndarray, float]:
    """Transition number ``t``; every field encodes ``t`` so rows can be matched across fields.

    Its discount is 0 (terminated) for every third t, else ``GAMMA**k`` of a 1- or 2-step return.
    """
    obs = np.full(obs_dim, float(t))
    return obs, t % 5, 10.0 * t, obs + 0.5, 0.0 if t % 3 == 0 else GAMMA ** (t % 3)


def transitions(ts: range, obs_dim: int = OBS_DIM) -> tuple[np.ndarray, ...]:
    """Stacked ``transition(t)`` for each t: obs (k, obs_dim), actions (k,), rewards (k,), next_obs, discounts."""
    rows = [transition(t, obs_dim) for t in ts]
    if not rows:
        return np.zeros((0, obs_dim)), np.zeros(0, np.int64), np.zeros(0), np.zeros((0, obs_dim)), np.zeros(0)
    obs, actions, rewards, next_obs, discounts = zip(*rows, strict=True)
    return np.stack(obs), np.array(actions), np.array(rewards), np.stack(next_obs), np.array(discounts)


def filled(capacity: int, n: int, seed: int = 0, dtype=np.float32) -> ReplayBuffer:
    """Buffer with transitions 0..n-1 added one at a time."""
    buffer = ReplayBuffer(capacity, OBS_DIM, np.random.default_rng(seed), dtype=dtype)
    for t in range(n):
        buffer.add(*transition(t))
    return buffer


def assert_batches_equal(a: Batch, b: Batch) -> None:
    for name, x, y in zip(Batch._fields, a, b, strict=True):
        if x is None or y is None:  # weights and indices: only a prioritized sampler fills them
            assert x is y, name
            continue
        np.testing.assert_array_equal(x, y, err_msg=name)


def assert_states_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# --- ring semantics and sampling -------------------------------------------------------------------


def test_wraparound_overwrites_oldest():
    buffer = filled(capacity=3, n=5)  # transitions 0, 1 overwritten by 3, 4
    assert len(buffer) == 3
    state = buffer.state_dict()
    np.testing.assert_array_equal(state["obs"][:, 0], [3.0, 4.0, 2.0])
    np.testing.assert_array_equal(state["rewards"], [30.0, 40.0, 20.0])
    assert int(state["pos"]) == 2
    sampled = set(buffer.sample(500).obs[:, 0].tolist())
    assert sampled == {2.0, 3.0, 4.0}


def test_sampling_only_returns_filled_slots():
    # ids 1..3 so an unfilled (all-zero) slot cannot pass as an added transition
    buffer = ReplayBuffer(10, OBS_DIM, np.random.default_rng(0))
    for t in (1, 2, 3):
        buffer.add(*transition(t))
    batch = buffer.sample(1000)
    ids = batch.obs[:, 0]
    assert set(ids.tolist()) == {1.0, 2.0, 3.0}
    for t in (1, 2, 3):  # every field of a sampled row comes from the same transition
        rows = ids == t
        obs, action, reward, next_obs, discount = transition(t)
        np.testing.assert_array_equal(batch.obs[rows], np.broadcast_to(obs, (rows.sum(), OBS_DIM)))
        assert (batch.actions[rows] == action).all()
        assert (batch.rewards[rows] == reward).all()
        np.testing.assert_array_equal(batch.next_obs[rows], np.broadcast_to(next_obs, (rows.sum(), OBS_DIM)))
        assert (batch.discounts[rows] == np.float32(discount)).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_sample_shapes_and_dtypes(dtype, batch_size):
    buffer = filled(capacity=16, n=5, dtype=dtype)
    batch = buffer.sample(batch_size)
    assert isinstance(batch, Batch)
    assert batch.obs.shape == (batch_size, OBS_DIM) and batch.obs.dtype == dtype
    assert batch.actions.shape == (batch_size,) and batch.actions.dtype == np.int64
    assert batch.rewards.shape == (batch_size,) and batch.rewards.dtype == dtype
    assert batch.next_obs.shape == (batch_size, OBS_DIM) and batch.next_obs.dtype == dtype
    assert batch.discounts.shape == (batch_size,) and batch.discounts.dtype == dtype
    assert buffer.capacity == 16 and buffer.obs_dim == OBS_DIM and buffer.dtype == dtype


def test_sample_returns_fresh_arrays():
    buffer = filled(capacity=4, n=4)
    before = buffer.state_dict()
    batch = buffer.sample(8)
    assert batch.weights is None and batch.indices is None  # uniform sampling: every sample weighs 1
    for array in batch[:5]:
        for ring in (buffer._obs, buffer._actions, buffer._rewards, buffer._next_obs, buffer._discounts):
            assert not np.shares_memory(array, ring)
        array[...] = -1
    assert_states_equal(buffer.state_dict(), before)


def test_sample_uses_rng_integers_over_len():
    buffer = filled(capacity=10, n=6, seed=5)
    expected_idx = np.random.default_rng(5).integers(0, 6, size=32)
    np.testing.assert_array_equal(buffer.sample(32).obs[:, 0], expected_idx.astype(np.float32))


# --- sampling into preallocated arrays ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_empty_batch_shapes_and_dtypes(dtype, batch_size):
    buffer = ReplayBuffer(16, OBS_DIM, np.random.default_rng(0), dtype=dtype)
    batch = buffer.empty_batch(batch_size)
    assert isinstance(batch, Batch)
    assert batch.obs.shape == (batch_size, OBS_DIM) and batch.obs.dtype == dtype
    assert batch.actions.shape == (batch_size,) and batch.actions.dtype == np.int64
    assert batch.rewards.shape == (batch_size,) and batch.rewards.dtype == dtype
    assert batch.next_obs.shape == (batch_size, OBS_DIM) and batch.next_obs.dtype == dtype
    assert batch.discounts.shape == (batch_size,) and batch.discounts.dtype == dtype
    other = buffer.empty_batch(batch_size)  # each call gets its own arrays, none of them the buffer's
    rings = (buffer._obs, buffer._actions, buffer._rewards, buffer._next_obs, buffer._discounts)
    for array, array2 in zip(batch, other, strict=True):
        assert not np.shares_memory(array, array2)
        assert not any(np.shares_memory(array, ring) for ring in rings)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sample_into_out_matches_a_fresh_sample_and_returns_out(dtype):
    fresh, into = filled(8, 11, seed=4, dtype=dtype), filled(8, 11, seed=4, dtype=dtype)  # twin generators
    out = into.empty_batch(16)
    ids = [id(array) for array in out[:5]]
    for _ in range(3):  # the same arrays are refilled on every call
        expected = fresh.sample(16)
        got = into.sample(16, out=out)
        assert got is out
        assert [id(array) for array in got[:5]] == ids
        assert_batches_equal(got, expected)
        for name, x, y in zip(Batch._fields[:5], got[:5], expected[:5], strict=True):
            assert x.dtype == y.dtype, name


def test_sample_into_out_leaves_the_buffer_alone():
    buffer = filled(capacity=4, n=4)
    before = buffer.state_dict()
    out = buffer.sample(8, out=buffer.empty_batch(8))
    for array in out[:5]:
        array[...] = -1
    assert_states_equal(buffer.state_dict(), before)


@pytest.mark.parametrize("rows", [4, 9])
def test_sample_refuses_out_with_another_number_of_rows(rows):
    buffer = filled(capacity=8, n=5)
    out = buffer.empty_batch(rows)
    before = buffer.rng.bit_generator.state
    with pytest.raises(ValueError, match=rf"out must be an empty_batch\(8\) .* got obs \({rows}, {OBS_DIM}\)"):
        buffer.sample(8, out=out)
    assert buffer.rng.bit_generator.state == before  # a refused call draws nothing


def test_sample_refuses_out_of_another_dtype():
    buffer = filled(capacity=8, n=5)
    other = ReplayBuffer(8, OBS_DIM, np.random.default_rng(0), dtype=np.float64).empty_batch(8)
    with pytest.raises(ValueError, match="out must be an empty_batch"):
        buffer.sample(8, out=other)


# --- add_batch equals sequential adds ----------------------------------------------------------------


def check_add_batch_matches_adds(capacity: int, prefill: int, k: int) -> None:
    sequential = filled(capacity, prefill, seed=3)
    batched = filled(capacity, prefill, seed=3)
    for t in range(prefill, prefill + k):
        sequential.add(*transition(t))
    batched.add_batch(*transitions(range(prefill, prefill + k)))
    assert len(batched) == len(sequential)
    assert_states_equal(batched.state_dict(), sequential.state_dict())
    np.testing.assert_array_equal(batched._obs, sequential._obs)  # also the unfilled tail
    if len(batched):
        assert_batches_equal(batched.sample(16), sequential.sample(16))


@pytest.mark.parametrize(
    ("capacity", "prefill", "k"),
    [
        (5, 0, 3),  # no wrap
        (5, 0, 5),  # exactly fills
        (5, 3, 4),  # wraps across the end
        (5, 5, 5),  # full, replaces everything, starting mid-ring
        (5, 2, 12),  # k > capacity: only the last 5 kept
        (5, 4, 0),  # empty batch is a no-op
        (1, 0, 3),  # capacity 1
    ],
)
def test_add_batch_matches_sequential_adds(capacity, prefill, k):
    check_add_batch_matches_adds(capacity, prefill, k)


@settings(max_examples=60, deadline=None)
@given(capacity=st.integers(1, 9), prefill=st.integers(0, 20), k=st.integers(0, 25))
def test_add_batch_matches_sequential_adds_property(capacity, prefill, k):
    check_add_batch_matches_adds(capacity, prefill, k)


def check_write_matches_add_batch(capacity: int, prefill: int, k: int) -> None:
    checked = filled(capacity, prefill, seed=3)
    unchecked = filled(capacity, prefill, seed=3)
    rows = transitions(range(prefill, prefill + k))
    checked.add_batch(*rows)
    unchecked.write(*rows)
    assert len(unchecked) == len(checked)
    assert_states_equal(unchecked.state_dict(), checked.state_dict())
    for ring in ("_obs", "_actions", "_rewards", "_next_obs", "_discounts"):  # also the unfilled tail
        np.testing.assert_array_equal(getattr(unchecked, ring), getattr(checked, ring), err_msg=ring)
    assert_batches_equal(unchecked.sample(16), checked.sample(16))


@pytest.mark.parametrize(
    ("capacity", "prefill", "k"),
    [(5, 0, 3), (5, 0, 5), (5, 3, 4), (5, 5, 5), (5, 2, 12), (1, 0, 3), (1, 4, 1)],  # as above; write needs k >= 1
)
def test_write_matches_add_batch_on_valid_data(capacity, prefill, k):
    check_write_matches_add_batch(capacity, prefill, k)


@settings(max_examples=40, deadline=None)
@given(capacity=st.integers(1, 9), prefill=st.integers(0, 20), k=st.integers(1, 25))
def test_write_matches_add_batch_property(capacity, prefill, k):
    check_write_matches_add_batch(capacity, prefill, k)


def test_add_batch_then_add_continues_at_right_slot():
    buffer = ReplayBuffer(4, OBS_DIM, np.random.default_rng(0))
    buffer.add_batch(*transitions(range(6)))  # keeps 2, 3, 4, 5; pos 2
    buffer.add(*transition(6))
    np.testing.assert_array_equal(buffer.state_dict()["obs"][:, 0], [4.0, 5.0, 6.0, 3.0])


# --- reproducibility ---------------------------------------------------------------------------------


def test_same_seed_gives_identical_batches():
    a, b = filled(10, 8, seed=42), filled(10, 8, seed=42)
    for _ in range(3):
        assert_batches_equal(a.sample(32), b.sample(32))


def test_different_seed_gives_different_batches():
    a, b = filled(10, 8, seed=1), filled(10, 8, seed=2)
    assert not np.array_equal(a.sample(32).obs, b.sample(32).obs)


# --- discounts: gamma**k, 0 at termination ----------------------------------------------------------


def test_truncation_keeps_its_discount_and_termination_stores_zero():
    # (terminated, truncated) as returned by env.step: only termination zeroes the discount; a time-limit
    # truncation still bootstraps from next_obs with gamma.
    steps = [(False, False), (True, False), (False, True), (True, True)]
    discounts = [0.0 if terminated else GAMMA for terminated, _truncated in steps]
    buffer = ReplayBuffer(8, OBS_DIM, np.random.default_rng(0))
    for t, discount in enumerate(discounts):
        obs, action, reward, next_obs, _ = transition(t)
        buffer.add(obs, action, reward, next_obs, discount)
    buffer.add_batch(*transitions(range(4))[:4], np.array(discounts))
    expected = np.array([GAMMA, 0.0, GAMMA, 0.0] * 2, np.float32)
    np.testing.assert_array_equal(buffer.state_dict()["discounts"], expected)
    batch = buffer.sample(200)
    np.testing.assert_array_equal(batch.discounts, np.where(batch.obs[:, 0] % 2 == 1, 0.0, GAMMA).astype(np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gamma_to_the_k_is_stored_exactly_in_the_buffer_dtype(dtype):
    gamma3 = 0.99**3  # the discount of a 3-step transition whose episode goes on
    buffer = ReplayBuffer(4, OBS_DIM, np.random.default_rng(0), dtype=dtype)
    obs, action, reward, next_obs, _ = transition(1)
    buffer.add(obs, action, reward, next_obs, gamma3)
    buffer.add_batch(obs[None], np.array([action]), np.array([reward]), next_obs[None], np.array([gamma3]))
    stored = buffer.state_dict()["discounts"]
    assert stored.dtype == dtype
    assert stored.tolist() == [np.dtype(dtype).type(gamma3)] * 2  # rounded once, to the buffer's dtype
    assert (buffer.sample(8).discounts == np.dtype(dtype).type(gamma3)).all()


@pytest.mark.parametrize(
    "discount",
    [0.0, 0.99, 1.0, 0, 1, np.float32(0.5), np.float64(0.99**3), np.array(0.99), np.array(1)],
    ids=repr,
)
def test_discount_accepts_real_scalars_in_the_unit_interval(discount):
    buffer = ReplayBuffer(2, OBS_DIM, np.random.default_rng(0), dtype=np.float64)
    obs, action, reward, next_obs, _ = transition(1)
    buffer.add(obs, action, reward, next_obs, discount)
    assert buffer.state_dict()["discounts"].tolist() == [float(discount)]


@pytest.mark.parametrize("discounts", [[0.0, 0.99, 1.0, 0.5], [0, 1, 1, 0]], ids=["float", "int"])
def test_add_batch_accepts_discounts_in_the_unit_interval(discounts):
    buffer = ReplayBuffer(4, OBS_DIM, np.random.default_rng(0), dtype=np.float64)
    buffer.add_batch(**{**good_add_batch(), "discounts": np.array(discounts)})
    assert buffer.state_dict()["discounts"].tolist() == [float(d) for d in discounts]


# --- state_dict round trip ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 3, 10, 23])  # empty, partial, exactly full, wrapped
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_dict_round_trip_through_npz(tmp_path, n, dtype):
    rng = np.random.default_rng(7)
    source = ReplayBuffer(10, OBS_DIM, rng, dtype=dtype)
    for t in range(n):
        source.add(*transition(t))
    np.savez(tmp_path / "replay.npz", **source.state_dict())
    rng_state = rng.bit_generator.state

    restored_rng = np.random.default_rng(999)
    restored_rng.bit_generator.state = rng_state
    restored = ReplayBuffer(10, OBS_DIM, restored_rng, dtype=dtype)
    for t in range(100, 112):  # stale contents must not survive the load
        restored.add(*transition(t))
    with np.load(tmp_path / "replay.npz", allow_pickle=False) as data:
        restored.load_state_dict(dict(data))

    assert len(restored) == len(source) == min(n, 10)
    assert_states_equal(restored.state_dict(), source.state_dict())
    np.testing.assert_array_equal(restored._next_obs, source._next_obs)  # unfilled slots cleared too
    for t in range(n, n + 4):  # later adds land in the same slots
        source.add(*transition(t))
        restored.add(*transition(t))
        assert_batches_equal(restored.sample(16), source.sample(16))


def test_state_dict_holds_only_plain_arrays():
    state = filled(5, 7).state_dict()
    assert set(state) == {"obs", "actions", "rewards", "next_obs", "discounts", "pos", "size", "capacity"}
    for key, value in state.items():
        assert type(value) is np.ndarray and value.dtype != object, key
    for key in ("pos", "size", "capacity"):
        assert state[key].shape == () and state[key].dtype == np.int64
    assert (int(state["pos"]), int(state["size"]), int(state["capacity"])) == (2, 5, 5)


def test_state_dict_is_a_snapshot():
    buffer = filled(4, 2)
    state = buffer.state_dict()
    buffer.add(*transition(9))
    state["obs"][:] = -1.0
    assert int(state["size"]) == 2 and len(buffer) == 3
    assert buffer.state_dict()["obs"][0, 0] == 0.0


def corrupt(state: dict[str, np.ndarray], key: str, value) -> dict[str, np.ndarray]:
    state = dict(state)
    state[key] = value
    return state


@pytest.mark.parametrize(
    ("make_bad", "match"),
    [
        (lambda s: corrupt(s, "obs", s["obs"].astype(np.float64)), r"state\['obs'\].*float32.*float64"),
        (lambda s: corrupt(s, "next_obs", s["next_obs"][:, :2]), r"state\['next_obs'\].*\(4, 2\)"),
        (lambda s: corrupt(s, "actions", s["actions"].astype(np.int32)), r"state\['actions'\].*int32"),
        (lambda s: corrupt(s, "rewards", s["rewards"][:3]), r"state\['rewards'\]"),
        (lambda s: corrupt(s, "rewards", s["rewards"].tolist()), r"state\['rewards'\].*list"),
        (lambda s: corrupt(s, "capacity", np.array(8, np.int64)), r"state\['capacity'\].*6.*got 8"),
        (lambda s: corrupt(s, "size", np.array(9, np.int64)), r"state\['size'\]"),
        (lambda s: corrupt(s, "pos", np.array(1, np.int64)), r"state\['pos'\] must be 4"),
        (lambda s: corrupt(s, "pos", np.array([4], np.int64)), r"state\['pos'\].*0-d int64"),
        (lambda s: corrupt(s, "actions", np.array([0, -1, 0, 0], np.int64)), r"state\['actions'\] must be >= 0"),
        (lambda s: corrupt(s, "rewards", np.array([0, np.nan, 0, 0], np.float32)), r"state\['rewards'\].*finite"),
        (lambda s: corrupt(s, "discounts", np.full(4, 1.5, np.float32)), r"state\['discounts'\] must be in \[0, 1\]"),
        (lambda s: corrupt(s, "discounts", np.array([0, -0.5, 0, 0], np.float32)), r"state\['discounts'\].*-0.5"),
        (lambda s: corrupt(s, "discounts", np.array([0, 0, np.nan, 0], np.float32)), r"state\['discounts'\].*nan"),
        (lambda s: corrupt(s, "discounts", s["discounts"].astype(np.float64)), r"state\['discounts'\].*float64"),
        (lambda s: {k: v for k, v in s.items() if k != "next_obs"}, r"missing \['next_obs'\]"),
        (lambda s: corrupt(s, "rng", np.array(0)), r"unexpected \['rng'\]"),
        (  # a version-1 state (terminated flags instead of discounts) is not silently taken for discounts
            lambda s: {**{k: v for k, v in s.items() if k != "discounts"}, "terminated": np.zeros(4, np.float32)},
            r"missing \['discounts'\], unexpected \['terminated'\]",
        ),
    ],
)
def test_load_state_dict_rejects_bad_state_and_leaves_buffer_unchanged(make_bad, match):
    good = filled(6, 4).state_dict()  # size 4, pos 4
    buffer = filled(6, 6, seed=0)
    before = buffer.state_dict()
    with pytest.raises(ValueError, match=match):
        buffer.load_state_dict(make_bad(good))
    assert_states_equal(buffer.state_dict(), before)


def test_load_state_dict_rejects_other_obs_dim_and_dtype():
    state = filled(6, 4).state_dict()
    with pytest.raises(ValueError, match=r"state\['obs'\]"):
        ReplayBuffer(6, OBS_DIM + 1, np.random.default_rng(0)).load_state_dict(state)
    with pytest.raises(ValueError, match=r"state\['obs'\].*float64"):
        ReplayBuffer(6, OBS_DIM, np.random.default_rng(0), dtype=np.float64).load_state_dict(state)


# --- input validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"capacity": 0}, ValueError, "capacity must be >= 1, got 0"),
        ({"capacity": -3}, ValueError, "capacity must be >= 1, got -3"),
        ({"capacity": 2.5}, TypeError, "capacity must be an integer, got 2.5"),
        ({"capacity": True}, TypeError, "capacity must be an integer"),
        ({"obs_dim": 0}, ValueError, "obs_dim must be >= 1, got 0"),
        ({"obs_dim": "4"}, TypeError, "obs_dim must be an integer"),
        ({"rng": np.random.RandomState(0)}, TypeError, "rng must be a numpy.random.Generator, got RandomState"),
        ({"rng": None}, TypeError, "rng must be a numpy.random.Generator"),
        ({"dtype": np.int32}, ValueError, "dtype must be float32 or float64, got int32"),
        ({"dtype": np.float16}, ValueError, "dtype must be float32 or float64, got float16"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, error, match):
    args = {"capacity": 4, "obs_dim": OBS_DIM, "rng": np.random.default_rng(0), **kwargs}
    with pytest.raises(error, match=match):
        ReplayBuffer(**args)


def test_constructor_accepts_numpy_integers():
    buffer = ReplayBuffer(np.int64(4), np.int32(OBS_DIM), np.random.default_rng(0))
    assert buffer.capacity == 4 and type(buffer.capacity) is int and buffer.obs_dim == OBS_DIM


def good_add() -> dict:
    obs, action, reward, next_obs, discount = transition(1)
    return {"obs": obs, "action": action, "reward": reward, "next_obs": next_obs, "discount": discount}


@pytest.mark.parametrize(
    ("field", "value", "error", "match"),
    [
        ("obs", np.zeros(OBS_DIM + 1), ValueError, r"obs must have shape \(3,\), got \(4,\)"),
        ("obs", np.zeros((1, OBS_DIM)), ValueError, r"obs must have shape \(3,\), got \(1, 3\)"),
        ("obs", 0.0, ValueError, r"obs must have shape \(3,\), got \(\)"),
        ("next_obs", np.zeros(2), ValueError, r"next_obs must have shape \(3,\), got \(2,\)"),
        ("obs", np.array([0.0, np.inf, 0.0]), ValueError, r"obs must be finite, got inf at index \(1,\)"),
        ("next_obs", np.array([np.nan, 0.0, 0.0]), ValueError, "next_obs must be finite, got nan"),
        ("obs", np.array(["a", "b", "c"]), TypeError, "obs must be a real numeric array"),
        ("action", -1, ValueError, "action must be >= 0, got -1"),
        ("action", np.int64(-2), ValueError, "action must be >= 0, got -2"),
        ("action", 1.0, TypeError, "action must be an integer, got 1.0"),
        ("action", np.float32(1.0), TypeError, "action must be an integer"),
        ("action", True, TypeError, "action must be an integer, got bool"),
        ("reward", float("nan"), ValueError, "reward must be finite, got nan"),
        ("reward", np.float32(np.inf), ValueError, "reward must be finite, got inf"),
        ("reward", np.array([1.0]), ValueError, r"reward must be a real scalar, got an array of shape \(1,\)"),
        ("reward", "1.0", TypeError, "reward must be a real number"),
        ("discount", -0.1, ValueError, r"discount must be in \[0, 1\].*got -0.1"),
        ("discount", 1.5, ValueError, r"discount must be in \[0, 1\].*got 1.5"),
        ("discount", float(np.nextafter(1.0, 2.0)), ValueError, r"discount must be in \[0, 1\]"),
        ("discount", float("nan"), ValueError, r"discount must be in \[0, 1\].*got nan"),
        ("discount", np.float32(np.inf), ValueError, r"discount must be in \[0, 1\].*got inf"),
        ("discount", np.array([0.5]), ValueError, r"discount must be a real scalar, got an array of shape \(1,\)"),
        ("discount", None, TypeError, "discount must be a real number"),
        ("discount", "0.99", TypeError, "discount must be a real number"),
    ],
)
def test_add_rejects_bad_input_and_leaves_buffer_unchanged(field, value, error, match):
    buffer = filled(3, 5)  # full, so a partial write would corrupt a live slot
    before = buffer.state_dict()
    with pytest.raises(error, match=match):
        buffer.add(**{**good_add(), field: value})
    assert_states_equal(buffer.state_dict(), before)


def test_add_accepts_lists_and_numpy_scalars():
    buffer = ReplayBuffer(2, OBS_DIM, np.random.default_rng(0))
    buffer.add([1, 2, 3], np.int32(2), np.float32(0.5), (4.0, 5.0, 6.0), np.float16(0.25))
    state = buffer.state_dict()
    np.testing.assert_array_equal(state["obs"], [[1, 2, 3]])
    np.testing.assert_array_equal(state["next_obs"], [[4, 5, 6]])
    assert state["actions"].tolist() == [2] and state["rewards"].tolist() == [0.5]
    assert state["discounts"].tolist() == [0.25]


def good_add_batch(k: int = 4) -> dict:
    obs, actions, rewards, next_obs, discounts = transitions(range(k))
    return {"obs": obs, "actions": actions, "rewards": rewards, "next_obs": next_obs, "discounts": discounts}


@pytest.mark.parametrize(
    ("field", "value", "error", "match"),
    [
        ("obs", np.zeros((4, OBS_DIM + 1)), ValueError, r"obs must have shape \(k, 3\), got \(4, 4\)"),
        ("obs", np.zeros(OBS_DIM), ValueError, r"obs must have shape \(k, 3\), got \(3,\)"),
        ("next_obs", np.zeros((3, OBS_DIM)), ValueError, r"next_obs must have shape \(4, 3\).*got \(3, 3\)"),
        ("actions", np.zeros(5, np.int64), ValueError, r"actions must have shape \(4,\).*got \(5,\)"),
        ("rewards", np.zeros((4, 1)), ValueError, r"rewards must have shape \(4,\).*got \(4, 1\)"),
        ("discounts", np.zeros(3), ValueError, r"discounts must have shape \(4,\)"),
        ("actions", np.array([0, 1, -1, 0]), ValueError, "actions must be >= 0, got -1 at index 2"),
        ("actions", np.array([0.0, 1.0, 1.0, 0.0]), TypeError, "actions must have an integer dtype, got float64"),
        ("actions", np.array([True, False, True, True]), TypeError, "actions must have an integer dtype, got bool"),
        ("rewards", np.array([0.0, 0.0, 0.0, np.nan]), ValueError, r"rewards must be finite, got nan at index \(3,\)"),
        ("obs", np.full((4, OBS_DIM), -np.inf), ValueError, r"obs must be finite, got -inf at index \(0, 0\)"),
        ("next_obs", np.full((4, OBS_DIM), np.nan), ValueError, "next_obs must be finite"),
        ("discounts", np.array([0.0, 1.5, 0.0, 1.0]), ValueError, r"discounts must be in \[0, 1\].*got 1.5 at index 1"),
        ("discounts", np.array([0.0, 0.9, -0.1, 1.0]), ValueError, r"discounts must be in \[0, 1\].*-0.1 at index 2"),
        ("discounts", np.array([0.0, 0.9, 0.9, np.nan]), ValueError, r"discounts must be in \[0, 1\].*nan at index 3"),
        ("discounts", np.array(["a", "b", "c", "d"]), TypeError, "discounts must be a real numeric array"),
    ],
)
def test_add_batch_rejects_bad_input_and_leaves_buffer_unchanged(field, value, error, match):
    buffer = filled(3, 5)
    before = buffer.state_dict()
    with pytest.raises(error, match=match):
        buffer.add_batch(**{**good_add_batch(), field: value})
    assert_states_equal(buffer.state_dict(), before)


@pytest.mark.parametrize(
    ("batch_size", "error", "match"),
    [
        (0, ValueError, "batch_size must be >= 1, got 0"),
        (-4, ValueError, "batch_size must be >= 1, got -4"),
        (2.0, TypeError, "batch_size must be an integer, got 2.0"),
    ],
)
def test_sample_rejects_bad_batch_size(batch_size, error, match):
    with pytest.raises(error, match=match):
        filled(4, 2).sample(batch_size)


def test_sample_from_empty_buffer_raises():
    buffer = ReplayBuffer(4, OBS_DIM, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"cannot sample from an empty ReplayBuffer \(len 0\)"):
        buffer.sample(1)
    buffer.add_batch(**good_add_batch(0))  # an empty batch does not fill anything
    with pytest.raises(ValueError, match="empty ReplayBuffer"):
        buffer.sample(1)


def test_a_bool_discount_is_refused_since_an_old_terminated_flag_would_mean_the_opposite():
    buffer = ReplayBuffer(8, OBS_DIM, np.random.default_rng(0))
    with pytest.raises(TypeError, match="bool"):
        buffer.add(np.zeros(OBS_DIM), 0, 1.0, np.zeros(OBS_DIM), True)
    with pytest.raises(TypeError, match="bool array"):
        buffer.add_batch(np.zeros((2, OBS_DIM)), np.zeros(2, np.int64), np.ones(2), np.zeros((2, OBS_DIM)),
                         np.array([True, False]))
    assert len(buffer) == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("capacity", "obs_dim"), [(1, 1), (7, 4), (1000, 6)])
def test_nbytes_for_is_what_the_arrays_take(dtype, capacity, obs_dim):
    buffer = ReplayBuffer(capacity, obs_dim, np.random.default_rng(0), dtype)
    held = sum(getattr(buffer, f"_{k}").nbytes for k in ("obs", "actions", "rewards", "next_obs", "discounts"))
    assert ReplayBuffer.nbytes_for(capacity, obs_dim, dtype) == buffer.nbytes == held


def test_require_memory_names_both_figures(monkeypatch):
    import agents.data.replay as replay

    monkeypatch.setattr(replay, "available_memory", lambda: 1_000)
    replay.require_memory(1_000, "this")  # exactly what is there fits
    with pytest.raises(ValueError, match=r"^the buffer would need 1001 bytes \(0.0 GB\), but only 1000 bytes"):
        replay.require_memory(1_001, "the buffer")
    monkeypatch.undo()
    assert replay.available_memory() > 0  # MemAvailable, read from /proc/meminfo on Linux
