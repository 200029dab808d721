"""Microseconds per DQN training step: the dqn_np library against a minimal straight-line NumPy reference.

One step = online forward on 64 states, target forward on the 64 next states, the TD target
`y = r + gamma * (1 - terminated) * max_a Q_target(s', a)`, `td_loss` (mse), `MLP.backward`, `clip_grad_norm`
(max norm 10) and `Adam.step`; the reference (`scripts/_reference_step.py`) does the same math with plain arrays.
Both run on one BLAS thread and on the same fixed pool of pre-generated batches, so sampling cost is excluded.
Before timing, each network size is checked: from the same initial weights, a few float64 steps of library and
reference must give the same parameters (rtol 1e-10), or the script exits 1.

Usage:
    PYTHONPATH=. python scripts/bench_update.py [--steps 2000] [--repeats 7] [--json PATH] [--quick]
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one BLAS thread; must be set before numpy is imported

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import _reference_step as ref  # noqa: E402  (scripts/ is on sys.path when this file is run as a script)
import numpy as np  # noqa: E402

from dqn_np import MLP, Adam, clip_grad_norm, td_loss  # noqa: E402

SIZES = ((4, 64, 2), (4, 128, 2), (4, 256, 2), (4, 256, 256, 2))
DTYPES = ("float32", "float64")
BATCH = 64
GAMMA = 0.99
LR = 1e-3
MAX_NORM = 10.0
POOL_BATCHES = 64
MATCH_STEPS = 5
MATCH_RTOL = 1e-10

Batch = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def make_pool(sizes: tuple[int, ...], dtype: str, seed: int) -> list[Batch]:
    """`POOL_BATCHES` batches `(states, actions, rewards, next_states, terminated)`, the same values for every dtype.

    Rewards are drawn with a spread of 3 so that some early steps exceed the clipping norm (the clip path is timed
    and checked, not just the no-op branch).
    """
    rng = np.random.default_rng(seed)
    n_in, n_actions = sizes[0], sizes[-1]
    pool = []
    for _ in range(POOL_BATCHES):
        states = rng.standard_normal((BATCH, n_in)).astype(dtype)
        actions = rng.integers(0, n_actions, size=BATCH)  # int64, as the replay buffer stores them
        rewards = (3.0 * rng.standard_normal(BATCH)).astype(dtype)
        next_states = rng.standard_normal((BATCH, n_in)).astype(dtype)
        terminated = (rng.random(BATCH) < 0.1).astype(dtype)
        pool.append((states, actions, rewards, next_states, terminated))
    return pool


def library_step(online: MLP, target: MLP, adam: Adam, batch: Batch) -> float:
    """One DQN update of `online` through the dqn_np API; returns the gradient norm before clipping."""
    states, actions, rewards, next_states, terminated = batch
    q_values = online.forward(states)
    q_next = target.forward(next_states)
    td_target = rewards + GAMMA * (1.0 - terminated) * q_next.max(axis=1)
    _, delta2 = td_loss(q_values, actions, td_target, kind="mse")
    online.backward(delta2)
    norm = clip_grad_norm(online.grads, MAX_NORM)
    adam.step(online.params, online.grads)
    return norm


def make_steppers(sizes: tuple[int, ...], dtype: str, seed: int) -> tuple[Callable, Callable, MLP, list[np.ndarray]]:
    """Library and reference step functions `batch -> ...` starting from the same initial weights.

    Returns:
        `(library, reference, online_mlp, reference_params)`; the last two are updated in place by the steps.
    """
    online = MLP(sizes, rng=np.random.default_rng(seed), dtype=dtype)
    target = MLP(sizes, rng=np.random.default_rng(seed + 1), dtype=dtype)
    adam = Adam(lr=LR)
    params = [p.copy() for p in online.params.values()]
    target_params = [p.copy() for p in target.params.values()]
    ref_adam = ref.init_adam(params)

    def library(batch: Batch) -> float:
        return library_step(online, target, adam, batch)

    def reference(batch: Batch) -> float:
        return ref.train_step(params, target_params, ref_adam, batch, gamma=GAMMA, lr=LR, max_norm=MAX_NORM)

    return library, reference, online, params


def check_match(sizes: tuple[int, ...], seed: int) -> tuple[bool, float, int]:
    """Run `MATCH_STEPS` float64 steps of both; returns (all params allclose, max relative diff, steps clipped)."""
    library, reference, online, params = make_steppers(sizes, "float64", seed)
    pool = make_pool(sizes, "float64", seed)
    clipped = 0
    for batch in pool[:MATCH_STEPS]:
        clipped += library(batch) > MAX_NORM
        reference(batch)
    pairs = list(zip(online.params.values(), params, strict=True))
    ok = all(np.allclose(a, b, rtol=MATCH_RTOL, atol=0.0) for a, b in pairs)
    max_rel = max(float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300))) for a, b in pairs)
    return ok, max_rel, clipped


def mean_step_seconds(step: Callable, pool: list[Batch], steps: int) -> float:
    """Mean wall time of one `step(batch)` over `steps` calls cycling through `pool` (garbage collector off)."""
    n = len(pool)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for i in range(steps):
            step(pool[i % n])
        return (time.perf_counter() - start) / steps
    finally:
        if gc_was_enabled:
            gc.enable()


def bench(sizes: tuple[int, ...], dtype: str, steps: int, repeats: int, warmup: int, seed: int) -> dict:
    """Median over `repeats` of the mean µs per step, library and reference repeats interleaved (ABAB...)."""
    library, reference, _, _ = make_steppers(sizes, dtype, seed)
    pool = make_pool(sizes, dtype, seed)
    mean_step_seconds(library, pool, warmup)
    mean_step_seconds(reference, pool, warmup)
    lib_us, ref_us = [], []
    for _ in range(repeats):
        lib_us.append(1e6 * mean_step_seconds(library, pool, steps))
        ref_us.append(1e6 * mean_step_seconds(reference, pool, steps))
    lib, rf = statistics.median(lib_us), statistics.median(ref_us)
    return {
        "size": "-".join(map(str, sizes)),
        "dtype": dtype,
        "library_us": lib,
        "reference_us": rf,
        "ratio": lib / rf,
        "library_us_repeats": lib_us,
        "reference_us_repeats": ref_us,
    }


def thread_info() -> dict:
    """The thread variables set above, numpy's BLAS, and threadpoolctl's view of it when that package is installed."""
    info: dict = {var: os.environ.get(var) for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    info["numpy"] = np.__version__
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # the config layout is not a stable API; the benchmark does not depend on it
        info["blas"] = "unknown"
    try:
        from threadpoolctl import threadpool_info

        info["threadpools"] = [(p["internal_api"], p["num_threads"]) for p in threadpool_info()]
    except ImportError:
        info["threadpools"] = "threadpoolctl not installed"
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per implementation (median reported)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the batch pool")
    parser.add_argument("--json", metavar="PATH", help="also write the JSON line to PATH")
    parser.add_argument("--quick", action="store_true", help="tiny run (20 steps, 2 repeats) for smoke tests")
    args = parser.parse_args(argv)
    steps, repeats = (20, 2) if args.quick else (args.steps, args.repeats)
    if steps < 1 or repeats < 1:
        parser.error(f"--steps and --repeats must be >= 1, got {steps} and {repeats}")
    warmup = max(steps // 10, 5)

    threads = thread_info()
    print("threads:", ", ".join(f"{k}={v}" for k, v in threads.items()))

    match = {}
    for sizes in SIZES:
        ok, max_rel, clipped = check_match(sizes, args.seed)
        name = "-".join(map(str, sizes))
        match[name] = ok
        verdict = "match" if ok else "MISMATCH"
        print(f"{name:<12} float64 {MATCH_STEPS} steps ({clipped} clipped): {verdict} (max rel diff {max_rel:.1e})")
    if not all(match.values()):
        print("library and reference disagree; timings would compare different steps", file=sys.stderr)
        return 1

    print(f"\nµs per step (batch {BATCH}; median of {repeats} repeats x {steps} steps, ABAB)")
    print(f"{'size':<12} {'dtype':<8} {'library µs':>11} {'reference µs':>13} {'lib/ref':>8}")
    results = []
    for sizes in SIZES:
        for dtype in DTYPES:
            r = bench(sizes, dtype, steps, repeats, warmup, args.seed)
            results.append(r)
            print(f"{r['size']:<12} {dtype:<8} {r['library_us']:>11.1f} {r['reference_us']:>13.1f} {r['ratio']:>8.2f}")

    record = {
        "steps": steps,
        "repeats": repeats,
        "batch": BATCH,
        "threads": threads,
        "match": match,
        "results": results,
    }
    line = json.dumps(record)
    print(line)
    if args.json:
        with open(args.json, "w") as f:
            f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
