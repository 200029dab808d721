"""scripts/compare_sb3.py: the notice when the [sb3] extra is missing, bad input, the pure parts (the zoo's table,
medians with unsolved seeds and their ratio, the interleaving order, the batched greedy evaluation), dqn-np's half on
a tiny budget, and, only where Stable-Baselines3 is installed, a tiny end-to-end comparison.

CI does not install the extra (torch is large), so everything but the last test runs without it: the missing import
is simulated by putting None in `sys.modules`, which makes `import stable_baselines3` raise ImportError.
"""

import importlib.util
import inspect
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from scripttools import load_script, writes_nothing

from agents.config import DQNConfig

REPO = Path(__file__).resolve().parents[2]
ENVS = {"CartPole-v1", "Acrobot-v1", "MountainCar-v0", "LunarLander-v3"}
HAVE_SB3 = importlib.util.find_spec("stable_baselines3") is not None and importlib.util.find_spec("torch") is not None
# the keyword arguments of stable_baselines3.DQN that the zoo's settings may set
DQN_KWARGS = {"learning_rate", "buffer_size", "learning_starts", "batch_size", "tau", "gamma", "train_freq",
              "gradient_steps", "target_update_interval", "exploration_fraction", "exploration_initial_eps",
              "exploration_final_eps", "max_grad_norm", "policy_kwargs"}


@pytest.fixture(scope="module")
def script():
    """scripts/compare_sb3.py as a module, to call its functions and `main` in-process."""
    return load_script("compare_sb3")


@pytest.fixture
def no_sb3(monkeypatch):
    """Stable-Baselines3 and torch unimportable, as on a machine without the [sb3] extra."""
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)
    monkeypatch.setitem(sys.modules, "torch", None)


def call(script, argv, capsys):
    """`main(argv)`'s exit status, stdout and stderr."""
    with pytest.raises(SystemExit) as info:
        script.main(argv)
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_without_the_extra_it_says_how_to_install_it_in_one_line_and_writes_nothing(script, no_sb3, capsys,
                                                                                    tmp_path):
    target = tmp_path / "compare.json"
    with writes_nothing(tmp_path):  # no compare.json
        code, out, err = call(script, ["--env-id", "CartPole-v1", "--seeds", "0-1", "--json", str(target)], capsys)
    assert code == 2 and out == ""
    assert err == "compare_sb3.py needs the [sb3] extra: pip install -e '.[sb3]' (torch: see README)\n"


@pytest.mark.parametrize(("args", "fragment"), [
    (["--env-id", "Pong-v5"], "argument --env-id: invalid choice: 'Pong-v5'"),
    (["--seeds", "3-1"], "--seeds range '3-1' runs backwards"),
    (["--seeds", "a"], "--seeds item 'a' is not a seed"),
    (["--seeds", "-2"], "--seeds item '-2' is not a seed"),
    (["--seeds", "1,1"], "--seeds names seed(s) [1] more than once"),
    (["--seeds", ","], "--seeds must name at least one seed"),
    (["--seeds", str(2**32)], "--seeds must be integers from 0 to 4294967295, got 4294967296"),
    (["--eval-episodes", "5"], "--eval-episodes must be from 20 (dqn-np counts a solve only over at least that "
                               "many) to 1000, got 5"),
    (["--eval-episodes", "1001"], "--eval-episodes must be from 20"),
    (["--eval-freq", "0"], "--eval-freq must be from 1 to 10000000, got 0"),
    (["--total-steps", "0"], "--total-steps must be from 1 to 10000000, got 0"),
    (["--total-steps", str(10**30)], "--total-steps must be from 1 to 10000000, got 1" + "0" * 30),
    (["--total-steps", "500"], "--total-steps 500 leaves dqn-np's preset no gradient step"),
    (["--total-steps", "4000", "--eval-freq", "5000"], "--eval-freq 5000 leaves no evaluation within 4000 steps"),
    (["--eval-freq", "60000"], "--eval-freq 60000 leaves no evaluation within 50000 steps"),
    (["--final-eval-episodes", "0"], "--final-eval-episodes must be from 1 to 1000, got 0"),
    (["--stop-when-solved", "maybe"], "argument --stop-when-solved: expected true or false, got 'maybe'"),
    (["--json", "missing/x.json"], "its folder"),
    (["--json", "a_folder"], "it is a folder"),
    (["--json", "a_file/x.json"], "is not a folder"),
    (["--json", "old.json"], "the file exists"),
    (["--json", "n" * 300 + ".json"], "bytes long"),
])
def test_bad_input_is_one_line_and_status_2_before_the_extra_is_looked_for(script, no_sb3, capsys, tmp_path,
                                                                          monkeypatch, args, fragment):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "old.json").write_text("{}")
    with writes_nothing(tmp_path):  # the working folder: old.json as it was, nothing new
        code, out, err = call(script, args, capsys)
    assert code == 2 and out == ""
    assert err.startswith("compare_sb3.py: error: ") and err.count("\n") == 1 and fragment in err, err


