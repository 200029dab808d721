"""agents/stats.py: the IQM is scipy's trim_mean(0.25), the bootstrap is reproducible, stratified and sane in width,
the Wilson interval follows its formula, the seed aggregate counts censored times and survives JSON, and the plot is
a PNG or nothing."""

import importlib.util
import json
import math
import sys

import numpy as np
import pytest

import agents.run.stats as stats
from agents.run.stats import (
    aggregate_seeds,
    bootstrap_ci,
    iqm,
    iqm_band,
    normal_quantile,
    plot_aggregate,
    wilson_interval,
)

Z95 = 1.959963984540054  # Phi^-1(0.975), from tables
Z99 = 2.5758293035489004  # Phi^-1(0.995)


def trimmed_mean_by_sorting(row: np.ndarray) -> float:
    """The definition written out: sort, drop floor(n/4) from each end, average the rest."""
    s = sorted(row.tolist())
    k = math.floor(0.25 * len(s))
    kept = s[k:len(s) - k]
    return sum(kept) / len(kept)


def wilson_by_formula(k: int, n: int, z: float) -> tuple[float, float]:
    p = k / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return center - half, center + half


def summary(seed: int, step: int | None, best: float | None = 500.0, final: float | None = 480.0,
            status: str = "completed") -> dict:
    return {"seed": seed, "status": status, "solved": step is not None, "solved_at_step": step,
            "solved_at_seconds": None if step is None else step / 1000, "best_eval_mean": best,
            "final_eval_mean": final}


# ---------------------------------------------------------------- iqm


def test_iqm_of_eight_values_drops_two_from_each_end() -> None:
    x = np.array([100.0, -50.0, 3.0, 1.0, 4.0, 2.0, 7.0, 1000.0])  # sorted: -50 1 2 3 4 7 100 1000
    assert iqm(x) == pytest.approx((2 + 3 + 4 + 7) / 4)
    assert isinstance(iqm(x), float)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 13, 22])
def test_iqm_along_an_axis_matches_sorting_and_dropping_floor_n_over_4(n: int) -> None:
    x = np.random.default_rng(n).normal(size=(6, n)) * 10
    want = np.array([trimmed_mean_by_sorting(row) for row in x])
    np.testing.assert_allclose(iqm(x, axis=-1), want, rtol=1e-12)
    np.testing.assert_allclose(iqm(x.T, axis=0), want, rtol=1e-12)
    if n < 4:
        np.testing.assert_allclose(iqm(x), x.mean(axis=-1), rtol=1e-12)


def test_iqm_of_five_drops_one_from_each_end() -> None:
    assert iqm(np.array([9.0, 0.0, 5.0, 1.0, 2.0])) == pytest.approx((1 + 2 + 5) / 3)  # floor(1.25) = 1


@pytest.mark.parametrize("bad", [np.array([]), np.empty((3, 0)), np.array([1.0, np.nan, 2.0]),
                                 np.array([1.0, np.inf, 2.0, 3.0])])
def test_iqm_refuses_empty_and_non_finite(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="iqm needs"):
        iqm(bad)


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_same_generator_state_same_interval() -> None:
    x = np.random.default_rng(1).exponential(size=30)
    a = bootstrap_ci(x, np.median, np.random.default_rng(7), reps=500)
    b = bootstrap_ci(x, np.median, np.random.default_rng(7), reps=500)
    c = bootstrap_ci(x, np.median, np.random.default_rng(8), reps=500)
    assert a == b
    assert a[1:] != c[1:]


@pytest.mark.parametrize("statistic", [np.mean, np.median, iqm])
def test_bootstrap_interval_holds_the_point_estimate(statistic) -> None:
    rng = np.random.default_rng(3)
    for _ in range(5):
        x = rng.normal(size=40)
        estimate, lo, hi = bootstrap_ci(x, statistic, rng, reps=1000)
        assert estimate == pytest.approx(float(statistic(x)))
        assert lo <= estimate <= hi and lo < hi


