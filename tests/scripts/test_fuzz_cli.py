"""Every command, fuzzed: random and adversarial flag values (empty, huge, negative, non-finite, the wrong type, paths
that are files, folders, missing or too long), each on top of a tiny valid invocation, run in-process.

What must hold for every input: the exit status is 0, 1 or 2; stderr holds no traceback; a status 2 (bad input) says
"error:" on stderr and leaves the example's folder exactly as it was (the commands run with it as the working
directory, and every generated path points into it). A fixed number of examples per command keeps the file under
about a minute; each example is stopped after `EXAMPLE_SECONDS` (a command that runs that long on a tiny budget
fails the test, naming the input).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.config import DQNConfig
from agents.run import train

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_SECONDS = 20
LONG = "n" * 300

INT_VALUES = ["", "-1", "0", "-0", "1", "2", "abc", "1.5", "1e3", "nan", " 7", str(10**30), str(-(10**30)), "9" * 400]
FLOAT_VALUES = ["", "nan", "inf", "-inf", "-1", "0", "1e-320", "1e309", "1e6", "abc", "0.5", "1e-3", str(10**400)]
OUT_PATHS = ["", "{tmp}/file", "{tmp}/folder", "{tmp}/missing/x.json", "{tmp}/file/x.json", "{tmp}/" + LONG,
             "{tmp}/" + LONG + "/x.json", "{tmp}/new.json", "-", "."]
IN_PATHS = ["", "{tmp}/file", "{tmp}/folder", "{tmp}/missing.npz", "{tmp}/" + LONG, "{tmp}/file/x", "{data}"]
TEXT_VALUES = ["", "NoSuchEnv-v0", "Pendulum-v1", "CartPole-v1", "dqn_np/Chain-v0", LONG, "-", "é", "a b"]
BOOL_VALUES = ["", "true", "false", "maybe", "1", "0"]
KINDS = {"int": INT_VALUES, "float": FLOAT_VALUES, "out": OUT_PATHS, "in": IN_PATHS, "text": TEXT_VALUES,
         "bool": BOOL_VALUES, "flag": [""]}

TRAIN_FLAGS = {"--seed": "int", "--total-steps": "int", "--env-id": "text", "--out": "out", "--n-envs": "int",
               "--batch-size": "int", "--buffer-size": "int", "--learning-rate": "float", "--gamma": "float",
               "--hidden-sizes": "int", "--eval-freq": "int", "--eval-episodes": "int", "--checkpoint-every": "int",
               "--final-eval-episodes": "int", "--n-step": "int", "--tau": "float", "--dueling": "bool",
               "--preset": "in", "--resume": "in", "--tensorboard": "out", "--epsilon-end": "float"}
TINY_TRAINING = ["--total-steps", "64", "--n-envs", "2", "--learning-starts", "32", "--batch-size", "16",
                 "--hidden-sizes", "8", "--eval-freq", "0", "--buffer-size", "200", "--no-progress"]


@dataclass(frozen=True)
class Command:
    """One command: how to get its `main(argv)`, a tiny valid invocation, and the flags to fuzz (flag -> kind)."""

    name: str
    main: Callable[[], Callable[[list[str]], int]]
    base: list[str]
    flags: dict[str, str]
    examples: int = 12
    positional: str | None = None  # the kind of a leading positional argument to fuzz as well
    subprocess: bool = False  # run as its own process (one whose BLAS threads must be set before numpy loads)


def script(name: str) -> Callable[[], Callable[[list[str]], int]]:
    def load() -> Callable[[list[str]], int]:
        if str(REPO / "scripts") not in sys.path:  # where a script finds its sibling modules (_reference_step)
            sys.path.append(str(REPO / "scripts"))
        spec = importlib.util.spec_from_file_location(f"fuzz_{name}", REPO / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.main
    return load


COMMANDS = [
    Command("train_cartpole", script("train_cartpole"), [*TINY_TRAINING, "--out", "{tmp}/run"], TRAIN_FLAGS, 30),
    Command("train_seeds", script("train_seeds"), [*TINY_TRAINING, "--seeds", "0-1", "--out", "{tmp}/batch"],
            {**{k: v for k, v in TRAIN_FLAGS.items() if k != "--seed"}, "--seeds": "text"}, 25),
    Command("evaluate", script("evaluate"), ["{data}/run/final.npz", "--episodes", "2"],
            {"--episodes": "int", "--seed": "int", "--env-id": "text", "--json": "out", "--gif": "out",
             "--gif-episodes": "int", "--gif-fps": "float", "--gif-scale": "float", "--gif-every": "int"}, 40,
            positional="in"),
    Command("aggregate_seeds", script("aggregate_seeds"), ["{data}/batch", "--out", "{tmp}/agg"],
            {"--out": "out", "--threshold": "float", "--force": "flag", "--allow-mixed": "flag"}, 30,
            positional="in"),
    Command("benchmark", script("benchmark"), ["--seeds", "0", "--total-steps", "64", "--n-envs", "2",
                                               "--learning-starts", "32", "--batch-size", "16", "--hidden-sizes", "8",
                                               "--eval-freq", "32", "--eval-episodes", "1",
                                               "--final-eval-episodes", "1"],
            {"--seeds": "text", "--total-steps": "int", "--final-eval-episodes": "int", "--out": "out",
             "--json": "out", "--env-id": "text", "--gamma": "float", "--n-envs": "int", "--force": "flag"}, 20),
    Command("bench_seeds", script("bench_seeds"), ["--members", "1", "--repeats", "1", "--total-steps", "40",
                                                   "--n-envs", "2", "--learning-starts", "20", "--batch-size", "8",
                                                   "--hidden-sizes", "4", "--eval-freq", "0"],
            {"--members": "int", "--sequential": "int", "--repeats": "int", "--json": "out", "--env-id": "text",
             "--total-steps": "int"}, 5),
    Command("bench_extensions", script("bench_extensions"), ["--members", "1", "--capacity", "300", "--steps", "2",
                                                             "--repeats", "1"],
            {"--members": "int", "--capacity": "int", "--batch-size": "int", "--steps": "int", "--repeats": "int",
             "--seed": "int", "--json": "out", "--force": "flag"}, 20),
    Command("bench_envs", script("bench_envs"), ["--steps", "2", "--repeats", "1"],
            {"--steps": "int", "--repeats": "int", "--seed": "int", "--json": "out"}, 8),
    Command("bench_update", script("bench_update"), ["--quick"],  # in-process, its BLAS would run 2 threads: 10x slower
            {"--steps": "int", "--repeats": "int", "--seed": "int", "--json": "out"}, 4, subprocess=True),
    Command("gradcheck_td", script("gradcheck_td"), ["--transitions", "40", "--batch-size", "8", "--hidden-sizes",
                                                     "4", "--max-entries", "2"],
            {"--seed": "int", "--transitions": "int", "--batch-size": "int", "--hidden-sizes": "int",
             "--tol": "float", "--max-entries": "int", "--loss": "text", "--dueling": "bool",
             "--double-dqn": "bool", "--weights": "bool"}, 25),
    Command("backprop_demo", script("backprop_demo"), ["--steps", "5"],
            {"--seed": "int", "--learning-rate": "float", "--hidden-sizes": "int", "--steps": "int",
             "--loss": "text", "--bug": "text"}, 40),
    Command("gradcheck", lambda: importlib.import_module("dqn_np.gradcheck").main, ["--max-entries", "1"],
            # not --max-entries: a huge value is the full check, ~15 s of CPU (tests/dqn_np/test_gradcheck.py checks it)
            {"--seed": "int", "--tol": "float", "--eps": "float"}, 20),
    Command("sweep", script("sweep"), ["{data}/sweep.toml", "--out", "{tmp}/sweep", "--workers", "1",
                                       "--no-progress"],
            {"--out": "out", "--workers": "int", "--scheduler": "text"}, 6, positional="in"),
    Command("bench_sweep", script("bench_sweep"), ["--repeats", "0"],  # a valid sitting starts clusters: too slow
            {"--repeats": "int", "--total-steps": "int", "--seeds": "int"}, 5),
    Command("compare_runs", script("compare_runs"), ["{data}/run", "{data}/run"], {"--max-lines": "int"}, 10,
            positional="in"),
    Command("compare_sb3", script("compare_sb3"), ["--eval-episodes", "5"],  # refused: a valid run trains torch
            {"--env-id": "text", "--seeds": "text", "--total-steps": "int", "--eval-freq": "int",
             "--final-eval-episodes": "int", "--stop-when-solved": "bool", "--json": "out", "--force": "flag"}, 10),
]

TINY_SPEC = """\
env_id = "CartPole-v1"
seeds = [0]
total_steps = 64
metric = "best_eval_mean"
direction = "maximize"

