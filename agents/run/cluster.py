"""The Dask engine of studies: a cluster to train on, seed batches as its unit of work, and their folders.

A *part* is one configuration x a batch of seeds, trained in one worker process by `agents.run.train` (the one
engine) into a seed-batch folder. A *group* is the parts of one configuration over all its seeds (a sweep's trial,
or `train_seeds.py --workers`); when every part of a group has finished, `merge_parts` turns the parts into one
seed-batch folder:

    ROOT/seed<k>/                   every seed's run files (moved up from its part)
    ROOT/config.json  summary.json  aggregate.json  (aggregate.png)    over all seeds of the group
    ROOT/parts/part<i>/             part i's own batch files (checkpoint.npz, summary.json, aggregate.json)

`aggregate_seeds.py ROOT`, `evaluate.py ROOT/seed<k>` read it like any batch folder (a merged folder has no single
checkpoint, so `--resume` does not apply to it). Never lose finished work: a part trains into a fresh attempt folder
`ROOT/.part<i>-<hex>/` and is renamed to `ROOT/parts/part<i>/` only once it is complete, so a worker killed
mid-part leaves only an attempt folder, which the next attempt ignores and the owner removes. The scheduler re-runs
the part of a dead worker (Dask's `distributed.scheduler.allowed-failures`, 3 by default) before it reports a
`KilledWorker`, which becomes the group's one-line error.

Workers and this process must see the same file system (on a real cluster, a shared one). Dask itself moves tasks
and their small result dicts between processes with pickle; nothing here writes or reads a pickle file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.config import DQNConfig
from agents.loop.events import StopFlag
from agents.run.aggregate import read_seed_folders
from agents.run.checkpoint import atomic_write_text
from agents.run.stats import aggregate_seeds, plot_aggregate
from agents.run.train import AGGREGATE_SEED, train

EXTRA = "needs the [sweep] extra: pip install -e '.[sweep]'"
BLAS_THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
CONNECT_TIMEOUT = "5s"  # an unreachable --scheduler is reported after this long
POLL_SECONDS = 0.2  # how often the driver looks at its stop flag while parts train


class ClusterError(ValueError):
    """The cluster cannot be started or reached (a usage error of the command line: exit status 2)."""


def require_extra(what: str) -> None:
    """Raise `ClusterError("<what> needs the [sweep] extra: ...")` unless dask.distributed and optuna import."""
    try:
        import distributed  # noqa: F401
        import optuna  # noqa: F401
        import optuna_integration  # noqa: F401
    except ImportError:
        raise ClusterError(f"{what} {EXTRA}") from None


def one_line(e: BaseException) -> str:
    """`"TypeName: message"` on one line (the first line of a multi-line message)."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


QUIET_TRACKER = "ignore:resource_tracker:UserWarning"