def test_bootstrap_of_a_constant_collapses_to_it() -> None:
    assert bootstrap_ci(np.full(7, 3.5), iqm, np.random.default_rng(0), reps=200) == (3.5, 3.5, 3.5)


def test_bootstrap_of_the_mean_is_close_to_the_normal_interval() -> None:
    x = np.random.default_rng(11).normal(5.0, 2.0, size=100)
    estimate, lo, hi = bootstrap_ci(x, np.mean, np.random.default_rng(12), reps=10_000)
    half = Z95 * x.std(ddof=1) / math.sqrt(x.size)
    assert estimate == pytest.approx(x.mean())
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.2)
    assert (lo + hi) / 2 == pytest.approx(x.mean(), abs=0.2 * half)


def test_stratified_resamples_keep_every_stratum_count() -> None:
    x = np.array([1, 0, 0, 1, 0, 0, 0, 1, 0, 0], dtype=float)  # value = stratum: 3 ones, 7 zeros
    seen = []

    def mean(samples: np.ndarray, axis: int = -1) -> np.ndarray:
        seen.append(samples.mean(axis=axis))
        return samples.mean(axis=axis)

    estimate, lo, hi = bootstrap_ci(x, mean, np.random.default_rng(0), reps=300, strata=x.astype(int))
    resampled = np.concatenate(seen[1:])  # seen[0] is the point estimate
    assert resampled.size == 300
    np.testing.assert_allclose(resampled, 0.3)
    assert estimate == lo == hi == pytest.approx(0.3)
    _, lo, hi = bootstrap_ci(x, np.mean, np.random.default_rng(0), reps=300)  # one stratum: counts vary
    assert lo < 0.3 < hi


def test_stratified_resamples_draw_only_from_their_own_stratum() -> None:
    x = np.arange(12, dtype=float)
    strata = np.array([0, 1, 2] * 4)  # stratum s holds the values with value % 3 == s

    def residue_counts(samples: np.ndarray, axis: int = -1) -> np.ndarray:
        counts = np.stack([(samples % 3 == r).sum(axis=axis) for r in range(3)])
        assert (counts == 4).all()
        return samples.mean(axis=axis)

    bootstrap_ci(x, residue_counts, np.random.default_rng(5), reps=100, strata=strata)


def test_bootstrap_median_with_censored_values_gives_infinite_bounds() -> None:
    x = np.array([10.0, 20.0, 30.0, np.inf, np.inf])  # two of five never solved
    estimate, lo, hi = bootstrap_ci(x, np.median, np.random.default_rng(0), reps=2000)
    assert estimate == 30.0
    assert hi == math.inf and isinstance(hi, float)
    assert 10.0 <= lo <= 30.0 and not math.isnan(lo)
    all_failed = bootstrap_ci(np.full(4, np.inf), np.median, np.random.default_rng(0), reps=50)
    assert all_failed == (math.inf, math.inf, math.inf)


def test_bootstrap_in_chunks_covers_every_resample(monkeypatch) -> None:
    monkeypatch.setattr(stats, "MAX_BOOTSTRAP_ELEMENTS", 100)
    x = np.random.default_rng(2).normal(size=30)
    shapes = []

    def mean(samples: np.ndarray, axis: int = -1) -> np.ndarray:
        shapes.append(samples.shape)
        return samples.mean(axis=axis)

    _, lo, hi = bootstrap_ci(x, mean, np.random.default_rng(4), reps=1000)
    rows = [s[0] for s in shapes[1:]]
    assert sum(rows) == 1000 and max(rows) * 30 <= 100 and len(rows) > 1
    monkeypatch.undo()
    _, lo_whole, hi_whole = bootstrap_ci(x, np.mean, np.random.default_rng(4), reps=1000)
    width = hi_whole - lo_whole
    assert lo == pytest.approx(lo_whole, abs=0.15 * width) and hi == pytest.approx(hi_whole, abs=0.15 * width)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"x": np.array([])}, r"non-empty 1-D array, got shape \(0,\)"),
    ({"x": np.ones((2, 3))}, r"got shape \(2, 3\)"),
    ({"x": np.array([1.0, np.nan])}, "must not contain NaN"),
    ({"reps": 0}, "reps must be an integer >= 1, got 0"),
    ({"reps": 2.5}, "got 2.5"),
    ({"confidence": 1.0}, "confidence must be strictly between 0 and 1, got 1.0"),
    ({"confidence": 0}, "got 0"),
    ({"confidence": -0.5}, r"got -0\.5"),
    ({"strata": np.array([0, 1])}, r"strata must be \(3,\) integer labels.*shape \(2,\)"),
    ({"strata": np.array([0.0, 1.0, 1.0])}, "got float64"),
])
def test_bootstrap_refuses_bad_input_naming_it(kwargs: dict, match: str) -> None:
    args = {"x": np.array([1.0, 2.0, 3.0]), "statistic": np.mean, "rng": np.random.default_rng(0), **kwargs}
    with pytest.raises(ValueError, match=match):
        bootstrap_ci(**args)


