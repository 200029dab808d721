"""The folder writer: the callback that writes a run's folders as training goes, for one seed or many.

Each member has a root with the files of one seed (`agents.run.folder.RunFiles`): its `config.json`,
`progress.csv`, `evals.csv`, `best.npz`, `final.npz`, `summary.json` and `learning_curve.png`. A single run's only
member root is the run folder itself, `[DIR]`; a batch's are `DIR/seed<k>`. One `checkpoint.npz` in DIR holds the
whole engine. Every file that is rewritten goes through a temporary file and `os.replace`, so a crash never leaves a
half-written checkpoint, summary or log.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.loop.events import Callback, EpisodeRow, EvalRow, LoopView, crossed
from agents.run.checkpoint import CheckpointError, atomic_open, flatten_state, save_checkpoint
from agents.run.folder import RunFiles
from agents.run.models import save_agent


class CsvLog:
    """Append-only CSV with a header; `trim(n)` keeps the first n rows (atomically) when a run resumes."""

    def __init__(self, path: Path, fields: tuple[str, ...]) -> None:
        self.path, self.fields = path, fields
        if not path.exists():
            with atomic_open(path, "w") as f:
                csv.writer(f).writerow(fields)
        self._file = open(path, "a", newline="")  # noqa: SIM115 - held open for the run; closed in close()
        self._writer = csv.writer(self._file)

    def trim(self, n_rows: int) -> None:
        self._file.close()
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows or tuple(rows[0]) != self.fields:
            raise CheckpointError(f"{self.path}: not a log written by this run (header {rows[:1]})")
        # the rows the checkpoint counts must all be there, numbered 1..n in the first column: a log with rows cut
        # or lost disagrees with the checkpoint, and a resume would leave a hole in it
        kept = rows[1:1 + n_rows]
        gap = next((i for i, row in enumerate(kept) if not row or row[0] != str(i + 1)), None)
        if len(kept) < n_rows or gap is not None:
            where = f"row {gap + 2} should be {self.fields[0]} {gap + 1}" if gap is not None else \
                f"it holds {len(kept)} of them"
            raise CheckpointError(f"{self.path}: the checkpoint counts {n_rows} rows of this log but {where}; the log "
                                  "was cut or edited since: restore it, or start a new run")
        with atomic_open(self.path, "w") as f:
            csv.writer(f).writerows(rows[: 1 + n_rows])
        self._file = open(self.path, "a", newline="")  # noqa: SIM115
        self._writer = csv.writer(self._file)

    def append(self, row: tuple) -> None:
        try:
            self._writer.writerow(row)
            self._file.flush()
        except OSError as e:  # a full disk: name the file, as atomic writes do
            raise OSError(e.errno, e.strerror, str(self.path)) from e

    @staticmethod
    def check(path: Path, fields: tuple[str, ...]) -> None:
        """Raise `CheckpointError` unless `path` is missing or starts with the header `fields` (before any write)."""
        if not path.exists():
            return
        try:
            with open(path, newline="") as f:
                header = next(csv.reader(f), None)
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise CheckpointError(f"{path}: not a log written by this run ({e})") from e
        if header is None or tuple(header) != fields:
            raise CheckpointError(f"{path}: not a log written by this run (header {header})")

    def close(self) -> None:
        self._file.close()


class FolderWriter(Callback):
    """Writes every member's logs and best model as training goes, and the engine's checkpoint on a cadence.

    Args:
        checkpoint: where the engine's checkpoint goes (DIR/checkpoint.npz).
        members: each member's files (`[RunFiles(DIR)]` for a single run, `RunFiles(DIR/seed<k>)` for a batch).
        env_id: recorded in every file.
        layout: "single" or "batch", recorded in the checkpoint (it tells the commands which folder it is).
        save_replay: include the replay buffers in checkpoints (needed for a bit-identical resume).
        checkpoint_every: transitions per member between checkpoints; 0 only at the end.
        total_steps: the run's total per member, recorded in checkpoints.
    """

    name = "folder_writer"

    def __init__(self, checkpoint: Path, members: Sequence[RunFiles], env_id: str, layout: str, save_replay: bool,
                 checkpoint_every: int, total_steps: int) -> None:
        self.checkpoint, self.files, self.env_id, self.layout = Path(checkpoint), list(members), env_id, layout
        self.save_replay, self.checkpoint_every, self.total_steps = save_replay, checkpoint_every, total_steps
        for files in self.files:
            files.root.mkdir(exist_ok=True)
        self.progress = [CsvLog(f.progress, EpisodeRow._fields) for f in self.files]
        self.evals = [CsvLog(f.evals, EvalRow._fields) for f in self.files]
        self.wall_before = 0.0  # wall seconds of earlier sessions of this run
        self.t0 = time.perf_counter()

    def on_episode(self, loop: LoopView, member: int, row: EpisodeRow) -> None:
        self.progress[member].append(tuple(row))

    def on_eval(self, loop: LoopView, member: int, row: EvalRow) -> None:
        self.evals[member].append(tuple(row))
        if row.is_best:
            self.save_model(loop, member, self.files[member].best)

    def on_step(self, loop: LoopView, steps_before: int) -> None:
        if crossed(steps_before, loop.env_steps, self.checkpoint_every):
            self.save_checkpoint(loop)

    def save_model(self, loop: LoopView, member: int, path: Path) -> Path:
        """Member `member` as a model file (one seed, `agents.run.models`)."""
        env_steps = loop.stopped_at[member][0] if member in loop.stopped_at else loop.env_steps
        meta = {"env_id": self.env_id, "env_steps": env_steps, "seed": loop.seeds[member]}
        return save_agent(loop.member_agent(member), path, meta)

    def wall_seconds(self) -> float:
        return self.wall_before + time.perf_counter() - self.t0

    def save_checkpoint(self, loop: Any) -> Path:
        """Write DIR/checkpoint.npz atomically (the previous one stays loadable until the new one is complete)."""
        arrays, meta = flatten_state(loop.state_dict(include_replay=self.save_replay))
        meta.update(kind="engine", layout=self.layout, env_id=self.env_id, wall_seconds=self.wall_seconds(),
                    total_steps=self.total_steps)
        path = save_checkpoint(self.checkpoint, loop.config, loop.env.obs_dim, loop.env.n_actions, arrays, meta)
        loop.stop.checkpoint = f"{path} (step {loop.env_steps})"  # what a second Ctrl-C names
        return path

    def trim(self, episodes: Sequence[int], evals: Sequence[int]) -> None:
        """Drop the log rows written after the checkpoint a run resumes from (they come again)."""
        for s in range(len(self.files)):
            self.progress[s].trim(int(episodes[s]))
            self.evals[s].trim(int(evals[s]))

    def close(self) -> None:
        for log in (*self.progress, *self.evals):
            log.close()
