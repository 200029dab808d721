"""agents/run/train.py at library level, for one seed (`train_one`, layout "single") and a batch (layout "batch"):
the run folder and its summaries, a resumed run that ends bit-identical to an uninterrupted one, divergence (the run
frozen at its last good state, which the checkpoint holds), signals that stop the loop cleanly and restore the
handlers, and refused folders and files that stay as they were."""

import csv
import hashlib
import json
import math
import os
import signal
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from scripttools import snapshot, writes_nothing

import envs
from agents.config import DQNConfig
from agents.loop.events import Callback, EpisodeRow, LoopView, StopFlag
from agents.run import RunFiles, stop_on_signals, train, train_one
from agents.run.checkpoint import CheckpointError, load_checkpoint, unflatten_state
from agents.run.folder import RUN_FILE_NAMES, RunFolderError, RunLock

ENV_ID = "CartPole-v1"
# One gradient step per env step, so the step at which an injected NaN is seen is known exactly.
CONFIG = DQNConfig(hidden_sizes=(16,), batch_size=32, learning_starts=100, train_freq=1, gradient_steps=1,
                   target_update_interval=100, eval_freq=500, eval_episodes=3, n_envs=1, n_step=1)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _train(out: Path, total: int, **kwargs) -> dict:
    """A single run of seed 0 (resumed: the run's own config and seed); its summary."""
    return train_one(CONFIG if not kwargs.get("resume") else None, ENV_ID, 0, out, total, **kwargs)


def _strict_json(text: str):
    """json.loads that refuses NaN and Infinity, which are not JSON (RFC 8259) and which strict readers reject."""

    def refuse(constant: str):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


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
    """Records the checkpoint's hash after each save during training (the folder writer, before this callback,
    writes it)."""

    def __init__(self, files: RunFiles) -> None:
        self.files, self.by_step, self.loop = files, {}, None

    def on_step(self, loop: LoopView, steps_before: int) -> None:
        self.loop = loop
        if self.files.checkpoint.exists():
            digest = _digest(self.files.checkpoint)
            if digest not in self.by_step.values():
                self.by_step[loop.env_steps] = digest


# --- divergence ---------------------------------------------------------------------------------------------------

SHARED_COUNTERS = ("agent.n_updates", "optim.t")  # counted for the whole engine, not per member


class PoisonAfterFirstCheckpoint(Digests):
    """After the first checkpoint is written, poisons the agent so that its next update goes non-finite, and records
    the agent's state right then: the last state the update may leave it in.

    "nan_weight" puts a NaN into the online weights (the next update's Q-values are not finite); "infinite_lr" sets
    the learning rate to infinity (the next optimizer step writes non-finite weights, from a finite gradient).
    """

    def __init__(self, files: RunFiles, how: str) -> None:
        super().__init__(files)
        self.how = how

    def on_step(self, loop: LoopView, steps_before: int) -> None:
        super().on_step(loop, steps_before)
        if self.by_step and not hasattr(self, "step"):
            (self.step, self.digest), = self.by_step.items()
            self.updates = loop.agent.n_updates
            if self.how == "nan_weight":
                loop.agent.online.params["W1"][0, 0, 0] = np.nan  # member 0, the only one
            else:
                loop.agent.optimizer.lr = math.inf
            self.state = {k: np.copy(v) for k, v in loop.agent.state_dict().items() if k != "rng"}


