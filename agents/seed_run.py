"""A batch of seeds trained in one process: `train_seeds(config, env_id, seeds, out_dir)` -> per-seed summaries and
their aggregate, and the folder it writes.

    DIR/config.json        the config, env id, seeds and total steps
    DIR/checkpoint.npz     the whole batch (every member's networks, optimizer, replay buffer, envs, generators)
    DIR/summary.json       status, timings, and every seed's summary
    DIR/aggregate.json     rliable-style aggregates over the seeds (`agents.stats.aggregate_seeds`)
    DIR/aggregate.png      evaluation return (IQM and its 95% band, faint per-seed lines) and steps to solve
    DIR/seed<k>/           the files a single run of seed k writes, but its checkpoint: config.json, progress.csv,
                           evals.csv, best.npz, final.npz, summary.json, learning_curve.png
    DIR/.lock              held by the process writing the batch (`agents.folder.RunLock`)

Every rewritten file goes through a temporary file and `os.replace`, as in a single run. A single-run folder and a
batch folder are told apart by their checkpoint's `kind`, and each command refuses the other's, naming the right one.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.callbacks import EpisodeRow, EvalRow, crossed
from agents.checkpoint import (
    Checkpoint,
    CheckpointError,
    atomic_write_text,
    check_compatible,
    flatten_state,
    load_checkpoint,
    save_checkpoint,
    unflatten_state,
)
from agents.config import DQNConfig
from agents.evaluation import evaluate
from agents.folder import RUN_FILE_NAMES, RunFiles, RunFolderError, RunLock, make_run_folder, remove_folders
from agents.replay import MemberReplay, require_memory
from agents.run import (
    DEFAULT_TOTAL_STEPS,
    FINAL_EVAL_SEED,
    MAX_EVAL_ENVS,
    _CsvLog,
    make_vec_env,
    plot_learning_curve,
    stop_on_signals,
)
from agents.seeds import SeedBatch, SeedCallback, check_seeds
from agents.stats import aggregate_seeds, plot_aggregate
from agents.train import MakeEnv, StopFlag

BATCH_FILE_NAMES = ("config.json", "checkpoint.npz", "summary.json", "aggregate.json", "aggregate.png")
SINGLE_RUN_COMMAND = "python scripts/train_cartpole.py --resume"
BATCH_COMMAND = "python scripts/train_seeds.py --resume"
AGGREGATE_SEED = 0  # the bootstrap's Generator: the same summaries always give the same intervals


def seed_folder(root: Path, seed: int) -> RunFiles:
    """The files of seed `seed` in the batch folder `root` (`root/seed<k>`)."""
    return RunFiles(Path(root) / f"seed{seed}")


class SeedFolders(SeedCallback):
    """Writes every member's folder as training goes, and the batch checkpoint on a cadence.

    Args:
        root: the batch folder.
        env_id: recorded in every file.
        checkpoint_every: transitions (per member) between batch checkpoints; 0 only at the end.
        total_steps: the batch's total, recorded in the checkpoint.
    """

    name = "seed_folders"

    def __init__(self, root: Path, seeds: list[int], env_id: str, checkpoint_every: int, total_steps: int) -> None:
        self.root, self.env_id = Path(root), env_id
        self.checkpoint_every, self.total_steps = checkpoint_every, total_steps
        self.files = [seed_folder(self.root, seed) for seed in seeds]
        for files in self.files:
            files.root.mkdir(exist_ok=True)
        self.progress = [_CsvLog(f.progress, EpisodeRow._fields) for f in self.files]
        self.evals = [_CsvLog(f.evals, EvalRow._fields) for f in self.files]
        self.wall_before = 0.0
        self.t0 = time.perf_counter()

    def on_episode(self, batch: SeedBatch, member: int, row: EpisodeRow) -> None:
        self.progress[member].append(tuple(row))

    def on_eval(self, batch: SeedBatch, rows: list[EvalRow | None]) -> None:
        for s, row in enumerate(rows):
            if row is None:
                continue
            self.evals[s].append(tuple(row))
            if row.is_best:
                batch.agent.member(s).save(self.files[s].best, meta=self._meta(batch, s))

    def on_step(self, batch: SeedBatch, steps_before: int) -> None:
        if crossed(steps_before, batch.env_steps, self.checkpoint_every):
            self.save_checkpoint(batch)

    def _meta(self, batch: SeedBatch, s: int) -> dict[str, Any]:
        return {"env_id": self.env_id, "env_steps": batch.env_steps, "seed": batch.seeds[s]}

    def wall_seconds(self) -> float:
        return self.wall_before + time.perf_counter() - self.t0

    def save_checkpoint(self, batch: SeedBatch) -> Path:
        """Write DIR/checkpoint.npz atomically (the previous one stays loadable until the new one is complete)."""
        arrays, meta = flatten_state(batch.state_dict())
        meta.update(env_id=self.env_id, wall_seconds=self.wall_seconds(), total_steps=self.total_steps)
        return save_checkpoint(self.root / "checkpoint.npz", batch.config, batch.env.obs_dim, batch.env.n_actions,
                               arrays, meta)

    def close(self) -> None:
        for log in (*self.progress, *self.evals):
            log.close()


def train_seeds(
    config: DQNConfig | None,
    env_id: str,
    seeds: Sequence[int] | None,
    out_dir: str | Path | None = None,
    total_steps: int | None = None,
    *,
    resume: bool = False,
    checkpoint_every: int = 0,
    final_eval_episodes: int | None = None,
    progress: bool = False,
    callbacks: Sequence[SeedCallback] = (),
    handle_signals: bool = False,
    stop: StopFlag | None = None,
    plot: bool = False,
    notify: Callable[[str], None] | None = None,
    make_env: MakeEnv | None = None,
) -> dict[str, Any]:
    """Train one DQN run per seed, all in one process, and aggregate them; returns the batch's summary.

    Member k is the single run `agents.run.train(config, env_id, seeds[k])` would make (same generators, same
    actions and updates up to floating-point rounding), trained side by side with the others on stacked networks.

    Args:
        config: the hyperparameters, shared by every seed (None with `resume`: the checkpoint's).
        env_id: a Gymnasium id (with `resume`: must match the batch's, or "" to take it).
        seeds: distinct non-negative seeds (with `resume`: None, or exactly the batch's seeds).
        out_dir: the batch folder; None trains without writing anything.
        total_steps: transitions per seed (None: `DEFAULT_TOTAL_STEPS`, or with `resume` the batch's own total).
        resume: continue the batch in `out_dir` from its checkpoint.
        checkpoint_every: transitions per seed between batch checkpoints (0: only at the end).
        final_eval_episodes: greedy episodes of the final evaluation of each seed's final and best model
            (default: `config.eval_episodes`).
        progress: draw one tqdm bar for the batch, with the number of seeds solved so far.
        callbacks: extra `SeedCallback`s.
        handle_signals: while training, SIGINT/SIGTERM set `stop` (the batch checkpoints and ends after its step).
        stop: the flag that ends the batch after the current step.
        plot: draw DIR/aggregate.png and every seed's learning_curve.png when the batch completes.
        notify: receives one-line notices for the user.
        make_env: `(n_envs, rng) -> VecEnvLike` (default: `envs.VecEnv` of `env_id`).

    Returns:
        `{"status", "env_id", "seeds", "total_steps", "summaries": [per seed], "aggregate", "timings", ...}`; with
        `out_dir` also written to DIR/summary.json, DIR/aggregate.json and every DIR/seed<k>/summary.json.

    Raises:
        ValueError: bad seeds or arguments, buffers for all seeds that would not fit in memory, or a folder that
            cannot be used; raised before anything is written.
        CheckpointError: a bad or missing checkpoint to resume, a single-run folder, or other seeds than the batch's.
    """
    stop = StopFlag() if stop is None else stop
    with stop_on_signals(stop) if handle_signals else contextlib.nullcontext():
        batch, folders, lock, total_steps, env_id, warnings = _build(
            config, env_id, seeds, out_dir, total_steps, resume, checkpoint_every, make_env, stop,
            notify or (lambda _notice: None))
        try:
            bar = _BatchBar(total_steps, batch.n_members, enabled=progress)
            batch.callbacks.extend([bar, *callbacks])
            if total_steps > batch.env_steps:
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # reported per member
                    batch.run(total_steps)
            result = _finish(batch, folders, env_id, final_eval_episodes, make_env or make_vec_env(env_id), plot)
            result.update(total_steps=total_steps, warnings=warnings)
            if folders is not None:
                atomic_write_text(folders.root / "summary.json", json.dumps(result, indent=2) + "\n")
        finally:
            if folders is not None:
                folders.close()
            if lock is not None:
                lock.release()
    return result


def _build(config, env_id, seeds, out_dir, total_steps, resume, checkpoint_every, make_env, stop, notify):
    """The batch (fresh or resumed), its folder writer and the folder's lock, after every check."""
    if total_steps is not None and (isinstance(total_steps, bool) or not isinstance(total_steps, (int, np.integer))
                                    or total_steps < 1):
        raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")
    root = Path(out_dir) if out_dir is not None else None
    if resume and root is None:
        raise ValueError("resume needs the batch folder (out_dir)")
    if seeds is not None:
        seeds = check_seeds(seeds)
    elif not resume:
        raise ValueError("seeds must name at least one seed, got None")
    ckpt, warnings, lock, created = None, [], None, []
    own_total = total_steps is None
    try:
        if resume:
            if not root.is_dir():
                raise CheckpointError(f"{root / 'checkpoint.npz'}: no such checkpoint file")
            lock = RunLock(root)
            ckpt, env_id, total_steps = _resumable(root / "checkpoint.npz", env_id, total_steps)
            run_seeds = [int(s) for s in ckpt.meta["seeds"]]
            if seeds is not None and seeds != run_seeds:
                raise CheckpointError(f"{ckpt.path}: --seeds {_seed_list(seeds)} differs from this batch's seeds "
                                      f"{_seed_list(run_seeds)} (leave --seeds out to resume it)")
            config, seeds = ckpt.config, run_seeds
        elif not isinstance(config, DQNConfig):
            raise TypeError(f"config must be a DQNConfig, got {type(config).__name__}")
        total_steps = DEFAULT_TOTAL_STEPS if total_steps is None else total_steps
        batch = SeedBatch(make_env or make_vec_env(env_id), config, seeds, stop=stop)  # refuses buffers too large
        if root is not None:  # numpy has not touched the buffers' pages yet: nothing is used
            need = MemberReplay.nbytes_for(len(seeds), config.buffer_size, batch.env.obs_dim, config.dtype)
            require_memory(2 * need, f"{len(seeds)} seeds x buffer_size {config.buffer_size}: the replay buffers and "
                           "their copy while the batch checkpoint saves them")
        if ckpt is not None:
            check_compatible(ckpt, batch.env.obs_dim, batch.env.n_actions, env_id)
            try:
                warnings += batch.load_state_dict(unflatten_state(ckpt.arrays, ckpt.meta))
            except (KeyError, ValueError, TypeError, AttributeError, IndexError) as e:
                raise CheckpointError(f"{ckpt.path}: cannot resume from it ({type(e).__name__}: {e})") from e
            for seed in seeds:
                _CsvLog.check(seed_folder(root, seed).progress, EpisodeRow._fields)
                _CsvLog.check(seed_folder(root, seed).evals, EvalRow._fields)
        elif root is not None:
            created = make_run_folder(root)
            lock = RunLock(root)
            _refuse_used(root)
        folders = None
        if root is not None:
            folders = SeedFolders(root, batch.seeds, env_id, checkpoint_every, total_steps)
            batch.callbacks.append(folders)
            if ckpt is not None:
                folders.wall_before = float(ckpt.meta.get("wall_seconds", 0.0))
                for s in range(batch.n_members):  # rows written after the checkpoint come again
                    folders.progress[s].trim(int(batch.episodes[s]))
                    folders.evals[s].trim(int(batch.evaluator.member_evals[s]))
            config_json = json.loads(batch.config.to_json())
            atomic_write_text(root / "config.json", json.dumps(
                {"env_id": env_id, "seeds": batch.seeds, "total_steps": total_steps, "config": config_json},
                indent=2) + "\n")
            for seed, files in zip(batch.seeds, folders.files, strict=True):
                atomic_write_text(files.config, json.dumps(
                    {"env_id": env_id, "seed": seed, "total_steps": total_steps, "config": config_json,
                     "batch": str(root)}, indent=2) + "\n")
    except BaseException:
        if lock is not None:
            lock.release(undo=True)
        remove_folders(created)
        raise
    if ckpt is not None and own_total:
        notify(f"resuming {root} from step {batch.env_steps} to its total of {total_steps} steps")
    return batch, folders, lock, total_steps, env_id, warnings


def _seed_list(seeds: list[int]) -> str:
    return ",".join(map(str, seeds)) if len(seeds) <= 12 else f"{','.join(map(str, seeds[:12]))},... ({len(seeds)})"


def _refuse_used(root: Path) -> None:
    """Refuse a folder that already holds a batch, a single run, or seed folders."""
    found = [root / name for name in (*BATCH_FILE_NAMES, *RUN_FILE_NAMES) if (root / name).exists()]
    found += sorted(p for p in root.glob("seed*") if p.is_dir() and any(p.iterdir()))
    if found:
        single = (root / "checkpoint.npz").exists() and not any(p.is_dir() for p in root.glob("seed*"))
        if single:
            way = f" of one seed: resume it with {SINGLE_RUN_COMMAND} {root}, or choose another --out"
        elif (root / "checkpoint.npz").exists():
            way = f": resume it with {BATCH_COMMAND} {root}, or choose another --out"
        else:
            way = ": choose another --out (or move its files away)"
        raise RunFolderError(f"{found[0]}: this folder already holds a run{way}")


def _resumable(ckpt_path: Path, env_id: str, total_steps: int | None) -> tuple[Checkpoint, str, int]:
    ckpt = load_checkpoint(ckpt_path)
    kind = ckpt.meta.get("kind")
    if kind == "trainer":
        raise CheckpointError(f"{ckpt.path}: this folder holds a single run, not a batch of seeds: resume it with "
                              f"{SINGLE_RUN_COMMAND} {ckpt.path.parent}")
    if kind != "seed_batch":
        raise CheckpointError(f"{ckpt.path}: not a seed-batch checkpoint of this dqn-np version")
    run_env = str(ckpt.meta.get("env_id", env_id))
    if env_id and env_id != run_env:
        raise CheckpointError(f"{ckpt.path}: this batch trains {run_env}, not {env_id}")
    taken = int(ckpt.meta["env_steps"])
    if total_steps is None:
        total_steps = int(ckpt.meta.get("total_steps") or DEFAULT_TOTAL_STEPS)
    if total_steps < taken:
        raise ValueError(f"--total-steps {total_steps} is below the {taken} steps this batch has already taken")
    return ckpt, run_env, total_steps


def _finish(batch: SeedBatch, folders: SeedFolders | None, env_id: str, final_eval_episodes: int | None,
            make_env: MakeEnv, plot: bool) -> dict[str, Any]:
    """Checkpoint, final models, final evaluation of final and best models, per-seed summaries, the aggregate."""
    cfg, S = batch.config, batch.n_members
    if folders is not None:
        folders.save_checkpoint(batch)
        for s in range(S):
            if batch.active[s]:  # a diverged member keeps its best.npz but gets no final.npz, as a single run
                batch.agent.member(s).save(folders.files[s].final, meta=folders._meta(batch, s))
    episodes = final_eval_episodes or cfg.eval_episodes
    final = best_model = None
    if not batch.stop:
        t0 = time.perf_counter()
        final, best_model = _final_evaluation(batch, episodes, make_env)
        batch.evaluator.seconds += time.perf_counter() - t0
    summaries = []
    for s in range(S):
        summary = {"env_id": env_id, **batch.summary(s), "eval_episodes": cfg.eval_episodes,
                   "eval_freq": cfg.eval_freq, "solve_threshold": batch.solve_threshold}
        usable = final is not None and batch.active[s]
        summary["final_eval_mean"] = float(final[s].mean()) if usable else None
        summary["final_eval_std"] = float(final[s].std()) if usable else None
        have_best = best_model is not None and batch.evaluator.best_step[s] is not None
        summary["best_model_eval_mean"] = float(best_model[s].mean()) if have_best else None
        summary["best_model_eval_min"] = float(best_model[s].min()) if have_best else None
        summary["final_eval_episodes"] = episodes if final is not None else None
        summaries.append(summary)
    status = "interrupted" if batch.stop else "completed"
    aggregate = aggregate_seeds(summaries, np.random.default_rng(AGGREGATE_SEED))
    threshold = batch.solve_threshold
    if threshold is not None:
        at_least = [s["seed"] for s in summaries if (s["best_model_eval_mean"] or -np.inf) >= threshold]
        aggregate["best_model_at_threshold"] = {"threshold": threshold, "count": len(at_least), "n": S,
                                                "episodes": episodes if best_model is not None else None,
                                                "below": sorted(set(batch.seeds) - set(at_least))}
    seconds = batch.seconds
    result = {
        "status": status, "env_id": env_id, "seeds": batch.seeds, "n_seeds": S, "env_steps": batch.env_steps,
        "n_envs": cfg.n_envs, "updates": batch.agent.n_updates,
        "train_seconds": round(batch.train_seconds, 4), "eval_seconds": round(batch.evaluator.seconds, 4),
        "phase_seconds": {k: round(v, 4) for k, v in seconds.items() if k != "train"},
        "wall_seconds": None if folders is None else round(folders.wall_seconds(), 4),
        "n_solved": aggregate["fraction_solved"]["solved"], "stopped": {str(batch.seeds[s]): r
                                                                       for s, r in batch.stopped.items()},
        "interrupted": batch.stop.reason, "aggregate": aggregate, "summaries": summaries,
    }
    if folders is not None:
        root = folders.root
        atomic_write_text(root / "aggregate.json", json.dumps(aggregate, indent=2) + "\n")
        for s, summary in enumerate(summaries):
            summary.update(out_dir=str(folders.files[s].root), status=summary["status"], learning_curve=None)
            if plot and status == "completed" and not batch.stop:
                curve = plot_learning_curve(folders.files[s], env_id, threshold)
                summary["learning_curve"] = None if curve is None else str(curve)
            atomic_write_text(folders.files[s].summary, json.dumps(summary, indent=2) + "\n")
        result["aggregate_plot"] = None
        if plot and status == "completed" and not batch.stop:
            curves = {}
            for s, (seed, files) in enumerate(zip(batch.seeds, folders.files, strict=True)):
                if batch.evaluator.member_evals[s]:
                    rows = np.loadtxt(files.evals, delimiter=",", skiprows=1, usecols=(1, 2), ndmin=2)
                    curves[seed] = (rows[:, 0], rows[:, 1])
            picture = plot_aggregate(curves, [s["solved_at_step"] for s in summaries], root / "aggregate.png",
                                     f"DQN on {env_id}: {S} seeds", threshold, np.random.default_rng(AGGREGATE_SEED))
            result["aggregate_plot"] = None if picture is None else str(picture)
        if status == "completed" and batch.stop:  # a signal during the final evaluation, saving or plotting
            result.update(status="interrupted", interrupted=batch.stop.reason)
    return result


def _interval(entry: dict | None, fmt: str = "{:.1f}") -> str:
    """`value [lo, hi]` of an aggregate entry; an infinite (None) value or bound shows as inf."""
    if entry is None:
        return "n/a"

    def show(v: float | None) -> str:
        return "inf" if v is None else fmt.format(v)

    lo, hi = entry["ci"]
    return f"{show(entry['value'])} [{show(lo)}, {show(hi)}]"


def format_aggregate(agg: dict[str, Any]) -> str:
    """The aggregate in a few lines: seeds solved (Wilson 95% CI), steps to solve, scores (bootstrap 95% CIs)."""
    frac = agg["fraction_solved"]
    lines = [f"solved: {frac['solved']}/{frac['n']} (95% CI {frac['ci_wilson'][0]:.3f}-{frac['ci_wilson'][1]:.3f}, "
             f"Wilson); not solved: {agg['failed_seeds'] or 'none'}",
             f"median steps to solve: {_interval(agg['steps_to_solve']['median'], '{:.0f}')}; median seconds: "
             f"{_interval(agg['seconds_to_solve']['median'])} (95% bootstrap CIs)"]
    for key, label in (("best_eval_mean", "best evaluation"), ("final_eval_mean", "final model"),
                       ("best_model_eval_mean", "best model re-evaluated")):
        entry = agg.get(key)
        if entry:
            lines.append(f"{label}: IQM {_interval(entry['iqm'])}, median {_interval(entry['median'])}, "
                         f"mean {_interval(entry['mean'])} (n={entry['n']})")
    at = agg.get("best_model_at_threshold")
    if at and at["episodes"]:
        lines.append(f"best.npz >= {at['threshold']:g} over {at['episodes']} episodes: {at['count']}/{at['n']}"
                     f" (below: {at['below'] or 'none'})")
    return "\n".join(lines)


def read_seed_folders(roots: Sequence[str | Path]) -> tuple[list[dict[str, Any]], dict[int, tuple[np.ndarray,
                                                                                                    np.ndarray]]]:
    """The per-seed summaries and evaluation curves of finished runs: batch folders (their `seed<k>/`) or single-run
    folders, e.g. the two halves of a 100-seed study trained by two processes.

    Returns:
        The summaries (sorted by seed) and `{seed: (env_steps, eval means)}`.

    Raises:
        ValueError: a folder without a finished run, or a seed found twice.
    """
    summaries: dict[int, dict[str, Any]] = {}
    curves: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for root in map(Path, roots):
        runs = [root] if (root / "summary.json").exists() and not (root / "aggregate.json").exists() else sorted(
            p for p in root.glob("seed*") if (p / "summary.json").exists())
        if not runs:
            raise ValueError(f"{root}: holds no finished run (no summary.json, nor seed<k>/summary.json)")
        for run in runs:
            summary = json.loads((run / "summary.json").read_text())
            seed = int(summary["seed"])
            if seed in summaries:
                raise ValueError(f"{run}: seed {seed} was already read from another folder")
            summaries[seed] = summary
            evals = RunFiles(run).evals
            if evals.exists() and evals.stat().st_size > 0:
                rows = np.loadtxt(evals, delimiter=",", skiprows=1, usecols=(1, 2), ndmin=2)
                if len(rows):
                    curves[seed] = (rows[:, 0], rows[:, 1])
    return [summaries[k] for k in sorted(summaries)], curves


def _final_evaluation(batch: SeedBatch, episodes: int,
                      make_env: MakeEnv) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Every member's final and best model over `episodes` greedy episodes each: `(S, episodes)` twice (the second
    None when no evaluation ran during training, so that no member has a best model).

    Member s's episodes start from the reset seeds a single run of its seed uses in its final evaluation, so its
    final-model returns are that run's; the best model is scored on the same episodes.
    """
    S, agent = batch.n_members, batch.agent
    first = FINAL_EVAL_SEED + np.array(batch.seeds, np.int64)
    env = make_env(S * min(episodes, MAX_EVAL_ENVS), [np.random.default_rng(int(f)) for f in first])
    try:
        stopped = batch.stop.__bool__  # a signal ends the evaluation after its current vector step
        final = evaluate(agent, env, episodes, first, should_stop=stopped)
        current = agent.online.flat_params.copy()
        best = batch.evaluator.best_params
        best_model = None  # no evaluation during training: no best model (and no best.npz)
        if best is not None and not batch.stop:
            agent.online.load_params(best)
            best_model = evaluate(agent, env, episodes, first, should_stop=stopped)
            np.copyto(agent.online.flat_params, current)
    finally:
        getattr(env, "close", lambda: None)()
    if batch.stop:  # cut short: no figure over fewer episodes than asked
        return None, None
    return final, best_model


class _BatchBar(SeedCallback):
    """One tqdm bar over each member's environment steps, showing how many seeds have solved so far."""

    def __init__(self, total: int, n_seeds: int, enabled: bool = True, every: int = 1000) -> None:
        self.total, self.n_seeds, self.enabled, self.every = total, n_seeds, enabled, every
        self.bar: Any = None
        self._shown = 0

    def on_run_start(self, batch: SeedBatch) -> None:
        from tqdm import tqdm

        self._shown = batch.env_steps
        self.bar = tqdm(total=self.total, initial=batch.env_steps, unit="step", disable=not self.enabled, ncols=110,
                        desc=f"{self.n_seeds} seeds")
        self._postfix(batch)

    def on_step(self, batch: SeedBatch, steps_before: int) -> None:
        if crossed(steps_before, batch.env_steps, self.every):
            self._advance(batch)

    def on_eval(self, batch: SeedBatch, rows: list[EvalRow | None]) -> None:
        self._advance(batch)

    def on_run_end(self, batch: SeedBatch) -> None:
        if self.bar is not None:
            self._advance(batch)
            self.bar.close()
            self.bar = None

    def _advance(self, batch: SeedBatch) -> None:
        self._postfix(batch)
        self.bar.update(min(batch.env_steps, self.total) - self._shown)
        self._shown = min(batch.env_steps, self.total)

    def _postfix(self, batch: SeedBatch) -> None:
        stopped = f" stopped {len(batch.stopped)}" if batch.stopped else ""
        self.bar.set_postfix_str(f"eps {batch.epsilon:5.3f} solved {batch.n_solved}/{self.n_seeds}{stopped}",
                                 refresh=False)
