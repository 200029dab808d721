"""Tests for agents.config (DQNConfig validation, JSON, field docs) and agents.algo.schedules."""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.algo.schedules import linear_epsilon
from agents.config import DQNConfig, field_docs
from agents.run.checkpoint import load_checkpoint, save_checkpoint

FIELDS = [f.name for f in dataclasses.fields(DQNConfig)]
BOOL_FIELDS = {"double_dqn", "dueling", "prioritized", "stop_when_solved"}

# (field, bad value, words the message must contain besides "DQNConfig.<field>" and repr(bad value))
WRONG_TYPE = [
    ("hidden_sizes", "64", ["sequence of positive integers"]),
    ("hidden_sizes", None, ["sequence of positive integers"]),
    ("hidden_sizes", 64, ["sequence of positive integers"]),
    ("hidden_sizes", (64, 2.5), ["positive integers"]),
    ("hidden_sizes", [True], ["positive integers"]),
    ("dtype", 32, ["a string"]),
    ("optimizer", None, ["a string"]),
    ("learning_rate", "0.001", ["a finite number"]),
    ("learning_rate", True, ["a finite number"]),
    ("momentum", [0.9], ["a finite number"]),
    ("gamma", None, ["a finite number"]),
    ("n_step", 1.5, ["an integer"]),
    ("n_step", True, ["an integer"]),
    ("n_step", "3", ["an integer"]),
    ("n_envs", 2.0, ["an integer"]),
    ("n_envs", True, ["an integer"]),
    ("batch_size", 32.0, ["an integer"]),
    ("batch_size", True, ["an integer"]),
    ("buffer_size", "big", ["an integer"]),
    ("learning_starts", 1.5, ["an integer"]),
    ("train_freq", None, ["an integer"]),
    ("gradient_steps", 1.0, ["an integer"]),
    ("target_update_interval", "500", ["an integer"]),
    ("tau", "1", ["a finite number"]),
    ("double_dqn", 1, ["true or false"]),
    ("double_dqn", "yes", ["true or false"]),
    ("dueling", 0, ["true or false"]),
    ("prioritized", "true", ["true or false"]),
    ("prioritized_alpha", "0.6", ["a finite number"]),
    ("prioritized_beta", None, ["a finite number"]),
    ("prioritized_eps", [1e-6], ["a finite number"]),
    ("loss", 1, ["a string"]),
    ("huber_delta", None, ["a finite number"]),
    ("max_grad_norm", "10", ["a finite number"]),
    ("epsilon_start", None, ["a finite number"]),
    ("epsilon_end", "0", ["a finite number"]),
    ("epsilon_decay_steps", 1e4, ["an integer"]),
    ("eval_freq", 2.0, ["an integer"]),
    ("eval_episodes", None, ["an integer"]),
    ("stop_when_solved", "yes", ["true or false"]),
]
OUT_OF_RANGE = [
    ("hidden_sizes", (64, 0), ["positive integers"]),
    ("hidden_sizes", (), ["one or more positive integers"]),
    ("hidden_sizes", [-3], ["positive integers"]),
    ("dtype", "float16", ["float32", "float64"]),
    ("optimizer", "rmsprop", ["adam", "sgd"]),
    ("learning_rate", 0, ["> 0"]),
    ("learning_rate", -1e-3, ["> 0"]),
    ("learning_rate", math.nan, ["a finite number"]),
    ("learning_rate", math.inf, ["a finite number"]),
    ("learning_rate", 10**400, ["a finite number"]),
    ("momentum", 1.0, ["in [0, 1)"]),
    ("momentum", -0.1, ["in [0, 1)"]),
    ("gamma", 1.5, ["in [0, 1]"]),
    ("gamma", -0.01, ["in [0, 1]"]),
    ("n_step", 0, [">= 1"]),
    ("n_step", -1, [">= 1"]),
    ("n_envs", 0, [">= 1"]),
    ("n_envs", -4, [">= 1"]),
    ("batch_size", 0, [">= 1"]),
    ("buffer_size", 0, [">= 1"]),
    ("learning_starts", -1, [">= 0"]),
    ("train_freq", 0, [">= 1"]),
    ("gradient_steps", -2, [">= 1"]),
    ("target_update_interval", 0, [">= 1"]),
    ("tau", 0.0, ["in (0, 1]"]),
    ("tau", 1.5, ["in (0, 1]"]),
    ("prioritized_alpha", 1.5, ["in [0, 1]"]),
    ("prioritized_alpha", -0.1, ["in [0, 1]"]),
    ("prioritized_beta", 1.01, ["in [0, 1]"]),
    ("prioritized_beta", -1.0, ["in [0, 1]"]),
    ("prioritized_eps", 0.0, ["> 0"]),
    ("prioritized_eps", -1e-6, ["> 0"]),
    ("loss", "mae", ["mse", "huber"]),
    ("huber_delta", 0.0, ["> 0"]),
    ("huber_delta", -math.inf, ["a finite number"]),
    ("max_grad_norm", -1.0, [">= 0"]),
    ("epsilon_start", 1.1, ["in [0, 1]"]),
    ("epsilon_end", -0.5, ["in [0, 1]"]),
    ("epsilon_decay_steps", -1, [">= 0"]),
    ("eval_freq", -1, [">= 0"]),
    ("eval_episodes", 0, [">= 1"]),
]


