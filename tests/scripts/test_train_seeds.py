"""scripts/train_seeds.py, run exactly as a user types it, and `agents.run.train` with layout "batch":

    1  the batch folder end to end (every file, loadable models, evaluate.py on a seed folder, the aggregate)
    2  seed k of a batch is the single run `train_cartpole.py --seed k` (float64: the same rows and parameters)
    3  an exact resume (to a larger total, and after SIGINT); --no-save-replay (resumes, says it is not exact)
    4  bad input: one line on stderr naming the bad value, exit status 2, nothing written
    5  a batch folder and a single-run folder refuse each other's command, naming the right one
    6  --help, and the same run flags as train_cartpole.py (--seeds for --seed)
    7  the Python API: without a folder; each seed's summary has a single run's keys

Every run is tiny (16 hidden units, 4 envs, a few hundred steps, 2-3 seeds): totals are multiples of the 4 envs.
"""

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
from scripttools import snapshot, writes_nothing

from agents.algo.dqn import DQNAgent
from agents.config import DQNConfig, field_docs
from agents.data.replay import MemberReplay, available_memory
from agents.loop.events import EpisodeRow, EvalRow
from agents.run import train, train_one
from agents.run.checkpoint import load_checkpoint
from agents.run.cli import parse_args

REPO = Path(__file__).resolve().parents[2]
SCRIPT = "scripts/train_seeds.py"
SINGLE_SCRIPT = "scripts/train_cartpole.py"
PROG = "train_seeds.py"
N_ENVS = 4
TINY = ["--learning-starts", "200", "--eval-freq", "500", "--eval-episodes", "3", "--hidden-sizes", "16",
        "--n-envs", str(N_ENVS), "--no-progress"]
CONFIG = DQNConfig(hidden_sizes=(16,), learning_starts=200, eval_freq=500, eval_episodes=3, n_envs=N_ENVS)
ENV = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "120"}
BATCH_FILES = {"config.json", "checkpoint.npz", "summary.json", "aggregate.json", "aggregate.png"}
SEED_FILES = {"config.json", "progress.csv", "evals.csv", "best.npz", "final.npz", "summary.json",
              "learning_curve.png"}
HEADER_KEYS = {"format", "format_version", "config", "meta"}


