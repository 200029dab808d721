"""A stop request is honoured within one gradient step or one evaluation step, and the run it cuts resumes exactly.

A signal handler only sets the `StopFlag`; these tests trip the flag at a chosen moment instead (inside a burst of
gradient steps, inside an evaluation), through the same `train` the commands call, with every file on disk, and
check that the resumed run ends bit for bit where an uninterrupted one does.
"""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from agents.config import DQNConfig
from agents.loop.events import Callback, StopFlag
from agents.run import train
from agents.run.checkpoint import load_checkpoint, unflatten_state

ENV_ID = "CartPole-v1"
# Bursts of 32 gradient steps every 32 transitions (4 vector steps of 8 envs), an evaluation every 256.
CONFIG = DQNConfig(hidden_sizes=(16,), batch_size=16, buffer_size=2000, learning_starts=64, train_freq=32,
                   gradient_steps=32, target_update_interval=48, eval_freq=256, eval_episodes=4, n_envs=8,
                   n_step=2, epsilon_decay_steps=500)
TOTAL = 1024
TIMING_KEYS = ("train_seconds", "eval_seconds", "phase_seconds", "wall_seconds", "solved_at_seconds",
               "checkpoint_bytes", "out_dir", "status", "interrupted")


class StopWhen(StopFlag):
    """A stop flag that sets itself ("SIGINT") on the first check at which `when(engine)` holds."""

    __slots__ = ("engine", "when", "checks")

    def __init__(self, when) -> None:
        super().__init__()
        self.engine, self.when, self.checks = None, when, 0

    def __bool__(self) -> bool:
        if self.reason is None and self.engine is not None and self.when(self):
            self.set("SIGINT")
        return super().__bool__()


class Grab(Callback):
    """Hands the engine to the flag (callbacks see the loop on `on_run_start`)."""

    name = "grab"

    def __init__(self, flag: StopWhen) -> None:
        self.flag = flag

    def on_run_start(self, loop) -> None:
        self.flag.engine = loop


def _train(out: Path, seeds: list[int], config: DQNConfig = CONFIG, **kwargs) -> dict:
    layout = "single" if len(seeds) == 1 else "batch"
    return train(None if kwargs.get("resume") else config, ENV_ID, None if kwargs.get("resume") else seeds, out,
                 TOTAL, layout=layout, final_eval_episodes=2, **kwargs)


def _cut(out: Path, seeds: list[int], when, config: DQNConfig = CONFIG) -> tuple[dict, StopWhen]:
    flag = StopWhen(when)
    result = _train(out, seeds, config, stop=flag, callbacks=[Grab(flag)])
    assert result["status"] == "interrupted" and flag.reason == "SIGINT"
    return result, flag


def _state(out: Path) -> dict:
    ckpt = load_checkpoint(out / "checkpoint.npz")
    return unflatten_state(ckpt.arrays, ckpt.meta)


def _assert_same_run(whole: Path, resumed: Path, result_whole: dict, result_resumed: dict) -> None:
    untimed = [{k: v for k, v in s.items() if k not in TIMING_KEYS} for s in result_whole["summaries"]]
    assert [{k: v for k, v in s.items() if k not in TIMING_KEYS} for s in result_resumed["summaries"]] == untimed
    one, two = load_checkpoint(whole / "checkpoint.npz"), load_checkpoint(resumed / "checkpoint.npz")
    assert one.arrays.keys() == two.arrays.keys()
    for key, value in one.arrays.items():  # parameters, Adam moments, replay, envs, generators, best parameters
        np.testing.assert_array_equal(two.arrays[key], value, err_msg=key)
    for name in ("progress.csv", "evals.csv"):
        for a, b in zip(sorted(whole.rglob(name)), sorted(resumed.rglob(name)), strict=True):
            assert _untimed_rows(a) == _untimed_rows(b), name


