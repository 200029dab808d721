"""scripts/bench_extensions.py, run the way a user types it, on a tiny budget: its figures, not their values."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from scripttools import JSON_REFUSALS, load_script, make_output_paths, writes_nothing

REPO = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "bench_extensions.py"), *args], cwd=cwd,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)


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


def test_bad_input_is_one_line_with_status_2(tmp_path: Path) -> None:
    with writes_nothing(tmp_path):  # run from an empty folder: it stays empty
        proc = run("--batch-size", "600", "--capacity", "500", cwd=tmp_path)
    assert proc.returncode == 2 and "--batch-size must be <= --capacity (500), got 600" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


@pytest.fixture(scope="module")
def script():
    """scripts/bench_extensions.py as a module, to run `main` in-process."""
    return load_script("bench_extensions")


@pytest.mark.parametrize(("args", "fragment"), [
    *JSON_REFUSALS,
    (["--members", str(10**9)], "of memory are available"),
    (["--seed", "-1"], "--seed must be an integer from 0 to"),
    (["--steps", "0"], "--steps must be >= 1, got 0"),
], ids=["missing-folder", "a-folder", "under-a-file", "name-too-long", "existing-file", "too-much-memory",
        "negative-seed", "zero-steps"])
def test_unusable_outputs_and_sizes_are_refused_before_any_work(args, fragment, script, capsys, monkeypatch,
                                                                tmp_path):
    monkeypatch.chdir(tmp_path)
    make_output_paths(tmp_path)
    monkeypatch.setattr(script, "build", lambda *a, **k: pytest.fail("built buffers despite bad input"))
    with writes_nothing(tmp_path), pytest.raises(SystemExit) as exc:
        script.main(["--members", "1", "--capacity", "500", *args])
    out, err = capsys.readouterr()
    assert exc.value.code == 2 and out == "" and err.count("\n") == 1 and fragment in err, err


def test_force_replaces_an_existing_json(tmp_path: Path) -> None:
    out = tmp_path / "ext.json"
    out.write_text("earlier figures")
    proc = run("--members", "1", "--capacity", "300", "--steps", "2", "--repeats", "1", "--json", str(out), "--force")
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads(out.read_text())) == {"1"} and sorted(tmp_path.iterdir()) == [out]