def run(*args: str, script: str = SCRIPT, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, script, *args], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def ok(*args: str, script: str = SCRIPT) -> subprocess.CompletedProcess:
    proc = run(*args, script=script)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def one_line(proc: subprocess.CompletedProcess, *fragments: str, prog: str = PROG) -> str:
    """Exit status 2, no traceback, and exactly one line on stderr naming the program and every fragment."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def read_csv(path: Path, drop: str = "train_seconds") -> tuple[list[str], list[list[str]]]:
    """Header and rows of a log, without its wall-clock column."""
    with open(path, newline="") as f:
        header, *rows = list(csv.reader(f))
    keep = [i for i, name in enumerate(header) if name != drop]
    assert len(keep) == len(header) - 1, f"{path.name} has no {drop} column"
    return [header[i] for i in keep], [[row[i] for i in keep] for row in rows]


def npz_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files if k not in HEADER_KEYS}


def load_json(path: Path) -> dict:
    return json.loads(path.read_text())


def without_clock(aggregate: dict) -> dict:
    """The aggregate without its wall-clock figures (seconds to solve)."""
    return {k: v for k, v in aggregate.items() if k != "seconds_to_solve"}


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """`--seeds 0-2` for 800 steps, completed (copy it before changing anything)."""
    out = tmp_path_factory.mktemp("batch") / "batch"
    proc = ok("--seeds", "0-2", "--total-steps", "800", *TINY, "--out", str(out))
    return out, proc


@pytest.fixture(scope="module")
def batch01(tmp_path_factory) -> Path:
    """A batch of seeds 0 and 1, 400 steps, written by the Python API (copy it before changing anything)."""
    out = tmp_path_factory.mktemp("batch01") / "batch"
    result = train(CONFIG, "CartPole-v1", [0, 1], out, 400, layout="batch")
    assert result["status"] == "completed"
    return out


@pytest.fixture(scope="module")
def single_run(tmp_path_factory) -> Path:
    """A single run of seed 0, 400 steps (copy it before changing anything)."""
    out = tmp_path_factory.mktemp("single") / "run"
    assert train_one(CONFIG, "CartPole-v1", 0, out, 400)["status"] == "completed"
    return out


def copy_of(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / folder.name))


# --- 1: end to end -----------------------------------------------------------------------------------------------


def test_batch_folder_end_to_end(batch) -> None:
    out, proc = batch
    seeds = [0, 1, 2]
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} - {".lock"}  # .lock: the folder lock
    expected = BATCH_FILES | {f"seed{k}/{name}" for k in seeds for name in SEED_FILES}
    if importlib.util.find_spec("matplotlib") is None:
        expected -= {"aggregate.png", *(f"seed{k}/learning_curve.png" for k in seeds)}
    assert files == expected
    assert {p.name for p in out.iterdir() if p.is_dir()} == {f"seed{k}" for k in seeds}

    config = load_json(out / "config.json")
    assert config["env_id"] == "CartPole-v1" and config["seeds"] == seeds and config["total_steps"] == 800
    assert DQNConfig.from_json(json.dumps(config["config"])) == CONFIG
    ckpt = load_checkpoint(out / "checkpoint.npz")
    assert ckpt.meta["kind"] == "engine" and ckpt.meta["layout"] == "batch"
    assert ckpt.meta["seeds"] == seeds and ckpt.meta["env_steps"] == 800

    for k in seeds:
        folder = out / f"seed{k}"
        summary = load_json(folder / "summary.json")
        assert summary["seed"] == k and summary["status"] == "completed" and summary["env_steps"] == 800
        assert summary["env_id"] == "CartPole-v1" and summary["episodes"] > 0
        seed_config = load_json(folder / "config.json")
        assert seed_config["seed"] == k and seed_config["total_steps"] == 800
        final, best = DQNAgent.load(folder / "final.npz"), DQNAgent.load(folder / "best.npz")
        assert final.n_updates == summary["updates"] > 0
        assert final.config.hidden_sizes == best.config.hidden_sizes == (16,)
        assert tuple(read_csv(folder / "progress.csv", drop="train_seconds")[0]) == tuple(
            f for f in EpisodeRow._fields if f != "train_seconds")
        header, rows = read_csv(folder / "evals.csv")
        assert tuple(header) == tuple(f for f in EvalRow._fields if f != "train_seconds")
        assert [int(r[1]) for r in rows] == [500]
        if importlib.util.find_spec("matplotlib") is not None:
            assert (folder / "learning_curve.png").stat().st_size > 0

    aggregate = load_json(out / "aggregate.json")
    summaries = {k: load_json(out / f"seed{k}" / "summary.json") for k in seeds}
    assert aggregate["seeds"] == seeds and aggregate["n_seeds"] == 3
    assert aggregate["fraction_solved"]["n"] == 3
    assert aggregate["failed_seeds"] == [k for k in seeds if summaries[k]["solved"] is False]
    n_solved = aggregate["fraction_solved"]["solved"]
    assert n_solved == sum(s["solved"] for s in summaries.values())

    top = load_json(out / "summary.json")
    assert top["status"] == "completed" and top["seeds"] == seeds and top["env_steps"] == 800
    assert top["aggregate"] == aggregate and [s["seed"] for s in top["summaries"]] == seeds

    assert f"solved: {n_solved}/3 " in proc.stdout, proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith(f"files in {out} "), proc.stdout


def test_evaluate_takes_a_seed_folder(batch) -> None:
    out, _ = batch
    proc = ok(str(out / "seed1"), "--episodes", "3", script="scripts/evaluate.py")
    assert str(out / "seed1" / "best.npz") in proc.stdout
    match = re.search(r"^return (\S+) ± (\S+) over 3 episodes", proc.stdout, re.MULTILINE)
    assert match, proc.stdout
    assert float(match.group(1)) >= 1


# --- 2: a seed of the batch is the single run of that seed ---------------------------------------------------------


def test_seed_of_a_batch_equals_the_single_run_of_that_seed(tmp_path: Path) -> None:
    flags = [*TINY, "--dtype", "float64", "--total-steps", "800", "--env-backend", "numpy", "--checkpoint-every",
             "400", "--final-eval-episodes", "2"]
    ok("--seeds", "0-2", *flags, "--out", str(tmp_path / "batch"))
    ok("--seed", "1", *flags, "--out", str(tmp_path / "single"), script=SINGLE_SCRIPT)
    member, single = tmp_path / "batch" / "seed1", tmp_path / "single"

    header, rows = read_csv(member / "progress.csv")
    assert header[:4] == ["episode", "env_steps", "episode_return", "length"]
    assert len(rows) > 5
    assert (header, rows) == read_csv(single / "progress.csv")
    assert read_csv(member / "evals.csv") == read_csv(single / "evals.csv")

    final_member, final_single = npz_arrays(member / "final.npz"), npz_arrays(single / "final.npz")
    assert set(final_member) == set(final_single) and any(k.startswith("online.") for k in final_member)
    for key, value in final_member.items():
        assert value.dtype == final_single[key].dtype, key
        np.testing.assert_array_equal(value, final_single[key], err_msg=key)  # bit for bit, as README says
    summary_member, summary_single = load_json(member / "summary.json"), load_json(single / "summary.json")
    assert summary_member["updates"] == summary_single["updates"] > 0
    assert summary_member["final_eval_episodes"] == summary_single["final_eval_episodes"] == 2
    for key in ("episodes", "best_eval_mean", "best_eval_step", "final_eval_mean", "best_model_eval_mean"):
        assert summary_member[key] == summary_single[key], key


# --- 3: exact resume; a resume without the replay buffers ------------------------------------------------------


def assert_same_batches(a: Path, b: Path) -> None:
    """Every seed's logs, models and summary figures, the aggregate and the batch checkpoint are the same."""
    for k in (0, 1, 2):
        seed_a, seed_b = a / f"seed{k}", b / f"seed{k}"
        for name in ("progress.csv", "evals.csv"):
            assert read_csv(seed_a / name) == read_csv(seed_b / name), (k, name)
        episodes = [int(r[0]) for r in read_csv(seed_a / "progress.csv")[1]]
        assert episodes == list(range(1, len(episodes) + 1))  # no row written twice
        for name in ("final.npz", "best.npz"):
            arrays_a, arrays_b = npz_arrays(seed_a / name), npz_arrays(seed_b / name)
            assert set(arrays_a) == set(arrays_b), (k, name)
            for key in arrays_a:
                assert np.array_equal(arrays_a[key], arrays_b[key]), (k, name, key)
        summary_a, summary_b = load_json(seed_a / "summary.json"), load_json(seed_b / "summary.json")
        assert summary_a["status"] == "completed" and summary_a["env_steps"] == 1200
        for key in ("episodes", "updates", "best_eval_mean", "best_eval_step", "final_eval_mean",
                    "best_model_eval_mean", "last_metrics"):
            assert summary_a[key] == summary_b[key], (k, key)
    assert without_clock(load_json(a / "aggregate.json")) == without_clock(load_json(b / "aggregate.json"))
    ckpt_a, ckpt_b = npz_arrays(a / "checkpoint.npz"), npz_arrays(b / "checkpoint.npz")
    assert set(ckpt_a) == set(ckpt_b)
    for key in ckpt_a:
        assert np.array_equal(ckpt_a[key], ckpt_b[key]), key


