"""Presets: the package's per-environment TOML files (agents/presets/<env_id>.toml), picked up from --env-id by
default, overridden by explicit flags, replaced with --preset FILE or turned off with --preset none; each records the
study that chose it; a bad preset is one line naming it, exit status 2, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from agents.config import (
    PRESET_DIR,
    DQNConfig,
    config_for,
    preset_names,
    preset_path,
    preset_record,
    preset_total_steps,
)

REPO = Path(__file__).resolve().parents[2]
EXPECTED = ["Acrobot-v1", "CartPole-v1", "LunarLander-v3", "MountainCar-v0"]
TINY = ["--total-steps", "64", "--n-envs", "4", "--learning-starts", "32", "--batch-size", "32", "--hidden-sizes", "8",
        "--eval-freq", "64", "--no-progress"]


def cli(*args: str, script: str = "scripts/train_cartpole.py") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, script, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_every_environment_of_the_suite_has_a_preset_that_records_its_study() -> None:
    assert preset_names() == EXPECTED
    for env_id in EXPECTED:
        path = preset_path(env_id)
        assert path == PRESET_DIR / f"{env_id}.toml"
        data = tomllib.loads(path.read_text())
        assert data["env_id"] == env_id
        assert preset_total_steps("default", env_id) == data["total_steps"] > 0
        source = data["source"]
        for key in ("command", "seeds", "machine", "date", "result"):
            assert isinstance(source.get(key), str) and source[key], (env_id, key)
        assert set(data["config"]) <= {f for f in DQNConfig.__dataclass_fields__}, env_id
        config = config_for(env_id, preset="default")
        for name, value in data["config"].items():
            assert getattr(config, name) == (tuple(value) if isinstance(value, list) else value), (env_id, name)
        assert preset_record("default", env_id) == {"path": str(path), "source": source}


def test_none_and_unknown_ids_mean_the_defaults() -> None:
    assert config_for("CartPole-v1", preset="none") == DQNConfig()
    assert preset_path("dqn_np/Chain-v0") is None and config_for("dqn_np/Chain-v0", preset="default") == DQNConfig()
    assert preset_total_steps("none", "CartPole-v1") is None and preset_record("default", "Pendulum-v1") is None


def test_explicit_fields_win_over_the_preset() -> None:
    data = tomllib.loads(preset_path("MountainCar-v0").read_text())["config"]
    name = next(iter(data))
    other = {bool: lambda v: not v, int: lambda v: v + 1, float: lambda v: v / 2}[type(data[name])](data[name])
    assert getattr(config_for("MountainCar-v0", {name: other}, "default"), name) == other


def test_the_run_says_which_preset_is_in_force(tmp_path: Path) -> None:
    help_text = cli("--help").stdout
    assert "agents/presets/" in help_text and all(env_id in help_text for env_id in EXPECTED)
    out = tmp_path / "run"
    proc = cli(*TINY, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    recorded = json.loads((out / "config.json").read_text())
    assert recorded["preset"]["path"] == str(preset_path("CartPole-v1"))
    assert recorded["preset"]["source"] == tomllib.loads(preset_path("CartPole-v1").read_text())["source"]
    proc = cli(*TINY, "--preset", "none", "--out", str(tmp_path / "plain"))
    assert proc.returncode == 0, proc.stderr
    recorded = json.loads((tmp_path / "plain" / "config.json").read_text())
    assert recorded["preset"] is None
    assert recorded["config"]["stop_when_solved"] is DQNConfig().stop_when_solved


@pytest.mark.parametrize("text, words", [
    ("learning_rate = [", "not a TOML file"),
    ("no_such_field = 1", "unknown DQNConfig field(s) ['no_such_field']"),
    ("gamma = 2.0", "DQNConfig.gamma must be in [0, 1], got 2.0"),
    ('env_id = "Acrobot-v1"', "this preset is written for Acrobot-v1, not CartPole-v1"),
    ("total_steps = -5", "total_steps must be a positive integer, got -5"),
])
def test_a_bad_preset_is_one_line_naming_it_and_nothing_is_written(tmp_path: Path, text: str, words: str) -> None:
    preset = tmp_path / "bad.toml"
    preset.write_text(text + "\n")
    out = tmp_path / "run"
    proc = cli(*TINY, "--preset", str(preset), "--out", str(out))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(preset) in lines[0] and words in lines[0], proc.stderr
    assert not out.exists() and proc.stdout == ""
