"""Numerical gradient checking: central differences in float64, relative error per parameter.

Run `python -m dqn_np.gradcheck` to check an MLP with every loss at several depths, unstacked and stacked (S
members, each with its own loss); it prints a table and exits non-zero if any parameter's relative error exceeds the
tolerance. `check_mlp` checks every parameter a network's layers declare, whatever the head; `check_layer` checks one
layer on its own, its input gradient included.

The command's exit status: 0 every parameter passes; 1 some parameter fails; 2 bad input (one line on stderr, e.g.
`--tol -1`: a tolerance must lie in (0, 1), since a relative error of 1 means the gradients share no digit). The
full default check (every entry of 2 x 2 x 3 networks under 7 losses at 3 batch sizes) takes about 15 s of CPU;
`--max-entries 4` checks a sample in about a second.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, NoReturn

import numpy as np

from dqn_np.layers import Dueling, Layer, Linear
from dqn_np.losses import huber, mae, mse, td_loss
from dqn_np.mlp import MLP, allocate

DEFAULT_TOL = 1e-6
DEFAULT_EPS = 1e-6
MAX_EPS = 1e-2
"""A larger step measures the loss's curvature more than its slope: central differences carry O(eps^2) error."""
MAX_SEED = 2**32 - 1
"""The command's seeds, as `agents.validate.MAX_SEED` (dqn_np imports numpy only)."""


def check_settings(eps: float, tol: float) -> None:
    """Refuse a step or tolerance that means nothing, with one line naming the value and the range.

    Raises:
        ValueError: `eps` not a finite number in (0, MAX_EPS], or `tol` not a finite number in (0, 1) (a relative
            error is at most 2, and 1 already means the gradients share no digit).
    """
    try:
        eps, tol = float(eps), float(tol)
    except (TypeError, ValueError):
        raise ValueError(f"eps and tol must be numbers, got {eps!r} and {tol!r}") from None
    if not eps > 0:  # nan fails every comparison
        raise ValueError(f"eps must be positive, got {eps!r}")
    if not eps <= MAX_EPS:
        raise ValueError(f"eps must be at most {MAX_EPS:g} (a larger step measures curvature, not slope), got {eps!r}")
    if not 0 < tol < 1:
        raise ValueError(f"tol must be a number in (0, 1) (a relative error of 1 or more means no digit agrees), got "
                         f"{tol!r}")


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
    loss_fn: Callable[[], float], param: np.ndarray, indices: list[tuple[int, ...]], eps: float = DEFAULT_EPS
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
    eps: float = DEFAULT_EPS,
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
            A sampled check estimates the whole parameter's `relative_error`: the k sampled entries' error norm,
            scaled by `sqrt(N / k)` to stand for all N entries, over the norm of the whole analytic gradient (known
            for free). Dividing by the sampled entries' own norm instead would fail correct gradients whenever
            the draw lands on entries whose true gradient is tiny or exactly 0 (a dueling head's advantage rows
            under MAE on one sample), where central differences only see round-off.
        rng: draws the sampled entries; required when `max_entries` is set.

    Returns:
        One `ParamReport` per parameter, in the order of `params`.
    """
    if grads.keys() != params.keys():
        raise ValueError(f"grads must have the keys of params {sorted(params)}, got {sorted(grads)}")
    check_settings(eps, tol)
    if max_entries is not None and max_entries < 1:
        raise ValueError(f"max_entries must be a positive integer or None, got {max_entries!r}")
    if max_entries is not None and rng is None:
        raise ValueError("rng is required when max_entries is set (it draws the sampled entries)")
    for name, p in params.items():
        if p.dtype != np.float64:
            raise ValueError(f"params[{name!r}] must be float64 for a gradient check, got {p.dtype}")
        if np.shape(grads[name]) != p.shape:
            raise ValueError(
                f"grads[{name!r}] must have shape {p.shape} like params[{name!r}], got {np.shape(grads[name])}"
            )
    analytic = {name: np.array(g, dtype=np.float64) for name, g in grads.items()}
    reports = []
    for name, p in params.items():
        all_idx = list(np.ndindex(p.shape))
        if max_entries is not None and len(all_idx) > max_entries:
            picks = rng.choice(len(all_idx), size=max_entries, replace=False)
            all_idx = [all_idx[i] for i in np.sort(picks)]
        numeric = numerical_gradient(loss_fn, p, all_idx, eps)
        a = np.array([analytic[name][idx] for idx in all_idx])
        if len(all_idx) < p.size:  # sampled: estimate the whole parameter's error (see the docstring)
            scale = math.sqrt(p.size / len(all_idx))
            norm = max(float(np.linalg.norm(analytic[name])), scale * float(np.linalg.norm(numeric)))
            err = scale * float(np.linalg.norm(a - numeric)) / norm if norm > 0 else 0.0
        else:
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

    For a stacked network the loss is one per member, `(S,)`; the checked scalar is their sum, whose gradient with
    respect to member s's parameters is member s's own gradient (members share nothing), so every member is checked.

    Args:
        mlp: the network (float64), unstacked or stacked.
        x: inputs `(batch, n_in)` (stacked: `(S, batch, n_in)`).
        loss: `y_hat -> (loss, dL/dy_hat)` with its targets bound, e.g. `lambda q: td_loss(q, a, y)`.
        **kwargs: passed to `check_gradients` (eps, tol, max_entries, rng).

    Returns:
        One `ParamReport` per parameter.
    """
    _, delta_out = loss(mlp.forward(x))
    mlp.backward(delta_out)
    return check_gradients(lambda: float(np.sum(loss(mlp.forward(x))[0])), mlp.params, mlp.grads, **kwargs)


