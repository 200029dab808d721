"""agents/run/tensorboard.py and `--tensorboard DIR`: the event files hold exactly the rows of progress.csv and
evals.csv (same steps, same values at float32), for a single run (DIR itself) and a batch (DIR/seed<k>, one run
per seed); what a checkpoint covers is on disk when it is; a run resumed after a crash is not doubled; without
tensorboardX, or with a DIR that cannot be used, the command is one line, exit status 2, and nothing is written.

The events are read back here, not with tensorboard or tbparse: TFRecord framing (length, its masked CRC, the
serialized `Event`, its masked CRC), files in name order, and TensorBoard's purge rule (a `SessionLog.START` at
step P hides the events of earlier files at steps >= P).
"""

import csv
import struct
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scripttools import writes_nothing
from tensorboardX.proto.event_pb2 import Event, SessionLog
from tensorboardX.record_writer import masked_crc32c

from agents.config import DQNConfig
from agents.loop.events import Callback, EpisodeRow, LoopView, StopFlag, crossed
from agents.run import RunFiles, train, train_one
from agents.run.cli import _main as cli_main
from agents.run.cli import parse_args
from agents.run.tensorboard import NEEDS_TENSORBOARDX, TensorBoardWriter

ENV_ID = "CartPole-v1"
TOTAL, CHECKPOINT_EVERY = 1500, 500
CONFIG = DQNConfig(hidden_sizes=(16,), learning_starts=200, eval_freq=500, eval_episodes=2, n_envs=1)
TINY = ["--learning-starts", "200", "--eval-freq", "500", "--eval-episodes", "2", "--hidden-sizes", "16",
        "--total-steps", str(TOTAL), "--checkpoint-every", str(CHECKPOINT_EVERY), "--no-progress"]
TAGS = {"progress/episode_return", "progress/length", "progress/epsilon", "progress/train_seconds",
        "evals/mean", "evals/std", "evals/min", "evals/max", "evals/train_seconds"}

Scalars = dict[str, list[tuple[int, float]]]


def read_events(folder: Path, purge: bool = True) -> Scalars:
    """Every scalar of the event files directly in `folder`, as TensorBoard shows them: `{tag: [(step, value)]}`
    in the order written; with `purge`, a `SessionLog.START` at step P drops the scalars read before at steps >= P."""
    scalars: Scalars = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, at = path.read_bytes(), 0
        while at < len(data):
            header = data[at:at + 8]
            (length,) = struct.unpack("<Q", header)
            assert struct.unpack("<I", data[at + 8:at + 12])[0] == masked_crc32c(header), f"{path}: length CRC"
            body = data[at + 12:at + 12 + length]
            assert struct.unpack("<I", data[at + 12 + length:at + 16 + length])[0] == masked_crc32c(body), path
            at += 16 + length
            event = Event.FromString(body)
            if purge and event.HasField("session_log") and event.session_log.status == SessionLog.START:
                scalars = {tag: [(s, v) for s, v in points if s < event.step] for tag, points in scalars.items()}
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def csv_scalars(files: RunFiles) -> Scalars:
    """What the event files should hold: tag `<csv>/<column>` -> [(env_steps, value as float32)], row by row."""
    rows = {}
    for name, path in (("progress", files.progress), ("evals", files.evals)):
        with open(path, newline="") as f:
            rows[name] = list(csv.DictReader(f))
    return {tag: [(int(r["env_steps"]), float(np.float32(r[tag.split("/")[1]]))) for r in rows[tag.split("/")[0]]]
            for tag in TAGS}


def assert_same_as_csv(folder: Path, files: RunFiles) -> Scalars:
    events, expected = read_events(folder), csv_scalars(files)
    assert {tag for tag in events if not tag.startswith("train/")} == TAGS
    for tag in sorted(TAGS):
        assert events[tag] == expected[tag], tag
    return events


class CheckAtCheckpoints(Callback):
    """After each checkpoint of the run (the folder writer comes before this callback), reads the event files and
    compares them with the CSVs as they are then: what a checkpoint covers must already be on disk."""

    def __init__(self, folder: Path, files: RunFiles) -> None:
        self.folder, self.files, self.steps = folder, files, []

    def on_step(self, loop: LoopView, steps_before: int) -> None:
        if crossed(steps_before, loop.env_steps, CHECKPOINT_EVERY):
            assert_same_as_csv(self.folder, self.files)
            self.steps.append(loop.env_steps)


