"""scripts/bench_seeds.py and scripts/aggregate_seeds.py, run the way a user types them, on tiny budgets."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from scripttools import JSON_REFUSALS, load_script, make_output_paths, writes_nothing

REPO = Path(__file__).resolve().parents[2]
TINY = ["--total-steps", "400", "--n-envs", "4", "--learning-starts", "200", "--eval-freq", "200",
        "--eval-episodes", "2", "--hidden-sizes", "8", "--batch-size", "16"]


def run(script: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(REPO / "scripts" / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_bench_seeds_prints_a_row_per_configuration_the_ratio_and_the_floor(tmp_path: Path) -> None:
    json_path = tmp_path / "bench.json"
    proc = run("bench_seeds.py", "--members", "1", "2", "--sequential", "2", "--repeats", "1", *TINY,
               "--json", str(json_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for label in ("S=1 batch", "S=2 batch", "2 sequential"):
        assert re.search(rf"^\s*{label}\s+\d", out, flags=re.M), out
    ratio = re.search(r"2 seeds in one process / 2 single runs one after another: ([\d.]+)", out)
    assert ratio and 0 < float(ratio[1]) < 10
    floor = re.search(r"floor of one member-update at S=2: (\d+) FLOP \(([\d.]+) MFLOP\)", out)
    assert floor, out
    # 2 x B x (3 forward passes + backward) multiply-adds of a 4-8-2 net with B = 16: 6656 FLOP, exactly (the
    # MFLOP figure, 0.01, is too coarse to test: any count from 5,000 to 14,999 prints as 0.01)
    macs = 4 * 8 + 8 * 2
    assert int(floor[1]) == 2 * 16 * (3 * macs + macs + 8 * 2) == 6656
    assert floor[2] == "0.01"
    figures = json.loads(json_path.read_text())
    rows = figures["rows"]
    assert set(rows) == {"batch-1", "batch-2", "sequential-2"}
    for name, row in rows.items():
        n = int(name.split("-")[1])
        assert row["transitions_per_second"] == pytest.approx(n * 400 / row["wall"])
        assert row["peak_rss_mb"] > 10


def test_bench_seeds_refuses_bad_counts(tmp_path: Path) -> None:
    with writes_nothing(tmp_path):  # run from an empty folder: no b.json, nothing else
        proc = run("bench_seeds.py", "--members", "0", "--repeats", "1", "--json", str(tmp_path / "b.json"),
                   cwd=tmp_path)
    assert proc.returncode == 2 and "--members" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1


@pytest.fixture(scope="module")
def bench_seeds():
    """scripts/bench_seeds.py as a module, to run `main` in-process."""
    return load_script("bench_seeds")


@pytest.mark.parametrize(("args", "fragment"), [
    *JSON_REFUSALS,
    (["--env-id", "NoSuchEnv-v0"], "NoSuchEnv-v0"),
    (["--members", str(10**6)], "--members must be in [1, 4096]"),
    (["--child", "x", "1", "1", "CartPole-v1", "{}"], "--child is internal"),
], ids=["json-missing-folder", "json-a-folder", "json-under-a-file", "json-name-too-long", "json-exists",
        "unknown-env", "members-huge", "bad-child"])
def test_bench_seeds_checks_outputs_and_inputs_before_any_child_runs(args, fragment, bench_seeds, capsys, monkeypatch,
                                                                     tmp_path):
    monkeypatch.chdir(tmp_path)
    make_output_paths(tmp_path)
    monkeypatch.setattr(bench_seeds.subprocess, "run", lambda *a, **k: pytest.fail("a child ran despite bad input"))
    with writes_nothing(tmp_path), pytest.raises(SystemExit) as exc:
        bench_seeds.main(["--members", "1", "--repeats", "1", *args])
    out, err = capsys.readouterr()
    assert exc.value.code == 2 and out == "" and err.count("\n") == 1 and fragment in err, err


def test_a_failing_child_is_one_line_and_status_1(bench_seeds, capsys, monkeypatch, tmp_path):
    def failing_child(*args, **kwargs):
        return subprocess.CompletedProcess(args, 1, stdout="", stderr="Traceback ...\nMemoryError: no room")

    monkeypatch.setattr(bench_seeds.subprocess, "run", failing_child)
    assert bench_seeds.main(["--members", "1", "--repeats", "1", "--json", str(tmp_path / "b.json")]) == 1
    out, err = capsys.readouterr()
    assert err == "bench_seeds.py: error: the batch run of 1 seed(s) failed (status 1): MemoryError: no room\n"
    assert list(tmp_path.iterdir()) == []


def test_flops_count_matches_the_layers() -> None:
    spec = importlib.util.spec_from_file_location("bench_seeds_under_test", REPO / "scripts" / "bench_seeds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sizes = (4, 64, 64, 2)
    macs = 4 * 64 + 64 * 64 + 64 * 2
    backward = macs + 64 * 64 + 64 * 2  # dW of every layer, dL/dx of all but the first
    assert module.flops_per_member_update(sizes, 128, True) == 2 * 128 * (3 * macs + backward)
    assert module.flops_per_member_update(sizes, 128, False) == 2 * 128 * (2 * macs + backward)


def test_aggregate_seeds_joins_two_batches_into_one_aggregate(tmp_path: Path) -> None:
    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "joined"
    common = [*TINY, "--no-progress", "--final-eval-episodes", "3"]
    for folder, seeds in ((a, "0-1"), (b, "2")):
        proc = run("train_seeds.py", "--seeds", seeds, "--out", str(folder), "--preset", "none", *common)
        assert proc.returncode == 0, proc.stderr
    proc = run("aggregate_seeds.py", str(a), str(b), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    joined = json.loads((out / "aggregate.json").read_text())
    assert joined["seeds"] == [0, 1, 2] and joined["fraction_solved"]["n"] == 3
    per_seed = [json.loads((f / f"seed{k}" / "summary.json").read_text()) for f, k in ((a, 0), (a, 1), (b, 2))]
    assert joined["failed_seeds"] == [s["seed"] for s in per_seed if not s["solved"]]
    best = sorted(s["best_eval_mean"] for s in per_seed)
    assert joined["best_eval_mean"]["median"]["value"] == pytest.approx(best[1])
    assert "3 seeds from 2 folder(s)" in proc.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    with writes_nothing(tmp_path):  # no twice/ or none/, and the batches as they were
        again = run("aggregate_seeds.py", str(a), str(a), "--out", str(tmp_path / "twice"))
        nothing = run("aggregate_seeds.py", str(empty), "--out", str(tmp_path / "none"))
    assert again.returncode == 2 and "seed 0" in again.stderr and "already" in again.stderr
    assert nothing.returncode == 2 and "no finished run" in nothing.stderr

