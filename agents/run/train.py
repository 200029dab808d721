"""A whole training run, one seed or many: `train(config, env_id, seeds, out_dir)` -> the result and its folder.

The one function every command, benchmark and test calls; also where the Gymnasium side (`envs.VecEnv`) meets the
loop, which itself only sees `agents.loop.collector.VecEnvLike`. A single run (`train_one`, or `layout="single"`)
is the engine with one member, written as one folder:

    DIR/config.json  progress.csv  evals.csv  best.npz  final.npz  summary.json  learning_curve.png  checkpoint.npz

A batch (`layout="batch"`) writes each seed's files into `DIR/seed<k>/`, and beside them one `checkpoint.npz` for
the whole batch, `config.json`, `summary.json`, `aggregate.json` (rliable-style statistics, `agents.run.stats`) and
`aggregate.png`. `DIR/.lock` is held (`agents.run.folder.RunLock`) by the process writing the folder. Every
refusal comes before the first write; results (summaries, aggregate) are written before anything optional (plots),
and an optional step that fails is a warning, never a lost run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.config import DQNConfig
from agents.data.replay import MemberReplay, require_memory
from agents.loop.engine import Engine, MakeEnv
from agents.loop.evaluation import evaluate
from agents.loop.events import Callback, StopFlag
from agents.loop.progress import ProgressBar
from agents.run.checkpoint import (
    Checkpoint,
    CheckpointError,
    atomic_write_text,
    check_compatible,
    load_checkpoint,
    seeds_of,
    training_state,
)
from agents.run.folder import RUN_FILE_NAMES, RunFiles, RunFolderError, RunLock, make_run_folder, remove_folders
from agents.run.plots import plot_learning_curve
from agents.run.stats import aggregate_seeds, plot_aggregate
from agents.run.tensorboard import TensorBoardWriter, check_tensorboard, member_dirs
from agents.run.writer import FolderWriter, check_logs
from agents.validate import optional_positive_int, path_fits, seed
from agents.validate import seeds as check_seeds

FINAL_EVAL_SEED = 2_000_000_000  # the final evaluation's episodes start from reset seed FINAL_EVAL_SEED + seed
MAX_EVAL_ENVS = 100  # final evaluations of more episodes run in waves (the numbers do not depend on it)
DEFAULT_TOTAL_STEPS = 50_000
SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143}
MAX_TOTAL_STEPS = 10**10
"""The largest budget per seed (ten billion transitions: months of one core; a larger one is a typo)."""
AGGREGATE_SEED = 0  # the bootstrap's Generator: the same summaries always give the same intervals
BATCH_FILE_NAMES = ("config.json", "checkpoint.npz", "summary.json", "aggregate.json", "aggregate.png")
COMMANDS = {"single": "python scripts/train_cartpole.py", "batch": "python scripts/train_seeds.py"}
ENV_BACKENDS = ("auto", "numpy", "gymnasium")
NO_PLOT = "matplotlib is not installed: no learning_curve.png (pip install -e '.[plot]' to get it)"


@contextlib.contextmanager
def stop_on_signals(stop: StopFlag | None = None) -> Iterator[StopFlag]:
    """While active, SIGINT and SIGTERM set `stop` (yielded; a new flag by default) instead of interrupting Python.

    Whatever runs then (setup, training, the final evaluation, saving, plotting) finishes its step or its file and
    sees the flag: the loop ends after the current step, the final evaluation after its current vector step. A
    second signal does not wait: the process exits at once (status 130 / 143), saying which checkpoint is the last
    complete one (every file is written atomically, so the folder still resumes from it).
    """
    stop = StopFlag() if stop is None else stop

    def request_stop(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if stop.reason in SIGNAL_EXIT:  # the second signal: leave now
            where = (f"the last complete checkpoint is {stop.checkpoint}" if stop.checkpoint else
                     "no checkpoint was written in this session")
            os.write(2, f"second {name}: exiting now without waiting; {where}\n".encode())
            os._exit(SIGNAL_EXIT[name])
        stop.set(name)

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def make_vec_env(env_id: str, backend: str = "auto") -> MakeEnv:
    """`(n_envs, rngs) -> envs.VecEnv` for `env_id`: the one place where the loop meets Gymnasium.

    Args:
        env_id: a Gymnasium id.
        backend: "auto" (a NumPy vector env where one exists, else Gymnasium's synchronous vector env), "numpy"
            (require the NumPy one) or "gymnasium" (the synchronous reference path).
    """
    from envs import VecEnv  # imported here so that the loop's modules never import envs or gymnasium

    if backend not in ENV_BACKENDS:
        raise ValueError(f"env_backend must be one of {ENV_BACKENDS}, got {backend!r}")
    return lambda n_envs, rngs: VecEnv(env_id, n_envs, rngs, backend=backend)


def env_facts(env_id: str, backend: str = "auto") -> tuple[float | None, int, int]:
    """`(reward_threshold, obs_dim, n_actions)` of `env_id`; raises `envs.EnvError` (a ValueError) for a bad id."""
    probe = make_vec_env(env_id, backend)(1, [np.random.default_rng(0)])
    try:
        return probe.reward_threshold, probe.obs_dim, probe.n_actions
    finally:
        probe.close()


def train_one(config: DQNConfig | None, env_id: str, seed: int | None = 0, out_dir: str | Path | None = None,
              total_steps: int | None = None, **kwargs: Any) -> dict[str, Any]:
    """One seed: `train(config, env_id, [seed], out_dir, total_steps, layout="single", ...)`; returns its summary.

    The folder is a single run's (its files at the top of `out_dir`); with `resume`, `seed` is ignored (the run's
    own). Keyword arguments are `train`'s (`tensorboard=DIR` writes the seed's event files into DIR itself).
    """
    result = train(config, env_id, None if kwargs.get("resume") else [seed], out_dir, total_steps, layout="single",
                   **kwargs)
    return result["summaries"][0]


def train(
    config: DQNConfig | None,
    env_id: str,
    seeds: Sequence[int] | None,
    out_dir: str | Path | None = None,
    total_steps: int | None = None,
    *,
    layout: str = "batch",
    resume: bool = False,
    save_replay: bool | None = None,
    checkpoint_every: int | None = None,
    final_eval_episodes: int | None = None,
    progress: bool = False,
    callbacks: Sequence[Callback] = (),
    handle_signals: bool = False,
    stop: StopFlag | None = None,
    plot: bool = False,
    notify: Callable[[str], None] | None = None,
    make_env: MakeEnv | None = None,
    env_backend: str | None = None,
    tensorboard: str | Path | None = None,
    preset: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train one DQN run per seed, all in one process (the engine's S members), and aggregate them.

    Member k is seed `seeds[k]`: the same run alone (`seeds=[k]`) as in any batch. The folder is locked before any
    of its files is read for resuming or written, and stays locked until `train` returns or raises.

    Args:
        config: the hyperparameters, shared by every seed (None with `resume`: the checkpoint's).
        env_id: a Gymnasium id (with `resume`: must match the run's, or "" to take it).
        seeds: distinct non-negative seeds (with `resume`: None, or exactly the run's seeds).
        out_dir: the run folder; None trains without writing anything (sweeps, tests). A fresh run creates it, or
            takes an existing folder that holds no run file.
        total_steps: transitions per seed, also when resuming (None: `DEFAULT_TOTAL_STEPS`, or with `resume` the
            run's own total).
        layout: "single" (one seed; its files at the top of `out_dir`) or "batch" (`out_dir/seed<k>/` per seed, and
            the aggregate).
        resume: continue the run in `out_dir` from its checkpoint (of format 2 or 3).
        save_replay: include the replay buffers in checkpoints (a resume is bit-identical only with them; default
            True).
        checkpoint_every: transitions per seed between checkpoints (0: only at the end; the default).
        final_eval_episodes: greedy episodes of the final evaluation of each seed's final and best model
            (default: `config.eval_episodes`).
            These three and `env_backend` are the run's options: a resume given None for one keeps the run's own
            (recorded in its checkpoint), so the command a run prints resumes it as it was started.
        progress: draw a tqdm bar (and one over the final evaluation's episodes).
        callbacks: extra callbacks, after the evaluator, the folder writer and the progress bar.
        handle_signals: while `train` runs, SIGINT/SIGTERM set `stop` (see `stop_on_signals`).
        stop: the flag that ends the run within one gradient step or evaluation step (the step it cuts is finished
            on resume); when it is set before the summaries are written, their status is "interrupted".
        plot: draw every seed's learning_curve.png and (batch) aggregate.png when the run completes.
        notify: receives one-line notices for the user (resuming to the run's own total).
        make_env: `(n_envs, rngs) -> VecEnvLike` (default: `envs.VecEnv` of `env_id` with `env_backend`).
        env_backend: "auto" (the default), "numpy" or "gymnasium" (see `make_vec_env`).
        tensorboard: also write every seed's logged scalars as TensorBoard event files into this folder (a single
            run: the folder itself; a batch: `seed<k>/` in it), with tensorboardX (`agents.run.tensorboard`); None:
            off. Not part of the run: a resume writes them only when given it again (the same folder continues the
            curves without doubling them).
        preset: what `config.json` records of the preset the config was built from (`agents.config.preset_record`:
            its path and `[source]`); None: none (or not known).

    Returns:
        `{"status", "env_id", "seeds", "total_steps", "summaries": [one per seed], "aggregate", "phase_seconds",
        "warnings", ...}`; each summary has the same keys in both layouts (also written to its `summary.json`).

    Raises:
        ValueError: bad seeds or arguments (`envs.EnvError` is one), buffers larger than the memory available, a
            folder that cannot be used (`agents.run.folder.RunFolderError`), or `tensorboard` without tensorboardX or
            in a folder that cannot be used; raised before anything is written.
        CheckpointError: a bad or missing checkpoint to resume, a folder of the other layout, other seeds than the
            run's, or logs in the folder that this run did not write.
        OSError: a file of the run could not be written (a full disk); the previous checkpoint stays loadable.
    """
    stop = StopFlag() if stop is None else stop
    with stop_on_signals(stop) if handle_signals else contextlib.nullcontext():
        given = {"save_replay": save_replay, "checkpoint_every": checkpoint_every,
                 "final_eval_episodes": final_eval_episodes, "env_backend": env_backend}
        engine, writer, lock, total_steps, env_id, warnings, options = _build(
            config, env_id, seeds, out_dir, total_steps, layout, resume, given,
            make_env or (None if resume else make_vec_env(env_id, env_backend or "auto")), stop,
            notify or (lambda _notice: None), tensorboard, preset)
        try:
            bar = ProgressBar(total_steps, enabled=progress)
            engine.callbacks.extend([bar, *callbacks])
            if total_steps > engine.env_steps or engine.pending is not None:  # a cut step is finished first
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # reported per member
                    engine.run(total_steps)
            result = _finish(engine, writer, env_id, layout, options["final_eval_episodes"], engine.make_env, bar,
                             plot)
            result.update(total_steps=total_steps, warnings=warnings + result["warnings"])
            for summary in result["summaries"]:
                summary.update(total_steps=total_steps, warnings=result["warnings"])
            if writer is not None:
                _write_results(result, writer, layout)
        finally:
            if writer is not None:
                writer.close()
            if lock is not None:
                lock.release()
    return result


