"""agents.run.sweep and agents.run.cluster: SPEC checks, searches, trial ids, and sweeps on a real local Dask cluster.

    1  SPEC parsing: grid / random / Optuna settings, ranges, trial ids; every bad SPEC is one SpecError line
    2  the folder: a changed SPEC is refused naming the difference; the results' TOML round-trips
    3  on a cluster of two worker processes (slow): the folders, trials.csv, best.json/toml and a rerun that trains
       nothing; an invalid combination and a trial that raises fail alone; a worker killed mid-trial; Optuna's
       budget; BLAS threads pinned in the workers; seeds split into parts match one process

Budgets are tiny (CartPole, 16 hidden units, 1000 steps, evaluations of 5 episodes every 500 steps).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import sys
import threading
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
from scripttools import writes_nothing

from agents.config import config_for
from agents.run.aggregate import read_seed_folders
from agents.run.cluster import Cluster, ClusterError, require_extra, split_seeds, train_distributed
from agents.run.stats import aggregate_seeds, iqm
from agents.run.sweep import SpecError, SweepSpec, check_folder, metric_of, run_sweep, to_toml
from agents.run.train import AGGREGATE_SEED, train

BASE = {"hidden_sizes": [16], "learning_starts": 200, "batch_size": 32, "eval_freq": 500, "eval_episodes": 5}


def spec_of(search: dict, **top) -> SweepSpec:
    data = {"env_id": "CartPole-v1", "seeds": [0, 1], "total_steps": 1000, "base": dict(BASE)} | top | search
    return SweepSpec.from_dict(data)


# --- 1: SPEC parsing ------------------------------------------------------------------------------------------------


def test_grid_is_every_combination_in_spec_order_with_stable_distinct_ids() -> None:
    spec = spec_of({"grid": {"learning_rate": [0.001, 0.003], "gamma": [0.95, 0.99]}})
    trials = spec.planned()
    assert [t.params for t in trials] == [{"learning_rate": 0.001, "gamma": 0.95}, {"learning_rate": 0.001,
                                          "gamma": 0.99}, {"learning_rate": 0.003, "gamma": 0.95},
                                          {"learning_rate": 0.003, "gamma": 0.99}]
    assert len({t.id for t in trials}) == 4
    assert [t.id for t in spec_of({"grid": {"learning_rate": [0.001, 0.003], "gamma": [0.95, 0.99]}}).planned()] \
        == [t.id for t in trials]
    other_seeds = spec_of({"grid": {"learning_rate": [0.001, 0.003], "gamma": [0.95, 0.99]}}, seeds=[0, 2])
    assert not {t.id for t in other_seeds.planned()} & {t.id for t in trials}
    assert trials[1].config().gamma == 0.99 and trials[1].config().hidden_sizes == (16,)


def test_an_int_for_a_float_field_is_the_same_trial() -> None:
    one = spec_of({"grid": {"tau": [1]}}).planned()[0]
    assert one.id == spec_of({"grid": {"tau": [1.0]}}).planned()[0].id
    assert isinstance(one.config().tau, float)


def test_seeds_as_a_range_and_total_steps_as_a_parameter() -> None:
    spec = spec_of({"grid": {"total_steps": [500, 1000]}}, seeds="0-3")
    assert spec.seeds == (0, 1, 2, 3)
    assert [t.total_steps for t in spec.planned()] == [500, 1000]


def test_random_search_is_seeded_and_draws_within_its_ranges() -> None:
    search = {"random": {"trials": 12, "seed": 3, "learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
                         "n_step": {"low": 1, "high": 3}, "hidden_sizes": [[16], [8, 8]]}}
    a, b = spec_of(search).planned(), spec_of(search).planned()
    assert [t.params for t in a] == [t.params for t in b]
    other = spec_of({"random": search["random"] | {"seed": 4}}).planned()
    assert [t.params for t in other] != [t.params for t in a]
    assert all(1e-4 <= t.params["learning_rate"] <= 1e-2 for t in a)
    assert {t.params["n_step"] for t in a} <= {1, 2, 3} and all(isinstance(t.params["n_step"], int) for t in a)
    assert {tuple(t.params["hidden_sizes"]) for t in a} <= {(16,), (8, 8)}


def test_random_draws_and_grid_values_that_repeat_a_configuration_run_once() -> None:
    trials = spec_of({"random": {"trials": 20, "seed": 0, "gamma": [0.9, 0.99]}}).planned()
    assert sorted(t.params["gamma"] for t in trials) == [0.9, 0.99]
    assert [t.params for t in spec_of({"grid": {"gamma": [0.9, 0.9], "tau": [1, 1.0]}}).planned()] == [
        {"gamma": 0.9, "tau": 1.0}]


BAD_SPECS = [
    ("env_id = 'CartPole-v1'\n[grid\n", "not a TOML file"),
    ("env_id = 'CartPole-v1'\n[base]\nnot_a_field = 1\n[grid]\ngamma = [0.9]\n", "not_a_field"),
    ("env_id = 'CartPole-v1'\n[grid]\nnot_a_field = [1, 2]\n", "[grid] not_a_field: unknown field"),
    ("env_id = 'CartPole-v1'\n[grid]\ngamma = []\n", "[grid] gamma: an empty list of values"),
    ("env_id = 'CartPole-v1'\n[grid]\n", "[grid] names no parameter"),
    ("env_id = 'CartPole-v1'\n[grid]\ngamma = [0.9, 1.5]\n", "[grid] gamma: value 1.5 is out of range"),
    ("env_id = 'CartPole-v1'\n[base]\ngamma = -1.0\n[grid]\nn_step = [1]\n", "DQNConfig.gamma must be in [0, 1]"),
    ("env_id = 'CartPole-v1'\nmetric = 'reward'\n[grid]\ngamma = [0.9]\n", "unknown metric 'reward'"),
    ("env_id = 'CartPole-v1'\ndirection = 'up'\n[grid]\ngamma = [0.9]\n", "direction must be"),
    ("env_id = 'CartPole-v1'\n[base]\ngamma = 0.9\n", "exactly one of [grid], [random], [optuna]; got none"),
    ("env_id = 'CartPole-v1'\n[grid]\ngamma = [0.9]\n[random]\ntrials = 2\ngamma = [0.9]\n", "got ['grid', 'random']"),
    ("env_id = 'CartPole-v1'\n[random]\ngamma = [0.9]\n", "[random] needs trials = N"),
    ("env_id = 'CartPole-v1'\n[grid]\ngamma = { low = 0.9, high = 0.99 }\n", "a grid takes a list"),
    ("env_id = 'CartPole-v1'\n[optuna]\ntrials = 3\nlearning_rate = { low = 0.0, high = 0.1, log = true }\n",
     "value 0.0 is out of range"),
    ("env_id = 'CartPole-v1'\n[optuna]\ntrials = 3\nn_step = { low = 1.5, high = 3 }\n", "must be integers"),
    ("env_id = 'CartPole-v1'\n[optuna]\ntrials = 0\ngamma = [0.9]\n", "trials must be an integer >= 1"),
    ("env_id = 'CartPole-v1'\nseeds = [0, 0]\n[grid]\ngamma = [0.9]\n", "seeds"),
    ("env_id = 'NoSuchEnv-v0'\n[grid]\ngamma = [0.9]\n", "NoSuchEnv-v0"),
    ("env_id = 'CartPole-v1'\nworkers = 2\n[grid]\ngamma = [0.9]\n", "unknown key(s) ['workers']"),
]


@pytest.mark.parametrize(("text", "names"), BAD_SPECS, ids=[n for _, n in BAD_SPECS])
def test_a_bad_spec_is_one_line_naming_the_problem(text: str, names: str) -> None:
    with pytest.raises(SpecError) as e:
        SweepSpec.from_text(text, where="bad.toml")
    message = str(e.value)
    assert names in message and message.startswith("bad.toml") and "\n" not in message


def test_split_seeds_into_near_equal_contiguous_batches() -> None:
    assert split_seeds(list(range(7)), 3) == [[0, 1, 2], [3, 4], [5, 6]]
    assert split_seeds([4, 9], 5) == [[4], [9]]


def test_metric_of_reads_the_aggregate_figures() -> None:
    summaries = [{"seed": k, "status": "completed", "solved": k < 3, "solved_at_step": 1000 * (k + 1) if k < 3
                  else None, "solved_at_seconds": float(k + 1) if k < 3 else None, "best_eval_mean": 100.0 + k,
                  "final_eval_mean": 50.0 + k} for k in range(5)]
    agg = aggregate_seeds(summaries, np.random.default_rng(0), reps=200)
    assert metric_of(agg, "best_eval_mean")[0] == pytest.approx(iqm(np.arange(5) + 100.0), abs=1e-12)
    assert metric_of(agg, "fraction_solved")[0] == 0.6
    assert metric_of(agg, "median_steps_to_solve")[0] == 3000
    assert metric_of(agg, "best_model_eval_mean") == (None, None, None)


def test_without_the_extra_one_line_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` raises ImportError
    with pytest.raises(ClusterError, match=r"^run_sweep needs the \[sweep\] extra: pip install -e '\.\[sweep\]'$"):
        require_extra("run_sweep")


# --- 2: the folder ----------------------------------------------------------------------------------------------------


def test_a_changed_spec_is_refused_naming_the_difference(tmp_path: Path) -> None:
    spec = spec_of({"grid": {"gamma": [0.95, 0.99]}})
    (tmp_path / "spec.toml").write_text(spec.spec_text())
    check_folder(tmp_path, spec)  # the same SPEC continues
    changed = spec_of({"grid": {"gamma": [0.9]}}, total_steps=2000)
    with writes_nothing(tmp_path), pytest.raises(SpecError) as e:
        check_folder(tmp_path, changed)
    assert "total_steps: 1000 in spec.toml, 2000 now" in str(e.value)
    assert "grid.gamma: [0.95, 0.99] in spec.toml, [0.9] now" in str(e.value)


def test_a_folder_of_other_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with writes_nothing(tmp_path), pytest.raises(SpecError, match="no spec.toml"):
        check_folder(tmp_path, spec_of({"grid": {"gamma": [0.9]}}))


def test_toml_written_is_read_back_the_same() -> None:
    data = {"env_id": "CartPole-v1", "seeds": [0, 1], "total_steps": 1000, "metric": "fraction_solved",
            "base": {"hidden_sizes": [16], "dueling": True, "loss": "mse", "prioritized_eps": 1e-06},
            "optuna": {"trials": 4, "seed": 0, "learning_rate": {"low": 0.0001, "high": 0.01, "log": True},
                       "hidden_sizes": [[16], [8, 8]]}}
    assert tomllib.loads(to_toml(data)) == data


# --- 3: on a cluster --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    with Cluster(workers=2) as c:
        yield c


@pytest.fixture(scope="module")
def grid_sweep(cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("grid") / "sweep"
    spec = spec_of({"grid": {"learning_rate": [0.001, 0.003], "gamma": [0.95, 0.99]}})
    lines: list[str] = []
    table = run_sweep(spec, out, scheduler=cluster.client.scheduler.address, notify=lines.append)
    return spec, out, table, lines


@pytest.mark.slow
def test_grid_writes_every_trial_folder_the_table_and_the_best_preset(grid_sweep) -> None:
    spec, out, table, lines = grid_sweep
    assert [r["status"] for r in table] == ["completed"] * 4
    assert [r["trial_id"] for r in table] == [t.id for t in spec.planned()]
    for row in table:
        folder = out / "trials" / row["trial_id"]
        assert {p.name for p in folder.iterdir()} >= {"seed0", "seed1", "aggregate.json", "summary.json",
                                                      "config.json", "trial.json", "parts"}
        summaries, _ = read_seed_folders([folder])  # loadable as a batch folder
        assert [s["seed"] for s in summaries] == [0, 1]
        assert all(s["env_steps"] >= 1000 and s["out_dir"] == str(folder / f"seed{s['seed']}") for s in summaries)
        agg = aggregate_seeds(summaries, np.random.default_rng(AGGREGATE_SEED))
        assert row["best_eval_mean"] == agg["best_eval_mean"]["iqm"]["value"]
        assert [row["best_eval_mean_low"], row["best_eval_mean_high"]] == agg["best_eval_mean"]["iqm"]["ci"]
        assert row["seconds"] > 0 and row["n_seeds"] == 2 and row["error"] is None
    with open(out / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["trial_id"] for r in rows] == [r["trial_id"] for r in table]
    assert [float(r["best_eval_mean"]) for r in rows] == [r["best_eval_mean"] for r in table]
    assert list(rows[0])[:5] == ["trial_id", "number", "status", "learning_rate", "gamma"]
    best = max(table, key=lambda r: r["best_eval_mean"])
    config = config_for("CartPole-v1", preset=out / "best.toml")  # what --preset reads
    assert config == config_for("CartPole-v1", preset=json.loads((out / "best.json").read_text()))
    assert (config.learning_rate, config.gamma, config.hidden_sizes) == (best["learning_rate"], best["gamma"], (16,))
    assert json.loads((out / "best.json").read_text())["source"]["trial_id"] == best["trial_id"]
    assert tomllib.loads((out / "spec.toml").read_text()) == spec.raw
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert any("no sweep.png" in line for line in lines) and not (out / "sweep.png").exists()
    else:
        assert (out / "sweep.png").stat().st_size > 0
    assert not list((out / "trials").glob(".tmp-*"))


@pytest.mark.slow
def test_a_rerun_trains_nothing_and_gives_the_same_table(grid_sweep, cluster) -> None:
    spec, out, table, _ = grid_sweep
    stamps = {p: p.stat().st_mtime_ns for p in (out / "trials").rglob("*")}
    again = run_sweep(spec, out, scheduler=cluster.client.scheduler.address)
    assert again == table
    assert {p: p.stat().st_mtime_ns for p in (out / "trials").rglob("*")} == stamps


@pytest.mark.slow
def test_an_invalid_combination_and_a_trial_that_raises_fail_alone(cluster, tmp_path: Path) -> None:
    # batch_size 256 and learning_starts 200 are each valid, but not together; a buffer of 1e13 transitions passes
    # DQNConfig and is refused by the engine inside the worker
    base = {k: v for k, v in BASE.items() if k != "learning_starts"}
    spec = spec_of({"grid": {"batch_size": [32, 256], "learning_starts": [200], "buffer_size": [50_000, 10**13]}},
                   seeds=[0], base=base)
    table = run_sweep(spec, tmp_path / "s", scheduler=cluster.client.scheduler.address)
    status = {(r["batch_size"], r["buffer_size"]): (r["status"], r["error"]) for r in table}
    assert status[(32, 50_000)] == ("completed", None)
    assert status[(256, 50_000)][0] == status[(256, 10**13)][0] == "failed"
    assert status[(256, 50_000)][1].startswith("invalid configuration: DQNConfig.learning_starts must be >=")
    assert status[(32, 10**13)][0] == "failed" and status[(32, 10**13)][1].startswith("ValueError: buffer_size")
    for r in table:
        failed = tmp_path / "s" / "trials" / f"{r['trial_id']}.failed.json"
        assert failed.exists() == (r["status"] == "failed")
        assert (tmp_path / "s" / "trials" / r["trial_id"]).exists() == (r["status"] == "completed")


def kill_a_busy_worker(cluster: Cluster, out: Path, killed: list[tuple[str, tuple[str, ...]]]) -> threading.Thread:
    """A thread that SIGKILLs a worker process once a part is training, recording (address, keys it was running)."""

    def kill() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if list((out / "trials").glob(".tmp-*/.part*/seed*/progress.csv")):  # a part is training
                busy = {addr: keys for addr, keys in cluster.client.processing().items() if keys}
                if busy:
                    addr = next(iter(busy))
                    os.kill(cluster.client.run(os.getpid, workers=[addr])[addr], signal.SIGKILL)
                    killed.append((addr, tuple(busy[addr])))
                    return
            time.sleep(0.01)

    thread = threading.Thread(target=kill)
    thread.start()
    return thread


@pytest.mark.slow
def test_a_worker_killed_mid_trial_has_its_trial_rerun_and_the_sweep_finishes(cluster, tmp_path: Path) -> None:
    out = tmp_path / "s"
    spec = spec_of({"grid": {"learning_rate": [0.001, 0.002, 0.003]}}, total_steps=2000)
    killed: list[tuple[str, tuple[str, ...]]] = []
    killer = kill_a_busy_worker(cluster, out, killed)
    table = run_sweep(spec, out, scheduler=cluster.client.scheduler.address)
    killer.join()
    assert killed and killed[0][1], "a worker was killed while it trained a part"
    assert [r["status"] for r in table] == ["completed"] * 3  # the scheduler re-ran the dead worker's part
    assert not list((out / "trials").glob(".tmp-*")) and not list((out / "trials").glob("*/.part*"))
    for r in table:
        summaries, _ = read_seed_folders([out / "trials" / r["trial_id"]])
        assert [s["env_steps"] >= 2000 for s in summaries] == [True, True]


@pytest.mark.slow
def test_a_trial_whose_worker_dies_beyond_the_retries_is_recorded_failed(tmp_path: Path) -> None:
    import dask

    out = tmp_path / "s"
    spec = spec_of({"grid": {"learning_rate": [0.001, 0.002, 0.003]}}, total_steps=2000)
    killed: list[tuple[str, tuple[str, ...]]] = []
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), Cluster(workers=2) as c:
        killer = kill_a_busy_worker(c, out, killed)
        table = run_sweep(spec, out, scheduler=c.client.scheduler.address)
        killer.join()
    dead = {key.split("-part")[0] for key in killed[0][1]}  # the trials the scheduler had given that worker
    failed = {r["trial_id"]: r["error"] for r in table if r["status"] == "failed"}
    assert failed and set(failed) <= dead
    assert all(e.startswith("the worker running it died on every attempt (KilledWorker") for e in failed.values())
    assert all(r["status"] == "completed" for r in table if r["trial_id"] not in failed)
    assert not list((out / "trials").glob(".tmp-*"))


@pytest.mark.slow
def test_optuna_runs_its_budget_records_every_trial_and_a_rerun_adds_none(cluster, tmp_path: Path) -> None:
    search = {"optuna": {"trials": 4, "seed": 0, "startup_trials": 2,
                         "learning_rate": {"low": 5e-4, "high": 5e-3, "log": True}, "hidden_sizes": [[16], [8]]}}
    spec = spec_of(search, seeds=[0])
    table = run_sweep(spec, tmp_path / "s", scheduler=cluster.client.scheduler.address)
    assert len(table) == 4 and [r["status"] for r in table] == ["completed"] * 4
    assert sorted(r["number"] for r in table) == [0, 1, 2, 3]
    assert all(5e-4 <= r["learning_rate"] <= 5e-3 and r["hidden_sizes"] in ([16], [8]) for r in table)
    for r in table:
        record = json.loads((tmp_path / "s" / "trials" / r["trial_id"] / "trial.json").read_text())
        assert record["params"] == {"learning_rate": r["learning_rate"], "hidden_sizes": r["hidden_sizes"]}
        assert record["value"] == r["best_eval_mean"]
    assert (tmp_path / "s" / "best.toml").exists()
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "s" / "trials").rglob("*")}
    again = run_sweep(spec, tmp_path / "s", scheduler=cluster.client.scheduler.address)
    assert sorted(again, key=lambda r: r["number"]) == sorted(table, key=lambda r: r["number"])
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "s" / "trials").rglob("*")} == before


@pytest.mark.slow
def test_optuna_asking_again_for_a_configuration_trains_it_once(cluster, tmp_path: Path) -> None:
    spec = spec_of({"optuna": {"trials": 5, "seed": 0, "gamma": [0.9, 0.99]}}, seeds=[0], total_steps=600)
    table = run_sweep(spec, tmp_path / "s", scheduler=cluster.client.scheduler.address)
    assert sorted(r["gamma"] for r in table) == [0.9, 0.99]  # five asks of two configurations
    assert [r["status"] for r in table] == ["completed"] * 2
    assert len(list((tmp_path / "s" / "trials").iterdir())) == 2


@pytest.mark.slow
def test_workers_run_with_one_blas_thread_whatever_the_parent_has(monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    with Cluster(workers=1) as c:
        seen = c.client.run(lambda: {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                                     "MKL_NUM_THREADS")})
    assert list(seen.values()) == [{"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}]
    assert os.environ["OMP_NUM_THREADS"] == "4"  # the parent's own environment is put back


@pytest.mark.slow
def test_seeds_split_into_parts_match_one_process(cluster, tmp_path: Path) -> None:
    config = config_for("CartPole-v1", BASE)
    result = train_distributed(config, "CartPole-v1", [0, 1, 2], tmp_path / "b", 1000,
                               scheduler=cluster.client.scheduler.address, n_parts=2, save_replay=False)
    assert [p["seeds"] for p in result["parts"]] == [[0, 1], [2]]
    alone = train(config, "CartPole-v1", [0, 1, 2], None, 1000)
    keys = ("seed", "best_eval_mean", "best_eval_step", "final_eval_mean", "solved_at_step", "updates")
    assert [{k: s[k] for k in keys} for s in result["summaries"]] == [{k: s[k] for k in keys}
                                                                      for s in alone["summaries"]]
    on_disk, _ = read_seed_folders([tmp_path / "b"])
    assert [s["seed"] for s in on_disk] == [0, 1, 2]
    assert json.loads((tmp_path / "b" / "aggregate.json").read_text()) == result["aggregate"]


def test_an_unreachable_scheduler_is_one_line(monkeypatch) -> None:
    monkeypatch.setattr("agents.run.cluster.CONNECT_TIMEOUT", "0.5s")
    with pytest.raises(ClusterError, match=r"^cannot reach the Dask scheduler at 'tcp://127\.0\.0\.1:9'"):
        Cluster(scheduler="tcp://127.0.0.1:9")
