"""TensorBoard: the callback that writes the scalars of every member's `progress.csv` and `evals.csv` as event files.

    TensorBoardWriter(dirs, checkpoint_every)   the callback; member s writes into `dirs[s]`
    member_dirs(root, layout, seeds)            `[root]` for a single run, `[root/seed<k>, ...]` for a batch
    check_tensorboard(root, dirs, fresh)        every refusal, before anything is written

One TensorBoard run per member: a batch writes `DIR/seed<k>/`, so `tensorboard --logdir DIR` overlays its seeds;
a single run writes `DIR/` itself, as its run folder holds its files at the top (point several single runs at
`PARENT/<name>` to overlay them). Tags are `<csv>/<column>`: `progress/episode_return`, `progress/length`,
`progress/epsilon`, `progress/train_seconds`, `evals/mean`, `evals/std`, `evals/min`, `evals/max`,
`evals/train_seconds`: every column of the two logs but the counters and flags (`SKIPPED`), with the row's
`env_steps` as the global step, the same rows at the same steps (the values as float32, TensorBoard's scalar type).
A column added to `EpisodeRow` or `EvalRow` is logged too. The update's figures, which no CSV holds (the summary
keeps only the last), are sampled every `log_every` transitions per member (1,000 by default): `train/loss`,
`train/q_mean`, `train/grad_norm` and `train/td_abs` of the member's last update (`Learner.last_metrics`), and
`train/steps_per_second`, transitions per member per second of training (evaluation excluded) since the last sample.
A stopped member's figures end where it stopped.

Writes go through tensorboardX's `SummaryWriter`, whose `flush()` only writes the events its worker thread has
already taken from its queue; `close()` is the one call that writes them all. So at every checkpoint and at the end of
the run each member's event file is closed, and its next event opens a new file: what a checkpoint covers is on
disk when the checkpoint is. A resumed run (started at step T > 0) first writes a `SessionLog.START` at step T + 1
(`purge_step`): TensorBoard then drops the events of earlier files at steps >= T + 1, the ones a crashed or
interrupted session wrote after its last checkpoint and that the resumed run writes again, so a resumed curve is
never doubled, and the rows at steps <= T (which the checkpoint covers and the CSVs keep) stay. Files are named
`events.out.tfevents.<time>.<host>.<nnnn>` with `nnnn` the count of event files already in the folder (four
digits), so two files opened in the same second never share a name (tensorboardX would truncate the first), and
sort in the order they were written, which is the order TensorBoard reads them in.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.loop.events import Callback, EpisodeRow, EvalRow, LoopView, crossed

NEEDS_TENSORBOARDX = "--tensorboard needs tensorboardX: pip install -e '.[tensorboard]'"
SKIPPED = ("episode", "eval_index", "env_steps", "episodes", "is_best")
"""Columns that are not logged: the counters, the global step itself, the episodes per evaluation, the best flag."""
UPDATE_TAGS = tuple((k, f"train/{k}") for k in ("loss", "q_mean", "grad_norm", "td_abs"))
"""The learner's per-member figures of its last update, sampled every `log_every` transitions."""
PROGRESS_TAGS = tuple((f, f"progress/{f}") for f in EpisodeRow._fields if f not in SKIPPED)
EVALS_TAGS = tuple((f, f"evals/{f}") for f in EvalRow._fields if f not in SKIPPED)
EVENT_FILE_GLOB = "events.out.tfevents.*"


def summary_writer_class() -> Any:
    """tensorboardX's `SummaryWriter`, imported when it is needed (the package is an optional extra).

    Raises:
        ValueError: tensorboardX is not installed (`NEEDS_TENSORBOARDX`).
    """
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ValueError(NEEDS_TENSORBOARDX) from None
    return SummaryWriter


def member_dirs(root: str | Path, layout: str, seeds: Sequence[int]) -> list[Path]:
    """Where each member writes: `[root]` for a single run, `[root/seed<k> for k in seeds]` for a batch."""
    root = Path(root)
    return [root] if layout == "single" else [root / f"seed{k}" for k in seeds]