def test_defaults_are_valid():
    cfg = DQNConfig()  # the values themselves are README's table, checked by tests/docs/test_readme.py
    assert DQNConfig.from_json(cfg.to_json()) == cfg


def test_fields_and_their_order():
    # The order is the order of --help and of the README table: n_step and n_envs follow gamma.
    assert FIELDS == [
        "hidden_sizes", "dtype", "optimizer", "learning_rate", "momentum", "gamma", "n_step", "n_envs", "batch_size",
        "buffer_size", "learning_starts", "train_freq", "gradient_steps", "target_update_interval", "tau",
        "double_dqn", "dueling", "prioritized", "prioritized_alpha", "prioritized_beta", "prioritized_eps", "loss",
        "huber_delta", "max_grad_norm", "epsilon_start", "epsilon_end", "epsilon_decay_steps",
        "eval_freq", "eval_episodes", "stop_when_solved",
    ]


def test_the_tables_cover_every_field():
    assert {f for f, _, _ in WRONG_TYPE} == set(FIELDS)
    assert {f for f, _, _ in OUT_OF_RANGE} == set(FIELDS) - BOOL_FIELDS  # a bool has no out-of-range value


@pytest.mark.parametrize("field, bad, words", WRONG_TYPE + OUT_OF_RANGE,
                         ids=[f"{f}={v!r}"[:40] for f, v, _ in WRONG_TYPE + OUT_OF_RANGE])
def test_bad_value_is_rejected_with_a_message_naming_field_value_and_allowed(field, bad, words):
    with pytest.raises(ValueError) as info:
        DQNConfig(**{field: bad})
    message = str(info.value)
    assert f"DQNConfig.{field} " in message
    assert repr(bad) in message
    for word in words:
        assert word in message


@pytest.mark.parametrize("batch_size, buffer_size, ok", [(64, 64, True), (64, 63, False), (1, 1, True)])
def test_batch_size_must_fit_the_buffer(batch_size, buffer_size, ok):
    kwargs = dict(batch_size=batch_size, buffer_size=buffer_size, learning_starts=batch_size, n_step=1)
    if ok:
        assert DQNConfig(**kwargs).buffer_size == buffer_size
    else:
        with pytest.raises(ValueError, match=r"DQNConfig\.batch_size must be <= buffer_size \(63\), got 64"):
            DQNConfig(**kwargs)


@pytest.mark.parametrize("n_step, buffer_size, ok", [(64, 64, True), (65, 64, False), (1, 1, True), (2, 1, False)])
def test_n_step_must_fit_the_buffer(n_step, buffer_size, ok):
    kwargs = dict(n_step=n_step, buffer_size=buffer_size, batch_size=1, learning_starts=1)
    if ok:
        assert DQNConfig(**kwargs).n_step == n_step
    else:
        match = rf"DQNConfig\.n_step must be <= buffer_size \({buffer_size}\), got {n_step}"
        with pytest.raises(ValueError, match=match):
            DQNConfig(**kwargs)


@pytest.mark.parametrize("learning_starts, ok", [(32, True), (31, False), (0, False)])
def test_learning_starts_must_cover_a_batch(learning_starts, ok):
    kwargs = dict(batch_size=32, learning_starts=learning_starts)
    if ok:
        assert DQNConfig(**kwargs).learning_starts == learning_starts
    else:
        match = rf"DQNConfig\.learning_starts must be >= batch_size \(32\), got {learning_starts}"
        with pytest.raises(ValueError, match=match):
            DQNConfig(**kwargs)


def test_config_is_frozen():
    cfg = DQNConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.gamma = 0.5  # type: ignore[misc]


def test_hidden_sizes_list_becomes_a_tuple():
    assert DQNConfig(hidden_sizes=[8, 4]).hidden_sizes == (8, 4)


def test_json_round_trip_of_non_defaults():
    cfg = DQNConfig(hidden_sizes=(7, 5, 3), dtype="float64", optimizer="sgd", learning_rate=0.1 + 0.2, momentum=0.9,
                    gamma=1, batch_size=3, buffer_size=3, learning_starts=3, double_dqn=False, loss="mse", tau=0.005,
                    max_grad_norm=0.0, epsilon_decay_steps=0, eval_freq=0, n_step=3, n_envs=8)
    text = cfg.to_json()
    assert '"hidden_sizes": [7, 5, 3]' in text
    back = DQNConfig.from_json(text)
    assert back == cfg
    assert back.hidden_sizes == (7, 5, 3) and back.learning_rate == 0.1 + 0.2  # exact, not rounded
    assert (back.n_step, back.n_envs) == (3, 8)