def test_the_zoo_table_covers_the_four_envs_with_dqn_arguments(script):
    assert set(script.ZOO) == set(script.THRESHOLDS) == ENVS
    assert script.THRESHOLDS == {"CartPole-v1": 475.0, "Acrobot-v1": -100.0, "MountainCar-v0": -110.0,
                                 "LunarLander-v3": 200.0}
    for env_id in ENVS:
        n_timesteps, kwargs = script.sb3_kwargs(env_id)
        assert n_timesteps >= 50_000 and set(kwargs) <= DQN_KWARGS, env_id
        assert kwargs["policy_kwargs"] == {"net_arch": [256, 256]}
        assert 0 < kwargs["exploration_fraction"] < 1 and 0 < kwargs["learning_rate"] < 0.01
        assert script.sb3_kwargs(env_id) == (n_timesteps, kwargs)  # reading it does not change the table
    assert script.sb3_kwargs("Acrobot-v1") == script.sb3_kwargs("LunarLander-v3")  # the zoo gives both one recipe
    assert script.sb3_kwargs("CartPole-v1")[1]["gradient_steps"] == 128
    assert script.sb3_kwargs("Acrobot-v1")[1]["gradient_steps"] == -1


def test_runs_interleave_seed_by_seed_dqn_np_first(script):
    assert script.schedule([3, 0, 7]) == [(3, "dqn-np"), (3, "sb3"), (0, "dqn-np"), (0, "sb3"), (7, "dqn-np"),
                                          (7, "sb3")]
    assert script.schedule([5]) == [(5, "dqn-np"), (5, "sb3")]


def test_medians_count_an_unsolved_seed_as_never(script):
    assert script.median_to_solve([30.0, None, 10.0]) == 30.0  # sorted: 10, 30, inf
    assert script.median_to_solve([10.0, 20.0]) == 15.0
    assert script.median_to_solve([10.0, None]) == math.inf  # even count: the middle pair holds the unsolved seed
    assert script.median_to_solve([None, None, 5.0]) == math.inf
    assert script.median_to_solve([None, 4.0, 2.0, 8.0]) == 6.0
    with pytest.raises(ValueError, match="at least one"):
        script.median_to_solve([])


def test_the_ratio_of_medians_with_unsolved_sides(script):
    assert script.ratio(30.0, 12.0) == 2.5
    assert script.ratio(math.inf, 12.0) == math.inf
    assert script.ratio(30.0, math.inf) == 0.0
    assert script.ratio(math.inf, math.inf) is None


def test_summary_per_library_and_ratios_from_rows(script):
    def row(library, seed, step, seconds):
        return {"library": library, "seed": seed, "solved_at_step": step, "solved_at_seconds": seconds}

    rows = [row("dqn-np", 0, 10_000, 4.0), row("sb3", 0, 30_000, 90.0),
            row("dqn-np", 1, None, None), row("sb3", 1, 40_000, 110.0),
            row("dqn-np", 2, 14_000, 6.0), row("sb3", 2, None, None)]
    summary = script.summarize(rows)
    assert summary["dqn-np"] == {"seeds": 3, "solved": 2, "median_steps_to_solve": 14_000.0,
                                 "median_seconds_to_solve": 6.0}
    assert summary["sb3"] == {"seeds": 3, "solved": 2, "median_steps_to_solve": 40_000.0,
                              "median_seconds_to_solve": 110.0}
    assert summary["ratio_seconds"] == 110.0 / 6.0 and summary["ratio_steps"] == 40_000 / 14_000
    safe = script.json_safe({"a": [math.inf, 1.5], "b": {"c": -math.inf}})
    assert safe == {"a": [None, 1.5], "b": {"c": None}}
    text = script.table([{**r, "env_steps": 50_000, "train_seconds": 1.0, "eval_seconds": 0.5,
                          "final_eval_mean": 500.0, "final_eval_std": 0.0} for r in rows], summary)
    assert text.count("never") == 4  # two unsolved rows, each never in steps and in seconds
    assert "ratio of medians, SB3 / dqn-np: seconds to solve 18.333, steps to solve 2.857" in text


