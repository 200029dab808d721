"""A training run in a folder: logs, checkpoints, best model, summary, exact resume and clean interruption.

    DIR/config.json      the config, env id, seed and total steps
    DIR/progress.csv     one row per training episode (appended; trimmed to the checkpoint on resume)
    DIR/evals.csv        one row per greedy evaluation
    DIR/checkpoint.npz   everything needed to resume exactly (replay buffer included unless opted out)
    DIR/best.npz         the agent at its best evaluation
    DIR/final.npz        the agent at the end
    DIR/summary.json     what happened, in numbers
    DIR/learning_curve.png  when matplotlib is installed

Every file that is rewritten goes through a temporary file and `os.replace`, so a crash never leaves a
half-written checkpoint, summary or log.
"""

from __future__ import annotations

import contextlib
import csv
import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from agents.checkpoint import (
    CheckpointError,
    atomic_open,
    atomic_write_text,
    check_compatible,
    load_checkpoint,
    save_checkpoint,
)
from agents.config import DQNConfig
from agents.train import Callback, Env, EpisodeRow, EvalRow, Trainer, evaluate

SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143}


class RunFiles:
    """The paths of one run folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.config = self.root / "config.json"
        self.progress = self.root / "progress.csv"
        self.evals = self.root / "evals.csv"
        self.checkpoint = self.root / "checkpoint.npz"
        self.best = self.root / "best.npz"
        self.final = self.root / "final.npz"
        self.summary = self.root / "summary.json"
        self.curve = self.root / "learning_curve.png"


class _CsvLog:
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
        with atomic_open(self.path, "w") as f:
            csv.writer(f).writerows(rows[: 1 + n_rows])
        self._file = open(self.path, "a", newline="")  # noqa: SIM115
        self._writer = csv.writer(self._file)

    def append(self, row: tuple) -> None:
        self._writer.writerow(row)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class RunLogger(Callback):
    """Writes the run folder as training goes; `extra` callbacks (a progress bar) are called after it."""

    def __init__(self, files: RunFiles, env_id: str, save_replay: bool, extra: Callback | None = None) -> None:
        self.files, self.env_id, self.save_replay, self.extra = files, env_id, save_replay, extra or Callback()
        self.progress = _CsvLog(files.progress, EpisodeRow._fields)
        self.evals = _CsvLog(files.evals, EvalRow._fields)
        self.wall_before = 0.0  # wall seconds of earlier sessions of this run
        self.t0 = time.perf_counter()

    def on_episode(self, trainer: Trainer, row: EpisodeRow) -> None:
        self.progress.append(tuple(row))
        self.extra.on_episode(trainer, row)

    def on_eval(self, trainer: Trainer, row: EvalRow) -> None:
        self.evals.append(tuple(row))
        if row.is_best:
            trainer.agent.save(self.files.best, meta={"env_id": self.env_id, "env_steps": trainer.env_steps})
        self.extra.on_eval(trainer, row)

    def on_progress(self, trainer: Trainer, steps: int) -> None:
        self.extra.on_progress(trainer, steps)

    def on_checkpoint(self, trainer: Trainer) -> None:
        self.save_checkpoint(trainer)
        self.extra.on_checkpoint(trainer)

    def wall_seconds(self) -> float:
        return self.wall_before + time.perf_counter() - self.t0

    def save_checkpoint(self, trainer: Trainer) -> Path:
        """Write DIR/checkpoint.npz atomically (the previous one stays loadable until the new one is complete)."""
        arrays, meta = trainer.state_dict(include_replay=self.save_replay)
        meta.update(env_id=self.env_id, wall_seconds=self.wall_seconds())
        return save_checkpoint(self.files.checkpoint, trainer.config, trainer.env.obs_dim, trainer.env.n_actions,
                               arrays, meta)

    def close(self) -> None:
        self.progress.close()
        self.evals.close()


@contextlib.contextmanager
def stop_on_signals(trainer: Trainer) -> Iterator[None]:
    """While active, SIGINT and SIGTERM ask the trainer to stop after the current step instead of killing it."""

    def request_stop(signum: int, _frame: Any) -> None:
        trainer.stop_requested = signal.Signals(signum).name

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def start_run(
    make_env: Callable[[int], Env],
    env_id: str,
    config: DQNConfig,
    seed: int,
    out_dir: str | Path,
    solve_threshold: float | None,
    save_replay: bool = True,
    checkpoint_every: int = 0,
    progress: Callback | None = None,
    resume: bool = False,
    total_steps: int | None = None,
) -> tuple[Trainer, RunLogger]:
    """Build a Trainer writing into `out_dir`, fresh or resumed from `out_dir/checkpoint.npz`.

    Args:
        make_env: `seed -> Env`; called once for training and once for evaluation.
        env_id: recorded in the files.
        config: the hyperparameters (ignored when resuming: the checkpoint's are used).
        seed: the run's seed (ignored when resuming).
        out_dir: the run folder; a fresh run refuses a folder that already holds a checkpoint.
        solve_threshold: the evaluation mean that counts as solved.
        save_replay: include the replay buffer in checkpoints (needed for a bit-identical resume).
        checkpoint_every: environment steps between checkpoints; 0 only at the end.
        progress: an extra callback (progress bar).
        resume: continue the run in `out_dir`.
        total_steps: the run's total, recorded in config.json.

    Raises:
        CheckpointError: resuming from a missing or bad checkpoint, or a fresh run into a used folder.
    """
    files = RunFiles(out_dir)
    ckpt = None
    if resume:
        ckpt = load_checkpoint(files.checkpoint)
        try:
            seed = int(ckpt.meta["seed"])
        except (KeyError, TypeError, ValueError) as e:  # e.g. a best.npz or final.npz copied over checkpoint.npz
            raise CheckpointError(f"{ckpt.path}: not a training checkpoint (no valid seed in its metadata); "
                                  "model files such as best.npz and final.npz cannot be resumed") from e
        config, env_id = ckpt.config, str(ckpt.meta.get("env_id", env_id))
    elif files.checkpoint.exists():
        raise CheckpointError(f"{files.checkpoint}: this folder already holds a run; resume it with --resume "
                              f"{files.root} or choose another --out")
    env, eval_env = make_env(seed), make_env(seed + 1)
    if ckpt is not None:
        check_compatible(ckpt, env.obs_dim, env.n_actions, env_id)
    files.root.mkdir(parents=True, exist_ok=True)
    logger = RunLogger(files, env_id, save_replay, progress)
    trainer = Trainer(env, eval_env, config, seed, solve_threshold, logger, checkpoint_every=checkpoint_every)
    if ckpt is not None:
        try:
            trainer.load_state_dict(ckpt.arrays, ckpt.meta)
        except (KeyError, ValueError, TypeError) as e:
            raise CheckpointError(f"{ckpt.path}: cannot resume from it ({type(e).__name__}: {e})") from e
        logger.wall_before = float(ckpt.meta.get("wall_seconds", 0.0))
        logger.progress.trim(trainer.episodes)  # rows written after the checkpoint will be written again
        logger.evals.trim(trainer.n_evals)
    else:
        atomic_write_text(files.config, json.dumps(
            {"env_id": env_id, "seed": seed, "total_steps": total_steps, "config": json.loads(config.to_json())},
            indent=2) + "\n")
    return trainer, logger


def finish_run(trainer: Trainer, logger: RunLogger, env_id: str, status: str,
               final_eval_episodes: int | None = None) -> dict[str, Any]:
    """Write checkpoint, final model, summary and curve (only the summary when training diverged)."""
    files = logger.files
    final_returns = None
    if status != "diverged":
        logger.save_checkpoint(trainer)
        trainer.agent.save(files.final, meta={"env_id": env_id, "env_steps": trainer.env_steps})
        if trainer.eval_env is not None:
            episodes = final_eval_episodes or trainer.config.eval_episodes
            final_returns = evaluate(trainer.agent, trainer.eval_env, episodes, seed=2_000_000_000 + trainer.seed)
    summary = {
        "env_id": env_id,
        "status": status,
        **trainer.summary(),
        "wall_seconds": round(logger.wall_seconds(), 4),
        "eval_episodes": trainer.config.eval_episodes,
        "final_eval_mean": None if final_returns is None else float(final_returns.mean()),
        "final_eval_std": None if final_returns is None else float(final_returns.std()),
        "final_eval_episodes": None if final_returns is None else len(final_returns),
        "last_metrics": trainer.last_metrics,
        "checkpoint_bytes": files.checkpoint.stat().st_size if files.checkpoint.exists() else None,
    }
    atomic_write_text(files.summary, json.dumps(summary, indent=2) + "\n")
    logger.close()
    return summary


def plot_learning_curve(files: RunFiles, env_id: str, threshold: float | None = None) -> str:
    """Draw returns and evaluations against environment steps into DIR/learning_curve.png; returns a notice."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no learning_curve.png (pip install -e '.[plot]' to get it)"
    progress = _read_csv(files.progress)
    evals = _read_csv(files.evals)
    fig, ax = plt.subplots(figsize=(7, 4))
    if len(progress):
        ax.plot(progress["env_steps"], progress["episode_return"], lw=0.6, alpha=0.5, label="training episode return")
    if len(evals):
        ax.errorbar(evals["env_steps"], evals["mean"], yerr=evals["std"], fmt="o-", ms=3, label="greedy evaluation")
    if threshold is not None:
        ax.axhline(threshold, color="gray", ls="--", lw=1, label=f"solved ({threshold:g})")
    ax.set(xlabel="environment steps", ylabel="return", title=f"DQN on {env_id}")
    ax.legend(loc="best")
    fig.tight_layout()
    with atomic_open(files.curve) as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
    return f"learning curve: {files.curve}"


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    """Columns of a log as arrays (True/False become booleans)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: np.array([float(r[k]) if r[k] not in ("True", "False") else r[k] == "True" for r in rows])
            for k in rows[0]}
