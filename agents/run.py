"""A whole training run: `train(config, env_id, seed, out_dir)` -> summary, and the run folder it writes.

    DIR/config.json      the config, env id, seed and total steps
    DIR/progress.csv     one row per training episode (appended; trimmed to the checkpoint on resume)
    DIR/evals.csv        one row per greedy evaluation
    DIR/checkpoint.npz   everything needed to resume exactly (replay buffer included unless opted out)
    DIR/best.npz         the agent at its best evaluation
    DIR/final.npz        the agent at the end
    DIR/summary.json     what happened, in numbers
    DIR/learning_curve.png  when matplotlib is installed
    DIR/.lock            held (`fcntl.flock`) by the process writing the run, with its PID; see `agents.folder`

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
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.callbacks import Callback, EpisodeRow, EvalRow, ProgressBar, crossed
from agents.checkpoint import (
    Checkpoint,
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
from agents.folder import RunFiles, RunFolderError, RunLock, make_run_folder, remove_folders
from agents.replay import require_memory
from agents.train import MakeEnv, StopFlag, Trainer

FINAL_EVAL_SEED = 2_000_000_000  # the final evaluation's episodes start from reset seed FINAL_EVAL_SEED + seed
MAX_EVAL_ENVS = 100  # final evaluations of more episodes run in waves (the numbers do not depend on it)
DEFAULT_TOTAL_STEPS = 50_000
SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143}


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
def stop_on_signals(stop: StopFlag | None = None) -> Iterator[StopFlag]:
    """While active, SIGINT and SIGTERM set `stop` (yielded; a new flag by default) instead of interrupting Python.

    Whatever runs then (setup, training, the final evaluation, saving, plotting) finishes its step or its file and
    sees the flag: the loop ends after the current step, the final evaluation after its current vector step.
    """
    stop = StopFlag() if stop is None else stop

    def request_stop(signum: int, _frame: Any) -> None:
        stop.set(signal.Signals(signum).name)

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
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
    total_steps: int | None = None,
    *,
    resume: bool = False,
    save_replay: bool = True,
    checkpoint_every: int = 0,
    final_eval_episodes: int | None = None,
    progress: bool = False,
    callbacks: Sequence[Callback] = (),
    handle_signals: bool = False,
    stop: StopFlag | None = None,
    plot: bool = False,
    notify: Callable[[str], None] | None = None,
    make_env: MakeEnv | None = None,
) -> dict[str, Any]:
    """Train one DQN run from a config, an env id, a seed and a folder; returns its summary.

    The folder is locked (`agents.folder.RunLock`) before any of its files is read for resuming or written, and
    stays locked until `train` returns or raises.

    Args:
        config: the hyperparameters (None with `resume`: the checkpoint's).
        env_id: a Gymnasium id (with `resume`: must match the run's, or None-like "" to take the run's).
        seed: seeds every generator (ignored with `resume`: the run's own).
        out_dir: the run folder; None trains without writing anything (sweeps, tests). A fresh run creates it, or
            takes an existing folder that holds no run file (`agents.folder.RUN_FILE_NAMES`).
        total_steps: the run's total transitions, also when resuming; None: `DEFAULT_TOTAL_STEPS`, or with
            `resume` the run's own total.
        resume: continue the run in `out_dir` from its checkpoint.
        save_replay: include the replay buffer in checkpoints.
        checkpoint_every: transitions between checkpoints (0: only at the end).
        final_eval_episodes: greedy episodes of the final evaluation (default: `config.eval_episodes`).
        progress: draw a tqdm bar, and one over the final evaluation's episodes.
        callbacks: extra callbacks, after the evaluator, the run logger and the progress bar.
        handle_signals: while `train` runs, SIGINT/SIGTERM set `stop` (see `stop_on_signals`).
        stop: the flag that ends the run after the current step (the caller's signal handlers may set it); when
            it is set at any point before the summary is written, the summary's status is "interrupted".
        plot: draw DIR/learning_curve.png (`plot_learning_curve`) when the run completes.
        notify: receives one-line notices for the user (resuming to the run's own total).
        make_env: `(n_envs, rng) -> VecEnvLike` (default: `envs.VecEnv` of `env_id`).

    Returns:
        The summary (also written to DIR/summary.json): status ("completed", "interrupted" or "diverged"),
        counters, timings per phase, best and final evaluations, when it solved, `warnings` and `error`.

    Raises:
        ValueError: a bad argument or environment (`envs.EnvError` is one), a replay buffer larger than the memory
            available, or a folder that cannot be used (`agents.folder.RunFolderError`: not creatable, already
            holding a run, locked by another process); raised before anything is written.
        CheckpointError: a bad or missing checkpoint to resume, or logs in the folder that this run did not write.
        OSError: a file of the run could not be written (a full disk); the previous checkpoint stays loadable.
    """
    stop = StopFlag() if stop is None else stop
    with stop_on_signals(stop) if handle_signals else contextlib.nullcontext():
        trainer, logger, lock, total_steps, warnings = _build(
            config, env_id, seed, out_dir, total_steps, resume, save_replay, checkpoint_every, make_env, stop,
            notify or (lambda _notice: None))
        try:
            env_id = logger.env_id if logger else env_id
            bar = ProgressBar(total_steps, enabled=progress)
            trainer.callbacks.extend([bar, *callbacks])
            status, error = "completed", None
            try:
                if total_steps > trainer.env_steps:
                    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # the loop reports them
                        trainer.run(total_steps)
            except DivergenceError as e:
                status, error = "diverged", str(e)
            summary = _finish(trainer, logger, env_id, status, final_eval_episodes,
                              make_env or make_vec_env(env_id), bar)
            summary.update(total_steps=total_steps, warnings=warnings, error=error)
            if logger is not None:
                if plot and summary["status"] == "completed" and not stop:
                    curve = plot_learning_curve(logger.files, env_id, trainer.solve_threshold)
                    summary["learning_curve"] = None if curve is None else str(curve)
                if summary["status"] == "completed" and stop:  # a signal during the final evaluation, saving, plot
                    summary.update(status="interrupted", interrupted=stop.reason)
                atomic_write_text(logger.files.summary, json.dumps(summary, indent=2) + "\n")
        finally:
            if logger is not None:
                logger.close()
            if lock is not None:
                lock.release()
    return summary


def _build(config, env_id, seed, out_dir, total_steps, resume, save_replay, checkpoint_every, make_env, stop,
           notify):
    """The trainer (fresh or resumed), its run logger and the folder's lock, after every check.

    Every refusal happens before the first write: a folder this call created is removed again, and a `.lock` it
    created too.
    """
    if total_steps is not None and (isinstance(total_steps, bool) or not isinstance(total_steps, (int, np.integer))
                                    or total_steps < 1):
        raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")
    files = RunFiles(out_dir) if out_dir is not None else None
    if resume and files is None:
        raise ValueError("resume needs the run folder (out_dir)")
    ckpt, warnings, lock, created = None, [], None, []
    own_total = total_steps is None  # with resume: the run's own total, which the user is told
    try:
        if resume:
            if not files.root.is_dir():
                raise CheckpointError(f"{files.checkpoint}: no such checkpoint file")
            lock = RunLock(files.root)  # before the checkpoint is read: it may be the checkpoint of a live run
            ckpt, env_id, total_steps = _resumable(files.checkpoint, env_id, total_steps)
            config, seed = ckpt.config, int(ckpt.meta["seed"])
        elif not isinstance(config, DQNConfig):
            raise TypeError(f"config must be a DQNConfig, got {type(config).__name__}")
        total_steps = DEFAULT_TOTAL_STEPS if total_steps is None else total_steps
        trainer = Trainer(make_env or make_vec_env(env_id), config, seed, stop=stop)  # refuses a buffer too large
        if save_replay and files is not None:  # numpy has not touched the buffer's pages yet: nothing is used
            require_memory(2 * trainer.replay.nbytes, f"buffer_size {config.buffer_size}: the replay buffer and its "
                           "copy while a checkpoint saves it (--no-save-replay leaves it out of checkpoints)")
        if ckpt is not None:
            check_compatible(ckpt, trainer.env.obs_dim, trainer.env.n_actions, env_id)
            try:
                warnings += trainer.load_state_dict(unflatten_state(ckpt.arrays, ckpt.meta))
            except (KeyError, ValueError, TypeError, AttributeError) as e:  # damaged metadata or arrays
                raise CheckpointError(f"{ckpt.path}: cannot resume from it ({type(e).__name__}: {e})") from e
            _CsvLog.check(files.progress, EpisodeRow._fields)
            _CsvLog.check(files.evals, EvalRow._fields)
        elif files is not None:
            created = make_run_folder(files.root)
            lock = RunLock(files.root)
            found = files.existing()
            if found:
                way = (f": resume it with --resume {files.root}, or choose another --out" if files.checkpoint.exists()
                       else " but no checkpoint.npz to resume: choose another --out (or move its files away)")
                if any(p.is_dir() for p in files.root.glob("seed*")) and files.checkpoint.exists():
                    way = (f" of many seeds: resume it with python scripts/train_seeds.py --resume {files.root}, or "
                           "choose another --out")
                raise RunFolderError(f"{found[0]}: this folder already holds a run{way}")
        logger = None
        if files is not None:  # the first writes
            logger = RunLogger(files, env_id, save_replay, checkpoint_every, total_steps)
            trainer.callbacks.append(logger)
            if ckpt is not None:
                logger.wall_before = float(ckpt.meta.get("wall_seconds", 0.0))
                logger.progress.trim(trainer.collector.episodes)  # rows written after the checkpoint come again
                logger.evals.trim(trainer.evaluator.n_evals)
            atomic_write_text(files.config, json.dumps(
                {"env_id": env_id, "seed": trainer.seed, "total_steps": total_steps,
                 "config": json.loads(trainer.config.to_json())}, indent=2) + "\n")
    except BaseException:
        if lock is not None:
            lock.release(undo=True)
        remove_folders(created)
        raise
    if ckpt is not None and own_total:
        notify(f"resuming {files.root} from step {trainer.env_steps} to its total of {total_steps} steps")
    return trainer, logger, lock, total_steps, warnings


def _resumable(ckpt_path: Path, env_id: str, total_steps: int | None) -> tuple[Checkpoint, str, int]:
    """The checkpoint to resume, the run's env id and the total it continues to (None: the run's own), or a
    one-line refusal."""
    ckpt = load_checkpoint(ckpt_path)
    if ckpt.meta.get("kind") == "seed_batch":
        raise CheckpointError(f"{ckpt.path}: this folder holds a batch of seeds, not a single run: resume it with "
                              f"python scripts/train_seeds.py --resume {ckpt.path.parent}")
    if ckpt.meta.get("kind") != "trainer":
        raise CheckpointError(f"{ckpt.path}: not a training checkpoint of this dqn-np version (model files such "
                              "as best.npz and final.npz, and checkpoints written before format version 2, "
                              "can be evaluated but not resumed)")
    run_env = str(ckpt.meta.get("env_id", env_id))
    if env_id and env_id != run_env:
        raise CheckpointError(f"{ckpt.path}: this run trains {run_env}, not {env_id}")
    taken = int(ckpt.meta["env_steps"])
    if total_steps is None:
        total_steps = int(ckpt.meta.get("total_steps") or DEFAULT_TOTAL_STEPS)
    if total_steps < taken:
        raise ValueError(f"--total-steps {total_steps} is below the {taken} steps this run has already taken")
    return ckpt, run_env, total_steps


def _finish(trainer: Trainer, logger: RunLogger | None, env_id: str, status: str, final_eval_episodes: int | None,
            make_env: MakeEnv, bar: ProgressBar) -> dict[str, Any]:
    """Checkpoint and final model (not after a divergence), the final evaluation (nor after a stop), the summary."""
    final_returns = None
    if status != "diverged":
        if logger is not None:
            logger.save_checkpoint(trainer)
            trainer.agent.save(logger.files.final, meta={"env_id": env_id, "env_steps": trainer.env_steps})
        episodes = final_eval_episodes or trainer.config.eval_episodes
        if not trainer.stop:
            eval_env = make_env(min(episodes, MAX_EVAL_ENVS), np.random.default_rng(FINAL_EVAL_SEED + trainer.seed))
            t0 = time.perf_counter()
            with bar.final_evaluation(episodes) as shown:
                returns = evaluate(trainer.agent, eval_env, episodes, seed=FINAL_EVAL_SEED + trainer.seed,
                                   should_stop=trainer.stop.__bool__, on_wave=shown.update)
            trainer.evaluator.seconds += time.perf_counter() - t0
            getattr(eval_env, "close", lambda: None)()
            final_returns = returns if len(returns) == episodes else None  # None: stopped before the end
    if status == "completed" and trainer.stop:
        status = "interrupted"
    summary = {
        "env_id": env_id,
        "status": status,
        **trainer.summary(),
        "wall_seconds": None if logger is None else round(logger.wall_seconds(), 4),
        "eval_episodes": trainer.config.eval_episodes,
        "eval_freq": trainer.config.eval_freq,
        "solve_threshold": trainer.solve_threshold,
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
        summary["learning_curve"] = None
    return summary


NO_PLOT = "matplotlib is not installed: no learning_curve.png (pip install -e '.[plot]' to get it)"


def plot_learning_curve(files: RunFiles, env_id: str, threshold: float | None = None) -> Path | None:
    """Draw returns and evaluations against environment steps into DIR/learning_curve.png; None without matplotlib.

    Training episodes are a thin line; each greedy evaluation is its mean with a bar from its worst to its best
    episode (never past a return that happened); a star marks the evaluation saved as best.npz. The legend sits
    below the axes, so it never hides the data.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    progress = _read_csv(files.progress)
    evals = _read_csv(files.evals)
    fig, ax = plt.subplots(figsize=(7, 4.6))
    if len(progress):
        ax.plot(progress["env_steps"], progress["episode_return"], lw=0.6, alpha=0.5, color="tab:blue",
                label="training episode return")
    if len(evals):
        mean = evals["mean"]
        spread = np.stack([mean - evals["min"], evals["max"] - mean])
        ax.errorbar(evals["env_steps"], mean, yerr=spread, fmt="o-", ms=3, lw=1.2, capsize=2, color="tab:orange",
                    label="greedy evaluation: mean, min to max")
        bests = np.flatnonzero(evals["is_best"])
        if len(bests):
            b = bests[-1]  # the last new best is the one in best.npz
            ax.plot(evals["env_steps"][b], mean[b], "*", ms=14, color="tab:red", mec="black", mew=0.6, zorder=5,
                    label=f"best.npz (eval mean {mean[b]:g} at step {int(evals['env_steps'][b])})")
    if threshold is not None:
        ax.axhline(threshold, color="gray", ls="--", lw=1, label=f"solved ({threshold:g})")
    ax.set(xlabel="environment steps", ylabel="return", title=f"DQN on {env_id}")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False, fontsize="small")
    fig.tight_layout()
    with atomic_open(files.curve) as f:
        fig.savefig(f, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return files.curve


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    """Columns of a log as arrays (True/False become booleans)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: np.array([float(r[k]) if r[k] not in ("True", "False") else r[k] == "True" for r in rows])
            for k in rows[0]}