def test_greedy_returns_play_one_seeded_episode_per_env_asking_for_the_live_ones_together(script):
    calls = []

    def predict(obs, deterministic):
        assert deterministic is True and obs.ndim == 2 and obs.shape[1] == 4
        calls.append(len(obs))
        return (obs[:, 2] > 0).astype(np.int64), None  # push the way the pole leans

    envs = [gym.make("CartPole-v1") for _ in range(4)]
    returns = script.greedy_returns(predict, envs, first_seed=100)
    expected = []
    for i in range(4):  # the same policy, one episode at a time
        env = gym.make("CartPole-v1")
        obs, _ = env.reset(seed=100 + i)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(int(obs[2] > 0))
            total += reward
            done = terminated or truncated
        expected.append(total)
    assert returns.tolist() == expected
    assert calls[0] == 4 and calls == sorted(calls, reverse=True) and sum(calls) == sum(expected)


def test_the_dqn_np_half_trains_in_memory_and_reports_its_curve(script, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = DQNConfig(hidden_sizes=(16,), n_envs=4, learning_starts=200, eval_freq=400, eval_episodes=20)
    row = script.run_dqn_np("CartPole-v1", 3, config, total_steps=1200, final_episodes=3)
    assert list(tmp_path.iterdir()) == []  # nothing written
    assert row["library"] == "dqn-np" and row["seed"] == 3 and row["env_steps"] == 1200
    assert row["n_evals"] == 3 and [point[0] for point in row["curve"]] == [400, 800, 1200]
    seconds = [point[1] for point in row["curve"]]
    assert 0 < seconds[0] <= seconds[1] <= seconds[2] <= row["train_seconds"]
    if row["solved_at_step"] is None:
        assert all(point[2] < 475 for point in row["curve"]) and row["solved_at_seconds"] is None
    else:
        first = next(point for point in row["curve"] if point[2] >= 475)
        assert [row["solved_at_step"], row["solved_at_seconds"]] == first[:2]
    assert row["final_eval_mean"] is not None and row["eval_seconds"] > 0


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_SB3, reason="the optional [sb3] extra (stable-baselines3, torch) is not installed")
def test_tiny_comparison_end_to_end(script, tmp_path):
    """Two seeds of both libraries on a tiny budget, run as a user types it.

    Skipped only where the optional [sb3] extra is not installed (CI does not install torch); every other behaviour
    of the script is tested above without it.
    """
    from stable_baselines3 import DQN

    assert set(script.sb3_kwargs("CartPole-v1")[1]) <= set(inspect.signature(DQN).parameters)
    target = tmp_path / "compare.json"
    proc = subprocess.run([sys.executable, "scripts/compare_sb3.py", "--seeds", "0,1", "--total-steps", "1536",
                           "--eval-freq", "512", "--final-eval-episodes", "3", "--json", str(target)], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    result = json.loads(target.read_text())
    order = [[r["seed"], r["library"]] for r in result["runs"]]
    assert order == result["order"] == [[0, "dqn-np"], [0, "sb3"], [1, "dqn-np"], [1, "sb3"]]
    for r in result["runs"]:
        assert r["env_steps"] == 1536 and r["n_evals"] == 3, r["library"]
        assert [point[0] for point in r["curve"]] == [512, 1024, 1536], r["library"]
        assert 0 < r["curve"][-1][1] <= r["train_seconds"] and r["eval_seconds"] > 0
        assert r["final_eval_mean"] is not None
    expected = script.json_safe(script.summarize(result["runs"]))
    assert result["summary"] == expected
    assert result["machine"]["torch_threads"] == 1 and result["machine"]["versions"]["stable_baselines3"]
    assert result["eval_episodes"] == 20 and result["sb3_settings"]["gradient_steps"] == 128
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("CartPole-v1, seeds 0,1, interleaved; threshold 475")
    assert "CPU " in lines[2] and "torch " in lines[2]
    assert any(line.startswith("ratio of medians, SB3 / dqn-np: seconds to solve") for line in lines)
