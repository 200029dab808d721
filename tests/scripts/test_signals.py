"""Every command that is not a training run ends on SIGINT / SIGTERM with one line and status 130 / 143: no
KeyboardInterrupt traceback, no silent death (`agents.run.entry.run_command`; dqn_np.gradcheck its own copy)."""

import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# commands that print a first line early and then keep computing for many seconds
COMMANDS = {
    "bench_update": [str(REPO / "scripts" / "bench_update.py")],
    "bench_envs": [str(REPO / "scripts" / "bench_envs.py")],
    "backprop_demo": [str(REPO / "scripts" / "backprop_demo.py"), "--steps", "100000"],
}


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_signal_ends_the_command_in_one_line(name: str, signum: int, tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, *COMMANDS[name]], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline()  # it is running its main
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[signum], err
    assert err == f"{name}.py: interrupted by {signal.Signals(signum).name}; nothing was written\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_the_gradient_check_ends_in_one_line_too(signum: int, tmp_path: Path) -> None:
    program = ("import sys, time, dqn_np.gradcheck as g\n"
               "def main():\n    print('ready', flush=True)\n    time.sleep(60)\n    return 0\n"
               "g.main = main\ng._run_command()\n")
    proc = subprocess.Popen([sys.executable, "-c", program], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[signum]
    assert err == f"gradcheck: interrupted by {signal.Signals(signum).name}; nothing was written\n"
