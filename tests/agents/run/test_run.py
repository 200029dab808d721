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
from agents.loop.events import Callback, EpisodeRow
from agents.run.checkpoint import CheckpointError, load_checkpoint
from agents.config import DQNConfig
from agents.run.folder import RUN_FILE_NAMES, RunFolderError, RunLock
from agents.run import RunFiles, stop_on_signals, train
from agents.train import StopFlag, Trainer

ENV_ID = "CartPole-v1"
# One gradient step per env step, so the step at which an injected NaN is seen is known exactly.
CONFIG = DQNConfig(hidden_sizes=(16,), batch_size=32, learning_starts=100, train_freq=1, gradient_steps=1,
                   target_update_interval=100, eval_freq=500, eval_episodes=3, n_envs=1, n_step=1)


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


class PoisonAfterFirstCheckpoint(Digests):
    """After the first checkpoint is written, records its hash and puts a NaN into the online weights."""

    def on_step(self, trainer: Trainer, steps_before: int) -> None:
        super().on_step(trainer, steps_before)
        if self.by_step and not hasattr(self, "step"):
            (self.step, self.digest), = self.by_step.items()
            trainer.agent.online.params["W1"][0, 0] = np.nan


def test_nan_parameter_ends_the_run_as_diverged_and_keeps_last_checkpoint(tmp_path: Path) -> None:
    poison = PoisonAfterFirstCheckpoint(RunFiles(tmp_path))
    summary = _train(tmp_path, 2000, checkpoint_every=300, callbacks=[poison])
    assert poison.step == 300
    # The first update after the poisoning (the next env step) sees the non-finite Q-values.
    assert summary["status"] == "diverged"
    assert f"env step {poison.step + 1}" in summary["error"]
    assert summary["env_steps"] == poison.step + 1
    metrics = summary["last_metrics"]
    assert metrics and all(math.isfinite(v) for v in metrics.values())
    assert f"last finite metrics {metrics}" in summary["error"]

    files = RunFiles(tmp_path)
    assert _digest(files.checkpoint) == poison.digest
    assert load_checkpoint(files.checkpoint).meta["env_steps"] == poison.step
    assert not files.final.exists()
    on_disk = json.loads(files.summary.read_text())
    assert on_disk["status"] == "diverged"
    assert on_disk["env_steps"] == poison.step + 1
    assert on_disk["final_eval_mean"] is None


def test_nan_reward_ends_the_run_naming_the_step_and_keeps_last_checkpoint(tmp_path: Path) -> None:
    bad_step = 437
    digests = Digests(RunFiles(tmp_path))
    calls = []

    def make_env(n_envs: int, rng: np.random.Generator) -> envs.VecEnv:  # only the training envs are poisoned
        calls.append(n_envs)
        wrappers = (lambda env: NanReward(env, bad_step),) if len(calls) == 1 else ()
        return envs.VecEnv(ENV_ID, n_envs, rng, wrappers=wrappers)

    summary = _train(tmp_path, 1000, checkpoint_every=200, callbacks=[digests], make_env=make_env)
    assert summary["status"] == "diverged"
    assert f"env steps {bad_step}..{bad_step}" in summary["error"]
    assert "reward [nan]" in summary["error"]
    assert summary["env_steps"] == bad_step - 1  # the bad step is not applied
    assert len(digests.trainer.replay) == bad_step - 1  # nor stored
    assert sorted(digests.by_step) == [200, 400]
    assert _digest(RunFiles(tmp_path).checkpoint) == digests.by_step[400]
    assert json.loads(RunFiles(tmp_path).summary.read_text())["status"] == "diverged"


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
        summary = _train(tmp_path, 20_000, callbacks=[sender], handle_signals=True)  # returns, does not raise
        assert summary["status"] == "interrupted"
        assert summary["interrupted"] == signal.Signals(signum).name
        assert summary["env_steps"] == sender.step  # stopped right after the step during which the signal came
        assert summary["episodes"] == 5
        assert calls == []  # our handler, not the previous one, received the signal
        assert signal.getsignal(signal.SIGINT) is previous and signal.getsignal(signal.SIGTERM) is previous
        assert load_checkpoint(RunFiles(tmp_path).checkpoint).meta["env_steps"] == sender.step
        assert json.loads(RunFiles(tmp_path).summary.read_text())["status"] == "interrupted"
    finally:
        for s, handler in originals.items():
            signal.signal(s, handler)