def check_layer(
    layer: Layer, x: np.ndarray, rng: np.random.Generator, members: int | None = None, **kwargs: Any
) -> list[ParamReport]:
    """Gradient-check one layer on its own: every parameter it declares and its input, under `L = sum(probe * y)`.

    The layer is bound to fresh float64 parameters drawn standard normal from `rng` (its own init may leave some at
    zero, where a check sees less), and `probe`, shaped like its output, is drawn from `rng` too, so `dL/dy = probe`.

    Args:
        layer: the layer, unbound or not (it is rebound).
        x: a float64 input `(B, n_in)` (stacked: `(S, B, n_in)`), kept away from any kink the layer has.
        rng: draws the parameters and the probe (and sampled entries, with `max_entries`).
        members: S for a stacked layer (the parameters gain a leading S), None for an unstacked one.
        **kwargs: passed to `check_gradients` (eps, tol, max_entries).

    Returns:
        One `ParamReport` per parameter, under the layer's own names, then one named `x` for `dL/dx`.
    """
    allocate([layer], np.dtype(np.float64), members)
    for p in layer.params.values():
        p[...] = rng.standard_normal(p.shape)
    probe = rng.standard_normal(layer.output_shape(x.shape))
    layer.forward(x)
    grad_x = layer.backward(probe)
    return check_gradients(lambda: float(np.sum(probe * layer.forward(x))), {**layer.params, "x": x},
                           {**layer.grads, "x": grad_x}, rng=rng, **kwargs)


def format_report(
    reports: Sequence[ParamReport], tol: float = DEFAULT_TOL, depths: Sequence[int | str] | None = None
) -> str:
    """A table: parameter, shape, entries checked, relative error, largest absolute error, pass/fail.

    Args:
        reports: one row each.
        tol: the tolerance the verdicts were made with (shown in the header).
        depths: if given, one hidden-layer count per report (or a label such as "2,S=3" for a stacked network of
            3 members), shown in a leading `depth` column.
    """
    if depths is not None and len(depths) != len(reports):
        raise ValueError(f"depths must have one entry per report ({len(reports)}), got {len(depths)}")
    lead = [f"{d!s:<7} " for d in depths] if depths is not None else [""] * len(reports)
    header = "depth   " if depths is not None else ""
    columns = f"{'param':<8} {'shape':<12} {'checked':>8} {'rel error':>10} {'max |a-n|':>10}  result (tol {tol:g})"
    lines = [header + columns]
    for prefix, r in zip(lead, reports, strict=True):
        verdict = "pass" if r.passed else "FAIL"
        lines.append(
            f"{prefix}{r.name:<8} {str(r.shape):<12} {r.n_checked:>8} {r.rel_error:>10.2e} {r.max_abs_error:>10.2e}  "
            f"{verdict}"
        )
    return "\n".join(lines)


