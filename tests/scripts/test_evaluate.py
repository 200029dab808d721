"""scripts/evaluate.py, run the way a user types it: results of a trained agent, and one-line errors on bad input."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agents.run.checkpoint import flatten_state, save_checkpoint
from agents.config import DQNConfig
from agents.algo.dqn import DQNAgent
from agents.train import Trainer
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
def trainer() -> Trainer:
    """A tiny agent trained on CartPole for 600 steps."""
    trainer = Trainer(lambda n, rng: VecEnv("CartPole-v1", n, rng), TINY, seed=0)
    trainer.run(600)
    return trainer


@pytest.fixture(scope="module")
def agent_file(trainer: Trainer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trainer.agent.save(tmp_path_factory.mktemp("ckpt") / "final.npz")


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


def test_env_id_defaults_to_the_one_in_the_file(trainer, tmp_path):
    path = trainer.agent.save(tmp_path / "best.npz", meta={"env_id": "CartPole-v0"})
    result = run_evaluate(path, "--episodes", "2", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["env_id"] == "CartPole-v0"
    assert_one_line_error(run_evaluate(trainer.agent.save(path, meta={"env_id": "NoSuchEnv-v0"})), "NoSuchEnv-v0")


def test_evaluates_a_training_checkpoint(trainer, tmp_path):
    arrays, meta = flatten_state(trainer.state_dict())
    path = save_checkpoint(tmp_path / "checkpoint.npz", trainer.config, 4, 2, arrays, {**meta, "env_id": "CartPole-v1"})
    result = run_evaluate(path, "--episodes", "2", "--json")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout.splitlines()[-1])["returns"]) == 2


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
