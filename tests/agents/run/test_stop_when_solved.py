"""`--stop-when-solved` through `agents.run.train` and the command line: a member that solves stops there, its folder
holds everything a finished run's does (best and final models, logs, a summary that says it stopped solved), and seed
k of such a batch is the single run of seed k with the same flag."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np

from agents.config import DQNConfig
from agents.run import train, train_one
from agents.run.cli import config_overrides, parse_args
from agents.run.models import load_agent

EASY = "dqn_np_test/EasyCartPole-v1"  # CartPole with a reward threshold of 30, so tiny runs solve
if EASY not in gym.registry:
    gym.register(EASY, entry_point="gymnasium.envs.classic_control.cartpole:CartPoleEnv",
                 vector_entry_point="gymnasium.envs.classic_control.cartpole:CartPoleVectorEnv",
                 max_episode_steps=500, reward_threshold=30.0)
SEEDS = [0, 1, 2, 3]  # 1 and 3 solve at 100 steps; 0 and 2 never within 800
CONFIG = DQNConfig(dtype="float64", hidden_sizes=(16,), batch_size=16, buffer_size=2_000, n_envs=2,
                   learning_starts=64, train_freq=2, gradient_steps=1, target_update_interval=50,
                   epsilon_decay_steps=500, eval_freq=100, eval_episodes=20, learning_rate=1e-3, n_step=3,
                   stop_when_solved=True)
CLOCK = {"train_seconds", "solved_at_seconds", "eval_seconds", "phase_seconds", "wall_seconds", "out_dir",
         "checkpoint_bytes", "learning_curve"}


def figures(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in CLOCK}


def test_solved_members_stop_with_complete_folders_and_match_their_single_runs(tmp_path: Path) -> None:
    result = train(CONFIG, EASY, SEEDS, tmp_path / "batch", 800, final_eval_episodes=5)
    summaries = result["summaries"]
    stopped = [s["seed"] for s in summaries if s["stopped_solved"]]
    assert stopped and len(stopped) < len(SEEDS)
    assert result["status"] == "completed" and result["aggregate"]["fraction_solved"]["solved"] == len(stopped)
    for summary in summaries:
        k = summary["seed"]
        folder = tmp_path / "batch" / f"seed{k}"
        assert {"best.npz", "final.npz", "progress.csv", "evals.csv", "summary.json"} <= {p.name for p in
                                                                                           folder.iterdir()}
        written = json.loads((folder / "summary.json").read_text())
        assert written["stopped_solved"] is summary["stopped_solved"] and written["status"] == "completed"
        assert summary["final_eval_mean"] is not None and summary["best_model_eval_mean"] is not None
        if summary["stopped_solved"]:
            assert summary["env_steps"] == summary["solved_at_step"] < 800
            last_eval_step = int((folder / "evals.csv").read_text().splitlines()[-1].split(",")[1])
            assert last_eval_step == summary["solved_at_step"]  # nothing was logged after it stopped
        alone = train_one(CONFIG, EASY, k, tmp_path / f"single{k}", 800, final_eval_episodes=5)
        assert figures(summary) == figures(alone), k
        for name in ("final.npz", "best.npz"):
            a, b = load_agent(folder / name), load_agent(tmp_path / f"single{k}" / name)
            for key, value in a.online.params.items():
                np.testing.assert_array_equal(value, b.online.params[key], err_msg=f"seed {k} {name} {key}")


def test_the_flag_needs_no_value_and_reaches_the_config() -> None:
    for argv, want in (([], None), (["--stop-when-solved"], True), (["--stop-when-solved", "false"], False)):
        args = parse_args(argv, "batch", "train_seeds.py", "")
        assert config_overrides(args).get("stop_when_solved") is want