@pytest.mark.parametrize("how", ["nan_weight", "infinite_lr"])
def test_a_non_finite_update_ends_the_run_as_diverged_frozen_at_its_last_state(tmp_path: Path, how: str) -> None:
    poison = PoisonAfterFirstCheckpoint(RunFiles(tmp_path), how)
    summary = _train(tmp_path, 2000, checkpoint_every=300, callbacks=[poison])
    assert poison.step == 300
    # The first update after the poisoning (the next env step) goes non-finite.
    assert summary["status"] == "diverged"
    assert f"at update {poison.updates + 1} (env step {poison.step + 1})" in summary["error"]
    assert summary["env_steps"] == poison.step + 1
    metrics = summary["last_metrics"]
    assert metrics and all(math.isfinite(v) for v in metrics.values()), metrics  # the last finite ones

    files = RunFiles(tmp_path)
    ckpt = load_checkpoint(files.checkpoint)  # rewritten at the end: it holds the frozen state
    assert ckpt.meta["stopped"] == {"0": summary["error"]} and ckpt.meta["frozen_at"] == {"0": poison.updates + 1}
    agent = unflatten_state(ckpt.arrays, ckpt.meta)["agent"]
    for key, value in poison.state.items():  # parameters, target and optimizer moments as before that update
        if key not in SHARED_COUNTERS:
            np.testing.assert_array_equal(agent[key], value, err_msg=key)
    if how == "infinite_lr":  # the step that overflowed was undone: the last good state is finite
        assert all(np.isfinite(v).all() for k, v in agent.items() if k.startswith(("online.", "optim.")))
    assert not files.final.exists()
    on_disk = _strict_json(files.summary.read_text())
    assert on_disk["status"] == "diverged"
    assert on_disk["env_steps"] == poison.step + 1
    assert on_disk["final_eval_mean"] is None

    if how == "infinite_lr":  # resumed, it ends at once, diverged again, with nothing lost
        again = _train(tmp_path, 2000, resume=True)
        assert (again["status"], again["error"], again["env_steps"]) == ("diverged", summary["error"], poison.step + 1)
    else:  # the NaN put in from outside is part of its last state: refused in one line naming the file
        with writes_nothing(tmp_path), pytest.raises(CheckpointError, match="must be finite") as info:
            _train(tmp_path, 2000, resume=True)
        assert str(info.value).startswith(f"{files.checkpoint}: cannot resume from it")
    assert not files.final.exists()


def test_a_run_that_diverges_by_itself_keeps_its_last_finite_state_and_metrics(tmp_path: Path) -> None:
    # Plain SGD with a huge step and no clipping: the first update blows the weights up (finite), the second one's
    # Q-values overflow, so the run is frozen at the weights the first update left.
    config = DQNConfig(hidden_sizes=(16,), learning_starts=200, train_freq=4, optimizer="sgd", learning_rate=1e10,
                       max_grad_norm=0, loss="mse", eval_freq=0, n_envs=1, n_step=1)
    summary = train_one(config, ENV_ID, 0, tmp_path, 600)
    assert summary["status"] == "diverged" and "non-finite" in summary["error"]
    assert summary["env_steps"] < 600
    metrics = summary["last_metrics"]
    assert metrics and all(math.isfinite(v) for v in metrics.values()), metrics
    assert _strict_json(RunFiles(tmp_path).summary.read_text())["status"] == "diverged"
    ckpt = load_checkpoint(RunFiles(tmp_path).checkpoint)
    params = [v for k, v in ckpt.arrays.items() if k.startswith("agent/online.")]
    assert params and all(np.isfinite(v).all() for v in params)
    assert not RunFiles(tmp_path).final.exists()


def test_nan_reward_ends_the_run_naming_the_step_and_stores_nothing_of_it(tmp_path: Path) -> None:
    bad_step = 437
    digests = Digests(RunFiles(tmp_path))
    calls = []

    def make_env(n_envs: int, rngs: list[np.random.Generator]) -> envs.VecEnv:  # only the training envs are poisoned
        calls.append(n_envs)
        wrappers = (lambda env: NanReward(env, bad_step),) if len(calls) == 1 else ()
        return envs.VecEnv(ENV_ID, n_envs, rngs, wrappers=wrappers)

    summary = _train(tmp_path, 1000, checkpoint_every=200, callbacks=[digests], make_env=make_env)
    assert summary["status"] == "diverged"
    assert f"non-finite reward or observation at env step {bad_step}" in summary["error"]
    assert summary["env_steps"] == bad_step  # its count ends at the step that returned the NaN
    assert digests.loop.replay.sizes().tolist() == [bad_step - 1]  # which is not stored
    assert summary["updates"] == digests.loop.agent.n_updates == bad_step - 1 - CONFIG.learning_starts + 1
    assert sorted(digests.by_step) == [200, 400]
    ckpt = load_checkpoint(RunFiles(tmp_path).checkpoint)
    assert ckpt.meta["env_steps"] == bad_step and ckpt.meta["stopped"] == {"0": summary["error"]}
    assert int(ckpt.arrays["replay/buffers/0/size"]) == bad_step - 1
    assert np.isfinite(ckpt.arrays["replay/buffers/0/rewards"]).all()
    assert not RunFiles(tmp_path).final.exists()
    assert _strict_json(RunFiles(tmp_path).summary.read_text())["status"] == "diverged"


# --- signals ------------------------------------------------------------------------------------------------------