class CrashAt(Callback):
    """Raises after the step that reaches `step` (a crash between two checkpoints)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step(self, loop: LoopView, steps_before: int) -> None:
        if loop.env_steps >= self.step:
            raise RuntimeError(f"crash at step {loop.env_steps}")


def one_line(capsys: pytest.CaptureFixture, prog: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    return lines[0]


def test_a_single_run_writes_the_csv_rows_into_dir_itself_and_each_checkpoint_finds_them_on_disk(tmp_path):
    out, tb = tmp_path / "run", tmp_path / "tb"
    check = CheckAtCheckpoints(tb, RunFiles(out))
    train_one(CONFIG, ENV_ID, 0, out, TOTAL, checkpoint_every=CHECKPOINT_EVERY, tensorboard=tb, callbacks=[check])
    assert check.steps == [500, 1000, 1500]
    assert not [p for p in tb.iterdir() if p.is_dir()]  # one run: no seed folders
    events = assert_same_as_csv(tb, RunFiles(out))
    assert [s for s, _ in events["evals/mean"]] == [500, 1000, 1500]
    assert len(events["progress/episode_return"]) > 10
    assert all(s > 0 for s, _ in events["progress/episode_return"])


class RecordUpdates(Callback):
    """What `train/*` should hold: member 0's last update figures and train seconds at every 1,000th step."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, dict[str, float], float]] = []

    def on_step(self, loop: LoopView, steps_before: int) -> None:
        if crossed(steps_before, loop.env_steps, 1000):
            metrics = loop.learner.last_metrics
            self.rows.append((loop.env_steps, {k: float(np.float32(v[0])) for k, v in metrics.items()},
                              loop.train_seconds))


def test_the_update_figures_and_the_speed_are_sampled_every_1000_steps(tmp_path):
    out, tb, record = tmp_path / "run", tmp_path / "tb", RecordUpdates()
    train_one(CONFIG, ENV_ID, 0, out, 2500, checkpoint_every=CHECKPOINT_EVERY, tensorboard=tb, callbacks=[record])
    events = read_events(tb)
    assert [step for step, _, _ in record.rows] == [1000, 2000]
    for key in ("loss", "q_mean", "grad_norm", "td_abs"):
        assert events[f"train/{key}"] == [(step, m[key]) for step, m, _ in record.rows], key
    (s1, _, t1), (s2, _, t2) = record.rows
    assert events["train/steps_per_second"] == [(2000, float(np.float32((s2 - s1) / (t2 - t1))))]
    assert len({v for _, v in events["train/loss"]}) == 2  # two different updates, not one value repeated


def test_a_checkpoint_puts_every_scalar_so_far_on_disk_at_once(tmp_path):
    """tensorboardX's flush() leaves the events still queued for its writer thread in memory (a burst of 100 rows
    loses some); the checkpoint's close writes them all before `on_step` returns."""
    writer, loop = TensorBoardWriter([tmp_path], checkpoint_every=100), SimpleNamespace(env_steps=0)
    writer.on_run_start(loop)
    for k in range(1, 101):
        writer.on_episode(loop, 0, EpisodeRow(k, k, float(k), k, 0.5, 0.25 * k))
    loop.env_steps = 100
    writer.on_step(loop, 99)  # crosses the checkpoint at step 100
    events = read_events(tmp_path)
    assert events["progress/episode_return"] == [(k, float(k)) for k in range(1, 101)]
    assert events["progress/train_seconds"] == [(k, 0.25 * k) for k in range(1, 101)]
    writer.on_run_end(loop)


def test_a_batch_writes_one_run_per_seed_through_the_command(tmp_path, capsys):
    out, tb = tmp_path / "batch", tmp_path / "tb"
    status = cli_main(["--seeds", "0,1", "--n-envs", "2", "--out", str(out), "--tensorboard", str(tb), *TINY],
                      "batch", "train_seeds.py", "", StopFlag())
    assert status == 0, capsys.readouterr().err
    assert sorted(p.name for p in tb.iterdir()) == ["seed0", "seed1"]
    seed0 = assert_same_as_csv(tb / "seed0", RunFiles(out / "seed0"))
    seed1 = assert_same_as_csv(tb / "seed1", RunFiles(out / "seed1"))
    assert seed0["progress/episode_return"] != seed1["progress/episode_return"]  # each seed's own curve


