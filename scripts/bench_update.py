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

The floor. For sizes `(n_0, ..., n_L)` let `M = sum_i n_i n_(i+1)`, the multiply-adds of one row through the
network. One Double DQN update multiplies

    FLOPs = 2 B (3 M  +  M  +  M - n_0 n_1)

three forward passes (target on s', online on s' and on s), the backward's `dW = delta.T @ h` for every layer and its
`dL/dh = delta @ W` for every layer but the first (5.67 MFLOP for 4-64-64-2 at B = 128). The update runs them as these
matmuls: each forward pass on `(B, n_i) @ (n_i, n_(i+1))`, `dW` on `(n_(i+1), B) @ (B, n_i)` and `dL/dh` on
`(B, n_(i+1)) @ (n_(i+1), n_i)`. Each distinct shape is timed alone (the same operand layouts, transposed views
included, one BLAS thread, the median of the repeats); the floor is the sum of those times over the update's matmuls,
the µs the update would take if it did nothing but its matmuls, and the rate printed is FLOPs / floor. `lib/floor` is
the measured update over it.

Where the time goes: after the timed repeats, as many repeats again run with the agent's phase clock on
(`DQNAgent.time_phases`), and the table gives the mean µs per update of each phase (`agents.algo.dqn.PHASES`) beside
the wall time of those clocked updates, which the phases sum to within (the rest is the call and the clock itself).

Usage:
    PYTHONPATH=. python scripts/bench_update.py [--steps 300] [--repeats 15] [--json PATH] [--quick] [--stacked]

`--stacked` times the route every training run takes (`agents.run.train` builds a stacked agent; a single run is
S = 1): the library side is a stacked agent of one member on batches with a leading member axis of 1.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one BLAS thread; must be set before numpy is imported

import gc  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import _reference_step as ref  # noqa: E402  (scripts/ is on sys.path when this file is run as a script)
import numpy as np  # noqa: E402

from agents.algo.dqn import PHASES, DQNAgent  # noqa: E402
from agents.config import DQNConfig  # noqa: E402
from agents.data.replay import Batch  # noqa: E402
from agents.run.aggregate import check_output_file  # noqa: E402
from agents.run.checkpoint import atomic_open  # noqa: E402
from agents.run.cli import OneLineParser, fail, path_arg  # noqa: E402
from agents.run.entry import run_command  # noqa: E402
from agents.validate import MAX_SEED  # noqa: E402

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


def as_member_batch(b: Batch) -> Batch:
    """`b` with a leading member axis of 1 (views), the batch a stacked agent of one member takes."""
    return Batch(*(None if v is None else v[None] for v in b))


def make_steppers(sizes: tuple[int, ...], dtype: str, batch: int, seed: int, max_norm: float = MAX_NORM,
                  target_update_interval: int = TARGET_UPDATE_INTERVAL,
                  stacked: bool = False) -> tuple[Callable, Callable, DQNAgent, dict]:
    """`(library, reference, agent, reference_state)`: two `step(batch)` functions starting from the same weights.

    The target network is perturbed away from the online one, so that Double DQN's choice of a' matters. With
    `stacked`, the agent is a stacked one of S = 1 member (its weights drawn as the unstacked agent's), and
    `library` takes batches with a leading member axis (`as_member_batch`).
    """
    config = DQNConfig(hidden_sizes=sizes[1:-1], dtype=dtype, learning_rate=LR, gamma=GAMMA, batch_size=batch,
                       buffer_size=max(batch, 1000), learning_starts=batch, double_dqn=True, loss="huber",
                       huber_delta=1.0, max_grad_norm=max_norm, optimizer="adam",
                       target_update_interval=target_update_interval)
    rng = np.random.default_rng(seed)
    agent = DQNAgent(sizes[0], sizes[-1], config, [rng] if stacked else rng)
    agent.target.flat_params += 0.05 * np.random.default_rng(seed + 1).standard_normal(agent.target.flat_params.size)
    one = (lambda p: p[0].copy()) if stacked else (lambda p: p.copy())  # the reference has no member axis
    state = ref.init([one(p) for p in agent.online.params.values()],
                     [one(p) for p in agent.target.params.values()], batch, lr=LR, max_norm=max_norm,
                     huber_delta=1.0, target_update_interval=target_update_interval)

    def reference(b: Batch) -> float:
        return ref.train_step(state, b)

    return agent.update, reference, agent, state


