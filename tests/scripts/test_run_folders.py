"""scripts/train_cartpole.py and its run folder, run as a user types it (issue 9): every refusal and failure is one
line on stderr with the right exit status and no traceback, and leaves every file that existed byte-identical.

    1, 2  a folder holding any run file is refused for a fresh run; a foreign log is refused for --resume
    3     two processes on one folder: the second is refused naming the first's PID; kill -9 leaves no stale lock
    4     SIGINT/SIGTERM at any moment (training: test_train_cartpole.py; here the final evaluation, the setup and
          the plot) -> summary "interrupted", the resume line, 130/143
    5     an --out that cannot be used, a full disk during a save, a replay buffer larger than memory
    6, 7  --resume without --total-steps, --resume with --out, and messages that must be true
"""

import contextlib
import importlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from scripttools import snapshot, writes_nothing

from agents.config import DQNConfig
from agents.loop.events import Callback
from agents.run import train_one
from agents.run.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]
SCRIPT = "scripts/train_cartpole.py"
PROG = "train_cartpole.py"
# 4 envs: every step count below (300, 500, 600, 900, ...) is a multiple of it, so runs stop exactly there
TINY = ["--learning-starts", "200", "--eval-freq", "500", "--eval-episodes", "3", "--hidden-sizes", "16",
        "--n-envs", "4", "--no-progress"]
CONFIG = DQNConfig(hidden_sizes=(16,), learning_starts=200, eval_freq=500, eval_episodes=3, n_envs=4)
ENV = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "120"}
IS_ROOT = os.geteuid() == 0


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def start(*args: str, stdout: Path, stderr: Path) -> subprocess.Popen:
    """A background run whose output goes to files, so a test can watch it while it runs."""
    with open(stdout, "w") as out, open(stderr, "w") as err:
        return subprocess.Popen([sys.executable, SCRIPT, *args], cwd=REPO, env=ENV, stdout=out, stderr=err)


