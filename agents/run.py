"""A whole training run: `train(config, env_id, seed, out_dir)` -> summary, and the run folder it writes.

    DIR/config.json      the config, env id, seed and total steps
    DIR/progress.csv     one row per training episode (appended; trimmed to the checkpoint on resume)
    DIR/evals.csv        one row per greedy evaluation
    DIR/checkpoint.npz   everything needed to resume exactly (replay buffer included unless opted out)
    DIR/best.npz         the agent at its best evaluation
    DIR/final.npz        the agent at the end
    DIR/summary.json     what happened, in numbers
    DIR/learning_curve.png  when matplotlib is installed

Every file that is rewritten goes through a temporary file and `os.replace`, so a crash never leaves a
half-written checkpoint, summary or log. `train` is the one function every command, benchmark and test calls; it is
also where the Gymnasium side (`envs.VecEnv`) meets the loop, which itself only sees `agents.collector.VecEnvLike`.
"""

from __future__ import annotations

import contextlib
import csv
import json
import signal
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.callbacks import Callback, EpisodeRow, EvalRow, ProgressBar, crossed
from agents.checkpoint import (
    CheckpointError,
    atomic_open,
    atomic_write_text,
    check_compatible,
    flatten_state,
    load_checkpoint,
    save_checkpoint,
    unflatten_state,
)
from agents.config import DQNConfig
from agents.dqn import DivergenceError
from agents.evaluation import evaluate
from agents.train import MakeEnv, Trainer

FINAL_EVAL_SEED = 2_000_000_000  # the final evaluation's episodes start from reset seed FINAL_EVAL_SEED + seed
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
    """Writes the run folder as training goes: logs, best.npz on each new best, checkpoints on a cadence.

    Args:
        files: the run folder's paths.
        env_id: recorded in every file.
        save_replay: include the replay buffer in checkpoints (needed for a bit-identical resume).
        checkpoint_every: transitions between checkpoints; 0 only at the end.
        total_steps: the run's total, recorded in checkpoints.
    """

    name = "run_logger"

    def __init__(self, files: RunFiles, env_id: str, save_replay: bool, checkpoint_every: int = 0,
                 total_steps: int | None = None) -> None:
        self.files, self.env_id, self.save_replay = files, env_id, save_replay
        self.checkpoint_every, self.total_steps = checkpoint_every, total_steps
        self.progress = _CsvLog(files.progress, EpisodeRow._fields)
        self.evals = _CsvLog(files.evals, EvalRow._fields)
        self.wall_before = 0.0  # wall seconds of earlier sessions of this run
        self.t0 = time.perf_counter()

    def on_episode(self, trainer: Trainer, row: EpisodeRow) -> None:
        self.progress.append(tuple(row))

    def on_eval(self, trainer: Trainer, row: EvalRow) -> None:
        self.evals.append(tuple(row))
        if row.is_best:
            trainer.agent.save(self.files.best, meta={"env_id": self.env_id, "env_steps": trainer.env_steps})

    def on_step(self, trainer: Trainer, steps_before: int) -> None:
        if crossed(steps_before, trainer.env_steps, self.checkpoint_every):
            self.save_checkpoint(trainer)

    def wall_seconds(self) -> float:
        return self.wall_before + time.perf_counter() - self.t0

    def save_checkpoint(self, trainer: Trainer) -> Path:
        """Write DIR/checkpoint.npz atomically (the previous one stays loadable until the new one is complete)."""
        arrays, meta = flatten_state(trainer.state_dict(include_replay=self.save_replay))
        meta.update(env_id=self.env_id, wall_seconds=self.wall_seconds(), total_steps=self.total_steps)
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


def make_vec_env(env_id: str) -> MakeEnv:
    """`(n_envs, rng) -> envs.VecEnv` for `env_id`: the one place where the loop meets Gymnasium."""
    from envs import VecEnv  # imported here so that agents' modules never import envs or gymnasium

    return lambda n_envs, rng: VecEnv(env_id, n_envs, rng)


