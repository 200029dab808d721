"""A command run by `run_command` ends on SIGINT / SIGTERM with one line and 130 / 143, never a traceback."""

import signal
import subprocess
import sys

import pytest

PROGRAM = """
import sys, time
from agents.run.entry import run_command

def main():
    print("ready", flush=True)
    while True:
        sum(range(1000))

run_command(main, "demo.py", lambda: "nothing was written")
"""


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_ends_the_command_with_one_line_and_its_status(signum: int, status: int) -> None:
    proc = subprocess.Popen([sys.executable, "-c", PROGRAM], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline() == "ready\n"  # inside main: the handlers are installed
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == status
    assert err == f"demo.py: interrupted by {signal.Signals(signum).name}; nothing was written\n"


def test_the_status_of_main_is_the_exit_status() -> None:
    program = "from agents.run.entry import run_command\nrun_command(lambda: 3, 'x')"
    assert subprocess.run([sys.executable, "-c", program], capture_output=True).returncode == 3
    program = "from agents.run.entry import run_command\nrun_command(lambda: None, 'x')"
    assert subprocess.run([sys.executable, "-c", program], capture_output=True).returncode == 0