@pytest.mark.slow
def test_resumed_batch_is_identical_to_an_uninterrupted_one(tmp_path: Path) -> None:
    a, b = tmp_path / "A", tmp_path / "B"
    flags = ["--seeds", "0-2", *TINY, "--dtype", "float64"]
    ok(*flags, "--total-steps", "1200", "--out", str(b))
    ok(*flags, "--total-steps", "600", "--checkpoint-every", "200", "--out", str(a))
    at_600 = load_checkpoint(a / "checkpoint.npz")
    assert at_600.meta["env_steps"] == 600
    assert at_600.arrays["collector/episode_length"].max() > 0  # saved with episodes half played
    saved = tmp_path / "checkpoint-at-600.npz"
    shutil.copy2(a / "checkpoint.npz", saved)
    ok("--resume", str(a), "--total-steps", "1200", "--no-progress")
    assert_same_batches(a, b)

    # A crash after step 600: every seed's logs ran ahead of the checkpoint; resuming trims them and writes them again.
    shutil.copy2(saved, a / "checkpoint.npz")
    ok("--resume", str(a), "--total-steps", "1200", "--no-progress")
    assert_same_batches(a, b)


def test_sigint_leaves_a_resumable_batch(tmp_path: Path) -> None:
    out = tmp_path / "batch"
    proc = subprocess.Popen(
        [sys.executable, SCRIPT, "--seeds", "0-1", *TINY, "--total-steps", "200000", "--checkpoint-every", "400",
         "--out", str(out)], cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (out / "checkpoint.npz").exists():  # in the training loop, past its first checkpoint
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the batch wrote no checkpoint within 60 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr
    assert f"Resume with: python scripts/train_seeds.py --resume {out}" in stdout, stdout

    summary = load_json(out / "summary.json")
    assert summary["status"] == "interrupted" and summary["interrupted"] == "SIGINT"
    steps = summary["env_steps"]
    assert 400 <= steps < 200_000
    ckpt = load_checkpoint(out / "checkpoint.npz")
    assert ckpt.meta["kind"] == "engine" and ckpt.meta["layout"] == "batch"
    assert ckpt.meta["env_steps"] == steps and ckpt.meta["seeds"] == [0, 1]

    ok("--resume", str(out), "--total-steps", str(steps + 400), "--no-progress")
    summary = load_json(out / "summary.json")
    assert summary["status"] == "completed" and summary["env_steps"] == steps + 400
    for k in (0, 1):
        seed_summary = load_json(out / f"seed{k}" / "summary.json")
        assert seed_summary["status"] == "completed" and seed_summary["env_steps"] == steps + 400
        episodes = [int(r[0]) for r in read_csv(out / f"seed{k}" / "progress.csv")[1]]
        assert episodes == list(range(1, len(episodes) + 1))


@pytest.mark.slow
def test_no_save_replay_leaves_the_buffers_out_and_the_resume_says_it_is_not_exact(tmp_path: Path) -> None:
    a, b = tmp_path / "A", tmp_path / "B"
    flags = ["--seeds", "0-1", *TINY]
    ok(*flags, "--total-steps", "800", "--out", str(b))  # uninterrupted, with its replay buffers
    ok(*flags, "--total-steps", "600", "--no-save-replay", "--out", str(a))  # past the evaluation at step 500
    without, with_replay = load_checkpoint(a / "checkpoint.npz"), load_checkpoint(b / "checkpoint.npz")
    replay_keys = {k for k in with_replay.arrays if k.startswith("replay/")}
    assert any(k.startswith("replay/buffers/0/") for k in replay_keys)
    assert any(k.startswith("replay/buffers/1/") for k in replay_keys)
    assert without.meta["env_steps"] == 600 and without.meta["seeds"] == [0, 1]
    assert set(without.arrays) == set(with_replay.arrays) - replay_keys  # everything else is saved
    assert "buffers" not in without.meta["replay"] and len(without.meta["replay"]["rng"]) == 2  # the generators are
    assert (a / "checkpoint.npz").stat().st_size < (b / "checkpoint.npz").stat().st_size

    proc = ok("--resume", str(a), "--total-steps", "800", "--no-save-replay", "--no-progress")
    warning = ("the checkpoint holds no replay buffers: training refills them before it goes on, so this run will "
               "differ from an uninterrupted one")
    assert f"{PROG}: warning: {warning}" in proc.stderr.splitlines(), proc.stderr
    top = load_json(a / "summary.json")
    assert top["status"] == "completed" and top["env_steps"] == 800 and warning in top["warnings"]
    resumed = load_checkpoint(a / "checkpoint.npz")
    assert resumed.meta["env_steps"] == 800 and not any(k.startswith("replay/") for k in resumed.arrays)
    for k in (0, 1):
        seed_a, seed_b = load_json(a / f"seed{k}" / "summary.json"), load_json(b / f"seed{k}" / "summary.json")
        assert seed_a["status"] == "completed" and seed_a["env_steps"] == 800 and warning in seed_a["warnings"]
        episodes = [int(r[0]) for r in read_csv(a / f"seed{k}" / "progress.csv")[1]]
        assert episodes == list(range(1, len(episodes) + 1))
        # The refill costs the gradient steps due while the buffers held less than one batch: not the same run.
        assert 0 < seed_a["updates"] < seed_b["updates"]
        final_a, final_b = npz_arrays(a / f"seed{k}" / "final.npz"), npz_arrays(b / f"seed{k}" / "final.npz")
        assert set(final_a) == set(final_b)
        assert any(not np.array_equal(final_a[key], final_b[key]) for key in final_a if key.startswith("online."))


# --- 4: bad input ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--seeds", ""], ["--seeds", "''"]),
        (["--seeds", "-1"], ["'-1'"]),
        (["--seeds", "3-1"], ["'3-1'", "backwards"]),
        (["--seeds", "a-b"], ["'a-b'"]),
        (["--seeds", "1,1"], ["[1]", "more than once"]),
        (["--seeds", "0-1", "--total-steps", "0"], ["--total-steps", "got 0"]),
        (["--seeds", "0-1", "--env-id", "NoSuchEnv-v0"], ["NoSuchEnv-v0"]),
    ],
    ids=["seeds empty", "seeds -1", "seeds 3-1", "seeds a-b", "seeds 1,1", "total-steps 0", "unknown env-id"],
)
def test_bad_option_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, args: list[str],
                                                          fragments: list[str]) -> None:
    out = tmp_path / "batch"
    with writes_nothing(tmp_path):  # no batch/
        proc = run(*TINY, "--total-steps", "400", *args, "--out", str(out))
    one_line(proc, *fragments)