def check_tensorboard(root: str | Path, dirs: Sequence[Path] = (), fresh: bool = False) -> None:
    """Refuse, before anything is written, a `--tensorboard` folder that the run could not write into.

    Args:
        root: the folder given; it may not exist yet (it and missing parents are created when the run starts).
        dirs: the members' folders under it (`member_dirs`), when they are known.
        fresh: a new run, which refuses member folders that already hold event files (its curves would mix with
            another run's); a resumed run continues its own.

    Raises:
        ValueError: tensorboardX is missing; `root` or a member folder is a file or lies under one; the nearest
            existing folder is not writable; a fresh run's member folder holds event files.
    """
    summary_writer_class()
    root = Path(root)
    for folder in (root, *dirs):
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"--tensorboard {root}: {folder} is a file, not a folder")
    existing = next(p for p in (root, *root.parents) if p.exists() or p.is_symlink())
    if not existing.is_dir():
        raise ValueError(f"--tensorboard {root}: cannot create it: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--tensorboard {root}: cannot write into {existing}: permission denied")
    if fresh:
        for folder in dirs:
            found = sorted(folder.glob(EVENT_FILE_GLOB)) if folder.is_dir() else []
            if found:
                raise ValueError(f"--tensorboard {root}: {found[0]} is another run's event file, and a new run's "
                                 "curves would mix with it: choose another folder (or move its files away)")


class TensorBoardWriter(Callback):
    """Writes each member's episode and evaluation rows as TensorBoard scalars (see the module docstring).

    Nothing is written before the run starts: `on_run_start` creates the folders and opens one event file per member
    (with the purge step of a resumed run), episodes and evaluations add scalars, a checkpoint closes the files (the
    next scalar opens a new one), and `on_run_end` closes them.

    Args:
        dirs: member s's folder (`member_dirs`).
        checkpoint_every: transitions per member between checkpoints (0: only at the end), as the folder writer's.
        log_every: transitions per member between samples of the update's figures (`UPDATE_TAGS`) and the speed.
    """

    name = "tensorboard"  # keeps no state: a resumed run starts from the step it resumes at

    def __init__(self, dirs: Sequence[Path], checkpoint_every: int, log_every: int = 1000) -> None:
        self.dirs, self.checkpoint_every, self.log_every = [Path(d) for d in dirs], checkpoint_every, log_every
        self._last_sample: tuple[int, float] | None = None  # (env steps, train seconds) at the last sample
        self.summary_writer = summary_writer_class()
        self.writers: list[Any] = [None] * len(self.dirs)  # member s's open SummaryWriter, or None

    def _open(self, member: int, purge_step: int | None = None) -> Any:
        folder = self.dirs[member]
        folder.mkdir(parents=True, exist_ok=True)
        n_files = len(list(folder.glob(EVENT_FILE_GLOB)))
        writer = self.summary_writer(str(folder), purge_step=purge_step, filename_suffix=f".{n_files:04d}")
        self.writers[member] = writer
        return writer

    def _write(self, member: int, tags: tuple[tuple[str, str], ...], row: tuple, step: int) -> None:
        writer = self.writers[member] or self._open(member)
        for field, tag in tags:
            writer.add_scalar(tag, float(getattr(row, field)), step)

    def close(self) -> None:
        """Close every open event file (writing all its events); the next scalar of a member opens a new one."""
        for s, writer in enumerate(self.writers):
            if writer is not None:
                self.writers[s] = None
                writer.close()

    def on_run_start(self, loop: LoopView) -> None:
        purge_step = loop.env_steps + 1 if loop.env_steps else None  # a resume: drop what a lost session wrote
        try:
            for s in range(len(self.dirs)):
                if self.writers[s] is None:
                    self._open(s, purge_step)
        except BaseException:
            self.close()
            raise

    def on_episode(self, loop: LoopView, member: int, row: EpisodeRow) -> None:
        self._write(member, PROGRESS_TAGS, row, row.env_steps)

    def on_eval(self, loop: LoopView, member: int, row: EvalRow) -> None:
        self._write(member, EVALS_TAGS, row, row.env_steps)

    def on_step(self, loop: LoopView, steps_before: int) -> None:
        if crossed(steps_before, loop.env_steps, self.log_every):
            self._sample_updates(loop)
        if crossed(steps_before, loop.env_steps, self.checkpoint_every):
            self.close()

    def _sample_updates(self, loop: LoopView) -> None:
        """`train/*` of every live member at this step: its last update's figures and the speed since the last
        sample (none before the first update; the speed from the second sample of this session on)."""
        steps, seconds = loop.env_steps, loop.train_seconds
        speed = None
        if self._last_sample is not None and seconds > self._last_sample[1]:
            speed = (steps - self._last_sample[0]) / (seconds - self._last_sample[1])
        self._last_sample = (steps, seconds)
        metrics = loop.last_metrics
        for s in map(int, np.flatnonzero(loop.active)):
            writer = self.writers[s] or self._open(s)
            for key, tag in UPDATE_TAGS if metrics else ():
                writer.add_scalar(tag, float(metrics[key][s]), steps)
            if speed is not None:
                writer.add_scalar("train/steps_per_second", speed, steps)

    def on_run_end(self, loop: LoopView) -> None:
        self.close()