class SignalOnEpisode(Callback):
    """Sends `signum` to this process at the end of episode `episode`."""

    def __init__(self, signum: int, episode: int) -> None:
        self.signum, self.episode, self.step = signum, episode, None

    def on_episode(self, loop: LoopView, member: int, row: EpisodeRow) -> None:
        if row.episode == self.episode:
            self.step = loop.env_steps
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
        def on_step(self, loop: LoopView, steps_before: int) -> None:
            assert signal.getsignal(signal.SIGINT) not in before
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        _train(tmp_path, 100, callbacks=[Boom()], handle_signals=True)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_stop_on_signals_sets_the_flag_and_restores_handlers_on_exit() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals() as stop:
        assert not stop
        os.kill(os.getpid(), signal.SIGTERM)  # a second signal would exit at once (tests/scripts/test_clean_paths.py)
    assert stop.reason == "SIGTERM" and stop
    stop.set("SIGINT")  # the first reason is kept
    assert stop.reason == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == before


# --- the folders of both layouts, summaries, exact resume -------------------------------------------------------

# n_envs 2 and 2-step returns, one gradient burst every 4 transitions: every part of the state moves
FOLDER_CONFIG = DQNConfig(hidden_sizes=(16,), batch_size=16, buffer_size=1000, learning_starts=64, train_freq=4,
                          gradient_steps=2, target_update_interval=32, eval_freq=200, eval_episodes=2, n_envs=2,
                          n_step=2, epsilon_decay_steps=400)
LAYOUT_SEEDS = {"single": [0], "batch": [0, 1]}
MEMBER_FILES = {"config.json", "progress.csv", "evals.csv", "best.npz", "final.npz", "summary.json"}
TIMING_KEYS = ("train_seconds", "eval_seconds", "phase_seconds", "wall_seconds", "solved_at_seconds",
               "checkpoint_bytes", "out_dir")  # clocks, file sizes and paths: everything else is reproducible


def _run(out: Path, total: int, layout: str, **kwargs) -> dict:
    """`train` of FOLDER_CONFIG in `layout` (resumed: the run's own config and seeds); the result."""
    config, seeds = (None, None) if kwargs.get("resume") else (FOLDER_CONFIG, LAYOUT_SEEDS[layout])
    return train(config, ENV_ID, seeds, out, total, layout=layout, final_eval_episodes=2, **kwargs)


def _member_roots(out: Path, layout: str, seeds: list[int]) -> list[Path]:
    return [out] if layout == "single" else [out / f"seed{k}" for k in seeds]


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def _untimed(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in TIMING_KEYS}


def _log_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """A log's header and rows without the train_seconds column (a clock)."""
    with open(path, newline="") as f:
        header, *rows = list(csv.reader(f))
    keep = [i for i, name in enumerate(header) if name != "train_seconds"]
    assert len(keep) == len(header) - 1, header
    return [header[i] for i in keep], [[row[i] for i in keep] for row in rows]


def _assert_same_model(a: Path, b: Path) -> None:
    one, two = load_checkpoint(a), load_checkpoint(b)
    assert one.arrays.keys() == two.arrays.keys(), (a, b)
    for key, value in one.arrays.items():
        assert two.arrays[key].dtype == value.dtype, key
        np.testing.assert_array_equal(two.arrays[key], value, err_msg=f"{b}: {key}")
    assert one.meta["agent_rng"] == two.meta["agent_rng"], (a, b)


def _assert_same_member_files(a: Path, b: Path) -> None:
    """The same models (bit for bit) and the same logs (apart from the clock) in two member folders."""
    for name in ("final.npz", "best.npz"):
        _assert_same_model(a / name, b / name)
    for name in ("progress.csv", "evals.csv"):
        assert _log_rows(a / name) == _log_rows(b / name), name


@pytest.mark.parametrize("layout", ["single", "batch"])
def test_a_run_killed_and_resumed_ends_bit_identical_to_an_uninterrupted_one(tmp_path: Path, layout: str) -> None:
    seeds = LAYOUT_SEEDS[layout]
    whole = _run(tmp_path / "whole", 800, layout)
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):  # killed at 700; the last checkpoint is the one at 600
        _run(cut, 800, layout, checkpoint_every=300, callbacks=[DieAt(700)])
    ckpt = load_checkpoint(cut / "checkpoint.npz")
    assert ckpt.meta["env_steps"] == 600
    rows_at_death = [len(_log_rows(root / "progress.csv")[1]) for root in _member_roots(cut, layout, seeds)]
    assert all(rows_at_death > ckpt.arrays["episodes"])  # rows the resume must drop (they come again)
    resumed = _run(cut, 800, layout, resume=True)

    assert whole["status"] == resumed["status"] == "completed"
    assert [_untimed(s) for s in resumed["summaries"]] == [_untimed(s) for s in whole["summaries"]]
    for a, b in zip(_member_roots(tmp_path / "whole", layout, seeds), _member_roots(cut, layout, seeds), strict=True):
        _assert_same_member_files(a, b)
    one, two = load_checkpoint(tmp_path / "whole" / "checkpoint.npz"), load_checkpoint(cut / "checkpoint.npz")
    assert one.arrays.keys() == two.arrays.keys()
    for key, value in one.arrays.items():  # replay, env state, n-step windows, best parameters, counters
        np.testing.assert_array_equal(two.arrays[key], value, err_msg=key)


