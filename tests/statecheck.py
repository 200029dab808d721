"""Test helpers shared across test modules (on pytest's `pythonpath`, see pyproject.toml)."""

import numpy as np


def assert_states_equal(a, b, path: str = "") -> None:
    """Nested state (dicts, lists, arrays, scalars) equal, NaN equal to NaN; arrays bit for bit, dtype included."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for k in a:
            assert_states_equal(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_states_equal(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=path)
        assert np.asarray(a).dtype == np.asarray(b).dtype, path
    else:
        assert a == b or (a != a and b != b), f"{path}: {a!r} != {b!r}"
