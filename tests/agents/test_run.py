"""agents/run.py at library level: `train` writes the run folder, divergence leaves the last good checkpoint
untouched, signals stop the loop cleanly and restore the handlers, and refused folders and files stay as they were."""

import hashlib
import json
import math
import os
import signal
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import envs
from agents.callbacks import Callback, EpisodeRow
from agents.checkpoint import CheckpointError, load_checkpoint
from agents.config import DQNConfig
from agents.run import RunFiles, stop_on_signals, train
from agents.train import Trainer

ENV_ID = "CartPole-v1"
# One gradient step per env step, so the step at which an injected NaN is seen is known exactly.
CONFIG = DQNConfig(hidden_sizes=(16,), batch_size=32, learning_starts=100, train_freq=1, gradient_steps=1,
                   target_update_interval=100, eval_freq=500, eval_episodes=3, n_envs=1)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _train(out: Path, total: int, **kwargs) -> dict:
    return train(CONFIG if not kwargs.get("resume") else None, ENV_ID, 0, out, total, **kwargs)


class NanReward(gym.Wrapper):
    """Returns a NaN reward on its `at`-th step (counted over all episodes)."""

    def __init__(self, env: gym.Env, at: int) -> None:
        super().__init__(env)
        self.at, self.steps = at, 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        return obs, (math.nan if self.steps == self.at else reward), terminated, truncated, info


class Digests(Callback):
    """Records the checkpoint's hash after each save (the run logger, before this callback, writes it)."""

    def __init__(self, files: RunFiles) -> None:
        self.files, self.by_step, self.trainer = files, {}, None

    def on_step(self, trainer: Trainer, steps_before: int) -> None:
        self.trainer = trainer
        if self.files.checkpoint.exists():
            digest = _digest(self.files.checkpoint)
            if digest not in self.by_step.values():
                self.by_step[trainer.env_steps] = digest


# --- divergence ---------------------------------------------------------------------------------------------------


class PoisonAfterFirstCheckpoint(Callback):
    """On the first checkpoint (after RunLogger wrote it), records its hash and puts a NaN into the online weights."""

    def __init__(self, files: RunFiles) -> None:
        self.files, self.step, self.digest = files, None, None

    def on_checkpoint(self, trainer: Trainer) -> None:
        if self.step is None:
            self.step, self.digest = trainer.env_steps, _digest(self.files.checkpoint)
            trainer.agent.online.params["W1"][0, 0] = np.nan


def test_nan_parameter_raises_divergence_and_keeps_last_checkpoint(tmp_path: Path) -> None:
    poison = PoisonAfterFirstCheckpoint(RunFiles(tmp_path))
    trainer, logger = _start(tmp_path, checkpoint_every=300, progress=poison)
    with pytest.raises(DivergenceError) as info:
        trainer.run(2000)
    assert poison.step == 300, "RunLogger must hand on_checkpoint on to the extra callback"
    message = str(info.value)
    # The first update after the poisoning (the next env step) sees the non-finite Q-values.
    assert f"env step {poison.step + 1}" in message
    assert trainer.env_steps == poison.step + 1
    assert trainer.last_metrics and all(math.isfinite(v) for v in trainer.last_metrics.values())
    assert f"last finite metrics {trainer.last_metrics}" in message

    summary = finish_run(trainer, logger, ENV_ID, status="diverged")
    assert _digest(logger.files.checkpoint) == poison.digest
    assert load_checkpoint(logger.files.checkpoint).meta["env_steps"] == poison.step
    assert not logger.files.final.exists()
    on_disk = json.loads(logger.files.summary.read_text())
    assert on_disk["status"] == summary["status"] == "diverged"
    assert on_disk["env_steps"] == poison.step + 1
    assert on_disk["final_eval_mean"] is None
    assert on_disk["last_metrics"] == pytest.approx(trainer.last_metrics)


class Digests(Callback):
    """Records the checkpoint's hash after each save."""

    def __init__(self, files: RunFiles) -> None:
        self.files, self.by_step = files, {}

    def on_checkpoint(self, trainer: Trainer) -> None:
        self.by_step[trainer.env_steps] = _digest(self.files.checkpoint)


def test_nan_reward_raises_divergence_naming_the_step_and_keeps_last_checkpoint(tmp_path: Path) -> None:
    bad_step = 437

    def make_env(seed: int) -> envs.GymEnv:  # only the training env (seed 0) is poisoned, not the eval env
        env = envs.make_env(ENV_ID, seed)
        return envs.GymEnv(NanReward(env, bad_step) if seed == 0 else env)

    digests = Digests(RunFiles(tmp_path))
    trainer, logger = _start(tmp_path, make_env=make_env, checkpoint_every=200, progress=digests)
    with pytest.raises(DivergenceError) as info:
        trainer.run(1000)
    assert f"env step {bad_step}" in str(info.value)
    assert "reward nan" in str(info.value)
    assert trainer.env_steps == bad_step - 1  # the bad step is not applied
    assert len(trainer.replay) == bad_step - 1  # nor stored
    assert sorted(digests.by_step) == [200, 400]

    finish_run(trainer, logger, ENV_ID, status="diverged")
    assert _digest(logger.files.checkpoint) == digests.by_step[400]
    assert json.loads(logger.files.summary.read_text())["status"] == "diverged"