def test_the_folders_of_both_layouts_and_a_seed_in_a_batch_is_its_single_run(tmp_path: Path) -> None:
    single = train_one(FOLDER_CONFIG, ENV_ID, 1, tmp_path / "single", 400, final_eval_episodes=2)
    batch = train(FOLDER_CONFIG, ENV_ID, [0, 1], tmp_path / "batch", 400, final_eval_episodes=2)  # layout "batch"
    assert _names(tmp_path / "single") == MEMBER_FILES | {"checkpoint.npz", ".lock"}
    assert _names(tmp_path / "batch") == {"config.json", "checkpoint.npz", "summary.json", "aggregate.json", ".lock",
                                          "seed0", "seed1"}
    for k in (0, 1):
        assert _names(tmp_path / "batch" / f"seed{k}") == MEMBER_FILES

    # Every summary has the same keys in both layouts, is what its summary.json holds, and seed 1 in the batch
    # is seed 1 alone.
    member = batch["summaries"][1]
    assert member["seed"] == single["seed"] == 1 and member.keys() == single.keys()
    assert _untimed(member) == _untimed(single)
    assert member["out_dir"] == str(tmp_path / "batch" / "seed1") and single["out_dir"] == str(tmp_path / "single")
    for path, summary in ((tmp_path / "single", single), (tmp_path / "batch" / "seed0", batch["summaries"][0]),
                          (tmp_path / "batch" / "seed1", member)):
        assert _strict_json((path / "summary.json").read_text()) == json.loads(json.dumps(summary)), path
    assert _strict_json((tmp_path / "batch" / "summary.json").read_text()) == json.loads(json.dumps(batch))
    assert json.loads((tmp_path / "batch" / "aggregate.json").read_text()) == json.loads(
        json.dumps(batch["aggregate"]))
    assert batch["aggregate"]["n_seeds"] == 2 and batch["seeds"] == [0, 1] and batch["layout"] == "batch"
    _assert_same_member_files(tmp_path / "single", tmp_path / "batch" / "seed1")

    config = json.loads(FOLDER_CONFIG.to_json())
    assert json.loads((tmp_path / "single" / "config.json").read_text()) == {
        "env_id": ENV_ID, "seed": 1, "total_steps": 400, "config": config, "preset": None}
    assert json.loads((tmp_path / "batch" / "seed1" / "config.json").read_text()) == {
        "env_id": ENV_ID, "seed": 1, "total_steps": 400, "config": config, "preset": None,
        "batch": str(tmp_path / "batch")}
    assert json.loads((tmp_path / "batch" / "config.json").read_text()) == {
        "env_id": ENV_ID, "seeds": [0, 1], "total_steps": 400, "config": config, "preset": None}


@pytest.mark.parametrize("layout", ["single", "batch"])
def test_resuming_a_folder_as_the_other_layout_is_refused_naming_the_command(tmp_path: Path, layout: str) -> None:
    _run(tmp_path, 100, layout)
    before = snapshot(tmp_path)
    other = "batch" if layout == "single" else "single"
    with pytest.raises(CheckpointError) as info:
        train(None, ENV_ID, None, tmp_path, 400, layout=other, resume=True)
    message = str(info.value)
    kinds = {"single": "a single run", "batch": "a batch of seeds"}
    command = {"single": "scripts/train_cartpole.py", "batch": "scripts/train_seeds.py"}[layout]
    assert message.startswith(f"{tmp_path / 'checkpoint.npz'}: this folder holds {kinds[layout]}, not {kinds[other]}")
    assert f"{command} --resume {tmp_path}" in message
    assert snapshot(tmp_path) == before


# --- refusals and resume ------------------------------------------------------------------------------------------


