"""scripts/bench_update.py, run the way a user types it: it exits 0, prints a table with one row per size, dtype
and batch, writes the same figures to --json, the library and reference updates match, and it leaves no files
behind. Timings are only checked to be positive, never compared."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SIZES = ["4-64-2", "4-64-64-2", "4-256-256-2"]
DTYPES = ["float32", "float64"]
BATCHES = [64, 128]


def test_quick_run_prints_a_table_and_writes_json_for_every_configuration(tmp_path: Path) -> None:
    out_path = tmp_path / "out" / "bench.json"
    out_path.parent.mkdir()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(scratch)}
    proc = subprocess.run(
        [sys.executable, "scripts/bench_update.py", "--quick", "--json", str(out_path)],
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
    entries = {(r["size"], r["dtype"], r["batch"]): r for r in record["results"]}
    assert set(entries) == {(s, d, b) for s in SIZES for d in DTYPES for b in BATCHES}
    for (size, dtype, batch), r in entries.items():
        assert r["library_us"] > 0 and r["reference_us"] > 0
        pairs = sorted(a / b for a, b in zip(r["library_us_repeats"], r["reference_us_repeats"], strict=True))
        assert pairs[0] <= r["ratio"] <= pairs[-1]  # the median of the paired ratios
        assert len(r["library_us_repeats"]) == len(r["reference_us_repeats"]) == record["repeats"]
        row = next(line.split() for line in lines if line.split()[:3] == [size, dtype, str(batch)])
        assert float(row[3]) == round(r["library_us"], 1) and float(row[5]) == round(r["ratio"], 2)