@contextlib.contextmanager
def _blas_pinned() -> Iterator[None]:
    """While active, BLAS thread counts are 1 in this process's environment and in Dask's pre-spawn environment.

    A Nanny reads `distributed.nanny.pre-spawn-environ` (the process's own values win) when it is created and sets
    it before it spawns (and re-spawns) its worker, so numpy is imported in the worker with one BLAS thread.
    """
    import dask

    before = {k: os.environ.get(k) for k in (*BLAS_THREADS, "PYTHONWARNINGS")}
    os.environ.update(BLAS_THREADS)
    # multiprocessing's resource tracker, started with the workers, warns at exit about the semaphores of workers
    # killed by a stop request (`Cluster.close(now=True)`): two lines of noise on stderr after a clean stop
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, (before["PYTHONWARNINGS"], QUIET_TRACKER)))
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ":
                              {**dask.config.get("distributed.nanny.pre-spawn-environ"), **BLAS_THREADS}}):
            yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Cluster:
    """A Dask client on a local cluster of `workers` single-threaded processes, or on the scheduler at `scheduler`.

    Use as a context manager; the local cluster ends with it, a joined one does not.

    Args:
        workers: worker processes of a new `LocalCluster` (threads_per_worker=1, BLAS threads pinned to 1); None
            with `scheduler`, or the CPU count without either.
        scheduler: the address of a running scheduler ("tcp://host:8786"), started by `dask scheduler`.

    Raises:
        ClusterError: both or neither workers and scheduler usable, workers < 1, or the scheduler is unreachable.
    """

    def __init__(self, workers: int | None = None, scheduler: str | None = None) -> None:
        from distributed import Client, LocalCluster

        if workers is not None and scheduler is not None:
            raise ClusterError("give --workers N (a local cluster) or --scheduler ADDRESS (a running one), not both")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ClusterError(f"--workers must be an integer >= 1, got {workers!r}")
        self.local = None
        if scheduler is not None:
            try:
                self.client = Client(scheduler, timeout=CONNECT_TIMEOUT)
            except Exception as e:  # OSError, TimeoutError, ValueError of a malformed address
                raise ClusterError(f"cannot reach the Dask scheduler at {scheduler!r} ({one_line(e)})") from None
            self.where = f"scheduler {scheduler}"
        else:
            n = workers or len(os.sched_getaffinity(0))
            with _blas_pinned():
                self.local = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                          dashboard_address=":0", silence_logs=logging.CRITICAL,
                                          preload=[__name__])  # dask_setup below, in every (re)started worker
            self.client = Client(self.local)
            self.where = f"local cluster of {n} worker process{'es' if n > 1 else ''}"

    @property
    def n_workers(self) -> int:
        """Workers connected now (at least 1, so that a plan made before they connect has one slot)."""
        return max(1, len(self.client.scheduler_info(n_workers=-1).get("workers", {})))

    @property
    def dashboard(self) -> str:
        """The dashboard's link (its charts need bokeh where the scheduler runs)."""
        return self.client.dashboard_link

    def describe(self) -> str:
        note = ""
        if self.local is not None:
            import importlib.util

            if importlib.util.find_spec("bokeh") is None:
                note = " (its charts need bokeh>=3.1: pip install bokeh)"
        return f"Dask: {self.where}, {self.n_workers} worker(s); dashboard: {self.dashboard}{note}"

    def close(self, now: bool = False) -> None:
        """Disconnect, and end a local cluster's workers. `now` (a stop request: the parts still running are
        cancelled and lost anyway) ends them at once: their processes are killed instead of waiting for the task
        each is running to return, which a busy worker does not do for seconds (a signal is honoured within a
        second). The scheduler and nanny log that the workers died, which is what was asked: those lines are not
        shown."""
        if now and self.local is not None:
            for name in ("distributed", "distributed.nanny", "distributed.scheduler", "distributed.core"):
                logging.getLogger(name).setLevel(logging.CRITICAL)
            for nanny in list(getattr(self.local, "workers", {}).values()):
                process = getattr(getattr(nanny, "process", None), "process", None)
                with contextlib.suppress(Exception):
                    process.kill()
        with contextlib.suppress(Exception):
            self.client.close(timeout=1) if now else self.client.close()
        if self.local is not None:
            with contextlib.suppress(Exception):
                self.local.close(timeout=1) if now else self.local.close()
            self.local = None

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.close(now=exc_type is not None)  # leaving on an error or a signal: no worker's task is waited for