def test_buffers_too_large_for_memory_are_refused_naming_the_bytes(tmp_path: Path) -> None:
    available = available_memory()
    assert available is not None, "the refusal needs the memory available (/proc/meminfo MemAvailable)"
    buffer_size, n_seeds = 10_000_000_000, 100
    need = MemberReplay.nbytes_for(n_seeds, buffer_size, 4, "float32")  # CartPole: 4 observation values
    assert need > available
    out = tmp_path / "batch"
    line = one_line(run(*TINY, "--seeds", "0-99", "--buffer-size", str(buffer_size), "--total-steps", "400",
                        "--out", str(out)), f"{need} bytes", f"{n_seeds} seeds", "available")
    assert re.search(r"only \d+ bytes", line)
    assert not out.exists()


def test_resume_with_other_seeds_is_refused_naming_both_lists(batch01, tmp_path: Path) -> None:
    out = copy_of(batch01, tmp_path)
    before = snapshot(out)
    one_line(run("--resume", str(out), "--seeds", "0-2", "--total-steps", "800", "--no-progress"),
             "0,1,2", "0,1", str(out))
    assert snapshot(out) == before


def test_resume_with_a_config_flag_is_refused(batch01, tmp_path: Path) -> None:
    out = copy_of(batch01, tmp_path)
    before = snapshot(out)
    one_line(run("--resume", str(out), "--batch-size", "8", "--total-steps", "800"), "--resume", "--batch-size")
    assert snapshot(out) == before


