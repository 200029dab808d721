"""Aggregate statistics over seeds, with rliable's definitions (Agarwal et al. 2021, "Deep RL at the edge of the
statistical precipice"): interquartile mean, percentile stratified bootstrap confidence intervals, and the Wilson score
interval for the fraction of seeds that solved.

Axes: S seeds (members), R bootstrap resamples, T evaluation steps, n observations of a generic sample.

Every random draw comes from the `numpy.random.Generator` the caller passes; nothing touches `np.random`'s global
state, so the same generator state gives the same intervals. Only NumPy is needed; `plot_aggregate` imports
matplotlib when it is called and returns None without it.

JSON: `aggregate_seeds` returns plain ints, floats, lists and None. JSON has no infinity, so an infinite value or
bound (a median time to solve when at least half of the seeds never solved) is written as None.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from agents.run.checkpoint import atomic_open
from agents.validate import is_integer, is_real

CONFIDENCE = 0.95
STATUSES = ("completed", "interrupted", "diverged")
OPTIONAL_SCORE = "best_model_eval_mean"  # the best model re-evaluated over the final evaluation's episodes
SCORE_KEYS = ("best_eval_mean", "final_eval_mean", OPTIONAL_SCORE)
METHOD = "percentile stratified bootstrap over seeds (rliable definitions), Wilson score interval for the fraction"
MAX_BOOTSTRAP_ELEMENTS = 2**22  # resampled values held at once; larger R * n is drawn in chunks of rows

Statistic = Callable[..., Any]  # statistic(samples: (R, n), axis=-1) -> (R,)


class Band(NamedTuple):
    """The IQM across seeds at each evaluation step and its pointwise bootstrap interval; every field is `(T,)`."""

    steps: np.ndarray
    center: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    n_seeds: np.ndarray


def iqm(x: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """Interquartile mean along `axis`: the mean of what is left after dropping floor(n/4) values from each end.

    IQM(x) = mean(sort(x)[k : n - k]), k = floor(0.25 n): scipy.stats.trim_mean(x, 0.25), rliable's definition.
    For n < 4 nothing is dropped and the IQM is the mean.

    Args:
        x: finite values, any shape with at least one axis; e.g. bootstrap resamples `(R, n)`.
        axis: the axis of the n observations.

    Returns:
        A float for 1-D `x`, else an array of `x`'s shape without `axis` (`(R,)` for `(R, n)`).
    """
    a = np.asarray(x, dtype=float)
    if a.ndim == 0:
        raise ValueError(f"iqm needs an array with at least one axis, got a scalar {x!r}")
    a = np.moveaxis(a, axis, -1)
    n = a.shape[-1]
    if n == 0:
        raise ValueError(f"iqm needs at least one value along axis {axis}, got shape {np.shape(x)}")
    if not np.isfinite(a).all():
        raise ValueError(f"iqm needs finite values, got {int((~np.isfinite(a)).sum())} NaN or infinite of {a.size}")
    k = n // 4  # == floor(0.25 * n) exactly
    if k > 0:  # after the partition, positions k .. n-k-1 hold the values of ranks k .. n-k-1
        a = np.partition(a, (k, n - k - 1), axis=-1)[..., k:n - k]
    out = a.mean(axis=-1)
    return float(out) if out.ndim == 0 else out


def normal_quantile(p: float) -> float:
    """The standard normal quantile z with Phi(z) = p, e.g. 1.959963984540054 for p = 0.975.

    Bisection on the upper tail Q(x) = erfc(x / sqrt 2) / 2 (math.erfc) over [0, 40], halving until the bracket
    stops shrinking, so z is as exact as erfc itself (about 1e-15 for p in [0.5, 0.9999]); Phi^-1(p) = -Phi^-1(1 - p).

    Args:
        p: a probability, 0 < p < 1.

    Returns:
        z, a float.
    """
    if not is_real(p) or not 0.0 < p < 1.0:
        raise ValueError(f"p must be a probability strictly between 0 and 1, got {p!r}")
    p = float(p)
    if p == 0.5:
        return 0.0
    tail = 1.0 - p if p > 0.5 else p  # exact for p >= 0.5 (Sterbenz)

    def upper_tail(z: float) -> float:
        return 0.5 * math.erfc(z / math.sqrt(2.0))

    lo, hi = 0.0, 40.0  # upper_tail(0) = 0.5 >= tail > 0 = upper_tail(40) in float64
    while True:
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if upper_tail(mid) > tail:
            lo = mid
        else:
            hi = mid
    z = lo if abs(upper_tail(lo) - tail) <= abs(upper_tail(hi) - tail) else hi
    return z if p > 0.5 else -z


def wilson_interval(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion: k successes in n trials.

    (p + z^2/2n -/+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), p = k/n, z = Phi^-1((1 + confidence) / 2).
    Unlike a percentile bootstrap, it does not collapse to [1, 1] when all n succeed (or to [0, 0] when none do).

    Args:
        k: successes, 0 <= k <= n.
        n: trials, n >= 1.
        confidence: in (0, 1).

    Returns:
        (lower, upper), within [0, 1]; lower is exactly 0 when k = 0 and upper exactly 1 when k = n.
    """
    for name, v in (("k", k), ("n", n)):
        if not is_integer(v):
            raise ValueError(f"{name} must be an integer, got {v!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 <= k <= n:
        raise ValueError(f"k must be between 0 and n = {n}, got {k}")
    _check_confidence(confidence)
    z = normal_quantile((1.0 + confidence) / 2.0)
    p, z2 = k / n, z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4 * n * n)) / denom
    lower = 0.0 if k == 0 else max(0.0, center - half)
    upper = 1.0 if k == n else min(1.0, center + half)
    return lower, upper


