"""scripts/evaluate.py, run the way a user types it: results of a trained agent (a single run's model files and
checkpoint, and a model of one seed of a batch), and one-line errors on bad input."""

import dataclasses
import json
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from scripttools import load_script, run_main, snapshot, writes_nothing

from agents.algo.dqn import DQNAgent
from agents.config import DQNConfig
from agents.loop.evaluation import evaluate
from agents.run import load_checkpoint, train, train_one
from dqn_np import Dueling
from envs import VecEnv

REPO = Path(__file__).resolve().parents[2]
TINY = DQNConfig(hidden_sizes=(16,), batch_size=32, buffer_size=1_000, learning_starts=100, eval_freq=0)


def run_evaluate(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "evaluate.py"), *map(str, args)],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def evaluate_report(*args: str) -> tuple[subprocess.CompletedProcess, dict | None]:
    """`evaluate.py ARGS --json PATH` (PATH in a fresh folder): the process and the results it wrote (None if none)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "results.json"
        result = run_evaluate(*args, "--json", path)
        report = json.loads(path.read_text()) if path.exists() else None
    assert "{" not in result.stdout  # stdout stays human text
    return result, report


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("evaluate.py: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny single run on CartPole, 600 steps (no evaluation during training, so no best.npz; read only)."""
    out = tmp_path_factory.mktemp("run") / "run"
    assert train_one(TINY, "CartPole-v1", 0, out, 600)["status"] == "completed"
    return out


@pytest.fixture(scope="module")
def agent(run_dir: Path) -> DQNAgent:
    return DQNAgent.load(run_dir / "final.npz")


@pytest.fixture(scope="module")
def agent_file(run_dir: Path) -> Path:
    return run_dir / "final.npz"


