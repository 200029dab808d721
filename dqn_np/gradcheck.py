"""Numerical gradient checking: central differences in float64, relative error per parameter.

Run `python -m dqn_np.gradcheck` to check an MLP with every loss at several depths; it prints a table and exits
non-zero if any parameter's relative error exceeds the tolerance.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from dqn_np.mlp import MLP

DEFAULT_TOL = 1e-6


class ParamReport(NamedTuple):
    """The check of one parameter: name, shape, entries checked, relative and largest absolute error, verdict."""

    name: str
    shape: tuple[int, ...]
    n_checked: int
    rel_error: float
    max_abs_error: float
    passed: bool


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """`||a - n|| / max(||a||, ||n||)` over one parameter's checked entries (0 when both are exactly 0).

    The norm-wise form is used because central differences carry an absolute round-off of about
    `1e-16 * |L| / eps` on every entry: an entry whose true gradient is 1e-6 would show an elementwise
    relative error near 1e-4 even when the analytic gradient is exact, while a wrong formula still gives a
    norm-wise error of order 1.
    """
    scale = max(float(np.linalg.norm(analytic)), float(np.linalg.norm(numeric)))
    return float(np.linalg.norm(analytic - numeric)) / scale if scale > 0 else 0.0


def numerical_gradient(
    loss_fn: Callable[[], float], param: np.ndarray, indices: list[tuple[int, ...]], eps: float = 1e-6
) -> np.ndarray:
    """Central differences `(L(p + eps) - L(p - eps)) / (2 eps)` at each index of `param`, perturbed in place.

    Args:
        loss_fn: recomputes the loss from the current parameter values (targets held fixed).
        param: a float64 parameter array that `loss_fn` reads.
        indices: the entries to check.
        eps: the perturbation.

    Returns:
        `(len(indices),)` numerical partial derivatives.
    """
    out = np.empty(len(indices))
    for k, idx in enumerate(indices):
        orig = param[idx]
        param[idx] = orig + eps
        plus = loss_fn()
        param[idx] = orig - eps
        minus = loss_fn()
        param[idx] = orig  # restore exactly
        out[k] = (plus - minus) / (2.0 * eps)
    return out


def check_gradients(
    loss_fn: Callable[[], float],
    params: dict[str, np.ndarray],
    grads: dict[str, np.ndarray],
    eps: float = 1e-6,
    tol: float = DEFAULT_TOL,
    max_entries: int | None = None,
    rng: np.random.Generator | None = None,
) -> list[ParamReport]:
    """Compare analytic `grads` with central differences of `loss_fn` for every parameter.

    Args:
        loss_fn: recomputes the loss from the current values of `params` (targets held fixed).
        params: float64 arrays that `loss_fn` reads; perturbed in place and restored.
        grads: the analytic gradients, same keys and shapes as `params` (copied before checking).
        eps: the central-difference step.
        tol: the largest relative error that passes.
        max_entries: check at most this many entries per parameter (sampled without replacement); None checks all.
        rng: draws the sampled entries; required when `max_entries` is set.

    Returns:
        One `ParamReport` per parameter, in the order of `params`.
    """
    if grads.keys() != params.keys():
        raise ValueError(f"grads must have the keys of params {sorted(params)}, got {sorted(grads)}")
    if max_entries is not None and rng is None:
        raise ValueError("rng is required when max_entries is set (it draws the sampled entries)")
    for name, p in params.items():
        if p.dtype != np.float64:
            raise ValueError(f"params[{name!r}] must be float64 for a gradient check, got {p.dtype}")
    analytic = {name: np.array(g, dtype=np.float64) for name, g in grads.items()}
    reports = []
    for name, p in params.items():
        all_idx = list(np.ndindex(p.shape))
        if max_entries is not None and len(all_idx) > max_entries:
            picks = rng.choice(len(all_idx), size=max_entries, replace=False)
            all_idx = [all_idx[i] for i in np.sort(picks)]
        numeric = numerical_gradient(loss_fn, p, all_idx, eps)
        a = np.array([analytic[name][idx] for idx in all_idx])
        err = relative_error(a, numeric)
        max_abs = float(np.abs(a - numeric).max()) if all_idx else 0.0
        reports.append(ParamReport(name, tuple(p.shape), len(all_idx), err, max_abs, err < tol))
    return reports


def check_mlp(
    mlp: MLP,
    x: np.ndarray,
    loss: Callable[[np.ndarray], tuple[float, np.ndarray]],
    **kwargs: Any,
) -> list[ParamReport]:
    """Gradient-check every parameter of a float64 `mlp` under `loss`.

    Args:
        mlp: the network (float64).
        x: inputs `(batch, n_in)`.
        loss: `y_hat -> (loss, dL/dy_hat)` with its targets bound, e.g. `lambda q: td_loss(q, a, y)`.
        **kwargs: passed to `check_gradients` (eps, tol, max_entries, rng).

    Returns:
        One `ParamReport` per parameter.
    """
    _, delta_out = loss(mlp.forward(x))
    mlp.backward(delta_out)
    return check_gradients(lambda: loss(mlp.forward(x))[0], mlp.params, mlp.grads, **kwargs)


def format_report(reports: list[ParamReport], tol: float = DEFAULT_TOL) -> str:
    """A table: parameter, shape, entries checked, relative error, largest absolute error, pass/fail."""
    lines = [f"{'param':<8} {'shape':<12} {'checked':>8} {'rel error':>10} {'max |a-n|':>10}  result (tol {tol:g})"]
    for r in reports:
        verdict = "pass" if r.passed else "FAIL"
        lines.append(
            f"{r.name:<8} {str(r.shape):<12} {r.n_checked:>8} {r.rel_error:>10.2e} {r.max_abs_error:>10.2e}  {verdict}"
        )
    return "\n".join(lines)