def bootstrap_ci(x: np.ndarray, statistic: Statistic, rng: np.random.Generator, reps: int = 10_000,
                 confidence: float = CONFIDENCE, strata: np.ndarray | None = None) -> tuple[float, float, float]:
    """Point estimate and percentile bootstrap interval of `statistic(x)`, resampling within strata.

    Each of the R resamples draws, within every stratum of size n_s, n_s indices with replacement from that stratum
    (strata None: one stratum, the ordinary bootstrap over seeds). The interval is the (1 - c)/2 and (1 + c)/2
    quantiles of the R resampled statistics, linear interpolation (numpy's default). An interpolation that touches
    an infinite neighbour takes that neighbour (the limit of the linear rule), so infinite bounds come back as inf.

    Args:
        x: `(n,)` observations; +-inf allowed (a censored time to solve), NaN not.
        statistic: `statistic(samples, axis=-1)` reduces `samples` `(m, n)` along its last axis to `(m,)`, e.g.
            `np.mean`, `np.median`, `iqm`. Called on `x[None]` for the point estimate and on resamples in chunks.
        rng: every index is drawn from it.
        reps: R >= 1 resamples. Resamples are drawn in chunks of at most `MAX_BOOTSTRAP_ELEMENTS` values.
        confidence: c in (0, 1).
        strata: `(n,)` integer labels, or None for a single stratum.

    Returns:
        (estimate, lower, upper) as floats; any of them may be inf or -inf, never NaN.

    Raises:
        ValueError: a bad x, reps, confidence or strata, or a statistic that breaks its contract or returns NaN.
        TypeError: `rng` is not a Generator (the global `np.random` state is never used).
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"x must be a non-empty 1-D array, got shape {x.shape}")
    if np.isnan(x).any():
        raise ValueError(f"x must not contain NaN, got {int(np.isnan(x).sum())} NaN of {x.size}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if not is_integer(reps) or reps < 1:
        raise ValueError(f"reps must be an integer >= 1, got {reps!r}")
    _check_confidence(confidence)
    groups = _strata_groups(strata, x.size)
    estimate = _apply(statistic, x[None, :])[0]
    rows = max(1, MAX_BOOTSTRAP_ELEMENTS // x.size)
    stats = np.empty(int(reps))
    for start in range(0, int(reps), rows):
        m = min(rows, int(reps) - start)
        idx = np.concatenate([g[rng.integers(0, g.size, size=(m, g.size))] for g in groups], axis=1)  # (m, n)
        stats[start:start + m] = _apply(statistic, x[idx])
    if np.isnan(estimate) or np.isnan(stats).any():
        raise ValueError(f"statistic returned NaN on the data ({estimate}) or on {int(np.isnan(stats).sum())} "
                         f"of {reps} resamples")
    lower, upper = _quantiles(np.sort(stats), ((1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0))
    return float(estimate), lower, upper


def aggregate_seeds(summaries: Sequence[dict[str, Any]], rng: np.random.Generator, reps: int = 10_000, *,
                    confidence: float = CONFIDENCE) -> dict[str, Any]:
    """The aggregate of S per-seed run summaries, JSON-serialisable (an infinite value or bound is None).

    Seeds are taken in sorted order, so the result depends on the summaries and `rng`, not on the list's order.
    Every interval is a percentile bootstrap over seeds (`bootstrap_ci`, one stratum: one task); the fraction solved
    also gets a Wilson score interval. Times to solve are censored: an unsolved seed counts as +inf, so their median
    is finite while fewer than half of the seeds failed (for even S, fewer than S/2).

    Args:
        summaries: S >= 1 dicts, each with "seed" (int, unique), "status" (one of `STATUSES`), "solved" (bool),
            "solved_at_step" (int, None exactly when unsolved), "solved_at_seconds" (float, None when unsolved),
            "best_eval_mean" and "final_eval_mean" (float or None); optionally "best_model_eval_mean" (the best
            model re-evaluated over the final evaluation's episodes).
        rng: all bootstrap draws.
        reps: R bootstrap resamples per interval.
        confidence: of every interval.

    Returns:
        n_seeds, seeds, failed_seeds (unsolved), diverged_seeds: ints and sorted lists of seeds.
        fraction_solved: {value, ci_bootstrap: [lo, hi], ci_wilson: [lo, hi], solved: k, n: S}.
        best_eval_mean, final_eval_mean (and best_model_eval_mean when some seed has it): {iqm, median, mean:
            {value, ci: [lo, hi]}, n: seeds with a value}, or None when no seed has one.
        steps_to_solve, seconds_to_solve: {median: {value, ci}, n_solved: k, values: the k finite ones, sorted}.
        confidence, bootstrap_reps, method.
    """
    if len(summaries) == 0:
        raise ValueError("summaries must hold at least one seed's summary, got none")
    rows = sorted((_check_summary(s, i) for i, s in enumerate(summaries)), key=lambda r: r["seed"])
    seeds = [r["seed"] for r in rows]
    duplicates = sorted({s for s in seeds if seeds.count(s) > 1})
    if duplicates:
        raise ValueError(f"every seed must appear once, got seeds {duplicates} more than once")
    solved = np.array([r["solved"] for r in rows], dtype=bool)
    k, S = int(solved.sum()), len(rows)
    frac, frac_lo, frac_hi = bootstrap_ci(solved.astype(float), np.mean, rng, reps, confidence)
    out: dict[str, Any] = {
        "n_seeds": S,
        "seeds": seeds,
        "failed_seeds": [r["seed"] for r in rows if not r["solved"]],
        "diverged_seeds": [r["seed"] for r in rows if r["status"] == "diverged"],
        "fraction_solved": {"value": frac, "ci_bootstrap": [frac_lo, frac_hi],
                            "ci_wilson": list(wilson_interval(k, S, confidence)), "solved": k, "n": S},
    }
    for key in SCORE_KEYS:
        values = np.array([r[key] for r in rows if r[key] is not None], dtype=float)
        if key == OPTIONAL_SCORE and values.size == 0:
            continue
        out[key] = None if values.size == 0 else {
            name: _estimate(values, fn, rng, reps, confidence)
            for name, fn in (("iqm", iqm), ("median", np.median), ("mean", np.mean))
        } | {"n": int(values.size)}
    for key, field in (("steps_to_solve", "solved_at_step"), ("seconds_to_solve", "solved_at_seconds")):
        finite = [r[field] for r in rows if r["solved"]]
        times = np.array(finite + [math.inf] * (S - k), dtype=float)
        out[key] = {"median": _estimate(times, np.median, rng, reps, confidence), "n_solved": k,
                    "values": sorted(finite)}
    out |= {"confidence": confidence, "bootstrap_reps": int(reps), "method": METHOD}
    return out


def iqm_band(curves: dict[int, tuple[np.ndarray, np.ndarray]], rng: np.random.Generator, reps: int = 2000,
             confidence: float = CONFIDENCE) -> Band:
    """The IQM across seeds at every evaluation step, with its pointwise percentile bootstrap interval.

    At step t only the seeds with a finite value at t count (a diverged seed's curve stops early), so n_seeds[t]
    may vary; with one seed the band is that seed's value.

    Args:
        curves: seed -> (steps `(T_s,)` strictly increasing, returns `(T_s,)`).
        rng: bootstrap draws, step by step in increasing order.
        reps: R resamples per step.
        confidence: of the band.

    Returns:
        A `Band` over the T steps where at least one seed has a finite value (T may be 0).
    """
    steps_per_seed = {seed: _check_curve(seed, *curve) for seed, curve in curves.items()}
    all_steps = np.unique(np.concatenate([s for s, _ in steps_per_seed.values()] or [np.empty(0)]))
    table = np.full((all_steps.size, len(curves)), np.nan)  # (T, S): NaN where a seed has no value
    for j, (steps, returns) in enumerate(steps_per_seed.values()):
        table[np.searchsorted(all_steps, steps), j] = returns
    rows = []
    for t, step in enumerate(all_steps):
        values = table[t][np.isfinite(table[t])]
        if values.size:
            rows.append((step, *bootstrap_ci(values, iqm, rng, reps, confidence), values.size))
    cols = list(zip(*rows, strict=True)) if rows else [()] * 5
    return Band(*(np.array(c, dtype=float) for c in cols[:4]), np.array(cols[4], dtype=int))


def plot_aggregate(curves: dict[int, tuple[np.ndarray, np.ndarray]], steps_to_solve: Sequence[float | None],
                   path: str | Path, title: str, threshold: float | None, rng: np.random.Generator,
                   reps: int = 2000) -> Path | None:
    """Two panels into a PNG at `path`: evaluation returns over seeds, and the distribution of steps to solve.

    Left: each seed's greedy evaluation return against environment steps (thin, faint), the IQM across seeds in
    bold with its 95% pointwise bootstrap band (`iqm_band`), and a dashed line at `threshold`. Right: a histogram of
    the finite steps to solve, titled with how many of the seeds solved; unsolved seeds are not drawn.
    The file is written atomically (`atomic_open`); the figure is closed.

    Args:
        curves: seed -> (steps `(T_s,)` strictly increasing, returns `(T_s,)`); lengths may differ.
        steps_to_solve: one per seed; None or inf for a seed that never solved.
        path: the PNG to write; its folder must exist.
        title: the figure's title.
        threshold: the return that counts as solved, or None.
        rng: the band's bootstrap draws.
        reps: R resamples per evaluation step.

    Returns:
        `path` as a Path, or None (and no file) when matplotlib cannot be imported.
    """
    finite = _check_steps_to_solve(steps_to_solve)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return None
    band = iqm_band(curves, rng, reps)
    path = Path(path)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    try:
        for j, (steps, returns) in enumerate(curves.values()):
            faint = min(0.3, 6.0 / len(curves))  # a hundred seeds must not hide the band
            left.plot(steps, returns, lw=0.5, alpha=faint, color="gray", label="one seed" if j == 0 else None)
        if band.steps.size:
            left.fill_between(band.steps, band.lower, band.upper, color="tab:blue", alpha=0.35, lw=0, zorder=3,
                              label=f"{CONFIDENCE:.0%} bootstrap CI")
            left.plot(band.steps, band.center, lw=2.2, color="tab:blue", zorder=4,
                      label=f"IQM over {len(curves)} seeds")
        else:
            left.text(0.5, 0.5, "no evaluations", ha="center", va="center", transform=left.transAxes)
        if threshold is not None:
            left.axhline(threshold, color="gray", ls="--", lw=1, label=f"solved ({threshold:g})")
        left.set(xlabel="environment steps", ylabel="greedy evaluation return", title="evaluation return")
        if left.get_legend_handles_labels()[0]:
            left.legend(loc="lower right", fontsize="small")
        if finite.size:
            right.hist(finite, bins=min(20, max(5, finite.size)), color="tab:green", alpha=0.8, edgecolor="white")
        else:
            right.text(0.5, 0.5, "no seed solved", ha="center", va="center", transform=right.transAxes)
        right.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        right.set(xlabel="environment steps to solve", ylabel="seeds",
                  title=f"steps to solve: {finite.size} of {len(steps_to_solve)} seeds solved")
        fig.suptitle(title)
        fig.tight_layout()
        with atomic_open(path) as f:
            fig.savefig(f, format="png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def _check_confidence(confidence: float) -> None:
    """Raise unless 0 < confidence < 1."""
    if not is_real(confidence) or not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}")


def _strata_groups(strata: np.ndarray | None, n: int) -> list[np.ndarray]:
    """The indices of each stratum, in order of label; one group of all n when `strata` is None."""
    if strata is None:
        return [np.arange(n)]
    labels = np.asarray(strata)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"strata must be ({n},) integer labels, one per value of x, got {labels.dtype} "
                         f"of shape {labels.shape}")
    return [np.flatnonzero(labels == label) for label in np.unique(labels)]


def _apply(statistic: Statistic, samples: np.ndarray) -> np.ndarray:
    """`statistic(samples, axis=-1)` as a float array `(m,)`, checked against its contract."""
    out = np.asarray(statistic(samples, axis=-1), dtype=float)
    if out.shape != samples.shape[:1]:
        raise ValueError(f"statistic must reduce samples {samples.shape} to shape {samples.shape[:1]}, "
                         f"got shape {out.shape}")
    return out


def _quantiles(sorted_stats: np.ndarray, qs: Sequence[float]) -> list[float]:
    """Linear-interpolation quantiles of sorted values `(R,)` that may hold +-inf (where np.quantile gives NaN)."""
    out = []
    last = sorted_stats.size - 1
    for q in qs:
        h = last * q
        i = min(int(math.floor(h)), last)
        frac = h - i
        a, b = float(sorted_stats[i]), float(sorted_stats[min(i + 1, last)])
        if frac == 0.0 or a == b:
            out.append(a)
        elif math.isinf(a) and math.isinf(b):
            out.append(a if frac < 0.5 else b)
        elif math.isinf(a) or math.isinf(b):
            out.append(a if math.isinf(a) else b)
        else:
            out.append(a + frac * (b - a))
    return out


def _estimate(x: np.ndarray, statistic: Statistic, rng: np.random.Generator, reps: int,
              confidence: float) -> dict[str, Any]:
    """{"value", "ci": [lo, hi]} of a bootstrap over seeds, with infinities as None."""
    value, lo, hi = bootstrap_ci(x, statistic, rng, reps, confidence)
    return {"value": _json_float(value), "ci": [_json_float(lo), _json_float(hi)]}


def _json_float(v: float) -> float | None:
    """v as a float, or None when it is infinite (JSON cannot hold it)."""
    return None if math.isinf(v) else float(v)


def _check_summary(s: dict[str, Any], i: int) -> dict[str, Any]:
    """The fields `aggregate_seeds` reads from summary i, checked and as plain Python values."""
    missing = [key for key in ("seed", "status", "solved", "solved_at_step", "solved_at_seconds", "best_eval_mean",
                               "final_eval_mean") if key not in s]
    if missing:
        raise ValueError(f"summary {i} lacks {missing}")
    seed, status, solved = s["seed"], s["status"], s["solved"]
    if not is_integer(seed):
        raise ValueError(f"summary {i}: seed must be an integer, got {seed!r}")
    if status not in STATUSES:
        raise ValueError(f"summary {i} (seed {seed}): status must be one of {STATUSES}, got {status!r}")
    if not isinstance(solved, (bool, np.bool_)):
        raise ValueError(f"summary {i} (seed {seed}): solved must be a bool, got {solved!r}")
    row: dict[str, Any] = {"seed": int(seed), "status": status, "solved": bool(solved)}
    for key in ("solved_at_step", "solved_at_seconds"):
        v = s[key]
        if (v is None) == bool(solved):
            raise ValueError(f"summary {i} (seed {seed}): {key} must be {'set' if solved else 'None'} when solved "
                             f"is {bool(solved)}, got {v!r}")
        if v is not None and (not is_real(v) or not math.isfinite(v) or v < 0
                              or (key == "solved_at_step" and not isinstance(v, (int, np.integer)))):
            kind = "integer" if key == "solved_at_step" else "number"
            raise ValueError(f"summary {i} (seed {seed}): {key} must be a finite {kind} >= 0, got {v!r}")
        row[key] = None if v is None else (int(v) if key == "solved_at_step" else float(v))
    for key in SCORE_KEYS:
        v = s.get(key)  # the optional best_model_eval_mean may be absent
        if v is not None and (not is_real(v) or not math.isfinite(v)):
            raise ValueError(f"summary {i} (seed {seed}): {key} must be a finite number or None, got {v!r}")
        row[key] = None if v is None else float(v)
    return row


def _check_curve(seed: int, steps: np.ndarray, returns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(steps, returns) as float arrays `(T_s,)`, steps strictly increasing."""
    steps, returns = np.asarray(steps, dtype=float), np.asarray(returns, dtype=float)
    if steps.ndim != 1 or steps.shape != returns.shape:
        raise ValueError(f"seed {seed}: steps and returns must be 1-D of one length, got shapes {steps.shape} "
                         f"and {returns.shape}")
    if steps.size and (not np.isfinite(steps).all() or (np.diff(steps) <= 0).any()):
        raise ValueError(f"seed {seed}: steps must be finite and strictly increasing, got {steps.tolist()}")
    return steps, returns


def _check_steps_to_solve(steps_to_solve: Sequence[float | None]) -> np.ndarray:
    """The finite steps to solve `(k,)`; None and inf are the unsolved seeds."""
    values = np.array([math.inf if v is None else v for v in steps_to_solve], dtype=float)
    if np.isnan(values).any() or (values < 0).any():
        raise ValueError(f"steps_to_solve must hold numbers >= 0, None or inf, got {list(steps_to_solve)}")
    return values[np.isfinite(values)]
