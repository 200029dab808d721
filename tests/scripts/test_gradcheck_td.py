"""scripts/gradcheck_td.py, run the way a user types it: the TD-loss gradient check on real CartPole data."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PARAMS = ("W1", "b1", "W2", "b2", "W3", "b3")


def run_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "scripts/gradcheck_td.py", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def table_rows(out: str) -> dict[str, tuple[float, str]]:
    """`{param: (relative error, verdict)}` from the format_report table."""
    rows = re.findall(r"^(W\d+|b\d+)\s+\([\d, ]+\)\s+\d+\s+(\S+)\s+\S+\s+(pass|FAIL)$", out, re.M)
    return {name: (float(rel), verdict) for name, rel, verdict in rows}


@pytest.mark.parametrize(
    ("args", "header"),
    [
        ((), ["loss         huber", "double DQN   true"]),
        (("--loss", "mse", "--double-dqn", "false"), ["loss         mse", "double DQN   false", "head         linear"]),
        (("--dueling", "true", "--weights", "true"),
         ["head         dueling: Q = V + A - mean_a A", "each sample weighted by its IS weight"]),
    ],
)
def test_every_parameter_passes(args, header):
    result = run_check(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for text in ["real CartPole-v1 data", "transitions  300", "batch of 64", "Q 4 -> 32 -> 32 -> 2 float64", *header]:
        assert text in out
    rows = table_rows(out)
    assert tuple(rows) == PARAMS
    assert all(verdict == "pass" and rel < 1e-6 for rel, verdict in rows.values())
    assert "all 6 parameters pass" in out


def test_impossible_tolerance_fails_with_status_1():
    result = run_check("--tol", "1e-30", "--max-entries", "4")
    assert result.returncode == 1, result.stdout + result.stderr
    rows = table_rows(result.stdout)
    assert tuple(rows) == PARAMS
    assert any(verdict == "FAIL" for _, verdict in rows.values())
    assert "FAIL:" in result.stdout


@pytest.mark.parametrize(("args", "fragment"), [
    (("--batch-size", "0"), "--batch-size must be an integer from 1 to --transitions (300), got 0"),
    (("--batch-size", "301"), "--batch-size must be an integer from 1 to --transitions (300), got 301"),
    (("--tol", "-1"), "--tol must be a number in (0, 1)"),
    (("--tol", "nan"), "--tol must be a number in (0, 1)"),
    (("--tol", "0"), "--tol must be a number in (0, 1)"),
    (("--tol", "inf"), "--tol must be a number in (0, 1)"),
    (("--tol", "1"), "--tol must be a number in (0, 1)"),
    (("--max-entries", "0"), "--max-entries must be at least 1, got 0"),
    (("--seed", "-1"), "--seed must be an integer from 0 to"),
    (("--seed", str(10**30)), "--seed must be an integer from 0 to"),
    (("--transitions", str(10**9)), "--transitions must be an integer from 1 to 100000"),
    (("--hidden-sizes", "0"), "--hidden-sizes must be 1 to 8 widths, each 1 to 1024, got [0]"),
    (("--hidden-sizes", "4096"), "each 1 to 1024"),
    (("--hidden", "4", "--lr", "1"), "unrecognized arguments: --hidden 4 --lr 1 (did you mean --hidden-sizes?)"),
], ids=lambda v: "-".join(v) if isinstance(v, tuple) else None)
def test_bad_argument_is_a_one_line_usage_error(args, fragment, tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "gradcheck_td.py"), *args], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("gradcheck_td.py: error: "), result.stderr
    assert fragment in result.stderr
    assert list(tmp_path.iterdir()) == []  # run from an empty folder: it stays empty