DEPTHS = (1, 2, 3)  # hidden layers of the MLPs the command line checks
BATCH_SIZES = (1, 7, 64)
N_IN, N_HIDDEN, N_OUT = 4, 16, 3
STACKED_MEMBERS = 3  # the stacked networks checked beside the unstacked ones
HEADS = {Linear: "", Dueling: ",d"}  # output heads checked, and their mark in the depth column


LossFn = Callable[[np.ndarray], tuple[float, np.ndarray]]


def bind_losses(
    y: np.ndarray,
    actions: np.ndarray,
    td_targets: np.ndarray,
    y_mae: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> dict[str, LossFn]:
    """Every loss as `y_hat -> (loss, dL/dy_hat)` with its targets bound, keyed mse, mae, huber, td_mse, td_huber.

    Args:
        y: regression targets `(batch, n_out)` for mse, huber (and mae unless `y_mae` is given).
        actions: `(batch,)` actions for the TD losses.
        td_targets: `(batch,)` TD targets.
        y_mae: targets for mae, e.g. kept away from the predictions so no residual sits on its kink.
        weights: per-sample weights `(batch,)`; if given, also td_mse_weighted and td_huber_weighted.
    """
    y_mae = y if y_mae is None else y_mae
    losses: dict[str, LossFn] = {
        "mse": lambda q: mse(q, y),
        "mae": lambda q: mae(q, y_mae),
        "huber": lambda q: huber(q, y),
        "td_mse": lambda q: td_loss(q, actions, td_targets, kind="mse"),
        "td_huber": lambda q: td_loss(q, actions, td_targets, kind="huber"),
    }
    if weights is not None:
        losses["td_mse_weighted"] = lambda q: td_loss(q, actions, td_targets, kind="mse", weights=weights)
        losses["td_huber_weighted"] = lambda q: td_loss(q, actions, td_targets, kind="huber", weights=weights)
    return losses


def _losses(y_hat: np.ndarray, rng: np.random.Generator) -> dict[str, LossFn]:
    """Every loss with random targets bound, for predictions near `y_hat: (batch, n_out)` or `(S, batch, n_out)`."""
    *lead, n_out = y_hat.shape
    y = rng.standard_normal(y_hat.shape) * 2.0  # spread 2: residuals fall on both sides of Huber's delta = 1
    # MAE's kink is at a zero residual: keep every residual at least 1 away so eps never crosses it.
    y_far = y_hat + rng.choice([-1.0, 1.0], size=y_hat.shape) * (1.0 + np.abs(rng.standard_normal(y_hat.shape)))
    actions, td_targets = rng.integers(0, n_out, size=lead), rng.standard_normal(lead) * 2.0
    weights = rng.uniform(0.1, 2.0, size=lead)  # importance-sampling weights, as prioritized replay gives them
    return bind_losses(y, actions, td_targets, y_mae=y_far, weights=weights)


def _worst(reports: Sequence[ParamReport]) -> ParamReport:
    """One parameter's checks merged: entries checked in total, the largest errors, pass only if all passed."""
    first = reports[0]
    return first._replace(
        n_checked=sum(r.n_checked for r in reports),
        rel_error=max(r.rel_error for r in reports),
        max_abs_error=max(r.max_abs_error for r in reports),
        passed=all(r.passed for r in reports),
    )


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr and exit status 2, like the commands of `agents.run.cli` (which dqn_np,
    importing numpy only, cannot import)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def main(argv: Sequence[str] | None = None) -> int:
    """Gradient-check float64 MLPs with 1, 2 and 3 hidden layers, unstacked and stacked, under every loss; one table.

    Returns:
        0 if every parameter passes at every depth, loss and batch size, 1 otherwise (bad options: SystemExit 2).
    """
    parser = _OneLineParser(
        prog="python -m dqn_np.gradcheck", description="Gradient-check the MLP's backward pass under every loss.",
        epilog="exit status: 0 all pass; 1 some parameter fails; 2 bad input", allow_abbrev=False,
    )
    parser.add_argument("--seed", type=int, default=0,
                        help=f"seed of the Generator for weights and data, 0 to {MAX_SEED} (default: 0)")
    parser.add_argument("--tol", type=float, default=DEFAULT_TOL,
                        help="largest passing relative error, in (0, 1) (default: 1e-6)")
    parser.add_argument("--eps", type=float, default=DEFAULT_EPS,
                        help=f"central-difference step, in (0, {MAX_EPS:g}] (default: 1e-6)")
    parser.add_argument("--max-entries", type=int,
                        help="check this many sampled entries per parameter, >= 1 (default: all)")
    args = parser.parse_args(argv)
    try:
        check_settings(args.eps, args.tol)
    except ValueError as e:
        parser.error(f"--{e}")
    if args.max_entries is not None and args.max_entries < 1:
        parser.error(f"--max-entries must be at least 1, got {args.max_entries}")
    if not 0 <= args.seed <= MAX_SEED:
        parser.error(f"--seed must be an integer from 0 to {MAX_SEED}, got {args.seed}")

    rng = np.random.default_rng(args.seed)
    rows, depths, failures = [], [], []
    nets = [(m, d, head) for head in HEADS for m in (None, STACKED_MEMBERS) for d in DEPTHS]
    for members, depth, head in nets:
        sizes = (N_IN,) + (N_HIDDEN,) * depth + (N_OUT,)
        mlp = MLP(sizes, rng=rng if members is None else [rng] * members, dtype="float64", head=head)
        lead = () if members is None else (members,)
        for name, p in mlp.params.items():
            if name.startswith("b"):  # zero biases would put pre-activations exactly on the ReLU kink
                p[...] = rng.normal(scale=0.1, size=p.shape)
        checks: dict[str, list[ParamReport]] = {name: [] for name in mlp.params}
        label = f"depth {depth}" + ("" if members is None else f" stacked S={members}") + HEADS[head]
        for batch in BATCH_SIZES:
            x = rng.standard_normal((*lead, batch, N_IN))
            losses = _losses(mlp.forward(x), rng)
            for loss_name, loss in losses.items():
                reports = check_mlp(mlp, x, loss, eps=args.eps, tol=args.tol, max_entries=args.max_entries, rng=rng)
                for r in reports:
                    checks[r.name].append(r)
                if not all(r.passed for r in reports):
                    failures.append(f"{label} {loss_name} batch {batch}")
        rows += [_worst(reps) for reps in checks.values()]
        depths += [f"{depth}{'' if members is None else f',S={members}'}{HEADS[head]}"] * len(checks)
    batches = ", ".join(map(str, BATCH_SIZES))
    print(f"float64 MLP {N_IN} -> {N_HIDDEN} x depth -> {N_OUT}, linear and dueling ('d') heads; worst relative "
          "error per parameter over losses")
    print(f"{', '.join(losses)} and batch sizes {batches} (seed {args.seed}, eps {args.eps:g})")
    print(format_report(rows, tol=args.tol, depths=depths))
    more = f"; and {len(failures) - 5} more" if len(failures) > 5 else ""
    print(f"FAIL ({len(failures)} checks): {'; '.join(failures[:5])}{more}" if failures else "all pass")
    return 1 if failures else 0


def _run_command() -> None:
    """`main()` as a command: SIGINT / SIGTERM end it with one line and status 130 / 143, never a traceback (the
    project's commands do the same through agents.run.entry, which this numpy-only package does not import)."""
    import signal

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupted)
    try:
        status = main()
    except KeyboardInterrupt as e:
        name = e.args[0] if e.args else "SIGINT"
        print(f"gradcheck: interrupted by {name}; nothing was written", file=sys.stderr)
        raise SystemExit(143 if name == "SIGTERM" else 130) from None
    raise SystemExit(status)


if __name__ == "__main__":
    _run_command()