def test_handlers_are_restored_when_the_run_raises(tmp_path: Path) -> None:
    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))

    class Boom(Callback):
        def on_step(self, trainer: Trainer, steps_before: int) -> None:
            assert signal.getsignal(signal.SIGINT) not in before
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        _train(tmp_path, 100, callbacks=[Boom()], handle_signals=True)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_stop_on_signals_sets_the_flag_and_restores_handlers_on_exit() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals() as stop:
        assert not stop
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)  # the first reason is kept
    assert stop.reason == "SIGTERM" and stop
    assert signal.getsignal(signal.SIGTERM) == before


# --- refusals and resume ------------------------------------------------------------------------------------------


def test_fresh_run_into_a_used_folder_is_refused(tmp_path: Path) -> None:
    _train(tmp_path, 400)
    before = _digest(tmp_path / "progress.csv")
    with pytest.raises(RunFolderError, match="--resume"):
        _train(tmp_path, 400)
    assert _digest(tmp_path / "progress.csv") == before


def test_resume_from_a_model_file_is_refused(tmp_path: Path) -> None:
    _train(tmp_path, 400)
    (tmp_path / "final.npz").replace(tmp_path / "checkpoint.npz")  # a model file has no training state
    with pytest.raises(CheckpointError) as info:
        _train(tmp_path, 800, resume=True)
    assert str(tmp_path / "checkpoint.npz") in str(info.value)
    assert "not a training checkpoint" in str(info.value)


def test_resume_with_a_foreign_progress_log_is_refused(tmp_path: Path) -> None:
    _train(tmp_path, 400)
    (tmp_path / "progress.csv").write_text("step,value\n1,2\n")
    with pytest.raises(CheckpointError) as info:
        _train(tmp_path, 800, resume=True)
    assert str(tmp_path / "progress.csv") in str(info.value)


class DieAt(Callback):
    """Raises at `step`, as a process killed there would stop: no final checkpoint, no summary."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step(self, trainer: Trainer, steps_before: int) -> None:
        if trainer.env_steps >= self.step:
            raise KeyboardInterrupt


def test_resume_continues_counters_and_trims_logs(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, 2000, checkpoint_every=400, callbacks=[DieAt(700)])  # the last checkpoint is at 400
    ckpt = load_checkpoint(RunFiles(tmp_path).checkpoint)
    episodes_at_checkpoint = ckpt.meta["collector"]["episodes"]
    rows_before = len((tmp_path / "progress.csv").read_text().splitlines()) - 1
    assert ckpt.meta["env_steps"] == 400 and rows_before > episodes_at_checkpoint

    summary = _train(tmp_path, 700, resume=True)
    episodes = [int(line.split(",")[0]) for line in (tmp_path / "progress.csv").read_text().splitlines()[1:]]
    assert episodes == list(range(1, len(episodes) + 1))  # no row twice, none missing
    assert len(episodes) == rows_before == summary["episodes"]  # the same rows as the run that died wrote
    assert json.loads((tmp_path / "config.json").read_text())["total_steps"] == 700  # the total it extends to


def test_an_agent_loaded_from_a_training_checkpoint_continues_the_exploration_stream(tmp_path: Path) -> None:
    from agents.algo.dqn import DQNAgent

    class Keep(Callback):
        def on_run_end(self, trainer: Trainer) -> None:
            self.trainer = trainer

    keep = Keep()
    _train(tmp_path / "run", 300, callbacks=[keep])
    loaded = DQNAgent.load(tmp_path / "run" / "checkpoint.npz")
    assert loaded.rng.bit_generator.state == keep.trainer.agent.rng.bit_generator.state
    assert all(np.array_equal(loaded.online.params[k], v) for k, v in keep.trainer.agent.online.params.items())


# --- run folders: refusals leave every byte, the lock, stops at any moment (issue 9) ---------------------------------


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` (hidden ones included) -> its bytes; folders as empty entries, so new ones show."""
    return {str(p.relative_to(root)) + ("/" if p.is_dir() else ""): b"" if p.is_dir() else p.read_bytes()
            for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("name", RUN_FILE_NAMES)
def test_fresh_run_refuses_a_folder_holding_any_run_file(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"someone's " + name.encode())
    before = snapshot(tmp_path)
    with pytest.raises(RunFolderError) as info:
        _train(tmp_path, 400)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / name}: this folder already holds a run") and "another --out" in message
    assert ("--resume" in message) == (name == "checkpoint.npz")  # the way on that exists
    assert snapshot(tmp_path) == before  # not even a .lock is left


def test_fresh_run_takes_an_empty_folder_with_a_dead_processes_lock(tmp_path: Path) -> None:
    (tmp_path / ".lock").write_text("999999999\n")  # left by a process that died: no holder, so free
    summary = _train(tmp_path, 300)
    assert summary["status"] == "completed"
    assert (tmp_path / ".lock").read_text() == f"{os.getpid()}\n"