def _build(config, env_id, seeds, out_dir, total_steps, layout, resume, given, make_env, stop, notify, tensorboard,
           preset):
    """The engine (fresh or resumed) with its TensorBoard writer if asked, its folder writer and the folder's lock,
    after every check, and the run's options (`given`, with what a resume was not given taken from the run).

    Every refusal happens before the first write: a folder this call created is removed again, and a `.lock` it
    created too.
    """
    total_steps = optional_positive_int("total_steps", total_steps)
    if layout not in COMMANDS:
        raise ValueError(f"layout must be 'single' or 'batch', got {layout!r}")
    root = path_fits(out_dir, "the run folder") if out_dir is not None else None
    if tensorboard is not None:
        path_fits(tensorboard, "--tensorboard")
    if resume and root is None:
        raise ValueError("resume needs the run folder (out_dir)")
    if seeds is not None:
        seeds = check_seeds(seeds)
        if layout == "single" and len(seeds) != 1:
            raise ValueError(f"a single run trains one seed, got {len(seeds)}")
    elif not resume:
        raise ValueError("seeds must name at least one seed, got None")
    ckpt, state, warnings, lock, created = None, None, [], None, []
    own_total = total_steps is None
    try:
        if resume:
            if not root.is_dir():
                raise CheckpointError(f"{root / 'checkpoint.npz'}: no such checkpoint file")
            lock = RunLock(root)  # before the checkpoint is read: it may be the checkpoint of a live run
            ckpt, env_id, total_steps = _resumable(root / "checkpoint.npz", env_id, total_steps, layout, seeds)
            state, _ = training_state(ckpt)
            config, seeds = ckpt.config, [int(s) for s in state["seeds"]]
            options = run_options(given, ckpt.meta, state)
            if make_env is None:
                make_env = make_vec_env(env_id, options["env_backend"])
        elif not isinstance(config, DQNConfig):
            raise TypeError(f"config must be a DQNConfig, got {type(config).__name__}")
        total_steps = DEFAULT_TOTAL_STEPS if total_steps is None else total_steps
        if not resume:
            options = run_options(given)
            _check_budget(config, total_steps, notify)
        engine = Engine(make_env, config, seeds, stop=stop)  # refuses buffers too large
        save_replay, checkpoint_every = options["save_replay"], options["checkpoint_every"]
        if save_replay and root is not None:  # numpy has not touched the buffers' pages yet: nothing is used
            need = MemberReplay.nbytes_for(len(seeds), config.buffer_size, engine.env.obs_dim, config.dtype)
            what = "the replay buffer and its copy" if len(seeds) == 1 else \
                f"{len(seeds)} seeds x buffer_size {config.buffer_size}: the replay buffers and their copy"
            require_memory(2 * need, f"{what} while a checkpoint saves them (--no-save-replay leaves them out of "
                           "checkpoints)")
        member_files = ([RunFiles(root)] if layout == "single" else [RunFiles(root / f"seed{k}") for k in seeds]
                        ) if root is not None else []
        if tensorboard is not None:  # before the run folder is made: a refusal leaves nothing behind
            tensorboard_dirs = member_dirs(tensorboard, layout, engine.seeds)
            check_tensorboard(tensorboard, tensorboard_dirs, fresh=ckpt is None)
        if ckpt is not None:
            check_compatible(ckpt, engine.env.obs_dim, engine.env.n_actions, env_id)
            try:
                warnings += engine.load_state_dict(state)
            except (KeyError, ValueError, TypeError, AttributeError, IndexError) as e:  # damaged metadata or arrays
                raise CheckpointError(f"{ckpt.path}: cannot resume from it ({type(e).__name__}: {e})") from e
            # the logs hold the rows the checkpoint counts, as it recorded them: checked before anything is written
            check_logs(member_files, engine.episodes, engine.evaluator.member_evals, ckpt.meta.get("logs"))
        elif root is not None:
            created = make_run_folder(root)
            lock = RunLock(root)
            _refuse_used(root)
        if tensorboard is not None:  # before the folder writer: its event files are closed before a checkpoint saves
            engine.callbacks.append(TensorBoardWriter(tensorboard_dirs, checkpoint_every))
        writer = None
        if root is not None:  # the first writes
            writer = FolderWriter(root / "checkpoint.npz", member_files, env_id, layout, save_replay,
                                  checkpoint_every, total_steps, options)
            engine.callbacks.append(writer)
            if ckpt is not None:
                writer.wall_before = float(ckpt.meta.get("wall_seconds", 0.0))
                # rows after the checkpoint come again; rows before it must be the ones it recorded
                writer.trim(engine.episodes, engine.evaluator.member_evals, ckpt.meta.get("logs"))
            config_json = json.loads(engine.config.to_json())
            if preset is None and ckpt is not None:  # a resume keeps what the run's config.json says of its preset
                preset = _recorded_preset(root / "config.json")
            if layout == "batch":
                atomic_write_text(root / "config.json", json.dumps(
                    {"env_id": env_id, "seeds": engine.seeds, "total_steps": total_steps, "config": config_json,
                     "preset": preset}, indent=2) + "\n")
            for k, files in zip(engine.seeds, member_files, strict=True):
                extra = {"batch": str(root)} if layout == "batch" else {}
                atomic_write_text(files.config, json.dumps(
                    {"env_id": env_id, "seed": k, "total_steps": total_steps, "config": config_json,
                     "preset": preset, **extra}, indent=2) + "\n")
    except BaseException:
        if lock is not None:
            lock.release(undo=True)
        remove_folders(created)
        raise
    if ckpt is not None and own_total:
        if engine.env_steps >= total_steps:  # it reached its budget (rounded up to whole vector steps) before
            notify(f"{root} reached its total of {total_steps} steps (at step {engine.env_steps}): finishing it")
        else:
            notify(f"resuming {root} from step {engine.env_steps} to its total of {total_steps} steps")
    return engine, writer, lock, total_steps, env_id, warnings, options


