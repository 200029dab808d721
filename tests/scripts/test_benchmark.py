"""scripts/benchmark.py, run the way a user types it, on a tiny budget: a row per seed in the table and the JSON,
medians over the seeds, the time split by phase, nothing left in the temporary folder, and a one-line error instead
of a traceback when the runs folder is already used."""

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from scripttools import JSON_REFUSALS, load_script, make_output_paths, writes_nothing

REPO = Path(__file__).resolve().parents[2]
SEEDS = [0, 1]
ARGS = ["--seeds", ",".join(map(str, SEEDS)), "--total-steps", "1500", "--n-envs", "4", "--learning-starts", "200",
        "--eval-freq", "500", "--eval-episodes", "3", "--final-eval-episodes", "3", "--hidden-sizes", "16"]


def run(*args: str, tmpdir: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)} | ({"TMPDIR": str(tmpdir)} if tmpdir else {})
    return subprocess.run([sys.executable, "scripts/benchmark.py", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def test_tiny_benchmark_reports_every_seed_and_the_medians(tmp_path: Path) -> None:
    json_path, out = tmp_path / "bench.json", tmp_path / "runs"
    proc = run(*ARGS, "--json", str(json_path), "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr

    result = json.loads(json_path.read_text())
    assert "{" not in proc.stdout  # the JSON goes to --json only, not to the terminal
    assert result["total_steps"] == 1500 and result["config"]["hidden_sizes"] == [16]
    rows = result["seeds"]
    assert [r["seed"] for r in rows] == SEEDS
    for r in rows:
        assert r["train_seconds"] > 0 and r["steps"] == 1500
        assert r["updates"] == 0 or (r["update_seconds"] > 0 and r["sample_seconds"] > 0 and r["us_per_update"] > 0)
        assert r["best_ckpt_mean"] is not None and r["best_ckpt_mean"] >= 1
        assert r["collect_seconds"] > 0 and r["us_per_transition_collect"] > 0
        assert r["collect_seconds"] + r["sample_seconds"] + r["update_seconds"] <= r["train_seconds"]
        summary = json.loads((out / f"seed{r['seed']}" / "summary.json").read_text())
        assert summary["seed"] == r["seed"] and summary["env_steps"] == 1500
        assert summary["train_seconds"] == r["train_seconds"]
    medians = result["medians"]
    for key in ("train_seconds", "update_seconds", "us_per_update", "best_eval_mean", "best_ckpt_mean"):
        assert medians[key] == statistics.median(r[key] for r in rows), key
    assert medians["solved_at_step"] is None  # 3 evaluation episodes can never count as solved
    assert result["n_solved"] == 0 and result["failed_seeds"] == SEEDS
    assert result["peak_rss_mb"] > 0

    lines = proc.stdout.splitlines()
    assert "2 seeds x 1500 steps" in lines[0] and "gradient steps per seed" in lines[0]  # what it will do, first
    assert lines[1].split()[0] == "seed"
    table = [line.split() for line in lines[2:] if line.split() and line.split()[0].isdigit()]
    assert [int(cells[0]) for cells in table] == SEEDS
    for cells, r in zip(table, rows, strict=True):
        assert float(cells[3]) == round(r["train_seconds"], 2)
    assert any(line.startswith("median: ") for line in lines)
    assert any(line.startswith("time split") and "peak RSS" in line for line in lines)


def test_without_out_nothing_is_left_in_the_temporary_folder(tmp_path: Path) -> None:
    proc = run(*ARGS, "--seeds", "0", tmpdir=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_reusing_a_runs_folder_is_one_line_and_exit_2(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    (out / "seed0").mkdir(parents=True)
    (out / "seed0" / "checkpoint.npz").write_bytes(b"an earlier run")
    with writes_nothing(tmp_path):  # the earlier run as it was, no seed1/
        proc = run(*ARGS, "--out", str(out))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("benchmark.py: error: ")
    assert str(out / "seed0" / "checkpoint.npz") in lines[0]


def test_bad_option_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with writes_nothing(tmp_path):  # no runs/, and no temporary folder left (TMPDIR is tmp_path)
        proc = run("--seeds", "0", "--total-steps", "0", "--out", str(tmp_path / "runs"), tmpdir=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "--total-steps" in proc.stderr


@pytest.fixture(scope="module")
def script():
    """scripts/benchmark.py as a module, to run `main` in-process."""
    return load_script("benchmark")


@pytest.mark.parametrize(("args", "fragment"), [
    *JSON_REFUSALS,
    (["--out", "file"], "it is a file, not a folder"),
    (["--out", "file/runs"], "is not a folder"),
    (["--out", "n" * 300], "bytes long"),
    (["--out", "runs", "--seeds", "0-3"], "a run of seed 3"),  # seeds 0-2 would have trained before the refusal
    (["--seeds", str(2**40)], "--seeds[0] must be an integer <= 4294967295"),
    (["--final-eval-episodes", "0"], "--final-eval-episodes must be an integer from 1 to 1000000, got 0"),
    (["--total-steps", str(10**30)], "--total-steps must be an integer from 1 to 1000000000"),
], ids=["json-missing-folder", "json-a-folder", "json-under-a-file", "json-name-too-long", "json-exists",
        "out-a-file", "out-under-a-file", "out-name-too-long", "out-seed-3-holds-a-run", "seed-too-large",
        "zero-final-episodes", "total-steps-huge"])
def test_every_output_is_checked_before_the_first_seed_trains(args, fragment, script, capsys, monkeypatch,
                                                              tmp_path):
    monkeypatch.chdir(tmp_path)
    make_output_paths(tmp_path)
    (tmp_path / "runs" / "seed3").mkdir(parents=True)
    (tmp_path / "runs" / "seed3" / "summary.json").write_text("{}")
    monkeypatch.setattr(script, "run_seed", lambda *a, **k: pytest.fail("trained despite bad input"))
    with writes_nothing(tmp_path), pytest.raises(SystemExit) as exc:
        script.main(["--seeds", "0", *args])
    out, err = capsys.readouterr()
    assert exc.value.code == 2 and out == "" and err.count("\n") == 1 and fragment in err, err


def test_help_shows_every_default() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    options = [line for line in proc.stdout.split("options:")[1].split("DQN hyperparameters")[0].split("\n  -")[2:]]
    assert options and all("default" in " ".join(o.split()) for o in options if not o.startswith("-force")), options
