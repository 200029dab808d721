"""scripts/train_cartpole.py, run exactly as a user types it: the run folder, --help, bit-identical resume, trimming
of logs written after the last checkpoint, clean interruption by SIGINT/SIGTERM, and one-line usage errors."""

import csv
import dataclasses
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scripttools import writes_nothing

from agents.algo.dqn import DQNAgent
from agents.config import DQNConfig, field_docs
from agents.loop.events import EpisodeRow, EvalRow
from agents.run.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint

REPO = Path(__file__).resolve().parents[2]
SCRIPT = "scripts/train_cartpole.py"
PROG = "train_cartpole.py"
N_ENVS = 4  # the run's steps move in fours: every total below is a multiple of it
TINY = ["--learning-starts", "200", "--eval-freq", "500", "--eval-episodes", "3", "--hidden-sizes", "16",
        "--n-envs", str(N_ENVS), "--no-progress"]
SUMMARY_KEYS = {"env_id", "seed", "env_steps", "wall_seconds", "train_seconds", "solved", "solved_at_step",
                "solved_at_seconds", "best_eval_mean", "final_eval_mean", "final_eval_std", "eval_episodes", "status"}
HEADER_KEYS = {"format", "format_version", "config", "meta"}


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "120"}
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def ok(*args: str) -> subprocess.CompletedProcess:
    proc = run(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def assert_usage_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit status 2 and exactly one readable line on stderr, containing every fragment."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{PROG}: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def read_csv(path: Path, drop: str | None = "train_seconds") -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        header, *rows = list(csv.reader(f))
    if drop is None:
        return header, rows
    keep = [i for i, name in enumerate(header) if name != drop]
    assert len(keep) == len(header) - 1, f"{path.name} has no {drop} column"
    return [header[i] for i in keep], [[row[i] for i in keep] for row in rows]


def episode_numbers(run_dir: Path) -> list[int]:
    return [int(row[0]) for row in read_csv(run_dir / "progress.csv")[1]]


def npz_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files if k not in HEADER_KEYS}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One tiny completed run, shared by the tests that only read it (copy it before changing anything)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    proc = ok("--total-steps", "1500", *TINY, "--out", str(out))
    return out, proc


def copy_run(finished_run, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(finished_run[0], dst)
    return dst


# --- end to end ---------------------------------------------------------------------------------------------------


def test_run_writes_every_file_and_a_complete_summary(finished_run) -> None:
    out, proc = finished_run
    for name in ("progress.csv", "evals.csv", "best.npz", "final.npz", "checkpoint.npz", "config.json", "summary.json"):
        assert (out / name).is_file(), name
    assert "Traceback" not in proc.stderr

    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= SUMMARY_KEYS
    assert summary["env_id"] == "CartPole-v1" and summary["seed"] == 0 and summary["status"] == "completed"
    assert summary["env_steps"] == 1500
    assert summary["wall_seconds"] > 0 and summary["train_seconds"] > 0
    assert summary["wall_seconds"] >= summary["train_seconds"]
    assert summary["eval_episodes"] == 3
    # 3 evaluation episodes are too few to count as solved (at least 20 are needed).
    assert summary["solved"] is False and summary["solved_at_step"] is None and summary["solved_at_seconds"] is None
    assert summary["final_eval_mean"] >= 1 and summary["final_eval_std"] >= 0

    header, rows = read_csv(out / "progress.csv", drop=None)
    assert tuple(header) == EpisodeRow._fields
    assert len(rows) == summary["episodes"] > 0
    assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1))
    steps = [int(r[1]) for r in rows]
    assert steps == sorted(steps) and steps[-1] <= 1500
    # finished episodes' lengths plus the steps of the episodes still running in each env add up to the counter
    running = load_checkpoint(out / "checkpoint.npz").arrays["collector/episode_length"]
    assert running.shape == (N_ENVS,)
    assert sum(int(r[3]) for r in rows) + int(running.sum()) == summary["env_steps"]

    header, rows = read_csv(out / "evals.csv", drop=None)
    assert tuple(header) == EvalRow._fields
    assert [int(r[1]) for r in rows] == [500, 1000, 1500]
    assert summary["best_eval_mean"] == max(float(r[2]) for r in rows)

    config = json.loads((out / "config.json").read_text())
    assert config["env_id"] == "CartPole-v1" and config["seed"] == 0 and config["total_steps"] == 1500
    assert DQNConfig.from_json(json.dumps(config["config"])) == DQNConfig(
        hidden_sizes=(16,), learning_starts=200, eval_freq=500, eval_episodes=3, n_envs=N_ENVS)

    assert load_checkpoint(out / "checkpoint.npz").meta["env_steps"] == 1500
    assert DQNAgent.load(out / "final.npz").n_updates == summary["updates"] > 0
    assert DQNAgent.load(out / "best.npz").config.hidden_sizes == (16,)

    lines = proc.stdout.strip().splitlines()
    assert any(line.startswith("CartPole-v1 seed 0: 1500 steps in ") for line in lines), proc.stdout
    assert lines[-1].startswith(f"files in {out} "), proc.stdout
    if importlib.util.find_spec("matplotlib") is None:
        assert "matplotlib is not installed" in proc.stdout
        assert not (out / "learning_curve.png").exists()
    else:
        assert (out / "learning_curve.png").stat().st_size > 0