def env_facts(env_id: str) -> tuple[float | None, int, int]:
    """`(reward_threshold, obs_dim, n_actions)` of `env_id`; raises `envs.EnvError` (a ValueError) for a bad id."""
    probe = make_vec_env(env_id)(1, np.random.default_rng(0))
    try:
        return probe.reward_threshold, probe.obs_dim, probe.n_actions
    finally:
        probe.close()


def train(
    config: DQNConfig | None,
    env_id: str,
    seed: int,
    out_dir: str | Path | None = None,
    total_steps: int = 50_000,
    *,
    resume: bool = False,
    save_replay: bool = True,
    checkpoint_every: int = 0,
    final_eval_episodes: int | None = None,
    progress: bool = False,
    callbacks: Sequence[Callback] = (),
    handle_signals: bool = False,
    make_env: MakeEnv | None = None,
) -> dict[str, Any]:
    """Train one DQN run from a config, an env id, a seed and a folder; returns its summary.

    Args:
        config: the hyperparameters (None with `resume`: the checkpoint's).
        env_id: a Gymnasium id (with `resume`: must match the run's, or None-like "" to take the run's).
        seed: seeds every generator (ignored with `resume`: the run's own).
        out_dir: the run folder; None trains without writing anything (sweeps, tests).
        total_steps: the run's total transitions, also when resuming.
        resume: continue the run in `out_dir` from its checkpoint.
        save_replay: include the replay buffer in checkpoints.
        checkpoint_every: transitions between checkpoints (0: only at the end).
        final_eval_episodes: greedy episodes of the final evaluation (default: `config.eval_episodes`).
        progress: draw a tqdm bar.
        callbacks: extra callbacks, after the evaluator and the run logger.
        handle_signals: SIGINT/SIGTERM stop the run after the current step; the summary says which signal.
        make_env: `(n_envs, rng) -> VecEnvLike` (default: `envs.VecEnv` of `env_id`).

    Returns:
        The summary (also written to DIR/summary.json): status ("completed", "interrupted" or "diverged"),
        counters, timings per phase, best and final evaluations, when it solved, `warnings` and `error`.

    Raises:
        ValueError: a bad argument or environment (`envs.EnvError` is one), raised before anything is written.
        CheckpointError: a bad or missing checkpoint to resume, or a fresh run into a folder that holds one.
    """
    trainer, logger, warnings = _build(config, env_id, seed, out_dir, total_steps, resume, save_replay,
                                       checkpoint_every, make_env)
    env_id = logger.env_id if logger else env_id
    extra = [ProgressBar(total_steps, enabled=progress), *callbacks]
    trainer.callbacks.extend(extra)
    status, error = "completed", None
    with stop_on_signals(trainer) if handle_signals else contextlib.nullcontext():
        try:
            if total_steps > trainer.env_steps:
                trainer.run(total_steps)
            if trainer.stop_requested:
                status = "interrupted"
        except DivergenceError as e:
            status, error = "diverged", str(e)
        summary = _finish(trainer, logger, env_id, status, final_eval_episodes, make_env or make_vec_env(env_id))
    summary.update(warnings=warnings, error=error)
    if logger is not None:
        atomic_write_text(logger.files.summary, json.dumps(summary, indent=2) + "\n")
    return summary


