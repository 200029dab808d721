"""scripts/bench_envs.py, run the way a user types it: it exits 0 and writes a record for every case.
Timings are only checked to be positive, never compared."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CASES = {("CartPole-v1", "cartpole-vector", e) for e in (1, 4, 16, 32, 64)} | {
    ("Acrobot-v1", "sync", e) for e in (1, 16)
}


def test_quick_run_writes_json_for_every_case(tmp_path: Path) -> None:
    out_path = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "scripts/bench_envs.py", "--quick", "--json", str(out_path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

    record = json.loads(out_path.read_text())
    assert {(r["env_id"], r["backend"], r["n_envs"]) for r in record["results"]} == CASES
    for r in record["results"]:
        assert r["call_us"] > 0 and r["transition_us"] > 0 and len(r["call_us_repeats"]) == record["repeats"]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == record  # the printed JSON line is the one written