RUN_OPTIONS = {"save_replay": True, "checkpoint_every": 0, "final_eval_episodes": None, "env_backend": "auto"}


def run_options(given: dict[str, Any], meta: dict[str, Any] | None = None,
                state: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run's options: each one `given` (not None), else the one its checkpoint recorded (`meta["options"]`),
    else the default (`RUN_OPTIONS`). A checkpoint written before options were recorded tells its env backend by
    its envs' state: Gymnasium's synchronous vector env is the "gymnasium" backend."""
    recorded = dict((meta or {}).get("options") or {})
    if meta is not None and "env_backend" not in recorded:
        env_state = ((state or {}).get("collector") or {}).get("env") or {}
        if env_state.get("backend") == "sync":
            recorded["env_backend"] = "gymnasium"
    options = {k: given.get(k) if given.get(k) is not None else recorded.get(k, default)
               for k, default in RUN_OPTIONS.items()}
    if options["env_backend"] not in ENV_BACKENDS:
        raise ValueError(f"env_backend must be one of {ENV_BACKENDS}, got {options['env_backend']!r}")
    return options


def _check_budget(config: DQNConfig, total_steps: int, notify: Callable[[str], None]) -> None:
    """Refuse a budget that leaves no gradient step; say up front when it is rounded up to whole vector steps."""
    if total_steps > MAX_TOTAL_STEPS:
        raise ValueError(f"total_steps must be at most {MAX_TOTAL_STEPS:,} (10**10), got {total_steps}")
    E = config.n_envs
    taken = -(-total_steps // E) * E  # the loop ends on the first multiple of E at or past the budget
    if total_steps < E:
        raise ValueError(f"n_envs {E} is more than total_steps {total_steps}: one step of every env would already "
                         f"overshoot the budget; use n_envs <= {total_steps}")
    if taken < max(config.learning_starts, config.train_freq):
        raise ValueError(f"total_steps {total_steps} leaves no gradient step: learning starts after "
                         f"{config.learning_starts} steps and trains every {config.train_freq}; use total_steps >= "
                         f"{max(config.learning_starts, config.train_freq)}")
    if taken != total_steps:
        notify(f"each seed takes {taken} steps: total_steps {total_steps} rounded up to whole vector steps of "
               f"n_envs {E}")


def _recorded_preset(path: Path) -> dict[str, Any] | None:
    """The `preset` a run's config.json records (None if it records none, or cannot be read)."""
    try:
        recorded = json.loads(path.read_text()).get("preset")
    except (OSError, ValueError, AttributeError):
        return None
    return recorded if isinstance(recorded, dict) else None


def _seed_list(seeds: list[int]) -> str:
    return ",".join(map(str, seeds)) if len(seeds) <= 12 else f"{','.join(map(str, seeds[:12]))},... ({len(seeds)})"


def _refuse_used(root: Path) -> None:
    """Refuse a folder that already holds a run of either layout, or seed folders, naming how to go on."""
    found = [root / name for name in dict.fromkeys((*BATCH_FILE_NAMES, *RUN_FILE_NAMES)) if (root / name).exists()]
    found += sorted(p for p in root.glob("seed*") if p.is_dir() and any(p.iterdir()))
    if not found:
        return
    way = " but no checkpoint.npz to resume: choose another --out (or move its files away)"
    if (root / "checkpoint.npz").exists():
        try:
            layout = training_state(load_checkpoint(root / "checkpoint.npz"))[1]
        except CheckpointError:  # a damaged checkpoint: judge by the seed folders
            layout = "batch" if any(p.is_dir() for p in root.glob("seed*")) else "single"
        what = "" if layout == "single" else " of many seeds"
        way = f"{what}: resume it with {COMMANDS[layout]} --resume {root}, or choose another --out"
    raise RunFolderError(f"{found[0]}: this folder already holds a run{way}")


def _resumable(ckpt_path: Path, env_id: str, total_steps: int | None, layout: str,
               seeds: list[int] | None) -> tuple[Checkpoint, str, int]:
    """The checkpoint to resume, the run's env id and the total it continues to, or a one-line refusal."""
    ckpt = load_checkpoint(ckpt_path)
    _, found = training_state(ckpt)
    if found != layout:
        kinds = {"single": "a single run", "batch": "a batch of seeds"}
        raise CheckpointError(f"{ckpt.path}: this folder holds {kinds[found]}, not {kinds[layout]}: resume it with "
                              f"{COMMANDS[found]} --resume {ckpt.path.parent}")
    run_seeds = seeds_of(ckpt)
    if seeds is not None and run_seeds is not None and seeds != run_seeds:
        raise CheckpointError(f"{ckpt.path}: --seeds {_seed_list(seeds)} differs from this run's seeds "
                              f"{_seed_list(run_seeds)} (leave --seeds out to resume it)")
    run_env = str(ckpt.meta.get("env_id", env_id))
    if env_id and env_id != run_env:
        raise CheckpointError(f"{ckpt.path}: this run trains {run_env}, not {env_id}")
    taken = int(ckpt.meta["env_steps"])
    if total_steps is None:  # the run's own budget: a run that reached it resumes to finish (evaluation, files)
        total_steps = int(ckpt.meta.get("total_steps") or DEFAULT_TOTAL_STEPS)
    E = ckpt.config.n_envs
    if -(-total_steps // E) * E < taken:  # a budget the run already passed, even rounded up to whole vector steps
        raise ValueError(f"--total-steps {total_steps} is below the {taken} steps this run has already taken")
    return ckpt, run_env, total_steps


def _finish(engine: Engine, writer: FolderWriter | None, env_id: str, layout: str, final_eval_episodes: int | None,
            make_env: MakeEnv, bar: ProgressBar, plot: bool) -> dict[str, Any]:
    """Checkpoint, final models, final evaluation of final and best models, per-seed summaries, the aggregate.

    A diverged member keeps its best.npz but gets no final.npz, and the checkpoint holds its last good state: the
    parameters it had before the update that diverged. A member stopped at its solving evaluation
    (`stop_when_solved`) gets both, its final model being the one that solved.
    """
    cfg, S = engine.config, engine.n_members
    finished = [bool(engine.active[s]) or s in engine.stopped_solved for s in range(S)]  # not diverged
    if writer is not None:
        writer.save_checkpoint(engine)
        for s in range(S):
            if finished[s]:
                writer.save_model(engine, s, writer.files[s].final)
    episodes = final_eval_episodes or cfg.eval_episodes
    final = best_model = None
    if not engine.stop and any(finished):
        t0 = time.perf_counter()
        final, best_model = _final_evaluation(engine, episodes, make_env, bar)
        engine.evaluator.seconds += time.perf_counter() - t0
    wall = None if writer is None else round(writer.wall_seconds(), 4)
    checkpoint_bytes = writer.checkpoint.stat().st_size if writer is not None and writer.checkpoint.exists() else None
    summaries = []
    for s in range(S):
        summary = {"env_id": env_id, **engine.summary(s), "eval_episodes": cfg.eval_episodes,
                   "eval_freq": cfg.eval_freq, "solve_threshold": engine.solve_threshold}
        usable = final is not None and finished[s]
        summary["final_eval_mean"] = float(final[s].mean()) if usable else None
        summary["final_eval_std"] = float(final[s].std()) if usable else None
        summary["final_eval_episodes"] = episodes if usable else None
        have_best = best_model is not None and engine.evaluator.best_step[s] is not None
        summary["best_model_eval_mean"] = float(best_model[s].mean()) if have_best else None
        summary["best_model_eval_min"] = float(best_model[s].min()) if have_best else None
        summary.update(wall_seconds=wall, checkpoint_bytes=checkpoint_bytes, learning_curve=None,
                       out_dir=None if writer is None else str(writer.files[s].root))
        summaries.append(summary)
    status = "interrupted" if engine.stop else ("completed" if any(finished) else "diverged")
    aggregate = aggregate_seeds(summaries, np.random.default_rng(AGGREGATE_SEED))
    threshold = engine.solve_threshold
    if threshold is not None:
        at_least = [s["seed"] for s in summaries if (s["best_model_eval_mean"] or -np.inf) >= threshold]
        aggregate["best_model_at_threshold"] = {"threshold": threshold, "count": len(at_least), "n": S,
                                                "episodes": episodes if best_model is not None else None,
                                                "below": sorted(set(engine.seeds) - set(at_least))}
    return {
        "status": status, "layout": layout, "env_id": env_id, "seeds": engine.seeds, "n_seeds": S,
        "env_steps": engine.env_steps, "n_envs": cfg.n_envs, "updates": engine.agent.n_updates,
        "train_seconds": round(engine.train_seconds, 4), "eval_seconds": round(engine.evaluator.seconds, 4),
        "phase_seconds": {k: round(v, 4) for k, v in engine.seconds.items() if k != "train"},
        "wall_seconds": wall, "checkpoint_bytes": checkpoint_bytes,
        "n_solved": aggregate["fraction_solved"]["solved"],
        "stopped": {str(engine.seeds[s]): r for s, r in engine.stopped.items() if s not in engine.stopped_solved},
        "stopped_solved": [engine.seeds[s] for s in sorted(engine.stopped_solved)],
        "interrupted": engine.stop.reason, "aggregate": aggregate, "summaries": summaries,
        "pending": None if engine.pending is None else list(engine.pending),  # a step a signal cut, owed on resume
        "aggregate_plot": None, "out_dir": None if writer is None else str(writer.checkpoint.parent),
        "warnings": [], "_plot": plot and status == "completed", "_threshold": threshold,
        "_stop": engine.stop, "_member_evals": engine.evaluator.member_evals.copy(),
    }


def _write_results(result: dict[str, Any], writer: FolderWriter, layout: str) -> None:
    """Summaries and the aggregate first; then the plots, each of which may only add a warning."""
    stop, threshold = result.pop("_stop"), result.pop("_threshold")
    plot, member_evals = result.pop("_plot"), result.pop("_member_evals")
    root = writer.checkpoint.parent
    def mark_interrupted() -> None:
        if result["status"] == "completed" and stop:  # a signal during the final evaluation, saving or plotting
            result.update(status="interrupted", interrupted=stop.reason)
            for summary in result["summaries"]:
                summary.update(status="interrupted", interrupted=stop.reason)

    mark_interrupted()

    def write_all() -> None:
        for files, summary in zip(writer.files, result["summaries"], strict=True):
            atomic_write_text(files.summary, json.dumps(summary, indent=2) + "\n")
        if layout == "batch":
            atomic_write_text(root / "aggregate.json", json.dumps(result["aggregate"], indent=2) + "\n")
            atomic_write_text(root / "summary.json", json.dumps(result, indent=2) + "\n")

    write_all()
    if not plot or stop:
        return
    env_id = result["env_id"]
    try:
        for files, summary in zip(writer.files, result["summaries"], strict=True):
            if stop:  # a signal while plotting: the plots left are optional, the results are written
                break
            curve = plot_learning_curve(files, env_id, threshold)
            summary["learning_curve"] = None if curve is None else str(curve)
        if layout == "batch" and not stop:
            curves = {}
            for s, (k, files) in enumerate(zip(result["seeds"], writer.files, strict=True)):
                if member_evals[s]:
                    rows = np.loadtxt(files.evals, delimiter=",", skiprows=1, usecols=(1, 2), ndmin=2)
                    curves[k] = (rows[:, 0], rows[:, 1])
            picture = plot_aggregate(curves, [s["solved_at_step"] for s in result["summaries"]],
                                     root / "aggregate.png", f"DQN on {env_id}: {result['n_seeds']} seeds",
                                     threshold, np.random.default_rng(AGGREGATE_SEED))
            result["aggregate_plot"] = None if picture is None else str(picture)
    except OSError:
        raise
    except Exception as e:  # an optional step: the results are already on disk
        result["warnings"].append(f"a plot could not be drawn ({type(e).__name__}: {e}); the results are written")
    mark_interrupted()  # a resume of the run draws the plots a signal left out
    write_all()


def _final_evaluation(engine: Engine, episodes: int, make_env: MakeEnv,
                      bar: ProgressBar) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Every member's final and best model over `episodes` greedy episodes each: `(S, episodes)` twice (the second
    None when no evaluation ran during training, so that no member has a best model).

    Member s's episodes start from reset seeds `FINAL_EVAL_SEED + seeds[s] + i`: the same alone as in any batch;
    the best model is scored on the same episodes.
    """
    S, agent = engine.n_members, engine.evaluation_agent()
    first = FINAL_EVAL_SEED + np.array(engine.seeds, np.int64)
    env = make_env(S * min(episodes, MAX_EVAL_ENVS), [np.random.default_rng(int(f)) for f in first])
    best = engine.evaluator.best_params
    stopped = engine.stop.__bool__  # a signal ends the evaluation after its current vector step
    try:
        with bar.final_evaluation(episodes, 1 if best is None else 2) as shown:
            final = evaluate(agent, env, episodes, first, should_stop=stopped, on_wave=shown.update)
            best_model = None  # no evaluation during training: no best model (and no best.npz)
            if best is not None and not engine.stop:
                current = agent.online.flat_params.copy()
                agent.online.load_params(best)
                try:
                    best_model = evaluate(agent, env, episodes, first, should_stop=stopped, on_wave=shown.update)
                finally:
                    np.copyto(agent.online.flat_params, current)
    finally:
        getattr(env, "close", lambda: None)()
    if engine.stop:  # cut short: no figure over fewer episodes than asked
        return None, None
    return final, best_model


def seed_folder(root: str | Path, k: int) -> RunFiles:
    """The files of seed `k` in the batch folder `root` (`root/seed<k>`)."""
    return RunFiles(Path(root) / f"seed{seed(k)}")
