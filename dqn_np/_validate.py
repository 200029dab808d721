"""Argument checks shared by the public functions: fail early, name the argument, say what was expected."""

from __future__ import annotations

import numpy as np


def as_2d(name: str, x: np.ndarray, n_cols: int | None = None, dtype: np.dtype | None = None) -> np.ndarray:
    """Return `x` as a finite 2-D array `(batch, n_cols)`, raising ValueError otherwise."""
    x = np.asarray(x, dtype=dtype)
    if x.ndim != 2 or x.shape[0] == 0 or (n_cols is not None and x.shape[1] != n_cols):
        want = f"(batch, {n_cols})" if n_cols is not None else "(batch, n)"
        raise ValueError(f"{name} must have shape {want} with batch >= 1, got shape {x.shape}")
    check_finite(name, x)
    return x


def as_batch(
    name: str, x: np.ndarray, n_cols: int, dtype: np.dtype | None = None, members: int | None = None,
    finite: bool = True,
) -> np.ndarray:
    """`as_2d` for an unstacked network (`members` None); for S members a finite `(S, batch, n_cols)` array.

    With `finite=False` a stacked array's values are not checked (a member stopped for non-finite input must not
    stop the others).
    """
    if members is None:
        return as_2d(name, x, n_cols, dtype)
    x = np.asarray(x, dtype=dtype)
    if x.ndim != 3 or x.shape[0] != members or x.shape[1] == 0 or x.shape[2] != n_cols:
        raise ValueError(f"{name} must have shape (members, batch, {n_cols}) = ({members}, batch, {n_cols}) with "
                         f"batch >= 1, got shape {x.shape}")
    if finite:
        check_finite(name, x)
    return x


def as_rows(name: str, x: np.ndarray) -> np.ndarray:
    """A finite `(batch, n)` array, or `(S, batch, n)` from a stacked network of S members (the losses' input)."""
    x = np.asarray(x)
    return as_batch(name, x, x.shape[2], None, x.shape[0]) if x.ndim == 3 else as_2d(name, x)


def check_finite(name: str, x: np.ndarray) -> None:
    """Raise ValueError if `x` holds NaN or inf, naming the first bad entry."""
    if not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(f"{name} must be finite, got {x[tuple(bad)]} at index {tuple(int(i) for i in bad)}")


def check_same_shape(name: str, x: np.ndarray, ref_name: str, ref: np.ndarray) -> None:
    """Raise ValueError unless `x` and `ref` have the same shape."""
    if x.shape != ref.shape:
        raise ValueError(f"{name} must have the shape of {ref_name} {ref.shape}, got {x.shape}")