def check_match(sizes: tuple[int, ...], seed: int, stacked: bool = False) -> tuple[bool, float, int]:
    """`MATCH_STEPS` float64 updates at each batch size of both sides.

    The library continues from batch 64 to batch 128 (its buffers per batch size); the reference, which is built for
    one batch size, is rebuilt from its own current parameters, moments and step count.

    Returns:
        Whether online and target parameters agree within `MATCH_RTOL`, the largest relative difference, and how
        many of the library's updates were clipped.
    """
    library, reference, agent, state = make_steppers(sizes, "float64", BATCHES[0], seed, MATCH_MAX_NORM, MATCH_SYNC,
                                                     stacked)
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
            clipped += float(np.max(library(as_member_batch(b) if stacked else b)["grad_norm"])) > MATCH_MAX_NORM
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


def update_flops(sizes: tuple[int, ...], batch: int) -> int:
    """`2 B (3 M + M + M - n_0 n_1)` with `M = sum_i n_i n_(i+1)`: one Double DQN update's matmul FLOPs."""
    macs = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    return 2 * batch * (3 * macs + macs + macs - sizes[0] * sizes[1])


def update_matmuls(sizes: tuple[int, ...], batch: int) -> list[tuple[str, tuple[int, int, int]]]:
    """The update's matmuls as `(kind, (rows, inner, cols))`, in call order, one entry per call.

    `fwd`: `x @ W.T`, with `W: (cols, inner)` (three passes: target on s', online on s' and on s);
    `dW`: `delta.T @ h` with `delta: (inner, rows)` (B rows summed); `dx`: `delta @ W`, `W: (inner, cols)`.
    """
    layers = list(zip(sizes[:-1], sizes[1:], strict=True))
    calls = [("fwd", (batch, a, b)) for _ in range(3) for a, b in layers]
    for i in range(len(layers) - 1, -1, -1):
        a, b = layers[i]
        calls.append(("dW", (b, batch, a)))
        if i:
            calls.append(("dx", (batch, b, a)))
    return calls


def time_matmul(kind: str, shape: tuple[int, int, int], dtype: str, lead: tuple[int, ...], calls: int,
                repeats: int) -> float:
    """Median over `repeats` of the mean seconds of one such `np.matmul` (operands laid out as the update's)."""
    rows, inner, cols = shape
    rng = np.random.default_rng(0)
    if kind == "fwd":
        left = rng.standard_normal((*lead, rows, inner)).astype(dtype)
        right = rng.standard_normal((*lead, cols, inner)).astype(dtype).swapaxes(-1, -2)  # W.T, a view
    elif kind == "dW":
        left = rng.standard_normal((*lead, inner, rows)).astype(dtype).swapaxes(-1, -2)  # delta.T, a view
        right = rng.standard_normal((*lead, inner, cols)).astype(dtype)
    else:
        left = rng.standard_normal((*lead, rows, inner)).astype(dtype)
        right = rng.standard_normal((*lead, inner, cols)).astype(dtype)
    out = np.empty((*lead, rows, cols), dtype)
    for _ in range(3):  # warm up: the first calls pay for page faults and cold caches
        np.matmul(left, right, out=out)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            np.matmul(left, right, out=out)
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def floor(sizes: tuple[int, ...], dtype: str, batch: int, stacked: bool, steps: int, repeats: int) -> dict:
    """The update's FLOPs, each distinct matmul shape timed alone, and their sum over the update: the floor."""
    matmuls = update_matmuls(sizes, batch)
    shapes = []
    for kind, shape in dict.fromkeys(matmuls):  # distinct, in call order
        seconds = time_matmul(kind, shape, dtype, (1,) if stacked else (), max(steps, 50), max(repeats, 5))
        flops = 2 * shape[0] * shape[1] * shape[2]
        shapes.append({"kind": kind, "shape": list(shape), "count": matmuls.count((kind, shape)), "us": 1e6 * seconds,
                       "gflops": flops / seconds / 1e9})
    floor_us = sum(m["count"] * m["us"] for m in shapes)
    flops = update_flops(sizes, batch)
    return {"mflop": flops / 1e6, "floor_us": floor_us, "gflops": flops / floor_us / 1e3, "matmuls": shapes}


