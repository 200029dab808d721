"""Microseconds per DQN update: `DQNAgent.update` against a lean straight-line NumPy reference.

One update, both sides: the Double DQN target `y = r + discount * Q'(s', argmax_a Q(s', a))` (target pass and
online pass on s'), the online pass on s, the Huber TD loss (delta 1, the agent's default), backward, clipping by
global norm 10, an Adam step, and a hard target copy every 128 updates. The library side is `DQNAgent.update` itself,
its batch check, divergence checks and metrics dict included. The reference (`scripts/_reference_step.py`)
preallocates every activation, writes with `out=`, and keeps parameters, gradients and Adam moments in flat buffers.
Both run on one BLAS thread over the same fixed pool of pre-generated batches (sampling excluded), interleaved
repeat by repeat (ABAB...), with the garbage collector off while timing. The µs figures are medians over the
repeats; the ratio is the median of the per-repeat ratios (library repeat / the reference repeat right after it), which
cancels most of the drift of a shared machine.

Before timing, every network size is checked: from the same weights (target different from online), a few float64
updates of library and reference, at batch 64 and then 128, must give the same parameters (rtol 1e-10), or the
script exits 1.

Usage:
    PYTHONPATH=. python scripts/bench_update.py [--steps 300] [--repeats 15] [--json PATH] [--quick]
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

from agents.algo.dqn import DQNAgent  # noqa: E402
from agents.config import DQNConfig  # noqa: E402
from agents.data.replay import Batch  # noqa: E402

SIZES = ((4, 64, 2), (4, 64, 64, 2), (4, 256, 256, 2))
DTYPES = ("float32", "float64")
BATCHES = (64, 128)
GAMMA = 0.99
LR = 1e-3
MAX_NORM = 10.0
TARGET_UPDATE_INTERVAL = 128
POOL_BATCHES = 32
MATCH_STEPS = 4  # per batch size, with the target copied every MATCH_SYNC updates
MATCH_SYNC = 3
MATCH_MAX_NORM = 1.5  # the Huber gradient rarely reaches 10: a lower threshold makes the check clip some updates
MATCH_RTOL = 1e-10


def name_of(sizes: tuple[int, ...]) -> str:
    return "-".join(map(str, sizes))


def make_pool(sizes: tuple[int, ...], dtype: str, batch: int, seed: int) -> list[Batch]:
    """`POOL_BATCHES` batches of B transitions, the same values for every dtype.

    Rewards have a spread of 3, so early updates exceed the clipping norm and the TD errors fall on both sides of
    Huber's delta; one transition in ten is terminal (discount 0), the others discount by gamma or gamma^3.
    """
    rng = np.random.default_rng(seed)
    n_in, n_actions = sizes[0], sizes[-1]
    pool = []
    for _ in range(POOL_BATCHES):
        discounts = np.where(rng.random(batch) < 0.1, 0.0, GAMMA ** rng.choice([1, 3], size=batch))
        pool.append(Batch(
            obs=rng.standard_normal((batch, n_in)).astype(dtype),
            actions=rng.integers(0, n_actions, size=batch),  # int64, as the replay buffer stores them
            rewards=(3.0 * rng.standard_normal(batch)).astype(dtype),
            next_obs=rng.standard_normal((batch, n_in)).astype(dtype),
            discounts=discounts.astype(dtype),
        ))
    return pool


def make_steppers(sizes: tuple[int, ...], dtype: str, batch: int, seed: int, max_norm: float = MAX_NORM,
                  target_update_interval: int = TARGET_UPDATE_INTERVAL) -> tuple[Callable, Callable, DQNAgent, dict]:
    """`(library, reference, agent, reference_state)`: two `step(batch)` functions starting from the same weights.

    The target network is perturbed away from the online one, so that Double DQN's choice of a' matters.
    """
    config = DQNConfig(hidden_sizes=sizes[1:-1], dtype=dtype, learning_rate=LR, gamma=GAMMA, batch_size=batch,
                       buffer_size=max(batch, 1000), learning_starts=batch, double_dqn=True, loss="huber",
                       huber_delta=1.0, max_grad_norm=max_norm, optimizer="adam",
                       target_update_interval=target_update_interval)
    agent = DQNAgent(sizes[0], sizes[-1], config, np.random.default_rng(seed))
    agent.target.flat_params += 0.05 * np.random.default_rng(seed + 1).standard_normal(agent.target.flat_params.size)
    state = ref.init([p.copy() for p in agent.online.params.values()],
                     [p.copy() for p in agent.target.params.values()], batch, lr=LR, max_norm=max_norm,
                     huber_delta=1.0, target_update_interval=target_update_interval)

    def reference(b: Batch) -> float:
        return ref.train_step(state, b)

    return agent.update, reference, agent, state


def check_match(sizes: tuple[int, ...], seed: int) -> tuple[bool, float, int]:
    """`MATCH_STEPS` float64 updates at each batch size of both sides.

    The library continues from batch 64 to batch 128 (its buffers per batch size); the reference, which is built for
    one batch size, is rebuilt from its own current parameters, moments and step count.

    Returns:
        Whether online and target parameters agree within `MATCH_RTOL`, the largest relative difference, and how
        many of the library's updates were clipped.
    """
    library, reference, agent, state = make_steppers(sizes, "float64", BATCHES[0], seed, MATCH_MAX_NORM, MATCH_SYNC)
    clipped = 0
    for i, batch in enumerate(BATCHES):
        if i:
            old, state = state, ref.init(state["params"], state["target"], batch, lr=LR, max_norm=MATCH_MAX_NORM,
                                         target_update_interval=MATCH_SYNC)
            for key in ("flat_m", "flat_v"):
                state[key][...] = old[key]
            state["t"] = old["t"]

            def reference(b: Batch, state: dict = state) -> float:
                return ref.train_step(state, b)

        for b in make_pool(sizes, "float64", batch, seed)[:MATCH_STEPS]:
            clipped += library(b)["grad_norm"] > MATCH_MAX_NORM
            reference(b)
    pairs = [(agent.online.flat_params, state["flat_p"]), (agent.target.flat_params, state["flat_tp"])]
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


def bench(sizes: tuple[int, ...], dtype: str, batch: int, steps: int, repeats: int, seed: int) -> dict:
    """Medians over `repeats` of the mean µs per update and of the paired ratios, the two sides interleaved (ABAB)."""
    library, reference, _, _ = make_steppers(sizes, dtype, batch, seed)
    pool = make_pool(sizes, dtype, batch, seed)
    warmup = max(steps // 10, 5)
    mean_step_seconds(library, pool, warmup)
    mean_step_seconds(reference, pool, warmup)
    lib_us, ref_us = [], []
    for _ in range(repeats):
        lib_us.append(1e6 * mean_step_seconds(library, pool, steps))
        ref_us.append(1e6 * mean_step_seconds(reference, pool, steps))
    ratio = statistics.median(a / b for a, b in zip(lib_us, ref_us, strict=True))
    return {"size": name_of(sizes), "dtype": dtype, "batch": batch, "library_us": statistics.median(lib_us),
            "reference_us": statistics.median(ref_us), "ratio": ratio, "library_us_repeats": lib_us,
            "reference_us_repeats": ref_us}


def estimate_seconds(steps: int, repeats: int, seed: int) -> float:
    """Wall time of the whole run, from 5 library updates per configuration (both sides assumed equally fast)."""
    total = 0.0
    for sizes in SIZES:
        for dtype in DTYPES:
            for batch in BATCHES:
                library, _, _, _ = make_steppers(sizes, dtype, batch, seed)
                pool = make_pool(sizes, dtype, batch, seed)
                mean_step_seconds(library, pool, 2)
                per_step = mean_step_seconds(library, pool, 5)
                total += 2 * per_step * (repeats * steps + max(steps // 10, 5)) + 0.01  # + building the pools
    return total


def machine_info() -> dict:
    """CPU model, the thread variables set above, numpy's BLAS, and threadpoolctl's view when it is installed."""
    info: dict = {"cpu": "unknown"}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info.update({var: os.environ.get(var) for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
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
    parser.add_argument("--steps", type=int, default=300, help="updates per timed repeat")
    parser.add_argument("--repeats", type=int, default=15, help="timed repeats per side (the median is reported)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the batch pool")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--quick", action="store_true", help="tiny run (20 steps, 2 repeats) for smoke tests")
    args = parser.parse_args(argv)
    steps, repeats = (20, 2) if args.quick else (args.steps, args.repeats)
    if steps < 1 or repeats < 1:
        parser.error(f"--steps and --repeats must be >= 1, got {steps} and {repeats}")

    machine = machine_info()
    print("machine:", ", ".join(f"{k}={v}" for k, v in machine.items()))
    n_configs = len(SIZES) * len(DTYPES) * len(BATCHES)
    print(f"{n_configs} configurations x {repeats} repeats x {steps} updates per side: "
          f"about {estimate_seconds(steps, repeats, args.seed):.0f} s", flush=True)

    match = {}
    for sizes in SIZES:
        ok, max_rel, clipped = check_match(sizes, args.seed)
        match[name_of(sizes)] = ok
        verdict = "match" if ok else "MISMATCH"
        print(f"{name_of(sizes):<12} float64, {MATCH_STEPS} updates at batch {BATCHES[0]} then {BATCHES[1]} "
              f"({clipped} clipped at {MATCH_MAX_NORM}): {verdict} (max rel diff {max_rel:.1e})")
    if not all(match.values()):
        print("library and reference disagree; timings would compare different updates", file=sys.stderr)
        return 1

    print(f"\nµs per update: medians of {repeats} repeats x {steps} updates, library and reference interleaved; "
          "lib/ref is the median of the paired ratios")
    print(f"{'size':<12} {'dtype':<8} {'batch':>5} {'library µs':>11} {'reference µs':>13} {'lib/ref':>8}")
    results = []
    for sizes in SIZES:
        for dtype in DTYPES:
            for batch in BATCHES:
                r = bench(sizes, dtype, batch, steps, repeats, args.seed)
                results.append(r)
                print(f"{r['size']:<12} {dtype:<8} {batch:>5} {r['library_us']:>11.1f} {r['reference_us']:>13.1f} "
                      f"{r['ratio']:>8.2f}", flush=True)
    worst = max(results, key=lambda r: r["ratio"])
    print(f"worst ratio {worst['ratio']:.2f} ({worst['size']} {worst['dtype']} batch {worst['batch']})")

    if args.json:
        record = {"steps": steps, "repeats": repeats, "machine": machine, "match": match, "results": results}
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