def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended (status {proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.05)


def one_line(proc: subprocess.CompletedProcess, status: int, *fragments: str) -> str:
    """Exit `status`, no traceback, and exactly one line on stderr, starting with the program's name and containing
    every fragment."""
    assert proc.returncode == status, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{PROG}: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One tiny completed run (copy it before changing anything)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    proc = run("--total-steps", "600", *TINY, "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, proc


def copy_of(finished, tmp_path: Path) -> Path:
    return Path(shutil.copytree(finished[0], tmp_path / "run"))


# --- 1, 2: folders that hold a run, or someone else's files ---------------------------------------------------------


@pytest.mark.parametrize("name", ["config.json", "progress.csv", "checkpoint.npz"])
def test_fresh_run_refuses_a_folder_holding_a_run_file(tmp_path: Path, name: str) -> None:
    # config.json alone: a run that diverged before its first checkpoint; checkpoint.npz alone: logs deleted.
    # (Every name of RUN_FILE_NAMES is covered at library level in tests/agents/test_run.py.)
    (tmp_path / name).write_bytes(b"what was there before\n")
    before = snapshot(tmp_path)
    line = one_line(run("--total-steps", "300", *TINY, "--out", str(tmp_path)), 2,
                    f"{tmp_path / name}: this folder already holds a run", "another --out")
    assert (f"--resume {tmp_path}" in line) == (name == "checkpoint.npz")
    assert snapshot(tmp_path) == before


def test_fresh_run_into_an_empty_existing_folder_works(tmp_path: Path) -> None:
    proc = run("--total-steps", "300", *TINY, "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "completed"


def test_resume_with_a_foreign_log_is_refused_before_anything_is_written(finished, tmp_path: Path) -> None:
    out = copy_of(finished, tmp_path)
    (out / "progress.csv").write_text("step,value\n1,2\n")  # someone else's log
    (out / "evals.csv").unlink()  # would be created, were anything written before the check
    before = snapshot(out)
    one_line(run("--resume", str(out), "--total-steps", "900"), 2, str(out / "progress.csv"), "not a log")
    assert snapshot(out) == before  # config.json not rewritten, .lock as it was


# --- 3: two processes on one run folder -----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_process_is_refused_naming_the_first_and_kill_9_leaves_no_stale_lock(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = start(*TINY, "--total-steps", "1000000", "--checkpoint-every", "300", "--out", str(out),
                  stdout=tmp_path / "out1", stderr=tmp_path / "err1")
    try:
        wait_for(lambda: (out / "checkpoint.npz").exists() and (out / "progress.csv").exists()
                 and len((out / "progress.csv").read_text().splitlines()) > 4, first, "checkpoint and progress rows")
        lock_bytes = (out / ".lock").read_bytes()
        assert lock_bytes == f"{first.pid}\n".encode()
        one_line(run("--total-steps", "300", *TINY, "--out", str(out)), 2, str(out), f"PID {first.pid}")
        one_line(run("--resume", str(out), "--total-steps", "2000000"), 2, str(out), f"PID {first.pid}")
        assert (out / ".lock").read_bytes() == lock_bytes
        assert first.poll() is None  # the first run goes on, untroubled
    finally:
        first.kill()  # SIGKILL: no handler, no cleanup; the kernel drops the flock
        first.wait()
    assert first.returncode == -signal.SIGKILL
    step = load_checkpoint(out / "checkpoint.npz").meta["env_steps"]
    proc = run("--resume", str(out), "--total-steps", str(step + 300), "--no-progress")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["env_steps"] == step + 300
    numbers = [int(line.split(",")[0]) for line in (out / "progress.csv").read_text().splitlines()[1:]]
    assert numbers == list(range(1, len(numbers) + 1))  # the rows the killed run wrote after its checkpoint: trimmed


# --- 4: signals at any moment ---------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_during_the_final_evaluation(tmp_path: Path, signum: int, status: int) -> None:
    out, stdout, stderr = tmp_path / "run", tmp_path / "stdout", tmp_path / "stderr"
    args = ["--learning-starts", "200", "--eval-freq", "0", "--hidden-sizes", "16", "--n-envs", "4",
            "--total-steps", "300", "--final-eval-episodes", "1000000"]  # training ends at once; the final
    # evaluation would take minutes
    proc = start(*args, "--out", str(out), stdout=stdout, stderr=stderr)  # with the progress bar: it says so
    try:
        wait_for(lambda: "final evaluation over 1000000 episodes" in stderr.read_text(), proc, "final evaluation bar")
        proc.send_signal(signum)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text_out, text_err = stdout.read_text(), stderr.read_text()
    assert proc.returncode == status, text_out + text_err
    assert "Traceback" not in text_err
    assert f"Resume with: python scripts/train_cartpole.py --resume {out}" in text_out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["interrupted"] == signal.Signals(signum).name
    assert summary["env_steps"] == 300 and summary["final_eval_mean"] is None
    assert load_checkpoint(out / "checkpoint.npz").meta["env_steps"] == 300


def load_script():
    spec = importlib.util.spec_from_file_location("train_cartpole_under_test", REPO / SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_signal_during_setup_writes_nothing(tmp_path: Path, capsys) -> None:
    script = load_script()
    stop = script.StopFlag()
    stop.set("SIGINT")  # what the handlers main() installs first do with a signal during parsing or the env check
    out = tmp_path / "run"
    assert script._main(["--total-steps", "300", *TINY, "--out", str(out)], stop) == 130
    assert "Interrupted by SIGINT before training started; nothing was written." in capsys.readouterr().out
    assert not out.exists()


def test_signal_during_the_plot_exits_130_with_the_resume_line(tmp_path: Path, capsys, monkeypatch) -> None:
    train_module = importlib.import_module("agents.run.train")  # `agents.run.train` is the function, not the module
    script = load_script()
    stop = script.StopFlag()
    real_plot = train_module.plot_learning_curve

    def plot_then_signal(*args, **kwargs):
        path = real_plot(*args, **kwargs)
        stop.set("SIGINT")  # as the handler would: Python raises nothing, the flag is seen once the plot is saved
        return path

    monkeypatch.setattr(train_module, "plot_learning_curve", plot_then_signal)
    out = tmp_path / "run"
    assert script._main(["--total-steps", "300", *TINY, "--out", str(out)], stop) == 130
    printed = capsys.readouterr().out
    assert "Interrupted by SIGINT after all 300 steps (final evaluation, saving or plotting)" in printed
    assert f"Resume with: python scripts/train_cartpole.py --resume {out}" in printed
    summary = json.loads((out / "summary.json").read_text())
    # results are written before the plot: a signal then loses nothing, and the summary says the run was stopped
    assert summary["status"] == "interrupted" and summary["final_eval_mean"] is not None
    assert load_checkpoint(out / "checkpoint.npz").meta["env_steps"] == 300


# --- 5: an --out that cannot be used, a full disk, a buffer too large for memory ------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[bool]:
    """Mount a tmpfs at `path` (as root); yields False where mounting is not allowed (not root, no capability)."""
    path.mkdir()
    mounted = IS_ROOT and subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                                         capture_output=True).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(path)], check=True)