def test_resume_below_the_steps_taken_is_refused(batch01, tmp_path: Path) -> None:
    out = copy_of(batch01, tmp_path)
    before = snapshot(out)
    one_line(run("--resume", str(out), "--total-steps", "200"), "--total-steps 200", "400")
    assert snapshot(out) == before


# --- 5: a batch folder and a single-run folder refuse each other's command ----------------------------------------


def test_train_cartpole_refuses_to_resume_a_batch(batch01, tmp_path: Path) -> None:
    out = copy_of(batch01, tmp_path)
    before = snapshot(out)
    one_line(run("--resume", str(out), "--total-steps", "800", script=SINGLE_SCRIPT),
             f"python scripts/train_seeds.py --resume {out}", prog="train_cartpole.py")
    assert snapshot(out) == before


def test_train_seeds_refuses_to_resume_a_single_run(single_run, tmp_path: Path) -> None:
    out = copy_of(single_run, tmp_path)
    before = snapshot(out)
    one_line(run("--resume", str(out), "--total-steps", "800"), f"python scripts/train_cartpole.py --resume {out}")
    assert snapshot(out) == before


@pytest.mark.parametrize("kind", ["batch", "single run"])
def test_fresh_batch_refuses_a_used_folder(batch01, single_run, tmp_path: Path, kind: str) -> None:
    out = copy_of(batch01 if kind == "batch" else single_run, tmp_path)
    before = snapshot(out)
    one_line(run("--seeds", "0-1", *TINY, "--total-steps", "400", "--out", str(out)),
             str(out), "already holds a run")
    assert snapshot(out) == before


# --- 6: --help ---------------------------------------------------------------------------------------------------