def test_help_lists_every_config_field_with_its_docstring() -> None:
    proc = ok("--help")

    def normalize(text: str) -> str:  # argparse wraps lines, and may break after a hyphen
        return re.sub(r"-\s+", "-", " ".join(text.split()))

    text = normalize(proc.stdout)
    docs = field_docs()
    for field in dataclasses.fields(DQNConfig):
        flag = "--" + field.name.replace("_", "-")
        assert re.search(rf"(^|\s){re.escape(flag)}\s", proc.stdout), flag
        assert docs.get(field.name), f"DQNConfig.{field.name} has no docstring"
        assert normalize(docs[field.name]) in text, field.name


# --- resume -------------------------------------------------------------------------------------------------------


def mid_episode_step(run_dir: Path, after: int) -> int:
    """A step count N > `after`, a multiple of the envs, at which an episode of this run is still going."""
    for row in read_csv(run_dir / "progress.csv")[1]:
        end, length = int(row[1]), int(row[3])
        if end - N_ENVS > after and length >= 2:
            return end - N_ENVS  # that episode started before and ended after this vector step
    raise AssertionError(f"no episode of {run_dir} ends after step {after + N_ENVS}")


@pytest.mark.parametrize("optimizer", [["--optimizer", "adam"], ["--optimizer", "sgd", "--momentum", "0.9"]],
                         ids=["adam", "sgd-momentum"])
def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path: Path, optimizer: list[str]) -> None:
    a, b = tmp_path / "A", tmp_path / "B"
    ok(*TINY, *optimizer, "--total-steps", "4000", "--out", str(b))
    n = mid_episode_step(b, after=1500)  # so the resume must rebuild a half-played episode
    ok(*TINY, *optimizer, "--total-steps", str(n), "--checkpoint-every", "500", "--out", str(a))
    at_n = load_checkpoint(a / "checkpoint.npz")
    assert at_n.meta["env_steps"] == n
    assert at_n.arrays["collector/episode_length"].max() > 0  # saved mid-episode
    ok("--resume", str(a), "--total-steps", "4000", "--no-progress")

    final_a, final_b = npz_arrays(a / "final.npz"), npz_arrays(b / "final.npz")
    assert set(final_a) == set(final_b)
    for prefix in ("online.", "target.", "optim."):
        assert any(k.startswith(prefix) for k in final_a), prefix
    for key in final_a:
        assert np.array_equal(final_a[key], final_b[key]), key
    ckpt_a, ckpt_b = npz_arrays(a / "checkpoint.npz"), npz_arrays(b / "checkpoint.npz")  # replay, best, envs
    assert set(ckpt_a) == set(ckpt_b) and any(k.startswith("replay/") for k in ckpt_a)
    for key in ckpt_a:
        assert np.array_equal(ckpt_a[key], ckpt_b[key]), key

    for name in ("progress.csv", "evals.csv"):
        assert read_csv(a / name) == read_csv(b / name), name
    assert episode_numbers(a) == list(range(1, len(episode_numbers(a)) + 1))
    summary_a, summary_b = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    for key in ("env_steps", "episodes", "updates", "best_eval_mean", "best_eval_step", "final_eval_mean"):
        assert summary_a[key] == summary_b[key], key
    assert summary_a["env_steps"] == 4000 and summary_a["updates"] > 0


def test_resume_trims_rows_written_after_the_last_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    ok(*TINY, "--total-steps", "1000", "--checkpoint-every", "1000", "--out", str(out))
    saved = tmp_path / "checkpoint-at-1000.npz"
    shutil.copy2(out / "checkpoint.npz", saved)
    episodes_at_1000 = load_checkpoint(saved).meta["collector"]["episodes"]
    ok("--resume", str(out), "--total-steps", "2000", "--checkpoint-every", "1000", "--no-progress")
    progress_2000, evals_2000 = read_csv(out / "progress.csv"), read_csv(out / "evals.csv")
    assert len(progress_2000[1]) > episodes_at_1000

    shutil.copy2(saved, out / "checkpoint.npz")  # a crash after step 1000: the logs ran ahead of the checkpoint
    ok("--resume", str(out), "--total-steps", "2000", "--no-progress")
    numbers = episode_numbers(out)
    assert numbers == list(range(1, len(numbers) + 1))  # no duplicated episodes
    assert read_csv(out / "progress.csv") == progress_2000
    assert read_csv(out / "evals.csv") == evals_2000