def _build(config, env_id, seed, out_dir, total_steps, resume, save_replay, checkpoint_every, make_env):
    """The trainer (fresh or resumed) and its run logger, after every check and before any file is written."""
    if isinstance(total_steps, bool) or not isinstance(total_steps, (int, np.integer)) or total_steps < 1:
        raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")
    ckpt, warnings = None, []
    files = RunFiles(out_dir) if out_dir is not None else None
    if resume:
        if files is None:
            raise ValueError("resume needs the run folder (out_dir)")
        ckpt = load_checkpoint(files.checkpoint)
        if ckpt.meta.get("kind") != "trainer":
            raise CheckpointError(f"{ckpt.path}: not a training checkpoint of this dqn-np version (model files such "
                                  "as best.npz and final.npz, and checkpoints written before format version 2, "
                                  "can be evaluated but not resumed)")
        config, seed = ckpt.config, int(ckpt.meta["seed"])
        run_env = str(ckpt.meta.get("env_id", env_id))
        if env_id and env_id != run_env:
            raise CheckpointError(f"{ckpt.path}: this run trains {run_env}, not {env_id}")
        env_id = run_env
        if total_steps < int(ckpt.meta["env_steps"]):
            raise ValueError(f"total_steps {total_steps} is below the {ckpt.meta['env_steps']} steps this run has "
                             "already taken")
    elif files is not None and files.checkpoint.exists():
        raise CheckpointError(f"{files.checkpoint}: this folder already holds a run; resume it with --resume "
                              f"{files.root} or choose another --out")
    if not isinstance(config, DQNConfig):
        raise TypeError(f"config must be a DQNConfig, got {type(config).__name__}")
    trainer = Trainer(make_env or make_vec_env(env_id), config, seed)
    if ckpt is not None:
        check_compatible(ckpt, trainer.env.obs_dim, trainer.env.n_actions, env_id)
    logger = None
    if files is not None:
        files.root.mkdir(parents=True, exist_ok=True)
        logger = RunLogger(files, env_id, save_replay, checkpoint_every, total_steps)
        trainer.callbacks.append(logger)
    if ckpt is not None:
        try:
            warnings += trainer.load_state_dict(unflatten_state(ckpt.arrays, ckpt.meta))
        except (KeyError, ValueError, TypeError, AttributeError) as e:  # damaged metadata or arrays
            raise CheckpointError(f"{ckpt.path}: cannot resume from it ({type(e).__name__}: {e})") from e
        logger.wall_before = float(ckpt.meta.get("wall_seconds", 0.0))
        logger.progress.trim(trainer.collector.episodes)  # rows written after the checkpoint are written again
        logger.evals.trim(trainer.evaluator.n_evals)
    if logger is not None:
        atomic_write_text(files.config, json.dumps(
            {"env_id": env_id, "seed": trainer.seed, "total_steps": total_steps,
             "config": json.loads(trainer.config.to_json())}, indent=2) + "\n")
    return trainer, logger, warnings


def _finish(trainer: Trainer, logger: RunLogger | None, env_id: str, status: str, final_eval_episodes: int | None,
            make_env: MakeEnv) -> dict[str, Any]:
    """Checkpoint, final model and final evaluation (not after a divergence), then the summary."""
    final_returns = None
    if status != "diverged":
        if logger is not None:
            logger.save_checkpoint(trainer)
            trainer.agent.save(logger.files.final, meta={"env_id": env_id, "env_steps": trainer.env_steps})
        episodes = final_eval_episodes or trainer.config.eval_episodes
        eval_env = make_env(episodes, np.random.default_rng(FINAL_EVAL_SEED + trainer.seed))
        t0 = time.perf_counter()
        final_returns = evaluate(trainer.agent, eval_env, episodes, seed=FINAL_EVAL_SEED + trainer.seed)
        trainer.evaluator.seconds += time.perf_counter() - t0
    summary = {
        "env_id": env_id,
        "status": status,
        **trainer.summary(),
        "wall_seconds": None if logger is None else round(logger.wall_seconds(), 4),
        "eval_episodes": trainer.config.eval_episodes,
        "final_eval_mean": None if final_returns is None else float(final_returns.mean()),
        "final_eval_std": None if final_returns is None else float(final_returns.std()),
        "final_eval_episodes": None if final_returns is None else len(final_returns),
        "last_metrics": trainer.learner.last_metrics,
        "checkpoint_bytes": None,
    }
    if logger is not None:
        if logger.files.checkpoint.exists():
            summary["checkpoint_bytes"] = logger.files.checkpoint.stat().st_size
        summary["out_dir"] = str(logger.files.root)
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