def test_help_lists_the_batch_options_and_every_config_field() -> None:
    proc = ok("--help")

    def normalize(text: str) -> str:  # argparse wraps lines, and may break after a hyphen
        return re.sub(r"-\s+", "-", " ".join(text.split()))

    for flag in ("--seeds", "--resume", "--out", "--total-steps", "--checkpoint-every", "--final-eval-episodes"):
        assert re.search(rf"(^|\s){re.escape(flag)}\s", proc.stdout), flag
    text, docs = normalize(proc.stdout), field_docs()
    for field in dataclasses.fields(DQNConfig):
        flag = "--" + field.name.replace("_", "-")
        assert re.search(rf"(^|\s){re.escape(flag)}\s", proc.stdout), flag
        assert docs.get(field.name), f"DQNConfig.{field.name} has no docstring"
        assert normalize(docs[field.name]) in text, field.name


HELP_OPTION = re.compile(r"^  (?:-h, )?(--[a-z0-9-]+)( \S.*?)?(?=\s{2,}|$)", re.MULTILINE)


def help_options(proc: subprocess.CompletedProcess) -> dict[str, str]:
    """The options `--help` lists (one per line of its options sections) -> the argument each takes ("" if none)."""
    found = {m.group(1): (m.group(2) or "").strip() for m in HELP_OPTION.finditer(proc.stdout)}
    assert "--help" in found and "--total-steps" in found, proc.stdout
    return found


def test_both_commands_take_the_same_run_flags_but_for_the_seeds() -> None:
    batch, single = help_options(ok("--help")), help_options(ok("--help", script=SINGLE_SCRIPT))
    # cli.parse_args: the layouts differ only in which seeds (--seed K / --seeds LIST); nothing else is one-layout
    assert set(batch) - set(single) == {"--seeds"}
    assert set(single) - set(batch) == {"--seed"}
    shared = set(batch) & set(single)
    assert {f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(DQNConfig)} < shared
    assert {flag: batch[flag] for flag in shared} == {flag: single[flag] for flag in shared}  # the same arguments
    # ... and the same defaults
    args_batch, args_single = vars(parse_args([], "batch", PROG, "")), vars(parse_args([], "single", PROG, ""))
    assert args_batch.keys() - args_single.keys() == {"seeds"} and args_single.keys() - args_batch.keys() == {"seed"}
    assert {k: args_batch[k] for k in args_batch if k != "seeds"} == {k: args_single[k] for k in args_single
                                                                     if k != "seed"}


# --- 7: the Python API ---------------------------------------------------------------------------------------------


def test_api_without_a_folder_writes_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = train(CONFIG, "CartPole-v1", [0, 1], None, 400, layout="batch")
    assert result["status"] == "completed" and result["seeds"] == [0, 1] and result["env_steps"] == 400
    assert len(result["summaries"]) == 2
    assert [s["seed"] for s in result["summaries"]] == [0, 1]
    assert all(s["status"] == "completed" and s["env_steps"] == 400 for s in result["summaries"])
    assert result["aggregate"]["fraction_solved"]["n"] == 2
    assert result["aggregate"]["seeds"] == [0, 1]
    assert list(tmp_path.iterdir()) == []


CLOCK = {"train_seconds", "eval_seconds", "phase_seconds", "wall_seconds", "solved_at_seconds"}


def test_each_seeds_summary_has_the_keys_of_a_single_runs_summary(batch01, single_run) -> None:
    single = train_one(CONFIG, "CartPole-v1", 0, None, 400)
    result = train(CONFIG, "CartPole-v1", [0, 1], None, 400, layout="batch")
    assert [s["seed"] for s in result["summaries"]] == [0, 1]
    for summary in result["summaries"]:
        assert set(summary) == set(single), set(summary) ^ set(single)
    # seed 0 of the batch is the single run of seed 0: the same figures, but for the clock
    member = result["summaries"][0]
    assert {k: v for k, v in member.items() if k not in CLOCK} == {k: v for k, v in single.items() if k not in CLOCK}
    # and so are the files: DIR/seed<k>/summary.json and a single run's summary.json
    single_file = load_json(single_run / "summary.json")
    assert set(single_file) == set(single)
    for k in (0, 1):
        assert set(load_json(batch01 / f"seed{k}" / "summary.json")) == set(single_file)


