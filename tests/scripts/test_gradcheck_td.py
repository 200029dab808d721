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


def test_bad_argument_is_a_usage_error():
    result = run_check("--batch", "0")
    assert result.returncode == 2
    assert "--batch" in result.stderr and "Traceback" not in result.stderr
