"""The validators every public boundary of `agents` uses: one place for "an integer, not a bool" and its kin.

Each returns the value in its plain Python form, or raises `ValueError` naming the argument, the value it got and
what is allowed. Inside the packages, code that already holds checked values does not call them again.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

MAX_SEED = 2**32 - 1
"""Seeds are integers in [0, 2**32 - 1] (4,294,967,295): the evaluation episodes' reset seeds derived from a seed
(`seed * 10_000_019 + ...`, `agents.loop.evaluation`) then stay well inside int64, the type checkpoints store."""


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


def path_fits(path: str | Path, what: str) -> Path:
    """`path` as a Path whose every name fits the file system (with room for the temporary suffix of an atomic
    write), or a one-line ValueError naming the name that does not; checked before anything is written."""
    path = Path(path)
    name_max = 255  # the file system's limit where it can be asked (an existing folder on the way), else 255
    for folder in path.parents:
        try:
            if folder.is_dir():
                name_max = os.pathconf(folder, "PC_NAME_MAX")
                break
        except (OSError, ValueError):  # a name on the way too long to even look up
            continue
    for part in path.parts:
        size = len(os.fsencode(part))
        if size > name_max - _TEMP_SUFFIX:
            raise ValueError(f"{what} {path}: the name {part[:30]}... is {size} bytes long; this file "
                             f"system allows {name_max}, less {_TEMP_SUFFIX} for the temporary file of a safe write")
    return path


_TEMP_SUFFIX = 32
"""Bytes kept free in every file name for the suffix of an atomic write's temporary file."""


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