def test_resume_with_config_flags_is_refused(finished_run, tmp_path: Path) -> None:
    out = copy_run(finished_run, tmp_path)
    with writes_nothing(out):
        proc = run("--resume", str(out), "--gamma", "0.5", "--total-steps", "3000")
    assert_usage_error(proc, "--resume", "gamma")


@pytest.mark.parametrize("flag", [("--dueling", "true"), ("--prioritized", "true")])
def test_resume_refuses_to_switch_the_head_or_the_sampler(finished_run, tmp_path: Path, flag) -> None:
    out = copy_run(finished_run, tmp_path)
    with writes_nothing(out):
        proc = run("--resume", str(out), *flag, "--total-steps", "3000")
    assert_usage_error(proc, "--resume", flag[0])


def test_fresh_run_into_a_used_folder_is_refused(finished_run, tmp_path: Path) -> None:
    out = copy_run(finished_run, tmp_path)
    with writes_nothing(out):
        proc = run("--total-steps", "1500", *TINY, "--out", str(out))
    assert_usage_error(proc, "--resume", str(out))


def test_total_steps_below_the_steps_taken_is_refused(finished_run, tmp_path: Path) -> None:
    out = copy_run(finished_run, tmp_path)
    # Without --no-progress: no stray progress bar may reach stderr before the error.
    with writes_nothing(out):
        proc = run("--resume", str(out), "--total-steps", "1000")
    assert_usage_error(proc, "--total-steps 1000", "1500")


# --- interruption -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_leaves_a_resumable_checkpoint(tmp_path: Path, signum: int, status: int) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, SCRIPT, *TINY, "--total-steps", "200000", "--checkpoint-every", "0", "--out", str(out)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not ((out / "progress.csv").exists() and len((out / "progress.csv").read_text().splitlines()) > 4):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run wrote no progress rows within 60 s"
            time.sleep(0.05)
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == status, stdout + stderr
    assert "Traceback" not in stderr
    assert "--resume" in stdout and str(out) in stdout

    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert summary["interrupted"] == signal.Signals(signum).name
    steps = summary["env_steps"]
    assert 0 < steps < 200_000
    assert load_checkpoint(out / "checkpoint.npz").meta["env_steps"] == steps

    ok("--resume", str(out), "--total-steps", str(steps + 300), "--no-progress")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["env_steps"] == steps + 300
    numbers = episode_numbers(out)
    assert numbers == list(range(1, len(numbers) + 1))