def _untimed_rows(path: Path) -> list[dict[str, str]]:
    """A log's rows, every column but the clock (train_seconds)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all("train_seconds" in row for row in rows), path
    return [{k: v for k, v in row.items() if k != "train_seconds"} for row in rows]


@pytest.mark.parametrize("seeds", [[0], [0, 1]], ids=["single", "batch"])
def test_a_stop_inside_a_burst_waits_one_gradient_step_and_the_run_resumes_exactly(tmp_path: Path, seeds) -> None:
    whole = _train(tmp_path / "whole", seeds)
    # a burst of 32 every 32 transitions from step 64: the burst of step 256 takes updates 192 to 224
    cut, _ = _cut(tmp_path / "cut", seeds, lambda f: f.engine.agent.n_updates >= 200)
    state = _state(tmp_path / "cut")
    assert state["agent"]["agent.n_updates"] == 200  # not the burst's end (224): it stopped at the next check
    assert state["pending"] == [248, 24]  # the step that began at 248 owes 24 gradient steps and its events
    assert all(s["env_steps"] == 256 for s in cut["summaries"])
    resumed = _train(tmp_path / "cut", seeds, resume=True)
    _assert_same_run(tmp_path / "whole", tmp_path / "cut", whole, resumed)
    assert _state(tmp_path / "cut")["pending"] is None


@pytest.mark.parametrize("seeds", [[0], [0, 1]], ids=["single", "batch"])
def test_a_stop_inside_an_evaluation_ends_it_at_once_and_the_step_evaluates_again(tmp_path: Path, seeds) -> None:
    def during_second_evaluation(flag: StopWhen) -> bool:  # checks made once the step at 512 has trained
        if flag.engine.env_steps >= 512 and flag.engine.agent.n_updates == (512 - 64) // 32 * 32 + 32:
            flag.checks += 1
        return flag.checks > 3  # a few vector steps into the evaluation

    whole = _train(tmp_path / "whole", seeds)
    _cut(tmp_path / "cut", seeds, during_second_evaluation)
    state = _state(tmp_path / "cut")
    assert state["pending"] == [504, 0]  # its burst done, its events (the evaluation first) owed
    assert state["callbacks"]["evaluator"]["n_evals"] == 1  # the cut evaluation counted nothing
    evals = sorted((tmp_path / "cut").rglob("evals.csv"))
    assert [len(p.read_text().splitlines()) for p in evals] == [2] * len(seeds)  # header and the first evaluation
    resumed = _train(tmp_path / "cut", seeds, resume=True)
    _assert_same_run(tmp_path / "whole", tmp_path / "cut", whole, resumed)


def test_a_stop_at_the_budgets_last_step_resumes_with_the_runs_own_total(tmp_path: Path) -> None:
    whole = _train(tmp_path / "whole", [0])
    _cut(tmp_path / "cut", [0], lambda f: f.engine.agent.n_updates >= TOTAL - 32 - 5)  # 5 before the end
    state = _state(tmp_path / "cut")
    assert state["env_steps"] == TOTAL and state["pending"] == [TOTAL - 8, 5]
    resumed = _train(tmp_path / "cut", [0], resume=True)  # env_steps is the total already: the burst is still owed
    assert resumed["status"] == "completed"
    _assert_same_run(tmp_path / "whole", tmp_path / "cut", whole, resumed)


def test_a_checkpoint_without_pending_resumes_as_before(tmp_path: Path) -> None:
    """A state saved between steps (as every checkpoint before this field was) has no step owed."""
    _train(tmp_path / "run", [0])
    assert _state(tmp_path / "run")["pending"] is None


def test_a_resume_keeps_the_runs_options_so_the_printed_command_resumes_it_as_started(tmp_path: Path) -> None:
    """The options a run was started with (env backend, final-evaluation episodes, checkpoint cadence, replay in
    checkpoints) are recorded in its checkpoint; `--resume DIR` alone continues with them, exactly."""
    from agents.run.compare import compare_runs

    options = dict(env_backend="gymnasium", final_eval_episodes=3, checkpoint_every=256)
    whole = train(CONFIG, ENV_ID, [0], tmp_path / "whole", TOTAL, layout="single", **options)
    flag = StopWhen(lambda f: f.engine.agent.n_updates >= 300)
    cut = train(CONFIG, ENV_ID, [0], tmp_path / "cut", TOTAL, layout="single", stop=flag, callbacks=[Grab(flag)],
                **options)
    assert cut["status"] == "interrupted"
    recorded = load_checkpoint(tmp_path / "cut" / "checkpoint.npz").meta["options"]
    assert recorded == {**options, "save_replay": True}
    resumed = train(None, ENV_ID, None, tmp_path / "cut", None, layout="single", resume=True)
    assert resumed["warnings"] == []  # the envs were rebuilt on the run's own backend: restored exactly
    assert resumed["summaries"][0]["final_eval_episodes"] == 3
    assert compare_runs(tmp_path / "whole", tmp_path / "cut") == []
    assert whole["status"] == resumed["status"] == "completed"


def test_run_options_take_what_is_given_then_what_was_recorded_then_the_defaults() -> None:
    from agents.run.train import RUN_OPTIONS, run_options

    assert run_options({}) == RUN_OPTIONS
    meta = {"options": {"env_backend": "gymnasium", "final_eval_episodes": 7, "checkpoint_every": 0,
                        "save_replay": False}}
    assert run_options({"final_eval_episodes": None}, meta) == meta["options"]
    assert run_options({"final_eval_episodes": 9, "save_replay": True}, meta)["final_eval_episodes"] == 9
    assert run_options({"save_replay": True}, meta)["save_replay"] is True
    old = {"collector": {"env": {"backend": "sync"}}}  # a checkpoint from before options were recorded
    assert run_options({}, {}, old)["env_backend"] == "gymnasium"
    assert run_options({}, {}, {"collector": {"env": {"backend": "cartpole-vector"}}})["env_backend"] == "auto"
    with pytest.raises(ValueError, match="env_backend must be one of"):
        run_options({"env_backend": "gpu"})


def _edit_row(path: Path, row: int, column: str, value: str) -> None:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    fields = list(rows[0])
    rows[row][column] = value
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.parametrize(("name", "column"), [("evals.csv", "mean"), ("progress.csv", "episode_return"),
                                              ("progress.csv", "train_seconds")])
def test_a_log_row_edited_since_the_checkpoint_is_refused_and_nothing_is_written(tmp_path: Path, name, column):
    from scripttools import writes_nothing

    from agents.run.checkpoint import CheckpointError

    _cut(tmp_path / "run", [0, 1], lambda f: f.engine.env_steps >= 600)
    log = tmp_path / "run" / "seed1" / name
    _edit_row(log, 0, column, "12345.5")  # one value of a row the checkpoint counts; the row numbers intact
    with writes_nothing(tmp_path), pytest.raises(CheckpointError, match=f"{log}: its first .* rows are not"):
        _train(tmp_path / "run", [0, 1], resume=True)  # seed0's logs come first: they must not be trimmed either


def test_an_unedited_log_with_rows_after_the_checkpoint_still_resumes(tmp_path: Path) -> None:
    """The negative control: rows appended after the checkpoint (a run killed after it) are dropped, not refused."""
    _cut(tmp_path / "run", [0], lambda f: f.engine.env_steps >= 600)
    log = tmp_path / "run" / "progress.csv"
    log.write_bytes(log.read_bytes() + b"999,1000,1.0,10,0.5,1.0\r\n")
    assert _train(tmp_path / "run", [0], resume=True)["status"] == "completed"
    assert "999,1000" not in log.read_text()


def test_the_command_line_resume_keeps_the_runs_options(tmp_path: Path, capsys) -> None:
    """`train_cartpole.py --resume DIR --total-steps N`, without the options the run was started with, continues
    it exactly as the same command with those options run to N at once (the run's backend, its final evaluation)."""
    from scripttools import load_script, run_main

    from agents.run.compare import compare_runs

    script = load_script("train_cartpole")
    flags = ["--hidden-sizes", "8", "--batch-size", "16", "--buffer-size", "500", "--learning-starts", "64",
             "--n-envs", "2", "--eval-freq", "200", "--eval-episodes", "2", "--no-progress",
             "--env-backend", "gymnasium", "--final-eval-episodes", "3", "--checkpoint-every", "100"]
    code, _, err = run_main(script, capsys, *flags, "--total-steps", "600", "--out", tmp_path / "whole")
    assert code == 0 and err == ""
    code, _, err = run_main(script, capsys, *flags, "--total-steps", "300", "--out", tmp_path / "cut")
    assert code == 0 and err == ""
    code, _, err = run_main(script, capsys, "--resume", tmp_path / "cut", "--total-steps", "600", "--no-progress")
    assert code == 0 and err == ""  # no "could not be restored exactly", no raw warning
    assert compare_runs(tmp_path / "whole", tmp_path / "cut") == []
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.npz").meta["options"]["env_backend"] == "gymnasium"


def test_a_stop_while_plotting_draws_no_more_plots_and_the_results_stay_written(tmp_path: Path, monkeypatch) -> None:
    """Plots are optional and come after the results: a signal among them ends the drawing (the run is then
    "interrupted", and resuming it draws them), instead of waiting for a plot per seed."""
    import importlib

    train_module = importlib.import_module("agents.run.train")  # the module (agents.run.train is also the function)

    flag, drawn = StopFlag(), []
    real = train_module.plot_learning_curve

    def plot_then_signal(files, env_id, threshold=None):
        drawn.append(files.root.name)
        path = real(files, env_id, threshold)
        flag.set("SIGINT")  # the signal arrives while the first seed's plot is drawn
        return path

    monkeypatch.setattr(train_module, "plot_learning_curve", plot_then_signal)
    result = train(CONFIG, ENV_ID, [0, 1, 2], tmp_path / "run", 256, layout="batch", final_eval_episodes=2,
                   stop=flag, plot=True)
    assert drawn == ["seed0"] and result["status"] == "interrupted"
    assert sorted(p.parent.name for p in (tmp_path / "run").rglob("learning_curve.png")) == ["seed0"]
    assert not (tmp_path / "run" / "aggregate.png").exists()
    for k in range(3):  # every seed's results are on disk, saying what happened
        summary = json.loads((tmp_path / "run" / f"seed{k}" / "summary.json").read_text())
        assert summary["status"] == "interrupted" and summary["final_eval_mean"] is not None
    monkeypatch.setattr(train_module, "plot_learning_curve", real)
    resumed = train(None, ENV_ID, None, tmp_path / "run", None, layout="batch", resume=True, plot=True)
    assert resumed["status"] == "completed"
    assert len(list((tmp_path / "run").rglob("learning_curve.png"))) == 3
    assert (tmp_path / "run" / "aggregate.png").exists()