def test_from_json_fills_fields_it_lacks_with_the_defaults():
    # A config without n_step and n_envs takes today's defaults; reading a dqn-np 0.1 checkpoint (one step, one env)
    # is the checkpoint loader's business (tests/agents/test_checkpoint.py).
    old = {k: v for k, v in json.loads(DQNConfig(gamma=0.9).to_json()).items() if k not in ("n_step", "n_envs")}
    cfg = DQNConfig.from_json(json.dumps(old))
    assert (cfg.n_step, cfg.n_envs, cfg.gamma) == (DQNConfig().n_step, DQNConfig().n_envs, 0.9)


@pytest.mark.parametrize("text, words", [
    ('{"gamma": 0.9, "learnig_rate": 0.1}', ["unknown fields", "learnig_rate"]),
    ("[1, 2]", ["must be an object"]),
    ('{"gamma": 2.0}', ["DQNConfig.gamma", "in [0, 1]"]),
    ('{"learning_rate": Infinity}', ["DQNConfig.learning_rate", "finite"]),
    ("not json", []),
])
def test_from_json_rejects(text, words):
    with pytest.raises(ValueError) as info:
        DQNConfig.from_json(text)
    for word in words:
        assert word in str(info.value)


def test_field_docs_cover_every_field():
    docs = field_docs()
    assert list(docs) == FIELDS
    for name, doc in docs.items():
        assert isinstance(doc, str) and len(doc) > 5, name


# --- property-based: every invalid value is a ValueError naming the field; every valid config round-trips -----

INT_FIELDS = {  # field: smallest allowed value
    "n_step": 1, "n_envs": 1, "batch_size": 1, "buffer_size": 1, "learning_starts": 0, "train_freq": 1,
    "gradient_steps": 1, "target_update_interval": 1, "epsilon_decay_steps": 0, "eval_freq": 0, "eval_episodes": 1,
}
FLOAT_FIELDS = {  # field: (low, high, low allowed, high allowed)
    "learning_rate": (0.0, math.inf, False, False), "momentum": (0.0, 1.0, True, False),
    "gamma": (0.0, 1.0, True, True), "tau": (0.0, 1.0, False, True), "huber_delta": (0.0, math.inf, False, False),
    "max_grad_norm": (0.0, math.inf, True, False), "epsilon_start": (0.0, 1.0, True, True),
    "epsilon_end": (0.0, 1.0, True, True), "prioritized_alpha": (0.0, 1.0, True, True),
    "prioritized_beta": (0.0, 1.0, True, True), "prioritized_eps": (0.0, math.inf, False, False),
}
CHOICE_FIELDS = {"dtype": ("float32", "float64"), "optimizer": ("adam", "sgd"), "loss": ("mse", "huber")}


def test_property_tables_cover_every_field():
    assert set(INT_FIELDS) | set(FLOAT_FIELDS) | set(CHOICE_FIELDS) | {"hidden_sizes"} | BOOL_FIELDS == set(FIELDS)


junk = st.one_of(st.none(), st.text(max_size=5), st.lists(st.integers(), max_size=3),
                 st.dictionaries(st.text(), st.integers(), max_size=2))
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])


def invalid_value(field: str) -> st.SearchStrategy:
    if field in INT_FIELDS:
        return st.one_of(junk, st.booleans(), st.floats(), st.integers(max_value=INT_FIELDS[field] - 1))
    if field in FLOAT_FIELDS:
        low, high, low_ok, high_ok = FLOAT_FIELDS[field]
        below = st.floats(max_value=low, exclude_max=low_ok)  # includes -inf and, via st.floats, nan elsewhere
        above = st.floats(min_value=high, exclude_min=high_ok) if math.isfinite(high) else st.nothing()
        return st.one_of(junk, st.booleans(), non_finite, below, above, st.integers(min_value=2**1024),
                         st.integers(max_value=math.ceil(low) - (0 if not low_ok else 1)))
    if field in CHOICE_FIELDS:
        return st.one_of(st.none(), st.integers(), st.floats(), st.lists(st.text(max_size=3), max_size=2),
                         st.text().filter(lambda s: s not in CHOICE_FIELDS[field]))
    if field in BOOL_FIELDS:
        return st.one_of(junk, st.integers(), st.floats())
    assert field == "hidden_sizes"
    bad_width = st.one_of(st.integers(max_value=0), st.booleans(), st.floats(), st.text(max_size=2), st.none())
    return st.one_of(st.none(), st.text(), st.integers(), st.floats(), st.just(()), st.just([]),
                     st.lists(st.integers(1, 64), max_size=3).flatmap(
                         lambda good: bad_width.map(lambda bad: [*good, bad])))


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(FIELDS).flatmap(lambda f: st.tuples(st.just(f), invalid_value(f))))
def test_property_invalid_values_raise_value_error_naming_the_field(field_and_value):
    field, value = field_and_value
    with pytest.raises(ValueError) as info:  # never TypeError, OverflowError, ...
        DQNConfig(**{field: value})
    assert f"DQNConfig.{field} " in str(info.value)


