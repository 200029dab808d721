"""Microseconds per `VecEnv.step` call and per transition, per backend, for several numbers of envs E.

Actions are drawn in advance (uniform over the action space, seeded), so only `VecEnv.step` is timed, including the
resets of the episodes that end (random actions end CartPole episodes every ~22 steps; Acrobot and MountainCar ones
at their time limits, 500 and 200 steps). CartPole-v1 runs on the "cartpole-vector" backend; Acrobot-v1 and
MountainCar-v0 run on their NumPy kernels ("acrobot-numpy", "mountaincar-numpy") and on Gymnasium's synchronous
vector env ("sync", `backend="gymnasium"`), side by side. The repeats of all cases are interleaved, so a change in the
machine's load hits every case alike; each figure is the median over repeats of the mean over `--steps` calls, with
the garbage collector off. The kernels' targets at E = 16 are printed with the figures.

Usage:
    PYTHONPATH=. python scripts/bench_envs.py [--steps 2000] [--repeats 5] [--json PATH] [--quick]
"""

import gc
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from agents.run.aggregate import check_output_file
from agents.run.checkpoint import atomic_open
from agents.run.cli import OneLineParser, fail, path_arg
from agents.run.entry import run_command  # noqa: E402
from agents.validate import MAX_SEED
from envs import VecEnv

CASES = (
    ("CartPole-v1", "auto", (1, 4, 16, 32, 64)),
    ("Acrobot-v1", "auto", (1, 16)),
    ("Acrobot-v1", "gymnasium", (1, 16)),
    ("MountainCar-v0", "auto", (1, 16)),
    ("MountainCar-v0", "gymnasium", (1, 16)),
)
"""(env id, `VecEnv` backend argument, values of E) to time."""
TARGETS = {("MountainCar-v0", 16): 5.0, ("Acrobot-v1", 16): 8.0}
"""(env id, E) -> the kernel's target, µs per transition (issue 17)."""


def mean_step_seconds(venv: VecEnv, actions: np.ndarray) -> float:
    """Mean wall time of `venv.step(a)` over the rows `a` of `actions: (T, E)`, garbage collector off."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for a in actions:
            venv.step(a)
        return (time.perf_counter() - start) / len(actions)
    finally:
        if gc_was_enabled:
            gc.enable()


def bench(steps: int, repeats: int, seed: int) -> list[dict]:
    """One record per (case, E): the median over `repeats` interleaved repeats of the mean µs per `step` call."""
    runs = []
    for env_id, backend, n_envs_list in CASES:
        for n_envs in n_envs_list:
            venv = VecEnv(env_id, n_envs, np.random.default_rng(seed), backend=backend)
            actions = np.random.default_rng(seed + 1).integers(venv.n_actions, size=(steps, n_envs))
            venv.reset()
            mean_step_seconds(venv, actions[: max(steps // 10, 5)])  # warm-up
            runs.append((venv, actions, []))
    for _ in range(repeats):
        for venv, actions, per_call in runs:
            per_call.append(1e6 * mean_step_seconds(venv, actions))
    results = []
    for venv, _actions, per_call in runs:
        venv.close()
        call_us = statistics.median(per_call)
        results.append({
            "env_id": venv.name,
            "backend": venv.backend,
            "n_envs": venv.n_envs,
            "call_us": call_us,
            "transition_us": call_us / venv.n_envs,
            "call_us_repeats": per_call,
        })
    return results


def targets(results: list[dict]) -> list[dict]:
    """The kernel against its target and against the sync backend, for each (env id, E) in `TARGETS`."""
    rows = []
    for (env_id, n_envs), target_us in TARGETS.items():
        per_backend = {r["backend"]: r["transition_us"] for r in results
                       if (r["env_id"], r["n_envs"]) == (env_id, n_envs)}
        kernel_us = next(us for backend, us in per_backend.items() if backend != "sync")
        rows.append({"env_id": env_id, "n_envs": n_envs, "target_us": target_us, "kernel_us": kernel_us,
                     "sync_us": per_backend["sync"], "speedup": per_backend["sync"] / kernel_us,
                     "met": kernel_us <= target_us})
    return rows


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


MAX_STEPS = 1_000_000
"""Most step calls per repeat (a larger figure is a typo, not a benchmark: 10**6 calls already take minutes)."""
MAX_REPEATS = 1_000


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="bench_envs.py", description=__doc__.splitlines()[0],
                           epilog="exit status: 0 done; 1 the JSON file could not be written after the timing; 2 bad "
                                  "input (one line, nothing written)")
    parser.add_argument("--steps", type=int, default=2000, help=f"step calls per timed repeat, 1 to {MAX_STEPS} "
                        "(default 2000)")
    parser.add_argument("--repeats", type=int, default=5, help=f"timed repeats per case (median reported), 1 to "
                        f"{MAX_REPEATS} (default 5)")
    parser.add_argument("--seed", type=int, default=0,
                        help=f"seed of the episode seeds and the actions, 0 to {MAX_SEED} (default 0)")
    parser.add_argument("--json", type=path_arg, metavar="PATH",
                        help="also write the JSON line to PATH (default: no file)")
    parser.add_argument("--force", action="store_true", help="let --json replace an existing file")
    parser.add_argument("--quick", action="store_true", help="tiny run (20 steps, 2 repeats) for smoke tests")
    args = parser.parse_args(argv)
    steps, repeats = (20, 2) if args.quick else (args.steps, args.repeats)
    if not (1 <= steps <= MAX_STEPS and 1 <= repeats <= MAX_REPEATS):
        fail(parser.prog, f"--steps must be 1 to {MAX_STEPS} and --repeats 1 to {MAX_REPEATS}, got {steps} and "
                          f"{repeats}")
    if not 0 <= args.seed <= MAX_SEED:
        fail(parser.prog, f"--seed must be 0 to {MAX_SEED}, got {args.seed}")
    if args.json:
        try:
            check_output_file("--json", args.json, args.force)
        except ValueError as e:
            fail(parser.prog, str(e))

    cpu = cpu_name()
    print(f"VecEnv.step, random actions (median of {repeats} interleaved repeats x {steps} calls) on {cpu}")
    results = bench(steps, repeats, args.seed)
    print(f"{'env':<15} {'backend':<18} {'E':>3} {'µs/call':>9} {'µs/transition':>14}")
    for r in results:
        print(f"{r['env_id']:<15} {r['backend']:<18} {r['n_envs']:>3} {r['call_us']:>9.1f} {r['transition_us']:>14.2f}")
    rows = targets(results)
    for t in rows:
        print(f"target {t['env_id']} E={t['n_envs']}: kernel {t['kernel_us']:.2f} µs/transition <= {t['target_us']:g}"
              f" {'met' if t['met'] else 'NOT MET'} (sync {t['sync_us']:.2f}, {t['speedup']:.1f}x faster)")

    record = {"steps": steps, "repeats": repeats, "numpy": np.__version__, "cpu": cpu, "results": results,
              "targets": rows}
    line = json.dumps(record)
    print(line)
    if args.json:
        try:
            with atomic_open(args.json, "w") as f:
                f.write(line + "\n")
        except OSError as err:
            print(f"{parser.prog}: error: cannot write {args.json}: {err.strerror or err}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    run_command(main, "bench_envs.py", lambda: "nothing was written")
