"""scripts/bench_extensions.py, run the way a user types it, on a tiny budget: its figures, not their values."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/bench_extensions.py", *args], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)


def test_it_prints_both_targets_per_member_count_and_writes_them(tmp_path: Path) -> None:
    out = tmp_path / "ext.json"
    proc = run("--members", "1", "3", "--capacity", "500", "--steps", "3", "--repeats", "2", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    for S in (1, 3):
        assert f"S = {S} " in proc.stdout
    assert proc.stdout.count("target <= +25%") == 2 and proc.stdout.count("target <= +15%") == 2
    figures = json.loads(out.read_text())
    assert set(figures) == {"1", "3"}
    for row in figures.values():
        assert set(row["us_per_member_step"]) == {"uniform", "prioritized", "dueling"}
        for phases in row["us_per_member_step"].values():
            assert all(math.isfinite(v) and v >= 0 for v in phases.values())
        assert row["us_per_member_step"]["prioritized"]["priorities"] > 0  # the priority update ran
        assert math.isfinite(row["prioritized_extra_over_step"]) and math.isfinite(row["dueling_extra_over_update"])


def test_bad_input_is_one_line_with_status_2() -> None:
    proc = run("--batch", "600", "--capacity", "500")
    assert proc.returncode == 2 and "--batch must be <= --capacity (500), got 600" in proc.stderr
    assert "Traceback" not in proc.stderr
