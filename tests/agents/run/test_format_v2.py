"""Format 2 -> 3: training checkpoints written by the version-2 code resume with today's code exactly where the old
code went on, and are refused as the wrong layout or with other seeds without a byte changing.

`tests/fixtures/v2` was made by `tests/fixtures/v2/make_fixtures.py` with the code of commit 51b69c4 (the last to
write format 2): a single run of seed 3 (`single/`) and a batch of seeds 3 and 5 (`batch/`), a tiny float64 config on
CartPole-v1, 192 steps each, as the old code left the folders (checkpoint at step 192). `single_expected.npz` and
`batch_expected.npz` hold what the old code's own resume to 384 steps ended with: every seed's final model
(`seed<k>/online.W1`, ..., `seed<k>/optim.m.W1`, `seed<k>/optim.v.W1`, ...) and its progress and evaluation rows
(`seed<k>/progress`, `seed<k>/evals`: the logs' numbers without the `train_seconds` column, True/False as 1/0).
The fixtures are only ever copied: every test resumes a copy in `tmp_path`.
"""

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from agents.algo.dqn import DQNAgent
from agents.run import train, train_one
from agents.run.checkpoint import CheckpointError, load_checkpoint, training_state

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "v2"
SEEDS = {"single": [3], "batch": [3, 5]}  # the fixtures' runs (make_fixtures.py)
ENV_ID = "CartPole-v1"
FIRST, TOTAL = 192, 384  # the fixtures' checkpoints are at FIRST; the old code resumed them to TOTAL
SCALARS = ("agent.n_updates", "optim.t")  # shared by the members: no member axis in a checkpoint


def _copy(tmp_path: Path, layout: str) -> Path:
    run = tmp_path / layout
    shutil.copytree(FIXTURES / layout, run)
    assert not (run / ".lock").exists()  # the fixture folders are as the old code left them, unlocked
    return run


def _resume(run: Path, layout: str, total: int = TOTAL, **kwargs) -> list[dict]:
    """Resume `run` with today's code the way the old code's resume was called; the summaries, one per seed."""
    if layout == "single":
        return [train_one(None, "", None, run, total, resume=True, **kwargs)]
    return train(None, "", None, run, total, layout="batch", resume=True, **kwargs)["summaries"]


def _member_root(run: Path, layout: str, k: int) -> Path:
    return run if layout == "single" else run / f"seed{k}"