@pytest.fixture(scope="module")
def batch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny batch of seeds 0 and 1 (DIR/seed0, DIR/seed1, one checkpoint.npz for both), with a best.npz per seed."""
    out = tmp_path_factory.mktemp("batch") / "batch"
    config = DQNConfig(hidden_sizes=(16,), batch_size=32, buffer_size=1_000, learning_starts=100, eval_freq=200,
                       eval_episodes=2, n_envs=4)
    assert train(config, "CartPole-v1", [0, 1], out, 400, layout="batch")["status"] == "completed"
    return out


def test_evaluates_a_trained_agent(agent_file):
    result, report = evaluate_report(agent_file, "--episodes", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(report["returns"]) == 3 and report["episodes"] == 3
    assert report["mean"] == pytest.approx(np.mean(report["returns"]))
    assert report["std"] == pytest.approx(np.std(report["returns"]))
    assert report["env_id"] == "CartPole-v1" and report["checkpoint"] == str(agent_file)
    assert all(1 <= r <= 500 for r in report["returns"])
    assert any(f"{report['mean']:.2f} ± {report['std']:.2f} over 3 episodes" in line for line in lines)
    assert lines[-1].startswith("results in ") and lines[-1].endswith("results.json")


def test_same_seed_same_returns(agent_file):
    first, second = (evaluate_report(agent_file, "--episodes", "3", "--seed", "7")[1] for _ in range(2))
    assert first["returns"] == second["returns"]


def test_env_id_defaults_to_the_one_in_the_file(agent, tmp_path):
    path = agent.save(tmp_path / "best.npz", meta={"env_id": "CartPole-v0"})
    result, report = evaluate_report(path, "--episodes", "2")
    assert result.returncode == 0, result.stderr
    assert report["env_id"] == "CartPole-v0"
    unknown = agent.save(path, meta={"env_id": "NoSuchEnv-v0"})
    with writes_nothing(tmp_path):  # run from tmp_path, which holds the file: nothing new there
        refused = run_evaluate(unknown, cwd=tmp_path)
    assert_one_line_error(refused, "NoSuchEnv-v0")
    result, report = evaluate_report(agent.save(path), "--episodes", "2")  # a file that names no env_id
    assert result.returncode == 0, result.stderr
    assert report["env_id"] == "CartPole-v1"


def test_evaluates_a_training_checkpoint(run_dir, agent_file):
    # A single run's checkpoint.npz holds the engine of one member: its online network is the final model's.
    from_checkpoint, report = evaluate_report(run_dir / "checkpoint.npz", "--episodes", "2")
    assert from_checkpoint.returncode == 0, from_checkpoint.stderr
    assert len(report["returns"]) == 2 and report["env_id"] == "CartPole-v1"
    from_model = evaluate_report(agent_file, "--episodes", "2")[1]
    assert report["returns"] == from_model["returns"]


def test_a_run_folder_evaluates_its_best_checkpoint_and_says_so(agent_file, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "best.npz").write_bytes(agent_file.read_bytes())
    from_folder, folder_report = evaluate_report(run_dir, "--episodes", "3")
    from_file, file_report = evaluate_report(run_dir / "best.npz", "--episodes", "3")
    assert from_folder.returncode == 0, from_folder.stderr
    assert f"{run_dir} is a run folder: evaluating its best checkpoint {run_dir / 'best.npz'}" in from_folder.stdout
    assert folder_report["returns"] == file_report["returns"]


@pytest.mark.parametrize("k", [0, 1])
def test_evaluates_the_best_model_of_one_seed_of_a_batch(batch_dir, k):
    path = batch_dir / f"seed{k}" / "best.npz"
    result, report = evaluate_report(path, "--episodes", "3", "--seed", "5")
    assert result.returncode == 0, result.stderr
    assert report["checkpoint"] == str(path) and report["env_id"] == "CartPole-v1" and report["episodes"] == 3
    assert load_checkpoint(path).meta["seed"] == k  # member k's model, in seed k's folder
    # the same greedy episodes as member k's model evaluated here, from reset seeds 5, 6, 7
    env = VecEnv("CartPole-v1", 3, np.random.default_rng(5))
    try:
        expected = evaluate(DQNAgent.load(path), env, 3, 5)
    finally:
        env.close()
    assert report["returns"] == expected.tolist()
    # its seed folder evaluates that same file
    from_folder, folder_report = evaluate_report(batch_dir / f"seed{k}", "--episodes", "3", "--seed", "5")
    assert from_folder.returncode == 0, from_folder.stderr
    assert f"evaluating its best checkpoint {path}" in from_folder.stdout
    assert folder_report["returns"] == report["returns"]


def test_the_seeds_of_a_batch_are_different_models(batch_dir):
    first, second = (DQNAgent.load(batch_dir / f"seed{k}" / "best.npz") for k in (0, 1))
    assert first.online.params.keys() == second.online.params.keys()
    assert any(not np.array_equal(first.online.params[name], second.online.params[name])
               for name in first.online.params)


def test_a_batch_folder_or_its_checkpoint_is_one_line_naming_a_seed_folder(batch_dir, tmp_path):
    checkpoint = batch_dir / "checkpoint.npz"
    with writes_nothing(batch_dir, tmp_path):  # the batch as it was; run from an empty folder, which stays empty
        folder_refused = run_evaluate(batch_dir, "--episodes", "1", cwd=tmp_path)
        checkpoint_refused = run_evaluate(checkpoint, "--episodes", "1", cwd=tmp_path)
    assert_one_line_error(folder_refused, str(batch_dir), "batch of seeds", "2 seed folders", str(batch_dir / "seed0"))
    assert_one_line_error(checkpoint_refused, str(checkpoint), "holds 2 agents",
                          str(batch_dir / "seed<k>" / "best.npz"))


def test_a_run_folder_without_best_checkpoint_is_one_line(tmp_path):
    with writes_nothing(tmp_path):
        refused = run_evaluate(tmp_path, "--episodes", "3", cwd=tmp_path)
    assert_one_line_error(refused, str(tmp_path / "best.npz"), "no such")


def _text(path: Path, good: Path) -> None:
    path.write_text("this is not a checkpoint\n")


def _truncated(path: Path, good: Path) -> None:
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _foreign(path: Path, good: Path) -> None:
    np.savez(path, W1=np.random.default_rng(0).standard_normal((3, 3)), b1=np.zeros(3))


def _pickled_object(path: Path, good: Path) -> None:
    np.savez(path, format=np.array("dqn-np"), obj=np.array([{"a": 1}], dtype=object))


def _plain_pickle(path: Path, good: Path) -> None:
    path.write_bytes(pickle.dumps({"online.W1": [1.0]}))


def _lone_npy(path: Path, good: Path) -> None:
    with path.open("wb") as f:
        np.save(f, np.arange(3.0))


def _too_new(path: Path, good: Path) -> None:
    with np.load(good) as data:
        arrays = dict(data)
    np.savez(path, **{**arrays, "format_version": np.array(99)})


def _bad_version(path: Path, good: Path) -> None:
    with np.load(good) as data:
        arrays = dict(data)
    np.savez(path, **{**arrays, "format_version": np.arange(2)})


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_text, "not a .npz archive"),
        (_truncated, "not a .npz archive"),
        (_foreign, "not a dqn-np checkpoint"),
        (_pickled_object, "pickled Python objects"),
        (_plain_pickle, "not a .npz archive"),
        (_lone_npy, "not a .npz archive"),
        (_too_new, "newer dqn-np (format version 99)"),
        (_bad_version, "invalid format version"),
    ],
)
def test_bad_file_is_one_line_naming_it(make, reason, agent_file, tmp_path):
    path = tmp_path / "model.npz"
    make(path, agent_file)
    with writes_nothing(tmp_path):  # the bad file as it was, nothing beside it (run from its folder)
        refused = run_evaluate(path, "--episodes", "1", cwd=tmp_path)
    assert_one_line_error(refused, str(path), reason)


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.npz"
    with writes_nothing(tmp_path):
        refused = run_evaluate(path, cwd=tmp_path)
    assert_one_line_error(refused, str(path), "no such checkpoint file")


def test_network_that_does_not_fit_the_env(tmp_path):
    path = DQNAgent(3, 2, TINY, np.random.default_rng(0)).save(tmp_path / "three_inputs.npz")
    with writes_nothing(tmp_path):
        refused = run_evaluate(path, "--episodes", "1", cwd=tmp_path)
    assert_one_line_error(refused, str(path), "3 observation values", "CartPole-v1 has 4")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--env-id", "Pendulum-v1"), "Pendulum-v1"),
        (("--env-id", "NoSuchEnv-v0"), "NoSuchEnv-v0"),
        (("--episodes", "0"), "--episodes"),
        (("--episodes", "many"), "--episodes"),
        (("--seed", "-1"), "--seed"),
    ],
)
def test_bad_options(args, fragment, agent_file, tmp_path):
    with writes_nothing(agent_file.parent, tmp_path):  # the run as it was; run from an empty folder
        refused = run_evaluate(agent_file, *args, cwd=tmp_path)
    assert_one_line_error(refused, fragment)


@pytest.mark.parametrize("options", [{"dueling": True}, {"dueling": True, "prioritized": True}],
                         ids=["dueling", "dueling+prioritized"])
def test_a_dueling_or_prioritized_model_file_says_its_head_and_evaluates(options, tmp_path):
    config = dataclasses.replace(TINY, **options)
    assert train_one(config, "CartPole-v1", 0, tmp_path / "run", 400)["status"] == "completed"
    path = tmp_path / "run" / "final.npz"
    loaded = DQNAgent.load(path)
    assert loaded.config.dueling and isinstance(loaded.online.layers[-1], Dueling)
    assert loaded.online.params["W2"].shape == (3, 16)  # V and two advantages
    result, report = evaluate_report(path, "--episodes", "3", "--seed", "5")
    assert result.returncode == 0, result.stderr
    env = VecEnv("CartPole-v1", 3, np.random.default_rng(5))
    try:
        expected = evaluate(loaded, env, 3, 5)
    finally:
        env.close()
    assert report["returns"] == expected.tolist()


# Bad input is one line and exit 2 with nothing written, whatever the value: the refusal happens before any work.

LONG_NAME = "n" * 300  # longer than any file system's name limit (255 bytes on Linux)


@pytest.fixture(scope="module")
def evaluate_script():
    """scripts/evaluate.py as a module, to run `main` in-process."""
    return load_script("evaluate")




def assert_refused_in_process(status, stdout, stderr, *fragments) -> None:
    assert status == 2, (stdout, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("evaluate.py: error: ") and "Traceback" not in stderr, stderr
    assert stdout == ""
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(("args", "fragments"), [
    (("--seed", str(10**23)), ("--seed must be an integer in [0, 2**63 - episodes]", str(10**23))),
    (("--seed", str(2**63 - 2), "--episodes", "3"), ("[0, 9223372036854775805]", str(2**63 - 2))),
    (("--seed", str(10**40)), ("(41 digits)",)),
    (("--seed", "-1"), ("--seed",)),
    (("--episodes", str(10**7)), ("--episodes must be in [1, 1000000]",)),
    (("--episodes", "0"), ("--episodes must be in [1, 1000000], got 0",)),
], ids=["seed-1e23", "seed-plus-episodes-beyond-int64", "seed-huge", "seed-negative", "episodes-huge",
        "episodes-zero"])
def test_out_of_range_numbers_are_one_line_naming_the_range(args, fragments, agent_file, evaluate_script, capsys,
                                                            tmp_path):
    before = snapshot(tmp_path)
    status, stdout, stderr = run_main(evaluate_script, capsys, agent_file, *args, "--json", tmp_path / "r.json")
    assert_refused_in_process(status, stdout, stderr, *fragments)
    assert snapshot(tmp_path) == before


def test_the_largest_seed_the_episodes_allow_evaluates(agent_file, evaluate_script, capsys, tmp_path):
    status, _, stderr = run_main(evaluate_script, capsys, agent_file, "--seed", 2**63 - 3, "--episodes", 3,
                                 "--json", tmp_path / "r.json")
    assert status == 0, stderr
    assert json.loads((tmp_path / "r.json").read_text())["seed"] == 2**63 - 3


@pytest.mark.parametrize(("where", "fragments"), [
    ("missing/r.json", ("its folder", "does not exist")),
    ("a_folder", ("it is a folder",)),
    ("file/r.json", ("is not a folder",)),
    (LONG_NAME + ".json", ("is 305 bytes long",)),
    ("old.json", ("the file exists", "--force")),
    ("read_only/r.json", ("permission denied",)),
], ids=["missing-folder", "a-folder", "under-a-file", "name-too-long", "existing-file", "unwritable-folder"])
def test_an_unusable_json_path_is_refused_before_evaluating(where, fragments, agent_file, evaluate_script, capsys,
                                                            tmp_path, monkeypatch):
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "file").write_text("a file")
    (tmp_path / "old.json").write_text("earlier results")
    (tmp_path / "read_only").mkdir(mode=0o500)
    if os.geteuid() == 0 and where.startswith("read_only"):  # root writes anywhere: what a user meets is os.access
        monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path / "read_only")
    calls = []
    monkeypatch.setattr(evaluate_script, "evaluate", lambda *a, **k: calls.append(a))
    before = snapshot(tmp_path)
    status, stdout, stderr = run_main(evaluate_script, capsys, agent_file, "--episodes", "2", "--json",
                                      tmp_path / where)
    assert_refused_in_process(status, stdout, stderr, "--json", *fragments)
    assert snapshot(tmp_path) == before and calls == []  # nothing written, nothing evaluated


def test_force_replaces_an_existing_json_and_gif_is_refused_without_it(agent_file, evaluate_script, capsys, tmp_path):
    old = tmp_path / "old.json"
    old.write_text("earlier results")
    status, stdout, stderr = run_main(evaluate_script, capsys, agent_file, "--episodes", "2", "--json", old, "--force")
    assert status == 0, stderr
    assert json.loads(old.read_text())["episodes"] == 2 and f"results in {old}" in stdout
    gif = tmp_path / "old.gif"
    gif.write_bytes(b"an older GIF")
    before = snapshot(tmp_path)
    status, stdout, stderr = run_main(evaluate_script, capsys, agent_file, "--episodes", "2", "--gif", gif)
    assert_refused_in_process(status, stdout, stderr, f"--gif {gif}: the file exists", "--force")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("make", [
    lambda tmp: tmp / (LONG_NAME + ".npz"),
    lambda tmp: tmp / LONG_NAME / "best.npz",
    lambda tmp: tmp / LONG_NAME,
], ids=["long-file-name", "long-folder-name", "long-run-folder"])
def test_a_checkpoint_path_too_long_is_one_line(make, evaluate_script, capsys, tmp_path):
    before = snapshot(tmp_path)
    status, stdout, stderr = run_main(evaluate_script, capsys, make(tmp_path), "--episodes", "1")
    assert_refused_in_process(status, stdout, stderr, LONG_NAME[:40])
    assert snapshot(tmp_path) == before