def test_bootstrap_refuses_a_statistic_that_returns_nan() -> None:
    with pytest.raises(ValueError, match="statistic returned NaN"), np.errstate(invalid="ignore"):
        bootstrap_ci(np.array([-np.inf, np.inf]), np.mean, np.random.default_rng(0), reps=10)


def test_bootstrap_refuses_the_global_random_state() -> None:
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator, got RandomState"):
        bootstrap_ci(np.arange(5.0), np.mean, np.random.RandomState(0), reps=10)


def test_bootstrap_refuses_a_statistic_that_does_not_reduce_to_one_value_per_resample() -> None:
    with pytest.raises(ValueError, match="statistic must reduce samples"):
        bootstrap_ci(np.arange(5.0), lambda s, axis: s, np.random.default_rng(0), reps=10)


# ---------------------------------------------------------------- wilson


@pytest.mark.parametrize(("p", "z"), [(0.975, Z95), (0.995, Z99), (0.025, -Z95), (0.5, 0.0)])
def test_normal_quantile_is_accurate(p: float, z: float) -> None:
    assert abs(normal_quantile(p) - z) < 1e-9


def test_normal_quantile_inverts_the_normal_cdf_across_the_range() -> None:
    for p in [1e-12, 1e-6, 0.01, 0.2, 0.6, 0.9, 0.999999]:
        z = normal_quantile(p)
        assert 0.5 * math.erfc(-z / math.sqrt(2)) == pytest.approx(p, rel=1e-12)


@pytest.mark.parametrize(("k", "n"), [(0, 10), (100, 100), (50, 100), (3, 7), (1, 1)])
def test_wilson_interval_follows_its_formula(k: int, n: int) -> None:
    lo, hi = wilson_interval(k, n)
    want_lo, want_hi = wilson_by_formula(k, n, Z95)
    assert lo == pytest.approx(max(0.0, want_lo), abs=1e-12) and hi == pytest.approx(min(1.0, want_hi), abs=1e-12)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_wilson_interval_known_values() -> None:
    assert wilson_interval(0, 10)[0] == 0.0
    lo, hi = wilson_interval(100, 100)
    assert hi == 1.0 and lo == pytest.approx(0.963, abs=1e-3)
    assert wilson_interval(50, 100) == pytest.approx((0.404, 0.596), abs=1e-3)
    wide, narrow = wilson_interval(50, 100, 0.99), wilson_interval(50, 100, 0.9)
    assert wide[0] < 0.404 < narrow[0]