def _expected(layout: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"{layout}_expected.npz", allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def _format_version(path: Path) -> int:
    with np.load(path, allow_pickle=False) as data:
        return int(data["format_version"])


def _old_columns(path: Path) -> list[str]:
    """The columns the old code wrote to this log (the fixture's header), without its clock column."""
    with open(path, newline="") as f:
        header = next(csv.reader(f))
    return [name for name in header if name != "train_seconds"]


def _log_numbers(path: Path, columns: list[str]) -> np.ndarray:
    """A log's `columns` as numbers (True/False as 1/0), as make_fixtures.py stored the old code's logs."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return np.array([[float(row[c] == "True") if row[c] in ("True", "False") else float(row[c]) for c in columns]
                     for row in rows])


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `root` (hidden ones included) -> (bytes, mtime); folders as empty entries, so new ones show."""
    return {str(p.relative_to(root)) + ("/" if p.is_dir() else ""):
            (b"", 0) if p.is_dir() else (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


# --- (a) today's code resumes them to exactly where the old code went --------------------------------------------


def test_the_fixtures_are_version_2_training_checkpoints_at_their_first_step() -> None:
    for layout, kind in (("single", "trainer"), ("batch", "seed_batch")):
        path = FIXTURES / layout / "checkpoint.npz"
        assert _format_version(path) == 2
        ckpt = load_checkpoint(path)
        assert ckpt.meta["kind"] == kind and ckpt.meta["env_steps"] == FIRST and ckpt.meta["env_id"] == ENV_ID
        state, found = training_state(ckpt)
        assert found == layout and state["seeds"] == SEEDS[layout]
        assert ckpt.config.dtype == "float64"


@pytest.mark.parametrize("layout", ["single", "batch"])
def test_a_version_2_run_resumes_to_exactly_where_the_old_code_went(tmp_path: Path, layout: str) -> None:
    run = _copy(tmp_path, layout)
    summaries = _resume(run, layout)
    expected = _expected(layout)
    assert [s["seed"] for s in summaries] == SEEDS[layout]
    assert {key.split("/")[0] for key in expected} == {f"seed{k}" for k in SEEDS[layout]}
    for summary in summaries:
        k = summary["seed"]
        assert (summary["status"], summary["env_steps"]) == ("completed", TOTAL), k
        root = _member_root(run, layout, k)
        want = {key[len(f"seed{k}/"):]: v for key, v in expected.items() if key.startswith(f"seed{k}/")}
        final = load_checkpoint(root / "final.npz")
        assert set(final.arrays) == set(want) - {"progress", "evals"}, k
        for key, value in final.arrays.items():  # parameters, target, Adam's moments and counters: bit for bit
            assert value.dtype == want[key].dtype, (k, key)
            np.testing.assert_array_equal(value, want[key], err_msg=f"seed {k}: {key}")
        for log in ("progress", "evals"):
            columns = _old_columns(FIXTURES / layout / root.relative_to(run) / f"{log}.csv")
            rows = _log_numbers(root / f"{log}.csv", columns)
            assert rows.shape == want[log].shape, (k, log)
            np.testing.assert_array_equal(rows, want[log], err_msg=f"seed {k}: {log}.csv")
            assert summary["episodes" if log == "progress" else "n_evals"] == len(rows)


def test_a_batch_resumed_with_its_own_seeds_named_is_the_batch_resumed_without(tmp_path: Path) -> None:
    named, unnamed = _copy(tmp_path / "named", "batch"), _copy(tmp_path / "unnamed", "batch")
    train(None, ENV_ID, [3, 5], named, TOTAL, layout="batch", resume=True)
    _resume(unnamed, "batch")
    for k in SEEDS["batch"]:
        one = load_checkpoint(named / f"seed{k}" / "final.npz")
        two = load_checkpoint(unnamed / f"seed{k}" / "final.npz")
        assert one.arrays.keys() == two.arrays.keys()
        for key, value in one.arrays.items():
            np.testing.assert_array_equal(value, two.arrays[key], err_msg=f"seed {k}: {key}")


# --- (b), (c) refusals: the other layout, other seeds; nothing changes -------------------------------------------


@pytest.mark.parametrize(("layout", "as_layout"), [("single", "batch"), ("batch", "single")])
def test_resuming_a_version_2_folder_as_the_other_layout_is_refused_and_changes_nothing(
        tmp_path: Path, layout: str, as_layout: str) -> None:
    run = _copy(tmp_path, layout)
    before = snapshot(run)
    with pytest.raises(CheckpointError) as info:
        _resume(run, as_layout)
    message = str(info.value)
    kinds = {"single": "a single run", "batch": "a batch of seeds"}
    command = {"single": "scripts/train_cartpole.py", "batch": "scripts/train_seeds.py"}[layout]
    assert message.startswith(f"{run / 'checkpoint.npz'}: this folder holds {kinds[layout]}, not {kinds[as_layout]}")
    assert f"{command} --resume {run}" in message
    assert snapshot(run) == before  # not a byte, not a timestamp, no .lock


@pytest.mark.parametrize("seeds", [[3], [5], [3, 7], [5, 3], [3, 5, 7]], ids=str)
def test_resuming_the_version_2_batch_with_other_seeds_is_refused_naming_both_and_changes_nothing(
        tmp_path: Path, seeds: list[int]) -> None:
    run = _copy(tmp_path, "batch")
    before = snapshot(run)
    with pytest.raises(CheckpointError) as info:
        train(None, "", seeds, run, TOTAL, layout="batch", resume=True)
    message = str(info.value)
    assert message.startswith(f"{run / 'checkpoint.npz'}:")
    assert f"--seeds {','.join(map(str, seeds))} differs from this run's seeds 3,5" in message
    assert snapshot(run) == before


@pytest.mark.parametrize("layout", ["single", "batch"])
def test_resuming_a_version_2_run_on_another_env_is_refused_and_changes_nothing(tmp_path: Path, layout: str) -> None:
    run = _copy(tmp_path, layout)
    before = snapshot(run)
    seeds = None if layout == "single" else SEEDS[layout]
    with pytest.raises(CheckpointError, match=f"this run trains {ENV_ID}, not Acrobot-v1"):
        train(None, "Acrobot-v1", seeds, run, TOTAL, layout=layout, resume=True)
    assert snapshot(run) == before


# --- (d) what the resume writes is format 3, and it loads and resumes on ----------------------------------------


@pytest.mark.parametrize("layout", ["single", "batch"])
def test_the_checkpoint_written_after_the_resume_is_format_3_and_holds_the_same_run(tmp_path: Path,
                                                                                     layout: str) -> None:
    run = _copy(tmp_path, layout)
    _resume(run, layout)
    path = run / "checkpoint.npz"
    assert _format_version(path) == 3
    ckpt = load_checkpoint(path)
    assert (ckpt.meta["kind"], ckpt.meta["layout"], ckpt.meta["env_steps"]) == ("engine", layout, TOTAL)
    assert ckpt.meta["seeds"] == SEEDS[layout] and ckpt.meta["env_id"] == ENV_ID
    state, found = training_state(ckpt)
    assert found == layout and state["seeds"] == SEEDS[layout]
    expected = _expected(layout)
    for s, k in enumerate(SEEDS[layout]):  # member s of the checkpoint's agent is seed k's final model
        for key, value in state["agent"].items():
            if key == "rng":
                continue
            np.testing.assert_array_equal(value if key in SCALARS else value[s], expected[f"seed{k}/{key}"],
                                          err_msg=f"seed {k}: {key}")
    if layout == "single":  # a single run's checkpoint holds one agent, as its final model does
        agent, final = DQNAgent.load(path), DQNAgent.load(run / "final.npz")
        assert agent.rng.bit_generator.state == final.rng.bit_generator.state
        for name, value in final.online.params.items():
            np.testing.assert_array_equal(agent.online.params[name], value, err_msg=name)
    else:
        with pytest.raises(CheckpointError, match="2 seeds holds no single agent"):
            DQNAgent.load(path)


@pytest.mark.parametrize("layout", ["single", "batch"])
def test_a_version_2_run_resumed_twice_is_the_run_resumed_once(tmp_path: Path, layout: str) -> None:
    further = TOTAL + 96  # one more evaluation period
    twice, once = _copy(tmp_path / "twice", layout), _copy(tmp_path / "once", layout)
    _resume(twice, layout)  # format 2 -> its format-3 checkpoint at TOTAL
    summaries_twice = _resume(twice, layout, further)
    summaries_once = _resume(once, layout, further)
    assert [s["env_steps"] for s in summaries_twice] == [further] * len(SEEDS[layout])
    for k, a, b in zip(SEEDS[layout], summaries_twice, summaries_once, strict=True):
        assert (a["seed"], a["episodes"], a["updates"], a["best_eval_mean"]) == (
            b["seed"], b["episodes"], b["updates"], b["best_eval_mean"]), k
        one = load_checkpoint(_member_root(twice, layout, k) / "final.npz")
        two = load_checkpoint(_member_root(once, layout, k) / "final.npz")
        assert one.arrays.keys() == two.arrays.keys()
        for key, value in one.arrays.items():
            np.testing.assert_array_equal(value, two.arrays[key], err_msg=f"seed {k}: {key}")
        for log in ("progress.csv", "evals.csv"):
            columns = _old_columns(_member_root(once, layout, k) / log)
            np.testing.assert_array_equal(_log_numbers(_member_root(twice, layout, k) / log, columns),
                                          _log_numbers(_member_root(once, layout, k) / log, columns), err_msg=log)


def test_the_version_2_model_files_load_as_agents() -> None:
    for layout in ("single", "batch"):
        ckpt = load_checkpoint(FIXTURES / layout / "checkpoint.npz")
        state, _ = training_state(ckpt)
        for s, k in enumerate(SEEDS[layout]):
            root = FIXTURES / layout if layout == "single" else FIXTURES / layout / f"seed{k}"
            final = DQNAgent.load(root / "final.npz")  # written at step 192, as the checkpoint was
            assert final.members is None and final.config == ckpt.config
            for name, value in final.online.params.items():
                np.testing.assert_array_equal(value, state["agent"][f"online.{name}"][s], err_msg=f"seed {k}: {name}")
            assert final.rng.bit_generator.state == state["agent"]["rng"][s]
            assert DQNAgent.load(root / "best.npz").members is None
    single = DQNAgent.load(FIXTURES / "single" / "checkpoint.npz")  # a version-2 single-run checkpoint: its agent
    np.testing.assert_array_equal(single.online.params["W1"],
                                  load_checkpoint(FIXTURES / "single" / "checkpoint.npz").arrays["agent/online.W1"])
