"""The training commands' refusals and recoveries, one class per test (issue: nothing lost and no traceback):
seeds out of range, an empty env id, budgets that leave no gradient step or are rounded, a run that reached its
budget resumes with the command it printed, names too long for the file system, a checkpoint missing an array, a log
cut since its checkpoint, and a second Ctrl-C that exits at once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scripttools import writes_nothing

from agents.validate import MAX_SEED

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
TINY = ["--n-envs", "4", "--learning-starts", "32", "--batch-size", "32", "--hidden-sizes", "8", "--eval-freq", "0",
        "--no-progress", "--preset", "none"]


def run(*args: str, script: str = "scripts/train_cartpole.py", timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, script, *args], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def refused(proc: subprocess.CompletedProcess, *words: str) -> str:
    """The one stderr line of a refusal (exit 2), checked to hold `words`."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("args, words", [
    (["--seed", str(MAX_SEED + 1)], ["--seed must be an integer from 0 to 4294967295", str(MAX_SEED + 1)]),
    (["--seed", str(10**12)], ["--seed must be an integer from 0 to 4294967295"]),
    (["--env-id", ""], ["--env-id must name a Gymnasium environment", "''"]),
    (["--env-id", "  "], ["--env-id must name a Gymnasium environment"]),
    (["--total-steps", "16"], ["total_steps 16 leaves no gradient step", "learning starts after 32 steps"]),
    (["--total-steps", "64", "--n-envs", "100000"], ["n_envs 100000 is more than total_steps 64"]),
    (["--total-steps", str(10**30)], ["total_steps must be at most 10,000,000,000", str(10**30)]),
])
def test_bad_settings_are_one_line_and_nothing_is_written(tmp_path: Path, args: list[str], words: list[str]) -> None:
    out = tmp_path / "run"
    with writes_nothing(tmp_path):  # no run/
        proc = run(*TINY, "--total-steps", "64", *args, "--out", str(out))
    refused(proc, *words)
    assert proc.stdout == ""


def test_seeds_beyond_the_range_are_refused_in_a_batch(tmp_path: Path) -> None:
    with writes_nothing(tmp_path):  # no b/
        proc = run(*TINY, "--seeds", f"0,{MAX_SEED + 1}", "--total-steps", "64", "--out", str(tmp_path / "b"),
                   script="scripts/train_seeds.py")
    refused(proc, "--seeds must be integers from 0 to 4294967295", str(MAX_SEED + 1))


def test_the_largest_seed_trains_and_evaluates(tmp_path: Path) -> None:
    proc = run(*TINY[:-5], "--eval-freq", "32", "--eval-episodes", "2", "--no-progress", "--preset", "none",
               "--seed", str(MAX_SEED), "--total-steps", "64", "--out", str(tmp_path / "big"))
    assert proc.returncode == 0, proc.stderr  # its evaluation seeds stay inside int64
    assert (tmp_path / "big" / "best.npz").exists()


def test_a_name_too_long_for_the_file_system_is_one_line(tmp_path: Path) -> None:
    out = tmp_path / ("x" * 300)
    with writes_nothing(tmp_path):
        proc = run(*TINY, "--total-steps", "64", "--out", str(out))
    refused(proc, "is 300 bytes long", "allows")


def test_a_rounded_budget_is_said_up_front_and_a_finished_run_resumes_with_the_printed_command(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run(*TINY, "--total-steps", "66", "--out", str(out))  # 66 is not a multiple of 4 envs
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == ("each seed takes 68 steps: total_steps 66 rounded up to whole vector "
                                           "steps of n_envs 4")
    proc = run("--resume", str(out), "--no-progress")  # what the run printed for an interruption
    assert proc.returncode == 0, proc.stderr
    assert f"{out} reached its total of 66 steps (at step 68): finishing it" in proc.stdout


def _checkpoint_without(folder: Path, key: str) -> None:
    path = folder / "checkpoint.npz"
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    assert key in arrays
    del arrays[key]
    np.savez(path, **arrays)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    proc = run(*TINY, "--total-steps", "200", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


def test_a_checkpoint_missing_an_optimizer_array_is_refused_naming_it(finished: Path, tmp_path: Path) -> None:
    folder = tmp_path / "run"
    shutil.copytree(finished, folder)
    _checkpoint_without(folder, "agent/optim.m.W1")
    with writes_nothing(tmp_path):
        proc = run("--resume", str(folder), "--total-steps", "256", "--no-progress")
    refused(proc, "lacks 1 array(s): optim.m.W1")


def test_a_log_cut_since_its_checkpoint_is_refused(finished: Path, tmp_path: Path) -> None:
    folder = tmp_path / "run"
    shutil.copytree(finished, folder)
    lines = (folder / "progress.csv").read_text().splitlines(keepends=True)
    assert len(lines) > 4
    (folder / "progress.csv").write_text("".join(lines[:2] + lines[3:]))  # episode 2's row deleted
    with writes_nothing(tmp_path):  # the cut log is neither repaired nor trimmed
        proc = run("--resume", str(folder), "--total-steps", "256", "--no-progress")
    refused(proc, "progress.csv: the checkpoint counts", "row 3 should be episode 2")


SECOND_SIGNAL = """
import os, signal, time
from agents.run.train import stop_on_signals
with stop_on_signals() as stop:
    stop.checkpoint = "runs/x/checkpoint.npz (step 2000)"
    os.kill(os.getpid(), signal.SIG{name})
    time.sleep(0.2)
    assert stop.reason == "SIG{name}", stop.reason  # the first signal only asks to stop
    print("first seen", flush=True)
    os.kill(os.getpid(), signal.SIG{name})
    time.sleep(10)
    print("still running")
"""


@pytest.mark.parametrize("name, status", [("INT", 130), ("TERM", 143)])
def test_a_second_signal_exits_at_once_naming_the_last_checkpoint(name: str, status: int) -> None:
    proc = subprocess.run([sys.executable, "-c", SECOND_SIGNAL.format(name=name)], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=8)  # well before the 10 s sleep would end
    assert proc.returncode == status and proc.stdout == "first seen\n"
    assert proc.stderr == (f"second SIG{name}: exiting now without waiting; the last complete checkpoint is "
                           "runs/x/checkpoint.npz (step 2000)\n")


def test_the_training_commands_name_their_checkpoint_for_a_second_signal(tmp_path: Path) -> None:
    from agents.config import DQNConfig
    from agents.loop.events import StopFlag
    from agents.run import train_one

    stop = StopFlag()
    train_one(DQNConfig(n_envs=4, learning_starts=32, batch_size=32, hidden_sizes=(8,), eval_freq=0), "CartPole-v1",
              0, tmp_path / "run", 64, stop=stop)
    assert stop.checkpoint == f"{tmp_path / 'run' / 'checkpoint.npz'} (step 64)"