def bench(sizes: tuple[int, ...], dtype: str, batch: int, steps: int, repeats: int, seed: int,
          stacked: bool = False) -> dict:
    """Medians over `repeats` of the mean µs per update and of the paired ratios, the two sides interleaved (ABAB);
    then the floor, and the phases of as many clocked repeats of the library."""
    library, reference, agent, _ = make_steppers(sizes, dtype, batch, seed, stacked=stacked)
    pool = make_pool(sizes, dtype, batch, seed)
    lib_pool = [as_member_batch(b) for b in pool] if stacked else pool
    warmup = max(steps // 10, 5)
    mean_step_seconds(library, lib_pool, warmup)
    mean_step_seconds(reference, pool, warmup)
    lib_us, ref_us = [], []
    for _ in range(repeats):
        lib_us.append(1e6 * mean_step_seconds(library, lib_pool, steps))
        ref_us.append(1e6 * mean_step_seconds(reference, pool, steps))
    ratio = statistics.median(a / b for a, b in zip(lib_us, ref_us, strict=True))
    phase_seconds = agent.time_phases(True)
    clocked = sum(mean_step_seconds(library, lib_pool, steps) for _ in range(repeats)) / repeats
    agent.time_phases(False)
    phases_us = {k: 1e6 * v / (repeats * steps) for k, v in phase_seconds.items()}
    result = {"size": name_of(sizes), "dtype": dtype, "batch": batch, "library_us": statistics.median(lib_us),
              "reference_us": statistics.median(ref_us), "ratio": ratio, "library_us_repeats": lib_us,
              "reference_us_repeats": ref_us}
    result.update(floor(sizes, dtype, batch, stacked, steps, repeats))
    result.update(floor_ratio=result["library_us"] / result["floor_us"], phases_us=phases_us,
                  clocked_us=1e6 * clocked)
    return result


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
                # both sides, the clocked repeats and the matmuls alone (about one more side), + building the pools
                total += 4 * per_step * repeats * steps + 2 * per_step * max(steps // 10, 5) + 0.01
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


MAX_STEPS = 1_000_000
"""Most updates per repeat (more is a typo: 10**6 updates already take minutes)."""
MAX_REPEATS = 1_000


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="bench_update.py", description=__doc__.splitlines()[0],
                           epilog="exit status: 0 done; 1 the library and the reference disagree (nothing timed), or "
                                  "the JSON file could not be written after the timing; 2 bad input (one line, "
                                  "nothing written)")
    parser.add_argument("--steps", type=int, default=300,
                        help=f"updates per timed repeat, 1 to {MAX_STEPS} (default 300)")
    parser.add_argument("--repeats", type=int, default=15,
                        help=f"timed repeats per side (the median is reported), 1 to {MAX_REPEATS} (default 15)")
    parser.add_argument("--seed", type=int, default=0,
                        help=f"seed of the weights and the batch pool, 0 to {MAX_SEED} (default 0)")
    parser.add_argument("--json", type=path_arg, metavar="PATH",
                        help="also write the results as JSON to PATH (default: no file)")
    parser.add_argument("--force", action="store_true", help="let --json replace an existing file")
    parser.add_argument("--quick", action="store_true", help="tiny run (20 steps, 2 repeats) for smoke tests")
    parser.add_argument("--stacked", action="store_true",
                        help="time a stacked agent of one member, the route of every training run")
    args = parser.parse_args(argv)
    steps, repeats = (20, 2) if args.quick else (args.steps, args.repeats)
    if not (1 <= steps <= MAX_STEPS and 1 <= repeats <= MAX_REPEATS):
        fail(parser.prog, f"--steps must be 1 to {MAX_STEPS} and --repeats 1 to {MAX_REPEATS}, got {steps} and "
                          f"{repeats}")
    if not 0 <= args.seed <= MAX_SEED:
        fail(parser.prog, f"--seed must be 0 to {MAX_SEED}, got {args.seed}")
    if args.json:
        try:  # before the work: an unwritable path would lose every figure
            check_output_file("--json", args.json, args.force)
        except ValueError as e:
            fail(parser.prog, str(e))

    machine = machine_info()
    print("machine:", ", ".join(f"{k}={v}" for k, v in machine.items()))
    n_configs = len(SIZES) * len(DTYPES) * len(BATCHES)
    print(f"{n_configs} configurations x {repeats} repeats x {steps} updates per side: "
          f"about {estimate_seconds(steps, repeats, args.seed):.0f} s", flush=True)

    match = {}
    for sizes in SIZES:
        ok, max_rel, clipped = check_match(sizes, args.seed, args.stacked)
        match[name_of(sizes)] = ok
        verdict = "match" if ok else "MISMATCH"
        print(f"{name_of(sizes):<12} float64, {MATCH_STEPS} updates at batch {BATCHES[0]} then {BATCHES[1]} "
              f"({clipped} clipped at {MATCH_MAX_NORM}): {verdict} (max rel diff {max_rel:.1e})")
    if not all(match.values()):
        print("library and reference disagree; timings would compare different updates", file=sys.stderr)
        return 1

    route = "a stacked agent of S = 1" if args.stacked else "an unstacked agent"
    print(f"\nµs per update ({route}): medians of {repeats} repeats x {steps} updates, library and reference "
          "interleaved; lib/ref is the median of the paired ratios; floor = the update's matmuls timed alone")
    print(f"{'size':<12} {'dtype':<8} {'batch':>5} {'library µs':>11} {'reference µs':>13} {'lib/ref':>8} "
          f"{'MFLOP':>7} {'GFLOP/s':>8} {'floor µs':>9} {'lib/floor':>9}")
    results = []
    for sizes in SIZES:
        for dtype in DTYPES:
            for batch in BATCHES:
                r = bench(sizes, dtype, batch, steps, repeats, args.seed, args.stacked)
                results.append(r)
                print(f"{r['size']:<12} {dtype:<8} {batch:>5} {r['library_us']:>11.1f} {r['reference_us']:>13.1f} "
                      f"{r['ratio']:>8.2f} {r['mflop']:>7.2f} {r['gflops']:>8.1f} {r['floor_us']:>9.1f} "
                      f"{r['floor_ratio']:>9.2f}", flush=True)
    worst = max(results, key=lambda r: r["ratio"])
    print(f"worst ratio {worst['ratio']:.2f} ({worst['size']} {worst['dtype']} batch {worst['batch']})")

    print(f"\nµs per update by phase ({repeats} clocked repeats x {steps} updates; `clocked` is their wall time)")
    print(f"{'size':<12} {'dtype':<8} {'batch':>5} " + " ".join(f"{p[:9]:>9}" for p in PHASES) + f" {'clocked':>8}")
    for r in results:
        print(f"{r['size']:<12} {r['dtype']:<8} {r['batch']:>5} "
              + " ".join(f"{r['phases_us'][p]:>9.1f}" for p in PHASES) + f" {r['clocked_us']:>8.1f}")

    if args.json:
        record = {"steps": steps, "repeats": repeats, "stacked": args.stacked, "machine": machine, "match": match,
                  "phases": list(PHASES), "results": results}
        try:
            with atomic_open(args.json, "w") as f:
                json.dump(record, f, indent=1)
                f.write("\n")
        except OSError as e:
            print(f"bench_update.py: error: cannot write {args.json}: {e.strerror or e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    run_command(main, "bench_update.py", lambda: "nothing was written")
