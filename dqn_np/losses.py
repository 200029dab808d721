"""Losses as pure functions returning `(loss, dL/dy_hat)`, averaged over the batch.

Every loss sums over output units and averages over the `n` examples of the batch, so the step size does not
depend on the batch size. The gradient is with respect to the prediction only.

Stacked predictions `(S, n, n_out)` (S members of a stacked network, one per seed) give one loss per member, `(S,)`,
each averaged over its own n examples: no member's loss or gradient depends on another's.
"""

from __future__ import annotations

import numpy as np

from dqn_np._validate import as_rows, check_finite, check_same_shape

TD_KINDS = ("mse", "huber")


def _pair(y_hat: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_hat = as_rows("y_hat", y_hat)  # (n, n_out), or (S, n, n_out) stacked
    y = np.asarray(y, dtype=y_hat.dtype)
    check_same_shape("y", y, "y_hat", y_hat)
    check_finite("y", y)
    return y_hat, y


def _per_member(total: np.ndarray) -> float | np.ndarray:
    """A 0-d total as a float (unstacked), or the `(S,)` per-member totals as they are."""
    return float(total) if total.ndim == 0 else total


def mse(y_hat: np.ndarray, y: np.ndarray) -> tuple[float | np.ndarray, np.ndarray]:
    """Mean squared error `L = (1/n) sum ||y_hat - y||^2`; gradient `delta2 = (2/n)(y_hat - y)`.

    Args:
        y_hat: predictions `(n, n_out)`, or `(S, n, n_out)` for S members.
        y: targets of the same shape, held constant.

    Returns:
        The loss (a float; `(S,)` per member when stacked) and `dL/dy_hat`, shaped like `y_hat`.
    """
    y_hat, y = _pair(y_hat, y)
    diff = y_hat - y
    n = y_hat.shape[-2]
    return _per_member(np.add.reduce(diff * diff, axis=(-2, -1)) / n), diff * (2.0 / n)


def mae(y_hat: np.ndarray, y: np.ndarray) -> tuple[float | np.ndarray, np.ndarray]:
    """Mean absolute error `L = (1/n) sum |y_hat - y|`; gradient `sign(y_hat - y) / n`, 0 at a tie.

    Args:
        y_hat: predictions `(n, n_out)`, or `(S, n, n_out)` for S members.
        y: targets of the same shape, held constant.

    Returns:
        The loss (a float; `(S,)` per member when stacked) and `dL/dy_hat`, shaped like `y_hat`.
    """
    y_hat, y = _pair(y_hat, y)
    diff = y_hat - y
    n = y_hat.shape[-2]
    return _per_member(np.add.reduce(np.abs(diff), axis=(-2, -1)) / n), np.sign(diff) / n


def _huber(
    diff: np.ndarray,
    delta: float,
    n: int,
    axis: int | tuple[int, ...],
    abs_d: np.ndarray | None = None,
    quadratic: np.ndarray | None = None,
    tmp: np.ndarray | None = None,
    grad: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> tuple[float, np.ndarray]:
    """Huber on residuals `diff`: elementwise `0.5 d^2` if `|d| <= delta` else `delta (|d| - 0.5 delta)`.

    The loss sums over `axis` (everything but the member axis) and divides by n. The optional arrays (shape of
    `diff`) receive `|d|`, `min(|d|, delta)`, a temporary and the gradient; with None
    they are allocated. `weights` (shape of `diff`) scale each entry's loss and gradient; None skips the multiply.
    """
    abs_d = np.abs(diff, out=abs_d)
    quadratic = np.minimum(abs_d, delta, out=quadratic)  # the part of |d| inside the quadratic zone
    tmp = np.multiply(quadratic, 0.5, out=tmp)
    np.subtract(abs_d, tmp, out=tmp)
    np.multiply(quadratic, tmp, out=tmp)  # 0.5 d^2, or delta (|d| - 0.5 delta)
    if weights is not None:
        np.multiply(tmp, weights, out=tmp)  # w_i l(d_i)
    loss = _per_member(np.add.reduce(tmp, axis=axis) / n)
    grad = np.copysign(quadratic, diff, out=grad)  # = clip(d, -delta, delta): d inside the zone, ±delta outside
    grad = np.divide(grad, n, out=grad)
    if weights is not None:
        np.multiply(grad, weights, out=grad)  # (1/n) w_i l'(d_i)
    return loss, grad


def _check_delta(delta: float) -> None:
    if not delta > 0:
        raise ValueError(f"delta must be a positive number, got {delta!r}")


def huber(y_hat: np.ndarray, y: np.ndarray, delta: float = 1.0) -> tuple[float | np.ndarray, np.ndarray]:
    """Huber loss, quadratic within `delta` of the target and linear beyond; gradient `clip(y_hat - y, ±delta) / n`.

    Args:
        y_hat: predictions `(n, n_out)`, or `(S, n, n_out)` for S members.
        y: targets of the same shape, held constant.
        delta: where the loss turns from quadratic to linear.

    Returns:
        The loss (a float; `(S,)` per member when stacked) and `dL/dy_hat`, shaped like `y_hat`.
    """
    y_hat, y = _pair(y_hat, y)
    _check_delta(delta)
    return _huber(y_hat - y, delta, y_hat.shape[-2], (-2, -1))


def td_loss(
    q_values: np.ndarray,
    actions: np.ndarray,
    td_targets: np.ndarray,
    kind: str = "mse",
    delta: float = 1.0,
    weights: np.ndarray | None = None,
) -> tuple[float | np.ndarray, np.ndarray]:
    """The DQN loss on `Q(s, a)` for the actions taken, with the TD targets held constant (semi-gradient).

    With `mse`: `L = (1/n) sum (Q(s_i, a_i) - y_i)^2` and `delta2[i, a_i] = (2/n)(Q(s_i, a_i) - y_i)`.
    With `huber`: the Huber loss of the TD error and its derivative `clip(Q - y, ±delta) / n`.
    With `weights` (importance-sampling weights of prioritized replay): `L = (1/n) sum w_i l(Q(s_i, a_i) - y_i)` and
    `delta2[i, a_i] = (1/n) w_i l'(Q(s_i, a_i) - y_i)`; still divided by n, not by `sum w`.
    `delta2` is zero in every column but the action taken, so backward only moves the taken action's Q-value.

    Args:
        q_values: online network output `(n, n_actions)`, or `(S, n, n_actions)` for S members.
        actions: actions taken `(n,)` (stacked: `(S, n)`), integers in `[0, n_actions)`.
        td_targets: `y = r + discount * Q_target(s', a')`, shaped like `actions`.
        kind: `"mse"` or `"huber"`.
        delta: the Huber threshold (ignored for `mse`).
        weights: per-sample weights `w`, shaped like `actions`, finite and >= 0; None weighs every sample 1.

    Returns:
        The loss (a float; `(S,)`, each member's own mean, when stacked) and `delta2 = dL/dQ`, shaped like
        `q_values`.
    """
    q_values = as_rows("q_values", q_values)  # (n, A), or (S, n, A) stacked
    members = q_values.shape[0] if q_values.ndim == 3 else None
    *lead, n_actions = q_values.shape
    lead = tuple(lead)
    axes = "(batch,)" if members is None else "(members, batch)"
    actions = np.asarray(actions)
    if actions.shape != lead:
        raise ValueError(f"actions must have shape {axes} = {lead} to match q_values, got {actions.shape}")
    if not np.issubdtype(actions.dtype, np.integer):
        raise ValueError(f"actions must be integers, got dtype {actions.dtype}")
    if actions.min() < 0 or actions.max() >= n_actions:
        bad = actions[(actions < 0) | (actions >= n_actions)][0]
        raise ValueError(f"actions must be in [0, {n_actions}) for {n_actions} actions, got {bad}")
    td_targets = np.asarray(td_targets, dtype=q_values.dtype)
    if td_targets.shape != lead:
        raise ValueError(f"td_targets must have shape {axes} = {lead} to match q_values, got {td_targets.shape}")
    check_finite("td_targets", td_targets)
    if kind not in TD_KINDS:
        raise ValueError(f"kind must be one of {TD_KINDS}, got {kind!r}")
    if kind == "huber":
        _check_delta(delta)
    if weights is not None:
        weights = np.asarray(weights, dtype=q_values.dtype)
        if weights.shape != lead:
            raise ValueError(f"weights must have shape {axes} = {lead} to match q_values, got {weights.shape}")
        check_finite("weights", weights)
        if (weights < 0).any():
            bad = np.argwhere(weights < 0)[0]
            raise ValueError(f"weights must be >= 0, got {weights[tuple(bad)]} at index {tuple(int(i) for i in bad)}")
    bufs = TDBuffers(lead[-1], n_actions, q_values.dtype, members)
    return td_loss_unchecked(q_values, actions, td_targets, kind, delta, bufs, weights)


class TDBuffers:
    """The work arrays of `td_loss_unchecked` for `B` rows and `A` actions; after a call they hold its figures.

    With `members=S` every array gains a leading member axis: `(S, B)`, `(S, B, A)`.

    Attributes:
        q_taken: `(B,)` `Q(s_i, a_i)`; the view `stats[0]`.
        td_error: `(B,)` `Q(s_i, a_i) - y_i`, signed.
        abs_error: `(B,)` the per-sample `|Q(s_i, a_i) - y_i|`, unweighted even when the call had `weights` (what
            prioritized replay turns into priorities); a view of `stats[1]`. Valid until the next call with these
            buffers.
        stats: `(2, B)`, the rows `q_taken` and `abs_error`: one reduction gives both metrics.
        row_offsets: `(B,)` int, the flat index of `Q(s_i, 0)` in a C-ordered `(B, A)` array.
        delta2: `(B, A)` `dL/dQ`, zero outside the taken actions.
    """

    def __init__(self, n: int, n_actions: int, dtype: np.dtype, members: int | None = None) -> None:
        lead = (n,) if members is None else (members, n)
        # flat index of Q(s_i, 0) in a C-ordered (B, A) or (S, B, A) array: one `take` reaches every member's row
        self.row_offsets = (np.arange(int(np.prod(lead))) * n_actions).reshape(lead)
        self.flat_index = np.empty(lead, dtype=np.int64)  # flat index of Q(s_i, a_i)
        self.stats = np.empty((2, *lead), dtype=dtype)
        self.q_taken, self.abs_error = self.stats
        self.td_error, self.quadratic, self.tmp, self.grad_taken = (np.empty(lead, dtype=dtype) for _ in range(4))
        self.delta2 = np.zeros((*lead, n_actions), dtype=dtype)


def td_loss_unchecked(
    q_values: np.ndarray,
    actions: np.ndarray,
    td_targets: np.ndarray,
    kind: str,
    delta: float,
    bufs: TDBuffers,
    weights: np.ndarray | None = None,
) -> tuple[float | np.ndarray, np.ndarray]:
    """`td_loss` without checks, writing into `bufs` (sized for `q_values`); the same math, line for line.

    Args:
        q_values: `(B, A)` or `(S, B, A)`; actions: `(B,)` or `(S, B)` integers in `[0, A)`; td_targets: like
            `actions`, in the dtype of `q_values`; kind: `"mse"` or `"huber"`; delta: the Huber threshold;
            weights: None, or per-sample weights like `actions` in the dtype of `q_values`, finite and >= 0. All
            trusted.
        bufs: `TDBuffers(B, A, dtype, members)`; afterwards `bufs.abs_error` holds the per-sample |TD error|.

    Returns:
        The loss (float, or `(S,)` per member) and `delta2 = dL/dQ`, which is `bufs.delta2` (overwritten by the
        next call).
    """
    n = td_targets.shape[-1]
    idx = np.add(bufs.row_offsets, actions, out=bufs.flat_index)
    q_taken = q_values.take(idx, out=bufs.q_taken, mode="clip")  # Q(s_i, a_i); actions are trusted in range
    td_error = np.subtract(q_taken, td_targets, out=bufs.td_error)  # Q(s, a) - y
    if kind == "mse":
        squares = np.multiply(td_error, td_error, out=bufs.tmp)
        if weights is not None:
            np.multiply(squares, weights, out=squares)  # w_i (Q - y)^2
        loss = _per_member(np.add.reduce(squares, axis=-1) / n)  # each member's mean over its own batch
        grad_taken = np.multiply(td_error, 2.0 / n, out=bufs.grad_taken)
        if weights is not None:
            np.multiply(grad_taken, weights, out=grad_taken)  # (2/n) w_i (Q - y)
        np.abs(td_error, out=bufs.abs_error)
    else:
        loss, grad_taken = _huber(td_error, delta, n, -1, bufs.abs_error, bufs.quadratic, bufs.tmp, bufs.grad_taken,
                                  weights)
    delta2 = bufs.delta2
    delta2.fill(0)
    delta2.ravel()[idx] = grad_taken  # only the taken action's column receives gradient
    return loss, delta2
