"""compare_runs (and scripts/compare_runs.py): the same command twice is the same run; any changed bit of a model,
any changed log value but the clock, and any changed figure of a summary is reported; folders that are not runs of
the same seeds are refused."""

import csv
import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
from scripttools import load_script, run_main, writes_nothing

from agents.config import DQNConfig
from agents.run import train, train_one
from agents.run.compare import CompareError, compare_runs

CONFIG = DQNConfig(hidden_sizes=(8,), batch_size=16, buffer_size=500, learning_starts=64, train_freq=4,
                   gradient_steps=1, eval_freq=100, eval_episodes=2, n_envs=2, n_step=1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, config, seed in (("a", CONFIG, 0), ("again", CONFIG, 0), ("other_seed", CONFIG, 1),
                               ("other_lr", dataclasses.replace(CONFIG, learning_rate=1e-2), 0)):
        train_one(config, "CartPole-v1", seed, root / name, 300, final_eval_episodes=2)
        out[name] = root / name
    train(CONFIG, "CartPole-v1", [0, 1], root / "batch", 300, final_eval_episodes=2)
    train(CONFIG, "CartPole-v1", [0, 1], root / "batch_again", 300, final_eval_episodes=2)
    out["batch"], out["batch_again"] = root / "batch", root / "batch_again"
    return out


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to, ignore=shutil.ignore_patterns(".lock"))
    return to


def test_the_same_command_twice_is_the_same_run(runs) -> None:
    assert compare_runs(runs["a"], runs["again"]) == []
    assert compare_runs(runs["batch"], runs["batch_again"]) == []


def test_another_learning_rate_differs_in_the_models_and_the_logs(runs) -> None:
    lines = compare_runs(runs["a"], runs["other_lr"])
    assert any(line.startswith("final.npz: array online.W1 differs") for line in lines), lines
    assert any(line.startswith("final.npz: config learning_rate is 0.0023 against 0.01") for line in lines), lines
    assert not any("train_seconds" in line for line in lines)


def test_one_changed_bit_of_one_array_is_reported_and_nothing_else(runs, tmp_path: Path) -> None:
    b = _copy(runs["a"], tmp_path / "b")
    with np.load(b / "final.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    w = arrays["online.b1"].copy()
    w[3] = np.nextafter(w[3], np.inf, dtype=w.dtype)  # the smallest change a float can make
    arrays["online.b1"] = w
    np.savez(b / "final.npz", **arrays)
    assert compare_runs(runs["a"], b) == ["final.npz: array online.b1 differs in 1 of 8 values"]


def test_a_log_value_is_compared_but_not_the_clock(runs, tmp_path: Path) -> None:
    b = _copy(runs["a"], tmp_path / "b")
    with open(b / "progress.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    fields = list(rows[0])
    rows[2]["train_seconds"] = "123.0"  # a clock: not a difference
    with open(b / "progress.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(rows)
    assert compare_runs(runs["a"], b) == []
    rows[2]["episode_return"] = str(float(rows[2]["episode_return"]) + 1)
    with open(b / "progress.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(rows)
    assert compare_runs(runs["a"], b) == [f"progress.csv: row 3 differs first in episode_return: "
                                          f"{float(rows[2]['episode_return']) - 1} against {rows[2]['episode_return']}"]


def test_a_missing_model_file_and_a_changed_summary_figure_are_reported(runs, tmp_path: Path) -> None:
    b = _copy(runs["a"], tmp_path / "b")
    (b / "best.npz").unlink()
    text = (b / "summary.json").read_text()
    (b / "summary.json").write_text(text.replace('"episodes": ', '"episodes": 1', 1))
    lines = compare_runs(runs["a"], b)
    assert lines[0] == f"best.npz: only in {runs['a'] / 'best.npz'}"
    assert len(lines) == 2 and lines[1].startswith("summary.json: episodes is ")


def test_the_script_exits_0_same_1_different_2_refused(runs, tmp_path: Path, capsys) -> None:
    script = load_script("compare_runs")
    code, out, err = run_main(script, capsys, runs["a"], runs["again"])
    assert code == 0 and "the same run" in out and err == ""
    code, out, err = run_main(script, capsys, runs["a"], runs["other_seed"], "--max-lines", "2")
    lines = out.strip().splitlines()
    assert code == 1 and len(lines) == 3 and lines[-1].endswith("the first 2 shown") and err == ""
    with writes_nothing(tmp_path):
        for argv in ([str(runs["a"]), str(runs["batch"])], [str(runs["batch"]), str(tmp_path)],
                     [str(runs["a"]), str(tmp_path / "missing")], [str(runs["a"]), str(runs["a"]), "--max-lines", "0"]):
            code, out, err = run_main(script, capsys, *argv)
            assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "error:" in err, argv


def test_runs_of_other_seeds_or_layouts_are_refused(runs, tmp_path: Path) -> None:
    with pytest.raises(CompareError, match="a single run"):
        compare_runs(runs["a"], runs["batch"])
    broken = _copy(runs["a"], tmp_path / "broken")
    (broken / "final.npz").write_bytes(b"not a zip")
    with pytest.raises(CompareError, match="cannot read"):
        compare_runs(runs["a"], broken)