def test_without_evaluation_no_best_model_is_claimed(tmp_path: Path) -> None:
    out = tmp_path / "batch"
    args = [a if a != "500" else "0" for a in TINY]  # --eval-freq 0
    proc = ok(*args, "--seeds", "0-1", "--total-steps", "400", "--out", str(out))
    assert not any((out / f"seed{k}" / "best.npz").exists() for k in (0, 1))
    aggregate = load_json(out / "aggregate.json")
    assert aggregate["best_model_at_threshold"]["episodes"] is None and "best_model_eval_mean" not in aggregate
    assert "best.npz >=" not in proc.stdout
    assert all(load_json(out / f"seed{k}" / "summary.json")["best_model_eval_mean"] is None for k in (0, 1))


def test_buffers_that_fit_but_not_twice_are_refused_as_a_single_run_is(tmp_path: Path) -> None:
    available = available_memory()
    assert available is not None, "the refusal needs the memory available (/proc/meminfo MemAvailable)"
    per_transition = MemberReplay.nbytes_for(1, 1, 4, "float32")
    buffer_size = int(0.7 * available / per_transition)  # fits once, not with its checkpoint copy
    out = tmp_path / "batch"
    need = 2 * MemberReplay.nbytes_for(1, buffer_size, 4, "float32")
    one_line(run(*TINY, "--seeds", "0", "--buffer-size", str(buffer_size), "--total-steps", "400", "--out", str(out)),
             f"{need} bytes", "checkpoint")
    assert not out.exists()


def test_a_fresh_run_into_the_other_commands_folder_names_that_command(batch01, tmp_path: Path) -> None:
    single = tmp_path / "single"
    ok(*TINY, "--total-steps", "400", "--out", str(single), script=SINGLE_SCRIPT)
    with writes_nothing(single, batch01):  # both runs as they were
        into_single = run(*TINY, "--seeds", "0-1", "--total-steps", "400", "--out", str(single))
        into_batch = run(*TINY, "--total-steps", "400", "--out", str(batch01), script=SINGLE_SCRIPT)
    one_line(into_single, "python scripts/train_cartpole.py --resume", str(single))
    one_line(into_batch, "python scripts/train_seeds.py --resume", str(batch01), prog="train_cartpole.py")


# --- 8: --workers: the seeds split across a local Dask cluster ------------------------------------------------------


@pytest.mark.slow
def test_workers_give_one_batch_folder_whose_seeds_are_the_one_process_runs(tmp_path: Path) -> None:
    out = tmp_path / "batch"
    proc = ok(*TINY, "--seeds", "0-2", "--total-steps", "1000", "--workers", "2", "--out", str(out))
    assert "Dask: local cluster of 2 worker processes" in proc.stdout and "parts:" in proc.stdout
    assert {p.name for p in out.iterdir() if p.is_dir()} == {"seed0", "seed1", "seed2", "parts"}
    assert sorted(p.name for p in (out / "parts").iterdir()) == ["part0", "part1"]
    alone = train(CONFIG, "CartPole-v1", [0, 1, 2], None, 1000)
    keys = ("seed", "best_eval_mean", "best_eval_step", "final_eval_mean", "solved_at_step", "updates")
    for k, single in zip((0, 1, 2), alone["summaries"], strict=True):
        summary = load_json(out / f"seed{k}" / "summary.json")
        assert {key: summary[key] for key in keys} == {key: single[key] for key in keys}
        assert summary["out_dir"] == str(out / f"seed{k}")
    assert without_clock(load_json(out / "aggregate.json")) == without_clock(alone["aggregate"])
    evaluated = run(str(out / "seed1"), "--episodes", "2", script="scripts/evaluate.py")
    assert evaluated.returncode == 0, evaluated.stderr


@pytest.mark.parametrize(("args", "fragments"), [
    (["--workers", "0"], ["--workers must be >= 1, got 0"]),
    (["--workers", "two"], ["--workers must be an integer >= 1, got 'two'"]),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:9"], ["not both"]),
    (["--workers", "2", "--tensorboard", "TMP/tb"], ["--tensorboard is not available with --workers"]),
], ids=["workers 0", "workers two", "workers and scheduler", "tensorboard"])
def test_bad_workers_input_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, args: list[str],
                                                                 fragments: list[str]) -> None:
    out = tmp_path / "batch"
    args = [a.replace("TMP", str(tmp_path)) for a in args]  # --tensorboard inside tmp_path, where the check looks
    with writes_nothing(tmp_path):  # no batch/, no tb/
        proc = run(*TINY, "--seeds", "0-1", "--total-steps", "400", *args, "--out", str(out))
    one_line(proc, *fragments)
