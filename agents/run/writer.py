"""The folder writer: the callback that writes a run's folders as training goes, for one seed or many.

Each member has a root with the files of one seed (`agents.run.folder.RunFiles`): its `config.json`,
`progress.csv`, `evals.csv`, `best.npz`, `final.npz`, `summary.json` and `learning_curve.png`. A single run's only
member root is the run folder itself, `[DIR]`; a batch's are `DIR/seed<k>`. One `checkpoint.npz` in DIR holds the
whole engine. Every file that is rewritten goes through a temporary file and `os.replace`, so a crash never leaves a
half-written checkpoint, summary or log.
"""

from __future__ import annotations

import csv
import hashlib
import io
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.loop.events import Callback, EpisodeRow, EvalRow, LoopView, crossed
from agents.run.checkpoint import CheckpointError, atomic_open, flatten_state, save_checkpoint
from agents.run.folder import RunFiles
from agents.run.models import save_agent


class CsvLog:
    """Append-only CSV with a header; `keep(rows)` rewrites it (atomically) when a run resumes.

    It keeps a running SHA-256 of the bytes it has written (`digest`), which a checkpoint records, so a resume can
    tell a log edited since its checkpoint from one it wrote (`verify`).
    """

    def __init__(self, path: Path, fields: tuple[str, ...]) -> None:
        self.path, self.fields = path, fields
        if not path.exists():
            with atomic_open(path, "w") as f:
                f.write(_csv_text([fields]))
        self._rehash()
        self._file = open(path, "a", newline="")  # noqa: SIM115 - held open for the run; closed in close()

    def _rehash(self) -> None:
        data = self.path.read_bytes()
        self._hash, self._bytes = hashlib.sha256(data), len(data)

    def digest(self) -> list[Any]:
        """`[bytes written, their SHA-256]`: what a checkpoint records of this log."""
        return [self._bytes, self._hash.hexdigest()]

    @staticmethod
    def verify(path: Path, fields: tuple[str, ...], n_rows: int,
               digest: Sequence[Any] | None = None) -> list[list[str]]:
        """The header and the first `n_rows` rows of the log at `path`, or `CheckpointError` if it disagrees with
        the checkpoint: missing, rows cut or lost, or (given the checkpoint's `digest`) any byte of them changed
        since. Writes nothing."""
        if not path.exists() and n_rows == 0:
            return [list(fields)]
        try:
            data = path.read_bytes()
            rows = list(csv.reader(io.StringIO(data.decode(), newline="")))
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise CheckpointError(f"{path}: not a log written by this run ({e})") from e
        if not rows or tuple(rows[0]) != fields:
            raise CheckpointError(f"{path}: not a log written by this run (header {rows[:1]})")
        # the rows the checkpoint counts must all be there, numbered 1..n in the first column: a log with rows cut
        # or lost disagrees with the checkpoint, and a resume would leave a hole in it
        kept = rows[1:1 + n_rows]
        gap = next((i for i, row in enumerate(kept) if not row or row[0] != str(i + 1)), None)
        if len(kept) < n_rows or gap is not None:
            where = f"row {gap + 2} should be {fields[0]} {gap + 1}" if gap is not None else \
                f"it holds {len(kept)} of them"
            raise CheckpointError(f"{path}: the checkpoint counts {n_rows} rows of this log but {where}; the log "
                                  "was cut or edited since: restore it, or start a new run")
        if digest is not None:
            size, sha = int(digest[0]), str(digest[1])
            if len(data) < size or hashlib.sha256(data[:size]).hexdigest() != sha:
                raise CheckpointError(f"{path}: its first {n_rows} rows are not the ones the checkpoint recorded "
                                      "(edited since it was saved): restore the log, or start a new run")
        return rows[: 1 + n_rows]

    def keep(self, rows: Sequence[Sequence[str]]) -> None:
        """Rewrite the log as `rows` (its header and the rows `verify` kept), dropping those after the checkpoint."""
        self._file.close()
        with atomic_open(self.path, "w") as f:
            f.write(_csv_text(rows))
        self._rehash()
        self._file = open(self.path, "a", newline="")  # noqa: SIM115

    def append(self, row: tuple) -> None:
        text = _csv_text([row])
        try:
            self._file.write(text)
            self._file.flush()
        except OSError as e:  # a full disk: name the file, as atomic writes do
            raise OSError(e.errno, e.strerror, str(self.path)) from e
        data = text.encode()
        self._hash.update(data)
        self._bytes += len(data)

    def close(self) -> None:
        self._file.close()


def check_logs(members: Sequence[RunFiles], episodes: Sequence[int], evals: Sequence[int],
               digests: dict[str, Any] | None = None) -> dict[str, list[list[list[str]]]]:
    """Raise `CheckpointError` unless every member's progress.csv and evals.csv hold the rows a checkpoint counts
    (`episodes[s]`, `evals[s]`), unchanged since it recorded them (`digests`: `FolderWriter.log_digests()`, None
    for a checkpoint from before they were recorded: the rows are then checked by their numbering only).

    Returns:
        `{"progress": [...], "evals": [...]}`: per member, the header and the rows the checkpoint counts.
    """
    recorded, kept = digests or {}, {}
    for kind, counts, fields in (("progress", episodes, EpisodeRow._fields), ("evals", evals, EvalRow._fields)):
        kept[kind] = [CsvLog.verify(getattr(files, kind), fields, int(n), digest) for files, n, digest
                      in zip(members, counts, recorded.get(kind) or [None] * len(members), strict=True)]
    return kept


def _csv_text(rows: Sequence[Sequence[Any]]) -> str:
    """The text `csv.writer` writes for `rows` (the one place a log row becomes bytes)."""
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


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
                 checkpoint_every: int, total_steps: int, options: dict[str, Any] | None = None) -> None:
        self.checkpoint, self.files, self.env_id, self.layout = Path(checkpoint), list(members), env_id, layout
        self.save_replay, self.checkpoint_every, self.total_steps = save_replay, checkpoint_every, total_steps
        self.options = dict(options or {})  # the run's options (agents.run.train.run_options), for its resume
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
                    total_steps=self.total_steps, options=self.options, logs=self.log_digests())
        path = save_checkpoint(self.checkpoint, loop.config, loop.env.obs_dim, loop.env.n_actions, arrays, meta)
        loop.stop.checkpoint = f"{path} (step {loop.env_steps})"  # what a second Ctrl-C names
        return path

    def log_digests(self) -> dict[str, list[list[Any]]]:
        """What a checkpoint records of every member's logs (`CsvLog.digest`), in member order."""
        return {"progress": [log.digest() for log in self.progress], "evals": [log.digest() for log in self.evals]}

    def trim(self, episodes: Sequence[int], evals: Sequence[int], digests: dict[str, Any] | None = None) -> None:
        """Drop the log rows written after the checkpoint a run resumes from (they come again), every log checked
        first (`check_logs`), so a refusal leaves every log as it was."""
        kept = check_logs(self.files, episodes, evals, digests)
        for kind, logs in (("progress", self.progress), ("evals", self.evals)):
            for log, rows in zip(logs, kept[kind], strict=True):
                log.keep(rows)

    def close(self) -> None:
        for log in (*self.progress, *self.evals):
            log.close()