def test_a_run_resumed_after_a_crash_is_not_doubled(tmp_path, capsys):
    out, tb = tmp_path / "run", tmp_path / "tb"
    with pytest.raises(RuntimeError, match="crash at step 1200"):
        train_one(CONFIG, ENV_ID, 0, out, TOTAL, checkpoint_every=CHECKPOINT_EVERY, tensorboard=tb,
                  callbacks=[CrashAt(1200)])
    crashed = read_events(tb)
    assert max(s for s, _ in crashed["progress/episode_return"]) > 1000  # written after the last checkpoint
    # --resume takes --tensorboard (not a hyperparameter); it continues from the checkpoint at step 1000
    status = cli_main(["--resume", str(out), "--tensorboard", str(tb), "--no-progress"], "single",
                      "train_cartpole.py", "", StopFlag())
    assert status == 0, capsys.readouterr().err
    events = assert_same_as_csv(tb, RunFiles(out))
    assert [s for s, _ in events["evals/mean"]] == [500, 1000, 1500]
    # negative control: without TensorBoard's purge, the rows of steps 1001-1200 are there twice
    raw = read_events(tb, purge=False)["progress/episode_return"]
    twice = [s for s, _ in crashed["progress/episode_return"] if s > 1000]
    assert twice and len(raw) == len(events["progress/episode_return"]) + len(twice)
    # the points at steps <= 1000 were written once, before the crash, and are kept
    assert [p for p in events["progress/episode_return"] if p[0] <= 1000] == \
        [p for p in crashed["progress/episode_return"] if p[0] <= 1000]


def test_without_tensorboardx_the_command_is_one_line_status_2_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # `import tensorboardX` now raises ImportError
    out, tb = tmp_path / "run", tmp_path / "tb"
    for layout, prog in (("single", "train_cartpole.py"), ("batch", "train_seeds.py")):
        with pytest.raises(SystemExit) as exit_:
            cli_main(["--out", str(out), "--tensorboard", str(tb), *TINY], layout, prog, "", StopFlag())
        assert exit_.value.code == 2
        assert one_line(capsys, prog) == f"{prog}: error: {NEEDS_TENSORBOARDX}"
    with pytest.raises(ValueError) as error:
        train_one(CONFIG, ENV_ID, 0, out, TOTAL, tensorboard=tb)
    assert str(error.value) == NEEDS_TENSORBOARDX
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_a_dir_that_is_or_lies_under_a_file_is_one_line_status_2_and_nothing_is_written(tmp_path, capsys, where):
    blocker = tmp_path / "tb"
    blocker.write_text("not a folder\n")
    tb = blocker if where == "file" else blocker / "sub"
    with writes_nothing(tmp_path), pytest.raises(SystemExit) as exit_:
        cli_main(["--out", str(tmp_path / "run"), "--tensorboard", str(tb), *TINY], "single", "train_cartpole.py",
                 "", StopFlag())
    assert exit_.value.code == 2
    line = one_line(capsys, "train_cartpole.py")
    assert f"--tensorboard {tb}:" in line and "not a folder" in line


def test_a_fresh_run_refuses_a_seed_folder_holding_another_runs_events_and_takes_a_free_one(tmp_path):
    tb = tmp_path / "tb"
    train(CONFIG, ENV_ID, [0], tmp_path / "first", 600, tensorboard=tb)
    taken = r"seed0/events\.out\.tfevents\..*another run's event file"
    with writes_nothing(tmp_path), pytest.raises(ValueError, match=taken):
        train(CONFIG, ENV_ID, [1, 0], tmp_path / "second", 600, tensorboard=tb)  # no second/, no tb/seed1
    train(CONFIG, ENV_ID, [1], tmp_path / "third", 600, tensorboard=tb)  # another seed: one more run beside it
    assert_same_as_csv(tb / "seed1", RunFiles(tmp_path / "third" / "seed1"))


@pytest.mark.parametrize("layout", ["single", "batch"])
def test_help_names_the_flag_and_says_it_is_off_by_default(layout, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"], layout, "prog", "")
    text = " ".join(capsys.readouterr().out.split())
    start = text.index("--tensorboard DIR also write")
    flag = text[start:text.index("DQN hyperparameters", start)]  # its help: the last option before the config's
    assert "needs tensorboardX" in flag and flag.endswith("(default: off) ")
    assert parse_args([], layout, "prog", "").tensorboard is None
