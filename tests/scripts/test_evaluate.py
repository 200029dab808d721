"""scripts/evaluate.py, run the way a user types it: results of a trained agent (a single run's model files and
checkpoint, and a model of one seed of a batch), and one-line errors on bad input."""

import dataclasses
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agents.algo.dqn import DQNAgent
from agents.config import DQNConfig
from agents.loop.evaluation import evaluate
from agents.run import load_checkpoint, train, train_one
from dqn_np import Dueling
from envs import VecEnv

REPO = Path(__file__).resolve().parents[2]
TINY = DQNConfig(hidden_sizes=(16,), batch_size=32, buffer_size=1_000, learning_starts=100, eval_freq=0)


def run_evaluate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "scripts/evaluate.py", *map(str, args)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )


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
    result = run_evaluate(agent_file, "--episodes", "3", "--json")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    report = json.loads(lines[-1])
    assert len(report["returns"]) == 3 and report["episodes"] == 3
    assert report["mean"] == pytest.approx(np.mean(report["returns"]))
    assert report["std"] == pytest.approx(np.std(report["returns"]))
    assert report["env_id"] == "CartPole-v1" and report["checkpoint"] == str(agent_file)
    assert all(1 <= r <= 500 for r in report["returns"])
    assert any(f"{report['mean']:.2f} ± {report['std']:.2f} over 3 episodes" in line for line in lines[:-1])


def test_same_seed_same_returns(agent_file):
    first, second = (json.loads(run_evaluate(agent_file, "--episodes", "3", "--seed", "7", "--json").stdout
                                .splitlines()[-1]) for _ in range(2))
    assert first["returns"] == second["returns"]


def test_env_id_defaults_to_the_one_in_the_file(agent, tmp_path):
    path = agent.save(tmp_path / "best.npz", meta={"env_id": "CartPole-v0"})
    result = run_evaluate(path, "--episodes", "2", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["env_id"] == "CartPole-v0"
    assert_one_line_error(run_evaluate(agent.save(path, meta={"env_id": "NoSuchEnv-v0"})), "NoSuchEnv-v0")
    result = run_evaluate(agent.save(path), "--episodes", "2", "--json")  # a file that names no env_id
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["env_id"] == "CartPole-v1"


def test_evaluates_a_training_checkpoint(run_dir, agent_file):
    # A single run's checkpoint.npz holds the engine of one member: its online network is the final model's.
    from_checkpoint = run_evaluate(run_dir / "checkpoint.npz", "--episodes", "2", "--json")
    assert from_checkpoint.returncode == 0, from_checkpoint.stderr
    report = json.loads(from_checkpoint.stdout.splitlines()[-1])
    assert len(report["returns"]) == 2 and report["env_id"] == "CartPole-v1"
    from_model = json.loads(run_evaluate(agent_file, "--episodes", "2", "--json").stdout.splitlines()[-1])
    assert report["returns"] == from_model["returns"]


def test_a_run_folder_evaluates_its_best_checkpoint_and_says_so(agent_file, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "best.npz").write_bytes(agent_file.read_bytes())
    from_folder = run_evaluate(run_dir, "--episodes", "3", "--json")
    from_file = run_evaluate(run_dir / "best.npz", "--episodes", "3", "--json")
    assert from_folder.returncode == 0, from_folder.stderr
    assert f"{run_dir} is a run folder: evaluating its best checkpoint {run_dir / 'best.npz'}" in from_folder.stdout
    assert json.loads(from_folder.stdout.splitlines()[-1])["returns"] == json.loads(
        from_file.stdout.splitlines()[-1])["returns"]


@pytest.mark.parametrize("k", [0, 1])
def test_evaluates_the_best_model_of_one_seed_of_a_batch(batch_dir, k):
    path = batch_dir / f"seed{k}" / "best.npz"
    result = run_evaluate(path, "--episodes", "3", "--seed", "5", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
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
    from_folder = run_evaluate(batch_dir / f"seed{k}", "--episodes", "3", "--seed", "5", "--json")
    assert from_folder.returncode == 0, from_folder.stderr
    assert f"evaluating its best checkpoint {path}" in from_folder.stdout
    assert json.loads(from_folder.stdout.splitlines()[-1])["returns"] == report["returns"]


def test_the_seeds_of_a_batch_are_different_models(batch_dir):
    first, second = (DQNAgent.load(batch_dir / f"seed{k}" / "best.npz") for k in (0, 1))
    assert first.online.params.keys() == second.online.params.keys()
    assert any(not np.array_equal(first.online.params[name], second.online.params[name])
               for name in first.online.params)


def test_a_batch_folder_or_its_checkpoint_is_one_line_naming_a_seed_folder(batch_dir):
    assert_one_line_error(run_evaluate(batch_dir, "--episodes", "1"), str(batch_dir), "batch of seeds",
                          "2 seed folders", str(batch_dir / "seed0"))
    checkpoint = batch_dir / "checkpoint.npz"
    assert_one_line_error(run_evaluate(checkpoint, "--episodes", "1"), str(checkpoint), "holds 2 agents",
                          str(batch_dir / "seed<k>" / "best.npz"))


def test_a_run_folder_without_best_checkpoint_is_one_line(tmp_path):
    assert_one_line_error(run_evaluate(tmp_path, "--episodes", "3"), str(tmp_path / "best.npz"), "no such")


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
    assert_one_line_error(run_evaluate(path, "--episodes", "1"), str(path), reason)


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.npz"
    assert_one_line_error(run_evaluate(path), str(path), "no such checkpoint file")


def test_network_that_does_not_fit_the_env(tmp_path):
    path = DQNAgent(3, 2, TINY, np.random.default_rng(0)).save(tmp_path / "three_inputs.npz")
    assert_one_line_error(run_evaluate(path, "--episodes", "1"), str(path), "3 observation values", "CartPole-v1 has 4")


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
def test_bad_options(args, fragment, agent_file):
    assert_one_line_error(run_evaluate(agent_file, *args), fragment)


@pytest.mark.parametrize("options", [{"dueling": True}, {"dueling": True, "prioritized": True}],
                         ids=["dueling", "dueling+prioritized"])
def test_a_dueling_or_prioritized_model_file_says_its_head_and_evaluates(options, tmp_path):
    config = dataclasses.replace(TINY, **options)
    assert train_one(config, "CartPole-v1", 0, tmp_path / "run", 400)["status"] == "completed"
    path = tmp_path / "run" / "final.npz"
    loaded = DQNAgent.load(path)
    assert loaded.config.dueling and isinstance(loaded.online.layers[-1], Dueling)
    assert loaded.online.params["W2"].shape == (3, 16)  # V and two advantages
    result = run_evaluate(path, "--episodes", "3", "--seed", "5", "--json")
    assert result.returncode == 0, result.stderr
    env = VecEnv("CartPole-v1", 3, np.random.default_rng(5))
    try:
        expected = evaluate(loaded, env, 3, 5)
    finally:
        env.close()
    assert json.loads(result.stdout.splitlines()[-1])["returns"] == expected.tolist()
