"""scripts/bench_update.py, run the way a user types it: it exits 0, writes a complete JSON record, and the
library and reference steps match. Timings are only checked to be positive, never compared."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SIZES = ["4-64-2", "4-128-2", "4-256-2", "4-256-256-2"]
DTYPES = ["float32", "float64"]


def test_quick_run_writes_json_for_every_size_and_dtype(tmp_path: Path) -> None:
    out_path = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "scripts/bench_update.py", "--quick", "--json", str(out_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

    record = json.loads(out_path.read_text())
    assert record["match"] == {size: True for size in SIZES}
    assert proc.stdout.count(": match (") == len(SIZES)
    assert "MISMATCH" not in proc.stdout

    entries = {(r["size"], r["dtype"]): r for r in record["results"]}
    assert set(entries) == {(s, d) for s in SIZES for d in DTYPES}
    for r in entries.values():
        assert r["library_us"] > 0 and r["reference_us"] > 0 and r["ratio"] > 0
        assert len(r["library_us_repeats"]) == len(r["reference_us_repeats"]) == record["repeats"]

    last_line = proc.stdout.strip().splitlines()[-1]
    assert json.loads(last_line) == record  # the printed JSON line is the one written to --json
