"""docs/tutorial.md, run the way a reader types it: every command of its bash blocks, in order, in a temporary
folder, with the exit status the page gives (`# exit status N` after a command, 0 otherwise)."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = (ROOT / "docs" / "tutorial.md").read_text()
# The page trains for the full budget; here the run is cut short (argparse keeps the last value of a repeated flag).
SHORT_TRAINING = ["--total-steps", "2000", "--eval-freq", "1000", "--no-progress"]


def page_commands() -> list[tuple[str, int]]:
    """Every command line of the page's bash blocks with the exit status the page gives it."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", TUTORIAL, flags=re.S):
        for line in block.splitlines():
            if line.strip():
                status = re.search(r"#\s*exit status (\d+)\s*$", line)
                commands.append((line.split("#")[0].strip(), int(status[1]) if status else 0))
    return commands


def as_typed(command: str) -> list[str]:
    """argv for `command` typed in another folder: this interpreter, and the repository's script by absolute path."""
    argv = shlex.split(command)
    argv[0] = sys.executable
    if argv[1].startswith("scripts/"):
        argv[1] = str(ROOT / argv[1])
    if argv[1].endswith(("train_cartpole.py", "train_seeds.py")):
        argv += SHORT_TRAINING
    return argv


def test_every_step_is_a_python_command() -> None:
    commands = [command for command, _ in page_commands()]
    assert commands, "the tutorial shows no commands"
    assert all(command.startswith("python ") for command in commands), "the test runs only python commands"
    for step in ("scripts/backprop_demo.py", "--bug delta2-sign", "--compare-losses", "scripts/gradcheck_td.py",
                 "scripts/train_cartpole.py", "scripts/evaluate.py runs/tutorial/best.npz", "scripts/train_seeds.py"):
        assert any(step in command for command in commands), f"no step runs {step}"
    train = next(command for command in commands if "train_cartpole.py" in command)
    assert "--out runs/tutorial" in train, "step 6 reads the folder that step 5 writes"


@pytest.mark.slow
def test_every_command_runs_with_the_status_the_page_gives(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    for command, status in page_commands():  # in order: evaluate.py reads what train_cartpole.py wrote
        result = subprocess.run(as_typed(command), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == status, f"{command}: exit {result.returncode}\n{result.stderr[-2000:]}"
        assert result.stdout.strip(), f"{command} printed nothing"

    run = tmp_path / "runs" / "tutorial"
    for name in ("best.npz", "evals.csv", "progress.csv", "summary.json"):  # the files step 6 reads
        assert (run / name).is_file(), name
    if importlib.util.find_spec("matplotlib") is not None:
        assert (run / "learning_curve.png").is_file()
    batch = tmp_path / "runs" / "five"  # step 7: five seeds, each with a run folder of its own, and their aggregate
    assert (batch / "aggregate.json").is_file() and all((batch / f"seed{k}" / "best.npz").is_file() for k in range(5))