[base]
hidden_sizes = [4]
learning_starts = 32
batch_size = 16
n_envs = 2
eval_freq = 32
eval_episodes = 1

[grid]
gamma = [0.9]
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Inputs the commands read (never written by them): a single run, a batch of two seeds and a sweep spec."""
    root = tmp_path_factory.mktemp("fuzz_data")
    config = DQNConfig(hidden_sizes=(8,), batch_size=16, buffer_size=500, learning_starts=50, eval_freq=100,
                       eval_episodes=2, n_envs=2)
    assert train(config, "CartPole-v1", [0], root / "run", 200, layout="single")["status"] == "completed"
    assert train(config, "CartPole-v1", [0, 1], root / "batch", 200, layout="batch")["status"] == "completed"
    (root / "sweep.toml").write_text(TINY_SPEC)
    return root


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder` with its bytes (None for a folder and for an unreadable file)."""
    out: dict[str, bytes | None] = {}
    for p in sorted(folder.rglob("*")):
        try:
            out[str(p)] = None if p.is_dir() else p.read_bytes()
        except OSError:
            out[str(p)] = None
    return out


class OverranError(Exception):
    """An example ran longer than EXAMPLE_SECONDS."""


def run_as_process(name: str, argv: list[str], cwd: Path) -> tuple[object, str, str]:
    """(exit status, stdout, stderr) of `python scripts/NAME.py ARGV` run in `cwd`."""
    try:
        proc = subprocess.run([sys.executable, str(REPO / "scripts" / f"{name}.py"), *argv], cwd=cwd,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                              timeout=EXAMPLE_SECONDS)
    except subprocess.TimeoutExpired:
        raise OverranError(f"still running after {EXAMPLE_SECONDS} s") from None
    return proc.returncode, proc.stdout, proc.stderr