def dask_setup(worker: Any) -> None:
    """Dask's preload hook, run in each worker process of a local `Cluster` when it starts: ignore SIGINT.

    A Ctrl-C in a terminal reaches the whole process group; the driver alone acts on it (it cancels the parts and
    closes the cluster), so that the workers neither die mid-write nor print tracebacks.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@dataclass(frozen=True)
class Part:
    """One unit of work: `config` x `seeds`, trained into `root/parts/part<index>` (via an attempt folder)."""

    group: str
    index: int
    root: str
    config_json: str
    env_id: str
    seeds: tuple[int, ...]
    total_steps: int
    options: dict[str, Any] = field(default_factory=dict)  # train()'s keywords: save_replay, plot, ...

    @property
    def folder(self) -> Path:
        return Path(self.root) / "parts" / f"part{self.index}"


def split_seeds(seeds: Sequence[int], n_parts: int) -> list[list[int]]:
    """`seeds` in `n_parts` contiguous batches whose sizes differ by at most one (fewer when seeds are few)."""
    n = max(1, min(n_parts, len(seeds)))
    size, extra = divmod(len(seeds), n)
    out, start = [], 0
    for i in range(n):
        stop = start + size + (i < extra)
        out.append(list(seeds[start:stop]))
        start = stop
    return out


def run_part(part: Part) -> dict[str, Any]:
    """Train one part in this (worker) process; its folder appears complete or not at all.

    Returns:
        `{"ok", "folder", "result" (train()'s, without its summaries' per-seed detail), "seconds", "error",
        "worker"}`; an exception from training is returned as `ok=False` with its one-line error (deterministic
        errors are not retried), while a worker that dies is the scheduler's to re-run.
    """
    t0 = time.perf_counter()
    attempt = Path(part.root) / f".part{part.index}-{uuid.uuid4().hex[:8]}"
    outcome: dict[str, Any] = {"ok": False, "folder": str(part.folder), "result": None, "error": None,
                               "worker": f"{os.uname().nodename}:{os.getpid()}"}
    try:
        config = DQNConfig.from_json(part.config_json)
        result = train(config, part.env_id, list(part.seeds), attempt, part.total_steps, checkpoint_every=0,
                       **part.options)
        part.folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(attempt, part.folder)  # atomic; refused when another attempt of this part got there first
        except OSError:
            if not (part.folder / "summary.json").exists():
                raise
        outcome.update(ok=True, result=result)
    except Exception as e:
        outcome["error"] = one_line(e)
    finally:
        shutil.rmtree(attempt, ignore_errors=True)
        outcome["seconds"] = time.perf_counter() - t0
    return outcome


def merge_parts(root: Path, outcomes: Sequence[dict[str, Any]], env_id: str, total_steps: int, *,
                final_root: Path | None = None, plot: bool = False) -> dict[str, Any]:
    """Make `root` the seed-batch folder of its finished parts (see the module docstring) and return its result.

    Args:
        root: the group's folder, holding `parts/part<i>/`.
        outcomes: `run_part`'s returns, every one `ok`.
        env_id: recorded in the result.
        total_steps: per seed.
        final_root: where `root` will be renamed to (paths in the summaries name it); default `root`.
        plot: also draw `aggregate.png` (an optional step: a failure is a warning).

    Returns:
        train()'s result keys over all seeds of the group ("summaries", "aggregate", "seeds", ...), "parts" and
        "seconds" (the parts' own seconds, summed).
    """
    final_root = root if final_root is None else Path(final_root)
    folders = [Path(o["folder"]) for o in outcomes]
    summaries, curves = read_seed_folders(folders)  # refuses a seed found in two parts
    for folder in folders:
        for seed_dir in sorted(folder.glob("seed*")):
            seed_dir.replace(root / seed_dir.name)
    for s in summaries:
        s["out_dir"] = str(final_root / f"seed{s['seed']}")
        atomic_write_text(root / f"seed{s['seed']}" / "summary.json", json.dumps(s, indent=2) + "\n")
    results = [o["result"] for o in outcomes]
    for folder, r in zip(folders, results, strict=True):  # the part's own summary names where its files now are
        r["out_dir"] = str(final_root / "parts" / folder.name)
        for s in r["summaries"]:
            s["out_dir"] = str(final_root / f"seed{s['seed']}")
        atomic_write_text(folder / "summary.json", json.dumps(r, indent=2) + "\n")
    aggregate = aggregate_seeds(summaries, np.random.default_rng(AGGREGATE_SEED))
    threshold = summaries[0].get("solve_threshold")
    if threshold is not None:
        below = sorted(s["seed"] for s in summaries if (s.get("best_model_eval_mean") or -np.inf) < threshold)
        scored = [s for s in summaries if s.get("best_model_eval_mean") is not None]
        aggregate["best_model_at_threshold"] = {"threshold": threshold, "count": len(summaries) - len(below),
                                                "n": len(summaries), "below": below,
                                                "episodes": scored[0]["final_eval_episodes"] if scored else None}
    statuses = {r["status"] for r in results}
    result = {
        "status": "interrupted" if "interrupted" in statuses else (
            "completed" if "completed" in statuses else "diverged"),
        "layout": "batch", "env_id": env_id, "seeds": [s["seed"] for s in summaries], "n_seeds": len(summaries),
        "env_steps": max(r["env_steps"] for r in results), "total_steps": total_steps,
        "n_envs": results[0]["n_envs"], "updates": sum(r["updates"] for r in results),
        "train_seconds": round(sum(r["train_seconds"] for r in results), 4),
        "eval_seconds": round(sum(r["eval_seconds"] for r in results), 4),
        "seconds": round(sum(o["seconds"] for o in outcomes), 4),
        "n_solved": aggregate["fraction_solved"]["solved"],
        "stopped": {k: v for r in results for k, v in r["stopped"].items()},
        "aggregate": aggregate, "summaries": summaries, "aggregate_plot": None, "out_dir": str(final_root),
        "warnings": sorted({w for r in results for w in r["warnings"]}),
        "parts": [{"seeds": list(r["seeds"]), "folder": str(final_root / "parts" / Path(o["folder"]).name),
                   "seconds": round(o["seconds"], 4), "worker": o["worker"]} for o, r in zip(outcomes, results,
                                                                                          strict=True)],
    }
    config_file = folders[0] / "config.json"
    if config_file.exists():
        shutil.copyfile(config_file, root / "config.json")
    atomic_write_text(root / "aggregate.json", json.dumps(aggregate, indent=2) + "\n")
    if plot:
        try:
            picture = plot_aggregate(curves, [s["solved_at_step"] for s in summaries], root / "aggregate.png",
                                     f"DQN on {env_id}: {len(summaries)} seeds", threshold,
                                     np.random.default_rng(AGGREGATE_SEED))
            result["aggregate_plot"] = None if picture is None else str(final_root / "aggregate.png")
        except Exception as e:  # optional: the results are on disk
            result["warnings"].append(f"aggregate.png could not be drawn ({one_line(e)}); the results are written")
    atomic_write_text(root / "summary.json", json.dumps(result, indent=2) + "\n")
    return result


def remove_attempts(root: Path) -> None:
    """Remove the attempt folders (`.part<i>-<hex>`) that dead workers left in `root`."""
    for attempt in root.glob(".part*-*"):
        shutil.rmtree(attempt, ignore_errors=True)


class Driver:
    """Submits groups of parts to the cluster and hands back each group when all its parts have returned.

    Args:
        client: a `distributed.Client`.
        stop: polled every `POLL_SECONDS`; once set, `finished` returns nothing more and `cancel` drops the rest.
    """

    def __init__(self, client: Any, stop: StopFlag) -> None:
        self.client, self.stop = client, stop
        self.futures: dict[Any, tuple[str, int]] = {}
        self.outcomes: dict[str, list[dict[str, Any] | None]] = {}

    @property
    def groups_in_flight(self) -> int:
        return len(self.outcomes)

    def submit(self, parts: Sequence[Part]) -> None:
        """Submit one group's parts (all of the same `group`)."""
        group = parts[0].group
        self.outcomes[group] = [None] * len(parts)
        for i, part in enumerate(parts):
            key = f"{group}-part{part.index}-{uuid.uuid4().hex[:6]}"
            self.futures[self.client.submit(run_part, part, key=key, pure=False, retries=0)] = (group, i)

    def finished(self) -> list[tuple[str, list[dict[str, Any]]]]:
        """Block until a part returns (or the stop flag is set); the groups whose every part has returned."""
        from distributed import wait

        done_groups: list[tuple[str, list[dict[str, Any]]]] = []
        while self.futures and not done_groups and not self.stop:
            try:
                done = wait(list(self.futures), timeout=POLL_SECONDS, return_when="FIRST_COMPLETED").done
            except TimeoutError:
                continue
            for future in done:
                group, i = self.futures.pop(future)
                self.outcomes[group][i] = _outcome(future)
                if all(o is not None for o in self.outcomes[group]):
                    done_groups.append((group, self.outcomes.pop(group)))
        return done_groups

    def cancel(self) -> None:
        """Cancel every part not yet returned."""
        if self.futures:
            with contextlib.suppress(Exception):
                self.client.cancel(list(self.futures), force=True)
        self.futures.clear()
        self.outcomes.clear()


def _outcome(future: Any) -> dict[str, Any]:
    """A future's `run_part` return, or a failed outcome naming why the task itself failed (a dead worker)."""
    try:
        return future.result()
    except Exception as e:  # KilledWorker after the scheduler's retries, a cancelled task, a lost connection
        reason = one_line(e)
        if type(e).__name__ == "KilledWorker":
            reason = f"the worker running it died on every attempt ({reason})"
        return {"ok": False, "folder": None, "result": None, "error": reason, "seconds": 0.0, "worker": None}


def train_distributed(config: DQNConfig, env_id: str, seeds: Sequence[int], out_dir: str | Path,
                      total_steps: int, *, workers: int | None = None, scheduler: str | None = None,
                      n_parts: int | None = None, stop: StopFlag | None = None,
                      notify: Callable[[str], None] | None = None, **options: Any) -> dict[str, Any]:
    """`train(config, env_id, seeds, out_dir, total_steps)` with the seeds split into parts across a Dask cluster.

    The folder is the merged seed-batch folder of the module docstring. Every check (seeds, config, folder free,
    cluster reachable) comes before the first write.

    Args:
        config, env_id, seeds, out_dir, total_steps: as `agents.run.train.train` (a fresh batch; no resume).
        workers, scheduler: the cluster (`Cluster`).
        n_parts: seed batches (default: one per worker).
        stop: set (e.g. by a signal) to cancel the parts still training; finished parts stay in `out_dir/parts/`.
        notify: receives one-line notices (the cluster and its dashboard).
        **options: train()'s keywords for every part: save_replay, final_eval_episodes, plot, env_backend.

    Returns:
        The merged result (`merge_parts`), or on interruption `{"status": "interrupted", "parts": [finished],
        "out_dir"}`.

    Raises:
        ClusterError: no [sweep] extra, or a cluster that cannot be used. ValueError: bad seeds, a folder that
        cannot hold a fresh batch. RuntimeError: a part failed (its one-line error; the other parts stay).
    """
    from agents.run.folder import RunFolderError, RunLock, make_run_folder
    from agents.validate import seeds as check_seeds

    require_extra("train_distributed")
    seeds = check_seeds(seeds)
    if not isinstance(config, DQNConfig):
        raise TypeError(f"config must be a DQNConfig, got {type(config).__name__}")
    root, stop, notify = Path(out_dir), StopFlag() if stop is None else stop, notify or (lambda _line: None)
    if root.exists() and (not root.is_dir() or any(p.name != ".lock" for p in root.iterdir())):
        raise RunFolderError(f"{root}: a distributed batch needs a new or empty folder")
    with Cluster(workers, scheduler) as cluster:
        notify(cluster.describe())
        make_run_folder(root)
        lock = RunLock(root)
        try:
            batches = split_seeds(seeds, n_parts or cluster.n_workers)
            parts = [Part("batch", i, str(root), config.to_json(), env_id, tuple(b), total_steps, dict(options))
                     for i, b in enumerate(batches)]
            driver = Driver(cluster.client, stop)
            driver.submit(parts)
            finished = driver.finished()
            driver.cancel()
            cluster.close(now=bool(stop))  # the merge needs no workers; a stop ends them at once
            if not finished:
                done = sorted(str(p) for p in (root / "parts").glob("part*")) if (root / "parts").is_dir() else []
                return {"status": "interrupted", "parts": done, "out_dir": str(root)}
            outcomes = finished[0][1]
            failed = [(p, o) for p, o in zip(parts, outcomes, strict=True) if not o["ok"]]
            if failed:
                part, o = failed[0]
                raise RuntimeError(f"part {part.index} (seeds {part.seeds[0]}-{part.seeds[-1]}) failed: "
                                   f"{o['error']}; {len(outcomes) - len(failed)} finished part(s) are in "
                                   f"{root / 'parts'}")
            return merge_parts(root, outcomes, env_id, total_steps, plot=bool(options.get("plot")))
        finally:
            remove_attempts(root)
            lock.release()
