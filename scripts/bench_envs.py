"""Microseconds per `VecEnv.step` call and per transition, for several numbers of envs E.

Actions are drawn in advance (uniform over the action space, seeded), so only `VecEnv.step` is timed, including the
resets of the episodes that end (random actions end CartPole episodes every ~22 steps). CartPole-v1 runs on the
"cartpole-vector" backend, Acrobot-v1 on "sync". Each figure is the median over repeats of the mean over `--steps`
calls, with the garbage collector off.

Usage:
    PYTHONPATH=. python scripts/bench_envs.py [--steps 2000] [--repeats 5] [--json PATH] [--quick]
"""

import argparse
import gc
import json
import statistics
import sys
import time

import numpy as np

from envs import VecEnv

CASES = (("CartPole-v1", (1, 4, 16, 32, 64)), ("Acrobot-v1", (1, 16)))
"""(env id, values of E) to time."""


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


def bench(env_id: str, n_envs: int, steps: int, repeats: int, seed: int) -> dict:
    """Median over `repeats` of the mean µs per `step` call on `n_envs` copies of `env_id`."""
    venv = VecEnv(env_id, n_envs, np.random.default_rng(seed))
    actions = np.random.default_rng(seed + 1).integers(venv.n_actions, size=(steps, n_envs))
    venv.reset()
    mean_step_seconds(venv, actions[: max(steps // 10, 5)])  # warm-up
    per_call = [1e6 * mean_step_seconds(venv, actions) for _ in range(repeats)]
    venv.close()
    call_us = statistics.median(per_call)
    return {
        "env_id": env_id,
        "backend": venv.backend,
        "n_envs": n_envs,
        "call_us": call_us,
        "transition_us": call_us / n_envs,
        "call_us_repeats": per_call,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="step calls per timed repeat")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per case (median reported)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the episode seeds and the actions")
    parser.add_argument("--json", metavar="PATH", help="also write the JSON line to PATH")
    parser.add_argument("--quick", action="store_true", help="tiny run (20 steps, 2 repeats) for smoke tests")
    args = parser.parse_args(argv)
    steps, repeats = (20, 2) if args.quick else (args.steps, args.repeats)
    if steps < 1 or repeats < 1:
        parser.error(f"--steps and --repeats must be >= 1, got {steps} and {repeats}")

    print(f"VecEnv.step, random actions (median of {repeats} repeats x {steps} calls)")
    print(f"{'env':<12} {'backend':<16} {'E':>3} {'µs/call':>9} {'µs/transition':>14}")
    results = []
    for env_id, n_envs_list in CASES:
        for n_envs in n_envs_list:
            r = bench(env_id, n_envs, steps, repeats, args.seed)
            results.append(r)
            print(f"{env_id:<12} {r['backend']:<16} {n_envs:>3} {r['call_us']:>9.1f} {r['transition_us']:>14.2f}")

    line = json.dumps({"steps": steps, "repeats": repeats, "numpy": np.__version__, "results": results})
    print(line)
    if args.json:
        with open(args.json, "w") as f:
            f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