@contextlib.contextmanager
def read_only_folder(path: Path) -> Iterator[str]:
    """Make `path` a folder nothing can be written into; yields the reason the system will give.

    As root (which ignores permissions) a read-only tmpfs; elsewhere chmod 555.
    """
    with tmpfs(path, "ro,size=64k") as mounted:
        if mounted:
            yield "Read-only file system"
            return
        path.chmod(0o555)
        try:
            yield "Permission denied"
        finally:
            path.chmod(0o755)


@pytest.mark.parametrize("case", ["a file", "under a file", "read-only", "name too long"])
def test_an_out_that_cannot_be_used_is_one_line_and_creates_nothing(tmp_path: Path, case: str) -> None:
    (tmp_path / "notes.txt").write_text("a file\n")
    with contextlib.ExitStack() as stack:
        if case == "read-only":
            out, reason = tmp_path / "ro" / "runs" / "run", stack.enter_context(read_only_folder(tmp_path / "ro"))
        else:
            out, reason = {
                "a file": (tmp_path / "notes.txt", "it is a file, not a folder"),
                "under a file": (tmp_path / "notes.txt" / "run", f"{tmp_path / 'notes.txt'} is not a folder"),
                "name too long": (tmp_path / "a" / "b" / ("x" * 300), "is 300 bytes long; this file system allows"),
            }[case]
        before = snapshot(tmp_path)
        one_line(run("--total-steps", "300", *TINY, "--out", str(out)), 2, str(out), reason)
        assert snapshot(tmp_path) == before  # no folder, no parent folder, no .lock


def _fill_disk_wrapper(fail_at_save: int) -> str:
    """Python code that runs the script with its `fail_at_save`-th checkpoint failing half-written with ENOSPC, as a
    full disk would (for machines where the test cannot mount a small tmpfs)."""
    return f"""
import errno, os, runpy, sys
import agents.run.writer
saves = [0]
real = agents.run.writer.save_checkpoint
def full_disk(f, **arrays):
    f.write(b"PK\\x03\\x04 half an archive")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
def save_checkpoint(*args, **kwargs):
    saves[0] += 1
    return real(*args, **kwargs, **({{"write": full_disk}} if saves[0] >= {fail_at_save} else {{}}))
agents.run.writer.save_checkpoint = save_checkpoint
sys.argv = [{SCRIPT!r}] + sys.argv[1:]
runpy.run_path({SCRIPT!r}, run_name="__main__")
"""


@pytest.mark.slow
def test_a_full_disk_during_a_save_is_one_line_and_the_previous_checkpoint_stays_loadable(tmp_path: Path) -> None:
    args = [*TINY, "--total-steps", "100000", "--checkpoint-every", "500", "--buffer-size", "100000"]
    with tmpfs(tmp_path / "disk", "size=300k") as mounted:
        out = tmp_path / "disk" / "run"
        if mounted:  # a real full disk: the checkpoint grows with the replay buffer until two no longer fit
            proc = run(*args, "--out", str(out))
        else:  # the same failure, injected: the third checkpoint save hits ENOSPC half-way
            proc = subprocess.run([sys.executable, "-c", _fill_disk_wrapper(3), *args, "--out", str(out)], cwd=REPO,
                                  env=ENV, capture_output=True, text=True, timeout=120)
        line = one_line(proc, 1, str(out), "No space left on device", f"--resume {out}")
        step = int(re.search(r"the last checkpoint \(step (\d+)\) is intact", line).group(1))
        assert load_checkpoint(out / "checkpoint.npz").meta["env_steps"] == step > 0
        assert step % 500 == 0
        assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]  # no half-written file left
        kept = tmp_path / "kept"
        shutil.copytree(out, kept)  # out of the full disk, the run resumes from that checkpoint
    proc = run("--resume", str(kept), "--total-steps", str(step + 200))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads((kept / "summary.json").read_text())["env_steps"] == step + 200


