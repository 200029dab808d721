"""The validators every public boundary of `agents` uses: one place for "an integer, not a bool" and its kin.

Each returns the value in its plain Python form, or raises `ValueError` naming the argument, the value it got and
what is allowed. Inside the packages, code that already holds checked values does not call them again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

MAX_SEED = 2**63 - 1
"""Seeds are int64 (NumPy's `SeedSequence` takes any non-negative int, but the checkpoints store int64)."""


def is_integer(value: Any) -> bool:
    """True for a Python or NumPy integer that is not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_real(value: Any) -> bool:
    """True for a Python or NumPy int or float that is not a bool (finite or not)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def is_plain_int(value: Any) -> bool:
    """True for a Python int that is not a bool (what a JSON config may hold)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_plain_real(value: Any) -> bool:
    """True for a finite Python int or float that is not a bool (what a JSON config may hold)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float range (e.g. 10**400) is no finite float either
        return False


def integer(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """`value` as an int in `[minimum, maximum]` (either bound may be None), or a ValueError naming it.

    Example:
        >>> integer("n_envs", 4, minimum=1)
        4
    """
    if not is_integer(value):
        raise ValueError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be an integer <= {maximum}, got {value}")
    return value


def positive_int(name: str, value: Any) -> int:
    """`value` as an int >= 1."""
    return integer(name, value, minimum=1)


def optional_positive_int(name: str, value: Any) -> int | None:
    """None, or `value` as an int >= 1."""
    return None if value is None else positive_int(name, value)


def real(name: str, value: Any, finite: bool = True) -> float:
    """`value` as a float (a Python or NumPy real number, not a bool); finite unless told otherwise."""
    if not is_real(value):
        raise ValueError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    try:
        value = float(value)
    except OverflowError:
        raise ValueError(f"{name} must be a finite number, got an integer beyond float range") from None
    if finite and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return value


def seeds(value: Sequence[Any], name: str = "seeds") -> list[int]:
    """A list of distinct seeds in `[0, MAX_SEED]`, or a ValueError naming the first bad one (linear time)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence | np.ndarray):
        raise ValueError(f"{name} must be a sequence of integers, got {value!r}")
    out = [integer(f"{name}[{i}]", s, 0, MAX_SEED) for i, s in enumerate(value)]
    if not out:
        raise ValueError(f"{name} must name at least one seed, got none")
    seen: set[int] = set()
    repeated = sorted({s for s in out if s in seen or seen.add(s)})  # type: ignore[func-returns-value]
    if repeated:
        raise ValueError(f"{name} must be distinct, got {repeated[:10]} more than once")
    return out


def seed(value: Any, name: str = "seed") -> int:
    """One seed in `[0, MAX_SEED]`."""
    return integer(name, value, 0, MAX_SEED)