def test_fresh_run_into_a_used_folder_is_refused(tmp_path: Path) -> None:
    _train(tmp_path, 400)
    with writes_nothing(tmp_path), pytest.raises(RunFolderError, match="--resume"):
        _train(tmp_path, 400)


def test_resume_from_a_model_file_is_refused(tmp_path: Path) -> None:
    _train(tmp_path, 400)
    (tmp_path / "final.npz").replace(tmp_path / "checkpoint.npz")  # a model file has no training state
    with writes_nothing(tmp_path), pytest.raises(CheckpointError) as info:
        _train(tmp_path, 800, resume=True)
    assert str(tmp_path / "checkpoint.npz") in str(info.value)
    assert "not a training checkpoint" in str(info.value)


def test_resume_with_a_foreign_progress_log_is_refused(tmp_path: Path) -> None:
    _train(tmp_path, 400)
    (tmp_path / "progress.csv").write_text("step,value\n1,2\n")
    with writes_nothing(tmp_path), pytest.raises(CheckpointError) as info:
        _train(tmp_path, 800, resume=True)
    assert str(tmp_path / "progress.csv") in str(info.value)


class DieAt(Callback):
    """Raises at `step`, as a process killed there would stop: no final checkpoint, no summary."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step(self, loop: LoopView, steps_before: int) -> None:
        if loop.env_steps >= self.step:
            raise KeyboardInterrupt


def test_resume_continues_counters_and_trims_logs(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, 2000, checkpoint_every=400, callbacks=[DieAt(700)])  # the last checkpoint is at 400
    ckpt = load_checkpoint(RunFiles(tmp_path).checkpoint)
    episodes_at_checkpoint = int(ckpt.arrays["episodes"][0])
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
        def on_run_end(self, loop: LoopView) -> None:
            self.loop = loop

    keep = Keep()
    _train(tmp_path / "run", 300, callbacks=[keep])
    loaded = DQNAgent.load(tmp_path / "run" / "checkpoint.npz")
    agent = keep.loop.agent  # stacked, one member
    assert loaded.members is None and agent.members == 1
    assert loaded.rng.bit_generator.state == agent.rng[0].bit_generator.state
    assert loaded.online.params.keys() == agent.online.params.keys()
    assert all(np.array_equal(loaded.online.params[k], v[0]) for k, v in agent.online.params.items())


# --- run folders: refusals leave every byte, the lock, stops at any moment (issue 9) ---------------------------------


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
    """Sends `signum` to this process once, on the first step of any env wrapped with the same `sent` list (one
    signal, as a user's Ctrl-C: a second one would exit the process at once)."""

    def __init__(self, env: gym.Env, signum: int, sent: list) -> None:
        super().__init__(env)
        self.signum, self.sent = signum, sent

    def step(self, action):
        if not self.sent:
            self.sent.append(True)
            os.kill(os.getpid(), self.signum)
        return self.env.step(action)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_the_final_evaluation_makes_the_run_interrupted(tmp_path: Path, signum: int) -> None:
    episodes = 5000

    sent: list = []

    def make_env(n_envs: int, rngs: list[np.random.Generator]) -> envs.VecEnv:  # only the final evaluation signals
        final = n_envs == 100
        return envs.VecEnv(ENV_ID, n_envs, rngs,
                           wrappers=(lambda env: SignalOnStep(env, signum, sent),) if final else ())

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
        train_one(DQNConfig(buffer_size=2_000_000_000), ENV_ID, 0, out, 1000)
    assert not out.exists()


def test_networks_too_large_for_memory_are_refused_before_anything_is_allocated_or_written(tmp_path: Path) -> None:
    from agents.algo.dqn import DQNAgent

    config = DQNConfig(hidden_sizes=(1_000_000, 1_000_000), buffer_size=1000)  # 10^12 weights: 32 TB in float32
    need = DQNAgent.nbytes_for(4, 2, config, 2)
    assert need > 8 * 10**12 * 4  # eight copies of the parameters at least
    with writes_nothing(tmp_path), pytest.raises(ValueError, match=r"2 seeds x buffer_size 1000: the replay buffers, "
                                                 r"with 2 x hidden_sizes 1000000 x 1000000 .* would need \d+ bytes"):
        train(config, ENV_ID, [0, 1], tmp_path / "batch", 1000)
    small = DQNAgent.nbytes_for(4, 2, DQNConfig(hidden_sizes=(64, 64)), 1)  # the defaults: well under a megabyte
    assert small < 10**6
