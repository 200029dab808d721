"""scripts/bench_update.py, run the way a user types it: it exits 0, prints a table with one row per size, dtype
and batch, writes the same figures to --json, the library and reference updates match, and it leaves no files
behind. Timings are only checked to be positive and consistent with each other (the floor is a sum of the matmul
times, the phases lie inside the clocked updates), never compared with a speed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SIZES = ["4-64-2", "4-64-64-2", "4-256-256-2"]
PHASES = ["check", "target", "online_forward", "loss", "backward", "clip", "optimizer", "sync", "metrics"]
DTYPES = ["float32", "float64"]
BATCHES = [64, 128]


def update_mflop(size: str, batch: int) -> float:
    """Three forward passes, dW for every layer, dL/dh for all but the first: 2 B (3 M + M + M - n_0 n_1)."""
    n = [int(w) for w in size.split("-")]
    macs = sum(a * b for a, b in zip(n[:-1], n[1:], strict=True))
    return 2 * batch * (5 * macs - n[0] * n[1]) / 1e6


@pytest.mark.parametrize("stacked", [False, True])
def test_quick_run_prints_a_table_and_writes_json_for_every_configuration(tmp_path: Path, stacked: bool) -> None:
    out_path = tmp_path / "out" / "bench.json"
    out_path.parent.mkdir()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(scratch)}
    proc = subprocess.run(
        [sys.executable, "scripts/bench_update.py", "--quick", "--json", str(out_path), *["--stacked"] * stacked],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(scratch.iterdir()) == [] and list(out_path.parent.iterdir()) == [out_path]

    lines = proc.stdout.splitlines()
    assert "about" in lines[1] and lines[1].endswith(" s")  # the expected duration comes first
    assert proc.stdout.count(": match (") == len(SIZES)
    assert "MISMATCH" not in proc.stdout
    assert not any(line.lstrip().startswith("{") for line in lines)  # a table on stdout, JSON only in the file

    record = json.loads(out_path.read_text())
    assert record["match"] == {size: True for size in SIZES}
    assert record["stacked"] is stacked and record["phases"] == PHASES
    entries = {(r["size"], r["dtype"], r["batch"]): r for r in record["results"]}
    assert set(entries) == {(s, d, b) for s in SIZES for d in DTYPES for b in BATCHES}
    for (size, dtype, batch), r in entries.items():
        assert r["library_us"] > 0 and r["reference_us"] > 0
        pairs = sorted(a / b for a, b in zip(r["library_us_repeats"], r["reference_us_repeats"], strict=True))
        assert pairs[0] <= r["ratio"] <= pairs[-1]  # the median of the paired ratios
        assert len(r["library_us_repeats"]) == len(r["reference_us_repeats"]) == record["repeats"]
        row, phase_row = (line.split() for line in lines if line.split()[:3] == [size, dtype, str(batch)])
        assert float(row[3]) == round(r["library_us"], 1) and float(row[5]) == round(r["ratio"], 2)

        # the floor: the FLOP formula, each matmul shape once with its count, their times summed
        assert r["mflop"] == pytest.approx(update_mflop(size, batch), rel=1e-12)
        n_layers = size.count("-")
        assert sum(m["count"] for m in r["matmuls"]) == 3 * n_layers + 2 * n_layers - 1  # 3 passes; dW, dx
        flops = sum(2 * m["count"] * m["shape"][0] * m["shape"][1] * m["shape"][2] for m in r["matmuls"])
        assert flops / 1e6 == pytest.approx(r["mflop"], rel=1e-12)  # the matmuls are the FLOPs counted
        assert r["floor_us"] == pytest.approx(sum(m["count"] * m["us"] for m in r["matmuls"]), rel=1e-12)
        assert r["gflops"] == pytest.approx(1e3 * r["mflop"] / r["floor_us"], rel=1e-12)  # MFLOP/µs = 1e3 GFLOP/s
        assert all(m["us"] > 0 for m in r["matmuls"]) and 0 < r["floor_us"] < r["library_us"]
        assert r["floor_ratio"] == pytest.approx(r["library_us"] / r["floor_us"], rel=1e-12)
        assert [float(x) for x in row[6:]] == [round(r["mflop"], 2), round(r["gflops"], 1), round(r["floor_us"], 1),
                                               round(r["floor_ratio"], 2)]

        # the phases: every one present, none negative, inside the clocked updates' wall time, and printed
        assert list(r["phases_us"]) == PHASES and min(r["phases_us"].values()) >= 0
        assert 0 < sum(r["phases_us"].values()) <= r["clocked_us"]
        assert [float(x) for x in phase_row[3:]] == [round(r["phases_us"][p], 1) for p in PHASES] + [
            round(r["clocked_us"], 1)]