@pytest.mark.parametrize(("k", "n", "confidence", "match"), [
    (3, 0, 0.95, "n must be >= 1, got 0"),
    (11, 10, 0.95, "k must be between 0 and n = 10, got 11"),
    (-1, 10, 0.95, "got -1"),
    (1.5, 10, 0.95, "k must be an integer, got 1.5"),
    (1, 10, 1.5, "confidence must be strictly between 0 and 1, got 1.5"),
])
def test_wilson_interval_refuses_bad_input(k, n, confidence, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        wilson_interval(k, n, confidence)


# ---------------------------------------------------------------- aggregate_seeds


def test_aggregate_counts_unsolved_seeds_as_infinite_steps() -> None:
    runs = [summary(0, 400), summary(1, 100), summary(2, None, final=None, status="diverged"), summary(3, 300),
            summary(4, 200)]
    out = aggregate_seeds(runs, np.random.default_rng(0), reps=500)
    assert out["n_seeds"] == 5 and out["seeds"] == [0, 1, 2, 3, 4]
    assert out["failed_seeds"] == [2] and out["diverged_seeds"] == [2]
    frac = out["fraction_solved"]
    assert frac["value"] == pytest.approx(0.8) and (frac["solved"], frac["n"]) == (4, 5)
    assert frac["ci_wilson"] == pytest.approx(list(wilson_by_formula(4, 5, Z95)))
    assert frac["ci_bootstrap"][0] <= 0.8 <= frac["ci_bootstrap"][1]
    steps = out["steps_to_solve"]
    assert steps["median"]["value"] == 300  # median of 100 200 300 400 inf
    assert steps["n_solved"] == 4 and steps["values"] == [100, 200, 300, 400]
    assert steps["median"]["ci"][1] is None  # resamples with three or more failures have an infinite median
    assert out["seconds_to_solve"]["median"]["value"] == pytest.approx(0.3)
    assert out["final_eval_mean"]["n"] == 4 and out["best_eval_mean"]["n"] == 5
    assert out["best_eval_mean"]["median"] == {"value": 500.0, "ci": [500.0, 500.0]}
    assert out["bootstrap_reps"] == 500 and out["confidence"] == 0.95 and "Wilson" in out["method"]


def test_aggregate_eval_statistics_are_those_of_the_seeds_with_a_value() -> None:
    finals = [10.0, 250.0, 300.0, 320.0, 400.0, 450.0, 480.0, 500.0]
    runs = [summary(seed, 1000, final=f) for seed, f in enumerate(finals)] + [summary(8, 1000, final=None)]
    out = aggregate_seeds(runs, np.random.default_rng(1), reps=500)["final_eval_mean"]
    assert out["n"] == 8
    assert out["iqm"]["value"] == pytest.approx((300 + 320 + 400 + 450) / 4)
    assert out["median"]["value"] == pytest.approx((320 + 400) / 2)
    assert out["mean"]["value"] == pytest.approx(sum(finals) / 8)
    for name in ("iqm", "median", "mean"):
        lo, hi = out[name]["ci"]
        assert lo <= out[name]["value"] <= hi


def test_aggregate_when_no_seed_solved_has_no_median() -> None:
    runs = [summary(seed, None, best=None, final=None, status="interrupted") for seed in (5, 3, 9)]
    out = aggregate_seeds(runs, np.random.default_rng(0), reps=200)
    assert out["failed_seeds"] == [3, 5, 9] and out["diverged_seeds"] == []
    assert out["steps_to_solve"]["median"] == {"value": None, "ci": [None, None]}
    assert out["steps_to_solve"]["values"] == [] and out["seconds_to_solve"]["n_solved"] == 0
    assert out["best_eval_mean"] is None and out["final_eval_mean"] is None
    assert out["fraction_solved"]["ci_bootstrap"] == [0.0, 0.0]
    assert out["fraction_solved"]["ci_wilson"][0] == 0.0 and out["fraction_solved"]["ci_wilson"][1] > 0.4


def test_aggregate_with_half_failed_has_an_infinite_median() -> None:
    runs = [summary(0, 100), summary(1, 200), summary(2, None), summary(3, None)]
    assert aggregate_seeds(runs, np.random.default_rng(0), reps=100)["steps_to_solve"]["median"]["value"] is None


def test_aggregate_round_trips_through_strict_json_and_ignores_list_order() -> None:
    runs = [summary(0, 400), summary(1, None, final=None, status="diverged"), summary(2, 100), summary(3, None),
            summary(4, 250)]
    out = aggregate_seeds(runs, np.random.default_rng(9), reps=300)
    text = json.dumps(out, allow_nan=False)
    assert json.loads(text) == out
    assert aggregate_seeds(runs[::-1], np.random.default_rng(9), reps=300) == out


@pytest.mark.parametrize(("runs", "match"), [
    ([], "at least one seed"),
    ([summary(0, 10), summary(0, 20)], r"got seeds \[0\] more than once"),
    ([summary(0, 10, status="crashed")], "status must be one of .* got 'crashed'"),
    ([{**summary(0, 10), "solved_at_step": None}], "solved_at_step must be set when solved is True, got None"),
    ([{**summary(0, None), "solved_at_step": 5}], "solved_at_step must be None when solved is False, got 5"),
    ([summary(0, 10, best=math.nan)], "best_eval_mean must be a finite number or None, got nan"),
    ([{k: v for k, v in summary(0, 10).items() if k != "final_eval_mean"}], r"lacks \['final_eval_mean'\]"),
])
def test_aggregate_refuses_bad_summaries(runs: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        aggregate_seeds(runs, np.random.default_rng(0), reps=10)


# ---------------------------------------------------------------- iqm_band and plot_aggregate


def curves_of_three_seeds() -> dict[int, tuple[np.ndarray, np.ndarray]]:
    steps = np.arange(1, 11) * 1000.0
    return {0: (steps, np.linspace(10, 500, 10)), 1: (steps, np.linspace(20, 480, 10)),
            2: (steps[:4], np.array([15.0, 40.0, 80.0, 9.0]))}  # diverged after four evaluations


def test_band_uses_the_seeds_that_have_a_value_at_each_step() -> None:
    curves = curves_of_three_seeds()
    band = iqm_band(curves, np.random.default_rng(0), reps=200)
    np.testing.assert_array_equal(band.steps, np.arange(1, 11) * 1000.0)
    np.testing.assert_array_equal(band.n_seeds, [3] * 4 + [2] * 6)
    want = [np.mean([curves[s][1][t] for s in curves if t < len(curves[s][1])]) for t in range(10)]  # n < 4: mean
    np.testing.assert_allclose(band.center, want)
    assert (band.lower <= band.center).all() and (band.center <= band.upper).all()
    one = iqm_band({7: (np.array([5.0, 6.0]), np.array([1.0, 2.0]))}, np.random.default_rng(0), reps=50)
    np.testing.assert_array_equal(one.lower, [1.0, 2.0])
    np.testing.assert_array_equal(one.upper, [1.0, 2.0])


def test_band_refuses_unsorted_steps() -> None:
    with pytest.raises(ValueError, match="seed 4: steps must be finite and strictly increasing"):
        iqm_band({4: (np.array([2.0, 1.0]), np.array([0.0, 0.0]))}, np.random.default_rng(0))


def test_plot_writes_a_png_and_closes_its_figure(tmp_path) -> None:
    path = tmp_path / "aggregate.png"
    if importlib.util.find_spec("matplotlib") is None:  # the [plot] extra is not installed: no picture, no file
        assert plot_aggregate(curves_of_three_seeds(), [3000.0], path, "t", 475.0, np.random.default_rng(0)) is None
        assert not path.exists()
        return
    import matplotlib.pyplot as plt

    open_before = plt.get_fignums()
    got = plot_aggregate(curves_of_three_seeds(), [3000.0, None, math.inf], path, "DQN on CartPole-v1, 3 seeds",
                         475.0, np.random.default_rng(0), reps=100)
    assert got == path
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000
    assert [p.name for p in tmp_path.iterdir()] == ["aggregate.png"]  # no temporary file left behind
    assert plt.get_fignums() == open_before


def test_plot_without_matplotlib_returns_none_and_writes_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    path = tmp_path / "aggregate.png"
    got = plot_aggregate(curves_of_three_seeds(), [3000.0, None, None], path, "t", None, np.random.default_rng(0),
                         reps=50)
    assert got is None
    assert list(tmp_path.iterdir()) == []


def test_plot_refuses_nan_steps_to_solve(tmp_path) -> None:
    with pytest.raises(ValueError, match="steps_to_solve must hold numbers >= 0, None or inf"):
        plot_aggregate({}, [math.nan], tmp_path / "x.png", "t", None, np.random.default_rng(0))
