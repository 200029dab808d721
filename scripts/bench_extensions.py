#!/usr/bin/env python
"""What prioritized replay and the dueling head cost: microseconds per learner step, against uniform replay and
the linear head, at S = 1 and S = 32 members.

One learner step is what `agents.loop.learner.Learner.steps` runs per gradient step: `replay.sample(B)`,
`agent.update(batch)` and, for prioritized replay, `replay.update_priorities(batch, td_errors)`. The buffers are
full (capacity 50,000 per member by default, random CartPole-sized transitions) and the prioritized one holds random
priorities spread over three orders of magnitude, so the sum tree is searched as in a long run. Each configuration
is timed over --steps steps, the configurations interleaved repeat by repeat, with the garbage collector off; the
figures are medians over --repeats. Reported per configuration: sample, update and priority-update µs per
member-step, and the two targets of the issue: (prioritized sample + priority update - uniform sample) over one
uniform gradient step (sample + update), and the dueling update over the linear one.

Example:
    python scripts/bench_extensions.py --members 1 32 --repeats 5 --json ext.json

Bad input (a count below 1, a batch larger than the buffer, buffers that would not fit in memory, or --json PATH that
could not be written: a missing folder, a folder, no permission, a name too long, an existing file without --force)
is one line and exit status 2 before anything is built; a JSON file that cannot be written after the timing is one
line and exit status 1.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one BLAS thread: must be set before numpy is imported

import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from agents.algo.dqn import DQNAgent  # noqa: E402
from agents.config import DQNConfig  # noqa: E402
from agents.data.prioritized import PrioritizedReplay  # noqa: E402
from agents.data.replay import MemberReplay, require_memory  # noqa: E402
from agents.run.aggregate import check_output_file  # noqa: E402
from agents.run.checkpoint import atomic_write_text  # noqa: E402
from agents.run.cli import OneLineParser, path_arg  # noqa: E402
from agents.run.entry import run_command  # noqa: E402
from agents.validate import MAX_SEED  # noqa: E402

OBS_DIM, N_ACTIONS = 4, 2
MAX_STEPS, MAX_REPEATS = 10**7, 1000  # larger is a typo: days of timing
CONFIGS = {  # name: (prioritized, dueling)
    "uniform": (False, False),
    "prioritized": (True, False),
    "dueling": (False, True),
}


def build(name: str, members: int, capacity: int, batch: int, seed: int) -> tuple[DQNAgent, MemberReplay]:
    """A stacked agent (the defaults' 4-64-64-2 float32 network) and a full replay of `members` buffers."""
    prioritized, dueling = CONFIGS[name]
    config = DQNConfig(batch_size=batch, buffer_size=capacity, dueling=dueling, prioritized=prioritized)
    seeds = np.random.SeedSequence(seed).spawn(2 * members + 1)
    rngs = [np.random.default_rng(s) for s in seeds[:members]]
    agent = DQNAgent(OBS_DIM, N_ACTIONS, config, rngs)
    replay_rngs = [np.random.default_rng(s) for s in seeds[members:2 * members]]
    replay = (PrioritizedReplay(capacity, OBS_DIM, replay_rngs, config.dtype) if prioritized
              else MemberReplay(capacity, OBS_DIM, replay_rngs, config.dtype))
    data = np.random.default_rng(seeds[-1])
    members_col = np.repeat(np.arange(members), capacity)
    n = members * capacity
    obs = data.standard_normal((n, OBS_DIM)).astype(np.float32)
    replay.write(obs, data.integers(0, N_ACTIONS, n), np.ones(n, np.float32),
                 data.standard_normal((n, OBS_DIM)).astype(np.float32), np.full(n, 0.99**3, np.float32), members_col)
    if prioritized:  # a long run's spread of priorities, not the all-equal maximum of fresh transitions
        slots = np.tile(np.arange(capacity), members)
        replay.tree.set(members_col, slots, 10.0 ** data.uniform(-3, 0, n))
    return agent, replay


def time_steps(agent: DQNAgent, replay: MemberReplay, batch: int, steps: int) -> dict[str, float]:
    """Seconds in sample, update and update_priorities over `steps` learner steps."""
    out = replay.empty_batch(batch)
    clock = time.perf_counter
    t = {"sample": 0.0, "update": 0.0, "priorities": 0.0}
    for _ in range(steps):
        t0 = clock()
        replay.sample(batch, out=out)
        t1 = clock()
        metrics = agent.update(out)
        t2 = clock()
        replay.update_priorities(out, metrics["td_errors"])
        t3 = clock()
        t["sample"] += t1 - t0
        t["update"] += t2 - t1
        t["priorities"] += t3 - t2
    return t


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="bench_extensions.py", description=__doc__,
                      epilog="exit status: 0 done; 1 the JSON file could not be written; 2 bad input (nothing "
                             "written)")
    p.add_argument("--members", type=int, nargs="+", default=[1, 32], metavar="S",
                   help="member counts (default: 1 32)")
    p.add_argument("--capacity", type=int, default=50_000, help="transitions per member's buffer (default: 50000)")
    p.add_argument("--batch-size", type=int, default=128,
                   help="B, transitions per member per step, as DQNConfig.batch_size (default: 128)")
    p.add_argument("--steps", type=int, default=200, help="timed learner steps per repeat (default: 200)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats; medians are printed (default: 5)")
    p.add_argument("--seed", type=int, default=0,
                   help=f"seeds the weights, the data and the draws, 0 to {MAX_SEED} (default: 0)")
    p.add_argument("--json", type=path_arg, metavar="PATH", help="also write the figures to PATH (default: none)")
    p.add_argument("--force", action="store_true", help="replace an existing --json file (default: refused)")
    args = p.parse_args(argv)
    for flag in ("capacity", "batch_size", "steps", "repeats"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.steps > MAX_STEPS or args.repeats > MAX_REPEATS:
        p.error(f"--steps must be at most {MAX_STEPS} and --repeats at most {MAX_REPEATS}, got {args.steps} and "
                f"{args.repeats}")
    if min(args.members) < 1:
        p.error(f"--members must be >= 1, got {min(args.members)}")
    if args.batch_size > args.capacity:
        p.error(f"--batch-size must be <= --capacity ({args.capacity}), got {args.batch_size}")
    if not 0 <= args.seed <= MAX_SEED:
        p.error(f"--seed must be an integer from 0 to {MAX_SEED}, got {args.seed}")
    try:  # the largest S's buffers, one per configuration, live at once, plus `build`'s float64 random data
        n = max(args.members) * args.capacity
        need = len(CONFIGS) * MemberReplay.nbytes_for(max(args.members), args.capacity, OBS_DIM) + 2 * n * OBS_DIM * 8
        require_memory(need, f"--members {max(args.members)} x --capacity {args.capacity} ({len(CONFIGS)} buffers)")
        if args.json:
            check_output_file("--json", args.json, args.force)
    except ValueError as e:
        p.error(str(e))

    print(f"{platform.processor() or platform.machine()}, numpy {np.__version__}; 4-64-64-2 float32, "
          f"B {args.batch_size}, capacity {args.capacity} per member; medians of {args.repeats} interleaved repeats "
          f"of {args.steps} steps")
    results = {}
    for S in args.members:
        parts = {name: build(name, S, args.capacity, args.batch_size, args.seed) for name in CONFIGS}
        for agent, replay in parts.values():
            time_steps(agent, replay, args.batch_size, 5)  # warm-up: buffers of this batch size, caches
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in CONFIGS}
        gc.disable()
        try:
            for _ in range(args.repeats):
                for name, (agent, replay) in parts.items():
                    runs[name].append(time_steps(agent, replay, args.batch_size, args.steps))
        finally:
            gc.enable()
        per = 1e6 / (args.steps * S)  # seconds per repeat -> µs per member-step
        med = {name: {k: statistics.median(r[k] for r in rs) * per for k in rs[0]} for name, rs in runs.items()}
        uniform, per_rep = med["uniform"], med["prioritized"]
        step = uniform["sample"] + uniform["update"]
        per_cost = (per_rep["sample"] + per_rep["priorities"] - uniform["sample"]) / step
        duel_cost = med["dueling"]["update"] / uniform["update"] - 1.0
        results[S] = {"us_per_member_step": med, "prioritized_extra_over_step": per_cost,
                      "dueling_extra_over_update": duel_cost}
        print(f"\nS = {S}                sample   update   priorities   (µs per member-step)")
        for name, m in med.items():
            print(f"  {name:<14} {m['sample']:>8.1f} {m['update']:>8.1f} {m['priorities']:>12.1f}")
        print(f"  prioritized sampling + priority update add {100 * per_cost:+.1f}% to a uniform gradient step "
              f"({step:.1f} µs); target <= +25%")
        print(f"  the dueling head adds {100 * duel_cost:+.1f}% to an update; target <= +15%")
    if args.json:
        try:
            atomic_write_text(args.json, json.dumps({str(k): v for k, v in results.items()}, indent=2) + "\n")
        except OSError as e:  # a full disk, a folder removed since the check: the figures above stay printed
            print(f"bench_extensions.py: error: cannot write {args.json}: {e.strerror or e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    run_command(main, "bench_extensions.py", lambda: "nothing was written")