# --- bad input ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--gamma", "1.5"], "gamma"),
        (["--batch-size", "0"], "batch_size"),
        (["--learning-starts", "10"], "learning_starts"),
        (["--optimizer", "rmsprop"], "rmsprop"),
        (["--loss", "l1"], "l1"),
        (["--hidden-sizes", "0"], "hidden_sizes"),
        (["--env-id", "NoSuchEnv-v0"], "NoSuchEnv-v0"),
        (["--env-id", "Pendulum-v1"], "action space"),
        (["--n-envs", "0"], "n_envs must be >= 1, got 0"),
        (["--n-step", "0"], "n_step must be >= 1"),
        (["--n-step", "100", "--buffer-size", "50", "--batch-size", "16", "--learning-starts", "16"],
         "n_step must be <= buffer_size (50), got 100"),
        (["--prioritized", "true", "--prioritized-alpha", "1.5"], "prioritized_alpha must be in [0, 1], got 1.5"),
        (["--prioritized", "true", "--prioritized-beta", "-0.1"], "prioritized_beta must be in [0, 1], got -0.1"),
        (["--prioritized", "true", "--prioritized-eps", "0"], "prioritized_eps must be > 0, got 0.0"),
        (["--prioritized", "true", "--buffer-size", "100"], "batch_size must be <= buffer_size (100), got 128"),
        (["--dueling", "maybe"], "maybe"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_bad_option_is_one_line_and_exit_2(tmp_path: Path, args: list[str], fragment: str) -> None:
    out = tmp_path / "run"
    with writes_nothing(tmp_path):  # no run/
        proc = run("--total-steps", "1500", "--no-progress", "--out", str(out), *args)
    assert_usage_error(proc, fragment)


def _real_checkpoint(finished_run, path: Path) -> None:
    shutil.copy2(finished_run[0] / "checkpoint.npz", path)


def _truncated(finished_run, path: Path) -> None:
    data = (finished_run[0] / "checkpoint.npz").read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _random_bytes(finished_run, path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(50_000))


def _not_ours(finished_run, path: Path) -> None:
    with open(path, "wb") as f:
        np.savez(f, weights=np.zeros((4, 4)))


def _resaved(finished_run, path: Path, **changes) -> None:
    with np.load(finished_run[0] / "checkpoint.npz", allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    with open(path, "wb") as f:
        np.savez(f, **{**arrays, **changes})


def _newer_version(finished_run, path: Path) -> None:
    _resaved(finished_run, path, format_version=np.array(FORMAT_VERSION + 1, dtype=np.int64))


def _pickled(finished_run, path: Path) -> None:
    _resaved(finished_run, path, extra=np.array([{"a": 1}], dtype=object))


def _wrong_network(finished_run, path: Path) -> None:
    """A real training checkpoint whose network takes 3 observation values instead of CartPole's 4."""
    ckpt = load_checkpoint(finished_run[0] / "checkpoint.npz")
    meta = {k: v for k, v in ckpt.meta.items() if k not in ("obs_dim", "n_actions")}
    save_checkpoint(path, ckpt.config, 3, 2, ckpt.arrays, meta)


def _model_file(finished_run, path: Path) -> None:
    shutil.copy2(finished_run[0] / "final.npz", path)  # a model, not a training checkpoint


BAD_CHECKPOINTS = {
    "missing": (None, "no such checkpoint"),
    "truncated": (_truncated, "not a .npz"),
    "random bytes": (_random_bytes, "not a .npz"),
    "not ours": (_not_ours, "not a dqn-np checkpoint"),
    "newer version": (_newer_version, "newer"),
    "pickled object": (_pickled, "refused"),
    "wrong network": (_wrong_network, "3 observation values"),
    "model file": (_model_file, "not a training checkpoint"),
}


@pytest.mark.parametrize("case", list(BAD_CHECKPOINTS))
def test_resume_from_a_bad_checkpoint_is_one_line_naming_the_file(finished_run, tmp_path: Path, case: str) -> None:
    make, fragment = BAD_CHECKPOINTS[case]
    out = tmp_path / "run"
    out.mkdir()
    if make is not None:
        make(finished_run, out / "checkpoint.npz")
    with writes_nothing(out):  # the bad file as it was, no config.json, no log, no .lock
        proc = run("--resume", str(out), "--total-steps", "3000")
    line = assert_usage_error(proc, str(out / "checkpoint.npz"), fragment)
    if case == "wrong network":  # both sizes: the checkpoint's 3 inputs and CartPole's 4
        assert re.search(r"\b4\b", line.replace(str(out), "DIR")), line


def test_good_checkpoint_control_case_resumes(finished_run, tmp_path: Path) -> None:
    # The bad-checkpoint cases above differ from this one only in the file.
    out = tmp_path / "run"
    out.mkdir()
    for name in ("progress.csv", "evals.csv", "config.json"):
        shutil.copy2(finished_run[0] / name, out / name)
    _real_checkpoint(finished_run, out / "checkpoint.npz")
    ok("--resume", str(out), "--total-steps", "1600", "--no-progress")
    assert json.loads((out / "summary.json").read_text())["env_steps"] == 1600


def test_resume_continues_on_the_runs_own_environment(tmp_path: Path) -> None:
    # A run on another environment resumes without repeating --env-id (which defaults to CartPole-v1), and is judged
    # by its own reward threshold: ConstantReward has none, so it is never "solved"; Acrobot-v1's -100, taken from a
    # stray --env-id, would make any of its returns count as solved.
    out = tmp_path / "run"
    small = ["--learning-starts", "100", "--batch-size", "32", "--hidden-sizes", "8", "--eval-freq", "200",
             "--eval-episodes", "20", "--no-progress"]
    ok("--env-id", "dqn_np/ConstantReward-v0", *small, "--total-steps", "200", "--out", str(out))
    proc = ok("--resume", str(out), "--total-steps", "400", "--no-progress")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_id"] == "dqn_np/ConstantReward-v0" and summary["env_steps"] == 400
    assert summary["best_eval_mean"] >= 10  # at least 0.5 per step over 20 steps, far above -100
    assert summary["solved"] is False and summary["solve_threshold"] is None
    assert "never counted as solved (dqn_np/ConstantReward-v0 has no reward threshold)" in proc.stdout



@pytest.mark.parametrize("flag", [("--env-id", "Acrobot-v1"), ("--seed", "5")])
def test_resume_refuses_a_different_env_or_seed(finished_run, tmp_path: Path, flag) -> None:
    out = copy_run(finished_run, tmp_path)
    with writes_nothing(out):
        proc = run("--resume", str(out), *flag, "--total-steps", "3000")
    assert_usage_error(proc, "--resume", flag[0])