@pytest.mark.parametrize("resume", [False, True], ids=["fresh", "resume"])
def test_a_locked_folder_is_refused_naming_the_holder(tmp_path: Path, resume: bool) -> None:
    _train(tmp_path / "run", 300)
    root = tmp_path / ("run" if resume else "other")
    root.mkdir(exist_ok=True)
    lock = RunLock(root)  # a second open file description: flock refuses it even within one process
    try:
        before = snapshot(root)
        with pytest.raises(RunFolderError, match=f"in use by another process \\(PID {os.getpid()}"):
            _train(root, 600, resume=resume)
        assert snapshot(root) == before
    finally:
        lock.release()
    assert _train(root, 600, resume=resume)["status"] == "completed"  # released: free again


def test_a_refused_resume_changes_nothing(tmp_path: Path) -> None:
    _train(tmp_path, 400)
    (tmp_path / "progress.csv").write_text("step,value\n1,2\n")  # someone else's log
    (tmp_path / "evals.csv").unlink()
    before = snapshot(tmp_path)
    with pytest.raises(CheckpointError, match="progress.csv"):
        _train(tmp_path, 800, resume=True)
    assert snapshot(tmp_path) == before  # config.json not rewritten, no evals.csv made, .lock as it was


def test_a_stop_before_training_ends_with_a_resumable_step_0_run(tmp_path: Path) -> None:
    stop = StopFlag()
    stop.set("SIGTERM")  # e.g. a signal while the command was still setting up
    summary = _train(tmp_path, 5000, stop=stop)
    assert summary["status"] == "interrupted" and summary["interrupted"] == "SIGTERM"
    assert summary["env_steps"] == 0 and summary["final_eval_mean"] is None  # no final evaluation after a stop
    assert json.loads(RunFiles(tmp_path).summary.read_text())["status"] == "interrupted"
    assert load_checkpoint(RunFiles(tmp_path).checkpoint).meta["env_steps"] == 0


class SignalOnStep(gym.Wrapper):
    """Sends `signum` to this process on its first step."""

    def __init__(self, env: gym.Env, signum: int) -> None:
        super().__init__(env)
        self.signum, self.sent = signum, False

    def step(self, action):
        if not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signum)
        return self.env.step(action)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_the_final_evaluation_makes_the_run_interrupted(tmp_path: Path, signum: int) -> None:
    episodes = 5000

    def make_env(n_envs: int, rng: np.random.Generator) -> envs.VecEnv:  # only the final evaluation's envs signal
        final = n_envs == 100
        return envs.VecEnv(ENV_ID, n_envs, rng, wrappers=(lambda env: SignalOnStep(env, signum),) if final else ())

    summary = _train(tmp_path, 300, final_eval_episodes=episodes, handle_signals=True, make_env=make_env)
    assert summary["status"] == "interrupted" and summary["interrupted"] == signal.Signals(signum).name
    assert summary["env_steps"] == 300  # training had ended
    assert summary["final_eval_mean"] is None  # stopped within the first wave of 100 episodes
    assert json.loads(RunFiles(tmp_path).summary.read_text())["status"] == "interrupted"
    assert load_checkpoint(RunFiles(tmp_path).checkpoint).meta["env_steps"] == 300
    resumed = _train(tmp_path, 300, resume=True, final_eval_episodes=3)  # resuming finishes what was left
    assert resumed["status"] == "completed" and resumed["final_eval_episodes"] == 3


def test_evaluate_stops_when_asked_and_reports_each_wave() -> None:
    from agents.algo.dqn import DQNAgent
    from agents.loop.evaluation import evaluate

    agent = DQNAgent(4, 2, CONFIG, np.random.default_rng(0))
    env = envs.VecEnv(ENV_ID, 4, np.random.default_rng(0))
    waves: list[int] = []
    full = evaluate(agent, env, 10, seed=7, on_wave=waves.append)
    assert waves == [4, 4, 2] and full.shape == (10,)
    asks = iter([False] * 3 + [True] * 1000)  # stop during the first wave
    assert evaluate(agent, env, 10, seed=7, should_stop=lambda: next(asks)).shape == (0,)
    np.testing.assert_array_equal(evaluate(agent, env, 10, seed=7), full)  # waves and stops change no number


def test_a_buffer_too_large_for_memory_is_refused_before_the_folder_exists(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"buffer_size 2000000000: the replay buffer would need 96000000000 bytes"):
        train(DQNConfig(buffer_size=2_000_000_000), ENV_ID, 0, out, 1000)
    assert not out.exists()