# --- signals ------------------------------------------------------------------------------------------------------


class SignalOnEpisode(Callback):
    """Sends `signum` to this process at the end of episode `episode`."""

    def __init__(self, signum: int, episode: int) -> None:
        self.signum, self.episode, self.step = signum, episode, None

    def on_episode(self, trainer: Trainer, row: EpisodeRow) -> None:
        if row.episode == self.episode:
            self.step = trainer.env_steps
            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_the_run_after_the_step_and_restores_handlers(tmp_path: Path, signum: int) -> None:
    calls = []

    def previous(sig, frame):
        calls.append(sig)

    originals = {s: signal.signal(s, previous) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        sender = SignalOnEpisode(signum, episode=5)
        trainer, logger = _start(tmp_path, progress=sender)
        with stop_on_signals(trainer):
            summary = trainer.run(20_000)  # returns instead of raising KeyboardInterrupt or dying
        assert trainer.stop_requested == signal.Signals(signum).name
        assert summary["interrupted"] == signal.Signals(signum).name
        assert trainer.env_steps == sender.step  # stopped right after the step during which the signal came
        assert trainer.episodes == 5
        assert calls == []  # our handler, not the previous one, received the signal
        assert signal.getsignal(signal.SIGINT) is previous and signal.getsignal(signal.SIGTERM) is previous

        finish_run(trainer, logger, ENV_ID, status="interrupted")
        assert load_checkpoint(logger.files.checkpoint).meta["env_steps"] == sender.step
        assert json.loads(logger.files.summary.read_text())["status"] == "interrupted"
    finally:
        for s, handler in originals.items():
            signal.signal(s, handler)


def test_handlers_are_restored_when_the_run_raises(tmp_path: Path) -> None:
    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    trainer, logger = _start(tmp_path)
    with pytest.raises(RuntimeError), stop_on_signals(trainer):
        assert signal.getsignal(signal.SIGINT) not in before
        raise RuntimeError("boom")
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    logger.close()


# --- start_run refusals -------------------------------------------------------------------------------------------


def _finished_run(out: Path, steps: int = 400) -> None:
    trainer, logger = _start(out)
    trainer.run(steps)
    finish_run(trainer, logger, ENV_ID, status="completed")


def test_fresh_run_into_a_used_folder_is_refused(tmp_path: Path) -> None:
    _finished_run(tmp_path)
    before = _digest(tmp_path / "progress.csv")
    with pytest.raises(CheckpointError, match="--resume"):
        _start(tmp_path)
    assert _digest(tmp_path / "progress.csv") == before


def test_resume_from_a_model_file_is_refused(tmp_path: Path) -> None:
    _finished_run(tmp_path)
    (tmp_path / "final.npz").replace(tmp_path / "checkpoint.npz")  # a model file has no training state
    with pytest.raises(CheckpointError) as info:
        _start(tmp_path, resume=True)
    assert str(tmp_path / "checkpoint.npz") in str(info.value)
    assert "not a training checkpoint" in str(info.value)


def test_resume_with_a_foreign_progress_log_is_refused(tmp_path: Path) -> None:
    _finished_run(tmp_path)
    (tmp_path / "progress.csv").write_text("step,value\n1,2\n")
    with pytest.raises(CheckpointError) as info:
        _start(tmp_path, resume=True)
    assert str(tmp_path / "progress.csv") in str(info.value)


def test_resume_continues_counters_and_trims_logs(tmp_path: Path) -> None:
    trainer, logger = _start(tmp_path, checkpoint_every=400)
    trainer.run(400)
    episodes_at_checkpoint = trainer.episodes
    trainer.run(700)  # rows after the checkpoint (the next is at 800); then the process "dies" without finish_run
    logger.close()
    rows_before = len((tmp_path / "progress.csv").read_text().splitlines()) - 1
    assert rows_before > episodes_at_checkpoint

    resumed, logger = _start(tmp_path, resume=True)
    assert resumed.env_steps == 400 and resumed.episodes == episodes_at_checkpoint
    lines = (tmp_path / "progress.csv").read_text().splitlines()
    assert len(lines) - 1 == episodes_at_checkpoint
    resumed.run(700)
    finish_run(resumed, logger, ENV_ID, status="completed")
    episodes = [int(line.split(",")[0]) for line in (tmp_path / "progress.csv").read_text().splitlines()[1:]]
    assert episodes == list(range(1, len(episodes) + 1))
    assert len(episodes) == rows_before == resumed.episodes


def test_an_agent_loaded_from_a_training_checkpoint_continues_the_exploration_stream(tmp_path: Path) -> None:
    from agents.dqn import DQNAgent

    trainer, logger = _start(tmp_path / "run")
    trainer.run(300)
    finish_run(trainer, logger, ENV_ID, "completed")
    loaded = DQNAgent.load(logger.files.checkpoint)
    assert loaded.rng.bit_generator.state == trainer.agent.rng.bit_generator.state
    assert all(np.array_equal(loaded.online.params[k], v) for k, v in trainer.agent.online.params.items())
