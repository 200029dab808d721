#!/usr/bin/env python
"""Throughput of seed-batched training: S seeds in one process against the same seeds trained one after another.

For each S in --members, a fresh child process trains seeds 0..S-1 together with `agents.run.train`
(no files written) and reports wall time, transitions per second (summed over seeds), seconds per seed, the time
per phase and its peak RSS. With --sequential N, N single runs (`agents.run.train_one`, seeds 0..N-1) run one after
another in one child process, and the batch of S = N is compared with them: the ratio is batch time / sequential
time, measured in the same sitting. Each configuration runs --repeats times, interleaved, and medians are printed.

It also estimates the floating-point floor of the batched update: FLOPs per member-update (three forward passes
with Double DQN, two with plain DQN, and the backward pass) over the matmul rate this CPU reaches on the
update's own shapes, and prints how far the measured update time is from it.

Bad input, including --json PATH that could not be written (a missing folder, a folder, no permission, a name too
long, or an existing file without --force), is one line and exit status 2 before any child runs; a child that fails
is one line and exit status 1.

Example:
    python scripts/bench_seeds.py --members 1 8 32 64 --sequential 32 --total-steps 5000 --repeats 3
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from agents.config import DQNConfig  # noqa: E402
from agents.run.aggregate import check_output_file  # noqa: E402
from agents.run.checkpoint import atomic_write_text  # noqa: E402
from agents.run.cli import OneLineParser, add_config_args, config_overrides, fail, path_arg  # noqa: E402
from agents.run.entry import run_command  # noqa: E402
from agents.run.train import env_facts  # noqa: E402

PROG = "bench_seeds.py"
MAX_MEMBERS = 4096  # seeds in one child; the buffers' memory is checked by the child's own train()
MAX_TOTAL_STEPS, MAX_REPEATS = 10**9, 1000  # larger is a typo: days of CPU


def child(kind: str, n: int, total_steps: int, env_id: str, config_json: str) -> dict:
    """Run one configuration in this (child) process and return its figures."""
    import resource

    from agents.run import train, train_one

    config = DQNConfig.from_json(config_json)
    t0 = time.perf_counter()
    if kind == "batch":
        result = train(config, env_id, list(range(n)), None, total_steps)
        phases, updates = result["phase_seconds"], result["updates"]
        solved = result["n_solved"]
    else:
        phases, updates, solved = {}, 0, 0
        for seed in range(n):
            summary = train_one(config, env_id, seed, None, total_steps)
            for k, v in summary["phase_seconds"].items():
                phases[k] = phases.get(k, 0.0) + v
            updates += summary["updates"]
            solved += summary["solved"]
    wall = time.perf_counter() - t0
    return {"kind": kind, "n": n, "wall": wall, "phases": phases, "updates": updates, "solved": solved,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def flops_per_member_update(sizes: tuple[int, ...], batch: int, double_dqn: bool) -> int:
    """Multiply-adds x 2 of one member's update: forward passes on s (online), s' (target, and online with Double
    DQN), and the backward pass (dW for every layer, dL/dx for every layer but the first)."""
    macs = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))  # per row, one forward pass
    forwards = 3 if double_dqn else 2
    backward_macs = macs + sum(a * b for a, b in zip(sizes[1:-1], sizes[2:], strict=True))  # dW all, dx but first
    return 2 * batch * (forwards * macs + backward_macs)


def matmul_rate(sizes: tuple[int, ...], batch: int, members: int, dtype: str) -> float:
    """FLOP/s of `np.matmul` on this update's stacked forward shapes (S, B, n_in) @ (S, n_in, n_out), best of 5."""
    rng = np.random.default_rng(0)
    layers = [(rng.standard_normal((members, batch, a)).astype(dtype), rng.standard_normal((members, b, a)).astype(
        dtype).swapaxes(-1, -2), np.empty((members, batch, b), dtype)) for a, b in zip(sizes[:-1], sizes[1:],
                                                                                         strict=True)]
    flops = 2 * members * batch * sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    best = np.inf
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(50):
            for x, w, out in layers:
                np.matmul(x, w, out=out)
        best = min(best, (time.perf_counter() - t0) / 50)
    return flops / best


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog=PROG, description=__doc__,
                      epilog="exit status: 0 done; 1 a child run or the JSON file failed; 2 bad input (nothing "
                             "written)")
    p.add_argument("--members", type=int, nargs="+", default=[1, 8, 32, 64],
                   help=f"S values, each 1 to {MAX_MEMBERS} (default: 1 8 32 64)")
    p.add_argument("--sequential", type=int, default=0,
                   help=f"also train this many single runs one after another, 0 to {MAX_MEMBERS}, and compare "
                        "(default: 0, none)")
    p.add_argument("--total-steps", type=int, default=5000, help="environment steps per seed (default: 5000)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each configuration; medians are shown (default: 3)")
    p.add_argument("--env-id", default="CartPole-v1", help="Gymnasium env id (default: CartPole-v1)")
    p.add_argument("--json", type=path_arg, default=None, metavar="PATH",
                   help="also write the figures to PATH (default: none)")
    p.add_argument("--force", action="store_true", help="replace an existing --json file (default: refused)")
    p.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    add_config_args(p)
    args = p.parse_args(argv)
    if args.child:  # the parent's own call: KIND N TOTAL_STEPS ENV_ID CONFIG_JSON
        kind, n, total, env_id, config_json = args.child
        if kind not in ("batch", "sequential") or not (n.isdigit() and total.isdigit()):
            fail(PROG, f"--child is internal: KIND (batch or sequential) N TOTAL ENV_ID CONFIG, got {args.child}")
        print(json.dumps(child(kind, int(n), int(total), env_id, config_json)))
        return 0
    try:
        config = DQNConfig(**config_overrides(args))
        for name, most in (("total_steps", MAX_TOTAL_STEPS), ("repeats", MAX_REPEATS)):
            if not 1 <= getattr(args, name) <= most:
                raise ValueError(f"--{name.replace('_', '-')} must be an integer from 1 to {most}, got "
                                 f"{getattr(args, name)}")
        if not all(1 <= s <= MAX_MEMBERS for s in args.members) or not 0 <= args.sequential <= MAX_MEMBERS:
            raise ValueError(f"--members must be in [1, {MAX_MEMBERS}] and --sequential in [0, {MAX_MEMBERS}], got "
                             f"{args.members} and {args.sequential}")
        env_facts(args.env_id)  # an unknown id or an unsupported space: refused here, not in a child
        if args.json:
            check_output_file("--json", args.json, args.force)
    except ValueError as e:
        fail(PROG, str(e))
    jobs = [("batch", s) for s in args.members] + ([("sequential", args.sequential)] if args.sequential else [])
    if args.sequential and ("batch", args.sequential) not in jobs:
        jobs.insert(0, ("batch", args.sequential))
    results: dict[tuple[str, int], list[dict]] = {job: [] for job in jobs}
    for _ in range(args.repeats):  # interleaved, so a slow minute of a shared machine hits every configuration
        for kind, n in jobs:
            out = subprocess.run([sys.executable, __file__, "--child", kind, str(n), str(args.total_steps),
                                  args.env_id, config.to_json()], capture_output=True, text=True)
            if out.returncode != 0:  # the child's last line says why (its traceback stays in the child)
                last = (out.stderr.strip().splitlines() or ["no message"])[-1]
                print(f"{PROG}: error: the {kind} run of {n} seed(s) failed (status {out.returncode}): {last}",
                      file=sys.stderr)
                return 1
            results[(kind, n)].append(json.loads(out.stdout.strip().splitlines()[-1]))
    cpu = _cpu_name()
    print(f"{cpu}; numpy {np.__version__}; {args.total_steps} steps per seed; medians of {args.repeats} runs")
    print(f"{'config':>16} {'wall s':>8} {'s/seed':>8} {'transitions/s':>14} {'us/member-update':>17} "
          f"{'peak RSS MB':>12} {'solved':>7}")
    rows = {}
    for (kind, n), runs in results.items():
        wall = statistics.median(r["wall"] for r in runs)
        update = statistics.median(r["phases"]["update"] / max(r["updates"] * (n if kind == "batch" else 1), 1)
                                   for r in runs)
        rows[(kind, n)] = {"wall": wall, "seconds_per_seed": wall / n, "transitions_per_second":
                           n * args.total_steps / wall, "us_per_member_update": 1e6 * update,
                           "peak_rss_mb": max(r["peak_rss_mb"] for r in runs), "solved": [r["solved"] for r in runs]}
        r = rows[(kind, n)]
        label = f"S={n} batch" if kind == "batch" else f"{n} sequential"
        print(f"{label:>16} {wall:8.1f} {r['seconds_per_seed']:8.2f} {r['transitions_per_second']:14.0f} "
              f"{r['us_per_member_update']:17.0f} {r['peak_rss_mb']:12.0f} {str(r['solved']):>7}")
    if args.sequential:
        ratio = rows[("batch", args.sequential)]["wall"] / rows[("sequential", args.sequential)]["wall"]
        per_run = [b["wall"] / s["wall"] for b, s in zip(results[("batch", args.sequential)],
                                                          results[("sequential", args.sequential)], strict=True)]
        print(f"{args.sequential} seeds in one process / {args.sequential} single runs one after another: "
              f"{ratio:.3f} (per repeat: {', '.join(f'{x:.3f}' for x in per_run)})")
    sizes = (4, *config.hidden_sizes, 2) if args.env_id == "CartPole-v1" else None
    if sizes:
        flops = flops_per_member_update(sizes, config.batch_size, config.double_dqn)
        S = max(args.members)
        rate = matmul_rate(sizes, config.batch_size, S, config.dtype)
        floor_us = 1e6 * flops / rate
        measured = rows[("batch", S)]["us_per_member_update"]
        print(f"floating-point floor of one member-update at S={S}: {flops} FLOP ({flops / 1e6:.2f} MFLOP) at "
              f"{rate / 1e9:.1f} GFLOP/s (np.matmul on the update's shapes) = {floor_us:.0f} us; measured "
              f"{measured:.0f} us, {measured / floor_us:.1f}x the floor")
    if args.json:
        record = {"cpu": cpu, "numpy": np.__version__, "python": platform.python_version(),
                  "total_steps": args.total_steps, "repeats": args.repeats,
                  "rows": {f"{k}-{n}": v for (k, n), v in rows.items()}}
        try:
            atomic_write_text(args.json, json.dumps(record, indent=2) + "\n")
        except OSError as e:  # a full disk, a folder removed since the check: the table above stays printed
            print(f"{PROG}: error: cannot write {args.json}: {e.strerror or e}", file=sys.stderr)
            return 1
    return 0


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    run_command(main, "bench_seeds.py", lambda: "nothing was written")