def finite_in(low: float, high: float, low_ok: bool, high_ok: bool) -> st.SearchStrategy:
    floats = st.floats(min_value=low, max_value=high if math.isfinite(high) else None, exclude_min=not low_ok,
                       exclude_max=not high_ok and math.isfinite(high), allow_nan=False, allow_infinity=False)
    ints = st.integers(min_value=math.floor(low) + (0 if low_ok else 1),
                       max_value=(math.ceil(high) - (0 if high_ok else 1)) if math.isfinite(high) else 10**6)
    return st.one_of(floats, ints)


@st.composite
def valid_configs(draw: st.DrawFn) -> DQNConfig:
    batch_size = draw(st.integers(1, 512))
    buffer_size = draw(st.integers(batch_size, 10**7))
    kwargs = {
        "hidden_sizes": tuple(draw(st.lists(st.integers(1, 256), min_size=1, max_size=4))),
        "batch_size": batch_size,
        "buffer_size": buffer_size,
        "learning_starts": draw(st.integers(batch_size, 10**7)),
        "n_step": draw(st.integers(1, buffer_size)),
        **{field: draw(st.booleans()) for field in sorted(BOOL_FIELDS)},
    }
    for field, low in INT_FIELDS.items():
        kwargs.setdefault(field, draw(st.integers(low, 10**9)))
    for field, bounds in FLOAT_FIELDS.items():
        kwargs[field] = draw(finite_in(*bounds))
    for field, choices in CHOICE_FIELDS.items():
        kwargs[field] = draw(st.sampled_from(choices))
    if kwargs["stop_when_solved"] and kwargs["eval_freq"] == 0:  # stopping when solved needs evaluations
        kwargs["eval_freq"] = draw(st.integers(1, 10**9))
    return DQNConfig(**kwargs)


def test_stop_when_solved_without_evaluations_is_refused():
    with pytest.raises(ValueError, match=r"DQNConfig.stop_when_solved needs evaluations .*eval_freq=0"):
        DQNConfig(stop_when_solved=True, eval_freq=0)
    assert DQNConfig(stop_when_solved=True, eval_freq=1).stop_when_solved


@settings(max_examples=60, deadline=None)
@given(valid_configs())
def test_property_valid_configs_round_trip_through_json_and_checkpoints(cfg):
    assert DQNConfig.from_json(cfg.to_json()) == cfg
    with tempfile.TemporaryDirectory() as tmp:
        path = save_checkpoint(Path(tmp) / "c.npz", cfg, obs_dim=3, n_actions=2, arrays={"x": np.arange(3.0)})
        ckpt = load_checkpoint(path)
    assert ckpt.config == cfg
    assert (ckpt.obs_dim, ckpt.n_actions) == (3, 2)
    np.testing.assert_array_equal(ckpt.arrays["x"], np.arange(3.0))


# --- epsilon schedule --------------------------------------------------------------------------------------


@pytest.mark.parametrize("start, end, decay_steps", [(1.0, 0.05, 1000), (0.5, 0.5, 10), (0.1, 0.9, 4)])
def test_linear_epsilon(start, end, decay_steps):
    assert linear_epsilon(0, start, end, decay_steps) == start
    assert linear_epsilon(decay_steps // 2, start, end, decay_steps) == pytest.approx(
        start + (end - start) * (decay_steps // 2) / decay_steps)
    assert linear_epsilon(decay_steps, start, end, decay_steps) == end
    assert linear_epsilon(10 * decay_steps + 7, start, end, decay_steps) == end
    values = [linear_epsilon(s, start, end, decay_steps) for s in range(decay_steps + 2)]
    steps = np.diff(values)
    assert (steps <= 0).all() if end <= start else (steps >= 0).all()  # monotone towards `end`


def test_linear_epsilon_midpoint():
    assert linear_epsilon(500, 1.0, 0.0, 1000) == 0.5


@pytest.mark.parametrize("step", [0, 1, 100])
def test_linear_epsilon_zero_decay_is_end(step):
    assert linear_epsilon(step, 1.0, 0.05, 0) == 0.05


def test_linear_epsilon_rejects_negative_step():
    with pytest.raises(ValueError, match="step must be >= 0"):
        linear_epsilon(-1, 1.0, 0.05, 10)
