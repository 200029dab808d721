"""scripts/sweep.py as a user types it: the issue's minimal SPEC on a local cluster of two workers, the same command
again, Ctrl-C, and every bad input (one line, exit status 2, nothing written)."""

from __future__ import annotations

import csv
import importlib.util
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from scripttools import writes_nothing

from agents.run.folder import RunFiles

REPO = Path(__file__).resolve().parents[2]
SCRIPT = "scripts/sweep.py"
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
MINIMAL_SPEC = """\
env_id = "CartPole-v1"
seeds = [0, 1]
total_steps = 3000
metric = "best_eval_mean"
direction = "maximize"

[base]            # DQNConfig fields held fixed
hidden_sizes = [16]
learning_starts = 200

[grid]            # or [random] / [optuna] with their own keys
learning_rate = [0.001, 0.003]
gamma = [0.95, 0.99]
"""
TINY_BASE = "[base]\nhidden_sizes = [16]\nlearning_starts = 200\nbatch_size = 32\neval_freq = 500\neval_episodes = 5\n"


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def load_script():
    spec = importlib.util.spec_from_file_location("sweep_script", REPO / SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stamps(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*")}


@pytest.mark.slow
def test_the_minimal_spec_as_written_then_the_same_command_trains_nothing(tmp_path: Path) -> None:
    (tmp_path / "sweep.toml").write_text(MINIMAL_SPEC)
    out = tmp_path / "sweep"
    proc = run(str(tmp_path / "sweep.toml"), "--out", str(out), "--workers", "2", "--no-progress")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Dask: local cluster of 2 worker processes" in proc.stdout and "dashboard:" in proc.stdout
    assert "4 completed, 0 failed, 0 unfinished of 4 trials" in proc.stdout
    with open(out / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {(r["learning_rate"], r["gamma"]) for r in rows} == {
        ("0.001", "0.95"), ("0.001", "0.99"), ("0.003", "0.95"), ("0.003", "0.99")}
    for r in rows:
        assert r["status"] == "completed" and float(r["best_eval_mean_low"]) <= float(r["best_eval_mean"]) <= \
            float(r["best_eval_mean_high"])
        for k in (0, 1):
            files = RunFiles(out / "trials" / r["trial_id"] / f"seed{k}")
            assert files.summary.exists() and files.best.exists() and files.final.exists()
    best = max(rows, key=lambda r: float(r["best_eval_mean"]))
    assert f"best: trial {best['trial_id']}" in proc.stdout
    assert tomllib.loads((out / "best.toml").read_text())["source"]["trial_id"] == best["trial_id"]
    assert (out / "spec.toml").read_text() == MINIMAL_SPEC
    if importlib.util.find_spec("matplotlib") is None:
        assert "sweep.py: warning: matplotlib is not installed: no sweep.png" in proc.stderr
    else:
        assert (out / "sweep.png").stat().st_size > 0
    before = stamps(out / "trials")
    again = run(str(tmp_path / "sweep.toml"), "--out", str(out), "--workers", "2", "--no-progress")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "4 already completed" in again.stdout
    assert stamps(out / "trials") == before


@pytest.mark.slow
def test_ctrl_c_keeps_the_finished_trials_exits_130_and_the_same_command_finishes(tmp_path: Path) -> None:
    spec = tmp_path / "sweep.toml"
    spec.write_text('env_id = "CartPole-v1"\nseeds = [0]\ntotal_steps = 4000\n' + TINY_BASE +
                    "[grid]\nlearning_rate = [0.001, 0.002, 0.003]\n")
    out = tmp_path / "sweep"
    args = [sys.executable, SCRIPT, str(spec), "--out", str(out), "--workers", "2", "--no-progress"]
    proc = subprocess.Popen(args, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while not list((out / "trials").glob("*/trial.json")) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C does: the command and its worker processes
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout + stderr
    assert "Interrupted by SIGINT" in stdout and "Traceback" not in stderr, stderr
    with open(out / "trials.csv", newline="") as f:
        statuses = [r["status"] for r in csv.DictReader(f)]
    assert "completed" in statuses and "unfinished" in statuses
    kept = {p: t for p, t in stamps(out / "trials").items() if p.is_relative_to(next((out / "trials").glob(
        "*/trial.json")).parent)}
    assert not list((out / "trials").glob(".tmp-*"))
    assert not (out / "sweep.png").exists()  # the optional plot is left to the run that finishes the sweep
    again = run(str(spec), "--out", str(out), "--workers", "2", "--no-progress")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "3 completed, 0 failed, 0 unfinished of 3 trials" in again.stdout
    assert (out / "sweep.png").exists()
    assert {p: t for p, t in stamps(out / "trials").items() if p in kept} == kept


BAD = [
    ("not toml", "env_id = 'CartPole-v1'\n[grid\n", [], "not a TOML file"),
    ("unknown field", "env_id = 'CartPole-v1'\n[grid]\nnot_a_field = [1]\n", [], "not_a_field: unknown field"),
    ("empty grid", "env_id = 'CartPole-v1'\n[grid]\ngamma = []\n", [], "gamma: an empty list of values"),
    ("out of range", "env_id = 'CartPole-v1'\n[grid]\ngamma = [0.9, 2.0]\n", [], "value 2.0 is out of range"),
    ("unknown metric", "env_id = 'CartPole-v1'\nmetric = 'speed'\n[grid]\ngamma = [0.9]\n", [],
     "unknown metric 'speed'"),
    ("workers 0", "env_id = 'CartPole-v1'\n[grid]\ngamma = [0.9]\n", ["--workers", "0"],
     "--workers must be >= 1, got 0"),
    ("unreachable scheduler", "env_id = 'CartPole-v1'\n[grid]\ngamma = [0.9]\n", ["--scheduler", "tcp://127.0.0.1:9"],
     "cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"),
    ("both", "env_id = 'CartPole-v1'\n[grid]\ngamma = [0.9]\n", ["--workers", "2", "--scheduler", "tcp://h:1"],
     "not allowed with argument"),
]


@pytest.mark.parametrize(("text", "extra", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, monkeypatch, capsys, text: str,
                                                         extra: list[str], fragment: str) -> None:
    monkeypatch.setattr("agents.run.cluster.CONNECT_TIMEOUT", "0.5s")
    (tmp_path / "spec.toml").write_text(text)
    out = tmp_path / "sweep"
    with writes_nothing(tmp_path), pytest.raises(SystemExit) as e:  # no sweep/, the SPEC as it was
        load_script().main([str(tmp_path / "spec.toml"), "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert err.startswith("sweep.py: error: ") and err.count("\n") == 1 and fragment in err, err


def test_a_changed_spec_in_the_same_folder_is_refused_and_nothing_changes(tmp_path: Path, capsys) -> None:
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "spec.toml").write_text(MINIMAL_SPEC)
    (tmp_path / "spec.toml").write_text(MINIMAL_SPEC.replace("gamma = [0.95, 0.99]", "gamma = [0.9]"))
    with writes_nothing(tmp_path), pytest.raises(SystemExit) as e:  # the folder holds its spec.toml only, as it was
        load_script().main([str(tmp_path / "spec.toml"), "--out", str(out)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert "grid.gamma: [0.95, 0.99] in spec.toml, [0.9] now" in err


def test_without_the_extra_one_line_says_how_to_install_it(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)
    (tmp_path / "spec.toml").write_text(MINIMAL_SPEC)
    with writes_nothing(tmp_path), pytest.raises(SystemExit) as e:  # no sweep/
        load_script().main([str(tmp_path / "spec.toml"), "--out", str(tmp_path / "sweep")])
    assert e.value.code == 2
    assert capsys.readouterr().err == "sweep.py: error: a sweep needs the [sweep] extra: pip install -e '.[sweep]'\n"


@pytest.mark.slow
def test_bench_sweep_prints_its_figures() -> None:
    proc = subprocess.run([sys.executable, "scripts/bench_sweep.py", "--repeats", "1", "--total-steps", "1100",
                           "--seeds", "1"], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 worker(s): wall" in proc.stdout and "2 worker(s): wall" in proc.stdout
    assert "8/8 completed" in proc.stdout and "speedup" in proc.stdout and "overhead per trial" in proc.stdout