def run_in_process(main: Callable[[list[str]], int], argv: list[str], cwd: Path) -> tuple[object, str, str]:
    """(exit status, stdout, stderr) of `main(argv)` run in `cwd`, stopped after EXAMPLE_SECONDS."""
    stdout, stderr = io.StringIO(), io.StringIO()

    def overran(signum, frame):
        raise OverranError(f"still running after {EXAMPLE_SECONDS} s")

    before = os.getcwd()
    previous = signal.signal(signal.SIGALRM, overran)
    signal.setitimer(signal.ITIMER_REAL, EXAMPLE_SECONDS)
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                status = main(argv)
            except SystemExit as e:
                status = e.code
            except OverranError:
                raise
            except BaseException as e:  # what a user would see as a traceback
                status = f"raised {type(e).__name__}: {e}"
                stderr.write("Traceback (in-process): " + status)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        os.chdir(before)
    return (0 if status is None else status), stdout.getvalue(), stderr.getvalue()


OUTCOMES: dict[str, dict[object, int]] = {}
"""command -> exit status -> examples, printed at the end (the counts for the issue's note)."""

def inputs(command: Command) -> st.SearchStrategy[list[tuple[str, str]]]:
    """One to three (flag, value) perturbations, values from the flag kind's adversarial pool or random text."""
    flag_and_value = st.sampled_from(sorted(command.flags)).flatmap(
        lambda flag: st.tuples(st.just(flag), st.one_of(st.sampled_from(KINDS[command.flags[flag]]),
                                                         st.text(max_size=4))))
    return st.lists(flag_and_value, min_size=1, max_size=3)


def check_command(command: Command, data_root: Path, perturbations: list[tuple[str, str]], positional: str | None,
                 main: Callable[[list[str]], int] | None) -> None:
    """Run one example and check its status, its stderr and what it wrote."""
    with tempfile.TemporaryDirectory(prefix="fuzz-") as folder:
        tmp = Path(folder)
        (tmp / "file").write_text("a file")
        (tmp / "folder").mkdir()

        def fill(text: str) -> str:
            return text.replace("{tmp}", str(tmp)).replace("{data}", str(data_root))

        argv = [fill(a) for a in command.base]
        if positional is not None:
            argv[0] = fill(positional)
        for flag, value in perturbations:
            if command.flags[flag] == "flag":  # a switch: given or not
                argv.append(flag)
            else:
                argv += [flag, fill(value)] if not value.startswith("-") else [f"{flag}={fill(value)}"]
        before_data, before = tree(data_root), tree(tmp)
        status, out, err = (run_as_process(command.name, argv, tmp) if command.subprocess else
                            run_in_process(main, argv, tmp))
        OUTCOMES.setdefault(command.name, {}).setdefault(status, 0)
        OUTCOMES[command.name][status] += 1
        shown = f"{command.name} {argv}: status {status}\nstdout: {out[-2000:]}\nstderr: {err[-3000:]}"
        assert status in (0, 1, 2), shown
        assert "Traceback" not in err, shown
        if status == 2:
            assert "error:" in err, shown
            assert tree(tmp) == before, shown + "\nstatus 2 but files were written or changed"
        assert tree(data_root) == before_data, shown + "\nthe command changed its inputs"


@pytest.mark.parametrize("command", COMMANDS, ids=[c.name for c in COMMANDS])
def test_every_flag_value_gets_a_documented_status_and_no_traceback(command: Command, data: Path) -> None:
    main = None if command.subprocess else command.main()
    positional = st.none() if command.positional is None else st.one_of(
        st.none(), st.sampled_from(KINDS[command.positional]))

    @settings(max_examples=command.examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(perturbations=inputs(command), first=positional)
    def fuzz(perturbations: list[tuple[str, str]], first: str | None) -> None:
        check_command(command, data, perturbations, first, main)

    fuzz()
    counts = OUTCOMES.get(command.name, {})  # shown with -s: the counts for the note
    print(f"\n{command.name}: {sum(counts.values())} inputs; " +
          ", ".join(f"status {s}: {n}" for s, n in sorted(counts.items(), key=str)))
