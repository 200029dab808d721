"""scripts/bench_envs.py, run the way a user types it: it exits 0 and writes a record for every case.
Timings are only checked to be positive, never compared."""

import json
import os
import subprocess
import sys
from pathlib import Path

from scripttools import writes_nothing

REPO = Path(__file__).resolve().parents[2]
CASES = {("CartPole-v1", "cartpole-vector", e) for e in (1, 4, 16, 32, 64)} | {
    (env_id, backend, e)
    for env_id, kernel in (("Acrobot-v1", "acrobot-numpy"), ("MountainCar-v0", "mountaincar-numpy"))
    for backend in (kernel, "sync")
    for e in (1, 16)
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
    # the kernels' targets at E = 16, each beside the sync backend's figure from the same run
    assert {(t["env_id"], t["n_envs"]) for t in record["targets"]} == {("Acrobot-v1", 16), ("MountainCar-v0", 16)}
    by_case = {(r["env_id"], r["backend"], r["n_envs"]): r["transition_us"] for r in record["results"]}
    for t in record["targets"]:
        kernel = {"Acrobot-v1": "acrobot-numpy", "MountainCar-v0": "mountaincar-numpy"}[t["env_id"]]
        assert t["kernel_us"] == by_case[(t["env_id"], kernel, 16)]
        assert t["sync_us"] == by_case[(t["env_id"], "sync", 16)]
        assert t["met"] == (t["kernel_us"] <= t["target_us"])
        assert f"target {t['env_id']} E=16: kernel " in proc.stdout


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    for flags in (["--steps", "0"], ["--json", str(tmp_path / "missing" / "bench.json")]):
        with writes_nothing(tmp_path):  # run from an empty folder: it stays empty, no missing/ made
            proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_envs.py"), *flags], cwd=tmp_path,
                                  env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                                  timeout=60)
        assert proc.returncode == 2 and proc.stdout == "", flags
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("bench_envs.py: error: "), proc.stderr