def test_a_buffer_too_large_for_memory_is_refused_before_the_folder_is_created(tmp_path: Path) -> None:
    out = tmp_path / "run"
    line = one_line(run("--total-steps", "300", *TINY, "--buffer-size", "2000000000", "--out", str(out)), 2,
                    "buffer_size 2000000000", "96000000000 bytes", "of memory are available")
    assert re.search(r"only \d+ bytes", line)
    assert not out.exists()


# --- 6: resuming to the run's own total; --resume with --out --------------------------------------------------------


class DieAt(Callback):
    """Raises at `step`, as a process killed there would stop (no final checkpoint, no summary)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step(self, trainer, steps_before: int) -> None:
        if trainer.env_steps >= self.step:
            raise KeyboardInterrupt


def test_resume_without_total_steps_continues_to_the_runs_own_total_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train_one(CONFIG, "CartPole-v1", 0, out, 900, checkpoint_every=300, callbacks=[DieAt(500)])
    proc = run("--resume", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"resuming {out} from step 300 to its total of 900 steps" in proc.stdout
    assert json.loads((out / "summary.json").read_text())["env_steps"] == 900
    assert json.loads((out / "config.json").read_text())["total_steps"] == 900

    proc = run("--resume", str(out), "--total-steps", "1200", "--no-progress")  # extending it is recorded
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads((out / "config.json").read_text())["total_steps"] == 1200


def test_resume_with_out_is_refused(finished, tmp_path: Path) -> None:
    out = copy_of(finished, tmp_path)
    before = snapshot(tmp_path)
    one_line(run("--resume", str(out), "--out", str(tmp_path / "other")), 2, "--resume", "drop --out")
    assert snapshot(tmp_path) == before


# --- 7, 8: messages that must be true; --help -------------------------------------------------------------------


def test_too_few_evaluation_episodes_to_solve_says_why(finished) -> None:
    assert ("not solved (solving needs evaluations over at least 20 episodes; these had 3)" in finished[1].stdout)
    assert "(saved as best.npz)" in finished[1].stdout and (finished[0] / "best.npz").exists()


@pytest.mark.parametrize(("eval_freq", "why"), [("0", "--eval-freq 0"), ("5000", "the first was due at step 5000")])
def test_no_evaluation_does_not_claim_a_best_npz(tmp_path: Path, eval_freq: str, why: str) -> None:
    out = tmp_path / "run"
    proc = run("--total-steps", "300", "--learning-starts", "200", "--eval-freq", eval_freq, "--hidden-sizes", "16",
               "--no-progress", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"no evaluation during training ({why}), so no best.npz" in proc.stdout
    assert "saved as best.npz" not in proc.stdout and not (out / "best.npz").exists()


def test_a_diverged_run_leaves_its_last_good_state_in_the_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run("--total-steps", "3000", "--learning-starts", "200", "--hidden-sizes", "16", "--no-progress",
               "--optimizer", "sgd", "--learning-rate", "1e300", "--max-grad-norm", "0", "--loss", "mse",
               "--out", str(out))
    one_line(proc, 1, "the run diverged", "non-finite", "the checkpoint holds the last good state", str(out))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged" and "non-finite" in summary["error"]
    ckpt = load_checkpoint(out / "checkpoint.npz")
    params = [v for k, v in ckpt.arrays.items() if k.startswith("agent/online.")]
    assert params and all(np.isfinite(v).all() for v in params)  # the state before the update that diverged
    assert not (out / "final.npz").exists()
    # Started again with the same --out: refused, and told how to resume it; the diverged run as it was.
    with writes_nothing(out):
        proc = run("--total-steps", "300", *TINY, "--out", str(out))
    one_line(proc, 2, "already holds a run", f"--resume {out}")
    # Resumed: every seed has stopped, so it ends at once, diverged again, with nothing lost.
    again = run("--resume", str(out), "--no-progress")
    assert again.returncode == 1 and "diverged" in again.stderr
    assert json.loads((out / "summary.json").read_text())["env_steps"] == summary["env_steps"]


def test_help_shows_the_defaults_of_the_run_options() -> None:
    proc = run("--help")
    text = " ".join(proc.stdout.split())
    assert "only at the end (default: 10000; a resume: the run's own)" in text
    assert ("episodes of the final evaluation of each seed's final and best model (default: --eval-episodes; a "
            "resume: the run's own)") in text
    assert "(default: auto; a resume: the run's own)" in text
    assert "(default: the preset's total_steps, else 50000; with --resume, the run's own)" in text
    assert "exit status: 0 done; 1 every seed diverged" in text

