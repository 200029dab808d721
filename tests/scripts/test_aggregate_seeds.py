"""scripts/aggregate_seeds.py: it joins runs of one study only (naming what differs otherwise), never replaces
results it did not make in this invocation (unless --force), refuses unusable --out paths in one line with nothing
written, and writes aggregate.json before the optional plot."""

import dataclasses
import importlib.util
import json
import os
from pathlib import Path

import pytest
from scripttools import load_script, run_main, writes_nothing

from agents.config import DQNConfig
from agents.run import train

REPO = Path(__file__).resolve().parents[2]
TINY = DQNConfig(hidden_sizes=(8,), batch_size=16, buffer_size=1_000, learning_starts=100, eval_freq=200,
                 eval_episodes=2, n_envs=4)
LONG_NAME = "n" * 300


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Batch folders: a (seeds 0-1) and b (seed 2) of one study; c, d and e differ from it in one thing each."""
    root = tmp_path_factory.mktemp("studies")
    made = {
        "a": (TINY, "CartPole-v1", [0, 1], 400),
        "b": (TINY, "CartPole-v1", [2], 400),
        "c": (TINY, "CartPole-v1", [3], 600),  # another budget
        "d": (dataclasses.replace(TINY, learning_rate=1e-3), "CartPole-v1", [4], 400),  # another configuration
        "e": (TINY, "dqn_np/Chain-v0", [5], 400),  # another environment
    }
    for name, (config, env_id, seeds, steps) in made.items():
        assert train(config, env_id, seeds, root / name, steps, layout="batch")["status"] == "completed"
    return {name: root / name for name in made}


@pytest.fixture(scope="module")
def script():
    """scripts/aggregate_seeds.py as a module, to run `main` in-process."""
    return load_script("aggregate_seeds")




def assert_refused(status: int, out: str, err: str, *fragments: str) -> None:
    assert status == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aggregate_seeds.py: error: ") and out == "", err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_one_study_in_two_folders_is_joined(studies, script, capsys, tmp_path):
    out = tmp_path / "joined" / "deeper"  # missing parents are created
    status, stdout, stderr = run_main(script, capsys, studies["a"], studies["b"], "--out", out)
    assert status == 0, stderr
    joined = json.loads((out / "aggregate.json").read_text())
    assert joined["seeds"] == [0, 1, 2] and joined["fraction_solved"]["n"] == 3
    assert "3 seeds from 2 folder(s)" in stdout


@pytest.mark.parametrize(("other", "field", "values"), [
    ("c", "total_steps differs", ("400 in ", "600 in ")),
    ("d", "config.learning_rate differs", ("0.0023 in ", "0.001 in ")),
    ("e", "env_id differs", ('"CartPole-v1" in ', '"dqn_np/Chain-v0" in ')),
], ids=["budget", "configuration", "env-id"])
def test_runs_of_different_studies_are_refused_naming_the_difference(other, field, values, studies, script, capsys,
                                                                     tmp_path):
    out = tmp_path / "mixed"
    with writes_nothing(tmp_path, studies["a"], studies[other]):  # nothing written, not even the folder
        status, stdout, stderr = run_main(script, capsys, studies["a"], studies[other], "--out", out)
    assert_refused(status, stdout, stderr, "these runs are not one study", field, *values,
                   str(studies["a"] / "seed0"), str(studies[other] / f"seed{ {'c': 3, 'd': 4, 'e': 5}[other]}"),
                   "--allow-mixed")
    status, _, stderr = run_main(script, capsys, studies["a"], studies[other], "--out", out, "--allow-mixed")
    assert status == 0, stderr
    assert len(json.loads((out / "aggregate.json").read_text())["seeds"]) == 3


def test_a_folder_holding_another_aggregate_is_refused_unless_force(studies, script, capsys, tmp_path):
    out = tmp_path / "five"
    out.mkdir()
    earlier = json.dumps({"seeds": [0, 1, 2, 3, 4], "note": "another study"})
    (out / "aggregate.json").write_text(earlier)
    (out / "aggregate.png").write_bytes(b"its plot")
    with writes_nothing(tmp_path, studies["a"]):
        status, stdout, stderr = run_main(script, capsys, studies["a"], "--out", out)
    assert_refused(status, stdout, stderr, f"--out {out}: it already holds aggregate.json and aggregate.png "
                                           "(of 5 seeds)", "--force")
    status, _, stderr = run_main(script, capsys, studies["a"], "--out", out, "--force")
    assert status == 0, stderr
    assert json.loads((out / "aggregate.json").read_text())["seeds"] == [0, 1]
    png = out / "aggregate.png"  # replaced, or removed when there is no matplotlib: never the other study's
    assert (png.read_bytes() != b"its plot") if png.exists() else importlib.util.find_spec("matplotlib") is None


def test_a_batch_folder_as_out_keeps_its_own_aggregate(studies, script, capsys):
    with writes_nothing(studies["a"], studies["b"]):
        status, stdout, stderr = run_main(script, capsys, studies["a"], studies["b"], "--out", studies["a"])
    assert_refused(status, stdout, stderr, "it already holds aggregate.json", "(of 2 seeds)")


@pytest.mark.parametrize(("make", "fragments"), [
    (lambda tmp: tmp / "file", ("it is a file, not a folder",)),
    (lambda tmp: tmp / "file" / "out", ("is not a folder",)),
    (lambda tmp: tmp / LONG_NAME, ("bytes long",)),
    (lambda tmp: tmp / LONG_NAME / "out", ("bytes long",)),
    (lambda tmp: tmp / "run", ("it is a run folder",)),
    (lambda tmp: tmp / "read_only" / "out", ("permission denied",)),
], ids=["a-file", "under-a-file", "name-too-long", "parent-name-too-long", "a-run-folder", "unwritable"])
@pytest.mark.parametrize("force", [False, True], ids=["", "force"])
def test_an_unusable_out_is_one_line_and_nothing_is_written(make, fragments, force, studies, script, capsys,
                                                            monkeypatch, tmp_path):
    (tmp_path / "file").write_text("a file, not a folder")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text("{}")
    (tmp_path / "read_only").mkdir(mode=0o500)
    if os.geteuid() == 0:  # root writes anywhere: what a user meets is os.access
        monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path / "read_only")
    with writes_nothing(tmp_path, studies["a"]):
        status, stdout, stderr = run_main(script, capsys, studies["a"], "--out", make(tmp_path),
                                          *(["--force"] if force else []))
    assert_refused(status, stdout, stderr, "--out", *fragments)


@pytest.mark.parametrize(("args", "fragment"), [
    (["--threshold", "nan"], "--threshold must be a finite number, got nan"),
    (["--threshold", "inf"], "--threshold must be a finite number, got inf"),
    (["--threshold", "x"], "argument --threshold: invalid float value"),
], ids=["nan", "inf", "not-a-number"])
def test_a_meaningless_threshold_is_refused(args, fragment, studies, script, capsys, tmp_path):
    with writes_nothing(tmp_path, studies["a"]):  # tmp_path is empty: no --out made
        status, stdout, stderr = run_main(script, capsys, studies["a"], "--out", tmp_path / "out", *args)
    assert_refused(status, stdout, stderr, fragment)


@pytest.mark.parametrize(("damage", "fragment"), [
    (lambda run: (run / "summary.json").write_text("{not json"), "not a JSON file"),
    (lambda run: (run / "summary.json").write_text("[1, 2]"), "expected a JSON object"),
    (lambda run: (run / "summary.json").write_text('{"seed": "zero"}'), "no integer seed"),
    (lambda run: (run / "config.json").write_text("{not json"), "config.json: not a JSON file"),
    (lambda run: (run / "evals.csv").write_text("eval_index,env_steps,mean\n1,x,y\n"), "not an evaluation log"),
], ids=["summary-not-json", "summary-not-an-object", "seed-not-an-integer", "config-not-json", "evals-garbled"])
def test_a_damaged_run_folder_is_one_line_naming_the_file(damage, fragment, studies, script, capsys, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(studies["b"], copy)
    damage(copy / "seed2")
    with writes_nothing(tmp_path):  # no --out made, and the damaged folder as it was
        status, stdout, stderr = run_main(script, capsys, copy, "--out", tmp_path / "out")
    assert_refused(status, stdout, stderr, str(copy / "seed2"), fragment)


def test_a_plot_that_fails_is_a_warning_after_the_aggregate_is_written(studies, script, capsys, monkeypatch,
                                                                        tmp_path):
    def broken_plot(*args, **kwargs):
        raise ValueError("Axis limits cannot be NaN or Inf")

    monkeypatch.setattr(script, "plot_aggregate", broken_plot)
    out = tmp_path / "out"
    status, stdout, stderr = run_main(script, capsys, studies["a"], "--out", out)
    assert status == 1
    assert stderr.strip().splitlines() == [f"aggregate_seeds.py: warning: could not draw {out / 'aggregate.png'}: "
                                           "ValueError: Axis limits cannot be NaN or Inf"]
    assert json.loads((out / "aggregate.json").read_text())["seeds"] == [0, 1]
    assert f"wrote {out / 'aggregate.json'}" in stdout
