"""Gradient-check the DQN TD loss on real CartPole-v1 transitions: the agent's backward against central differences.

Collects transitions with a seeded uniform random policy into a float64 replay buffer, trains a float64 `DQNAgent` on
them for a few updates (so weights and biases are as training leaves them, off the ReLU kinks), perturbs the target
network with seeded noise (so it differs from the online one and Double DQN picks different next actions), samples
a batch and computes the TD targets `y` with `agent.td_targets`, held fixed. Then it runs the first half of
`agent.update` (online forward, `td_loss`, `online.backward`) and compares every entry of every Q-network parameter
with `(L(theta + eps) - L(theta - eps)) / (2 eps)` of the same TD loss.

Exit status: 0 every parameter passes; 1 some parameter fails; 2 bad input (one line, e.g. `--tol -1`: a tolerance
lies in (0, 1)). The flags are the training commands' names where the concept is the same (`--hidden-sizes`,
`--batch-size`).

Usage:
    PYTHONPATH=. python scripts/gradcheck_td.py [--seed 0] [--transitions 300] [--batch-size 64]
        [--hidden-sizes 32 32] [--double-dqn BOOL] [--dueling BOOL] [--weights BOOL] [--loss mse|huber] [--tol 1e-6]
        [--max-entries N]

With `--dueling true` the Q-network's head is the dueling one (Q = V + A - mean_a A); with `--weights true` the
batch carries importance-sampling weights (drawn uniformly from [0.1, 1], as prioritized replay's lie in (0, 1])
and the checked loss is the weighted TD loss.
"""

from __future__ import annotations

import argparse

import numpy as np

from agents.algo.dqn import DQNAgent
from agents.config import LOSSES, DQNConfig
from agents.data.replay import Batch, ReplayBuffer
from agents.run.cli import OneLineParser, parse_bool
from agents.run.entry import run_command  # noqa: E402
from agents.validate import MAX_SEED
from dqn_np import MLP, td_loss
from dqn_np.gradcheck import DEFAULT_EPS, DEFAULT_TOL, check_gradients, check_settings, format_report
from envs import VecEnv

ENV_ID = "CartPole-v1"
WARMUP_UPDATES = 100  # Adam steps before the check: weights and biases as training leaves them
TARGET_NOISE = 0.05  # std of the seeded noise added to the target network's parameters
KINK_ZONE = 10 * DEFAULT_EPS  # a pre-activation this close to 0 can be pushed across the ReLU kink by eps
MAX_TRANSITIONS = 100_000  # a Python loop of env steps: about a minute at most
MAX_WIDTH, MAX_DEPTH = 1024, 8  # every entry is checked by two forward passes unless --max-entries


def collect(env: VecEnv, n: int, rng: np.random.Generator, replay: ReplayBuffer, gamma: float) -> tuple[int, int]:
    """Add `n` transitions of a uniform random policy to `replay`; returns (episodes finished, of which terminated)."""
    env.reset()
    episodes, terminated = 0, 0
    for _ in range(n):
        obs, action = env.obs[0], rng.integers(env.n_actions, size=1)
        step = env.step(action)
        # one-step discount: gamma, or 0 where the episode terminated (a truncated one still bootstraps)
        discount = 0.0 if step.terminated[0] else gamma
        replay.add(obs, int(action[0]), float(step.reward[0]), step.next_obs[0], discount)
        if step.terminated[0] or step.truncated[0]:  # the env has already started the next episode
            episodes, terminated = episodes + 1, terminated + int(step.terminated[0])
    return episodes, terminated


def pre_activations(mlp: MLP, x: np.ndarray) -> list[np.ndarray]:
    """The hidden layers' ReLU inputs `z_i: (batch, n_i)` for inputs `x: (batch, n_in)`."""
    zs, h = [], x
    for linear, relu in zip(mlp.linears[:-1], mlp.relus, strict=True):
        zs.append(linear.forward(h))
        h = relu.forward(zs[-1])
    return zs


def next_action_disagreements(agent: DQNAgent, batch: Batch) -> int:
    """Next states where the online network's greedy a' differs from the target network's."""
    online = agent.online.forward(batch.next_obs).argmax(axis=1)
    target = agent.target.forward(batch.next_obs).argmax(axis=1)
    return int((online != target).sum())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineParser(prog="gradcheck_td.py", description=__doc__.splitlines()[0],
                           epilog="exit status: 0 all pass; 1 some parameter fails; 2 bad input")
    parser.add_argument("--seed", type=int, default=0,
                        help=f"seeds the policy, environment, weights and sampling, 0 to {MAX_SEED} (default: 0)")
    parser.add_argument("--transitions", type=int, default=300,
                        help=f"CartPole transitions to collect, 1 to {MAX_TRANSITIONS} (default: 300)")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="transitions in the checked batch, 1 to --transitions (default: 64)")
    parser.add_argument("--hidden-sizes", type=int, nargs="+", default=[32, 32], metavar="N",
                        help=f"hidden widths, 1 to {MAX_WIDTH}, up to {MAX_DEPTH} layers (default: 32 32)")
    parser.add_argument("--double-dqn", type=parse_bool, default=True, metavar="BOOL",
                        help="a' chosen by the online network (default: true)")
    parser.add_argument("--dueling", type=parse_bool, default=False, metavar="BOOL",
                        help="dueling head (default: false)")
    parser.add_argument("--weights", type=parse_bool, default=False, metavar="BOOL",
                        help="per-sample importance-sampling weights in the TD loss (default: false)")
    parser.add_argument("--loss", choices=LOSSES, default="huber", help="TD loss (default: huber)")
    parser.add_argument("--tol", type=float, default=DEFAULT_TOL,
                        help="largest passing relative error, in (0, 1) (default: 1e-6)")
    parser.add_argument("--max-entries", type=int, metavar="N",
                        help="check N sampled entries per parameter, >= 1 (default: all)")
    args = parser.parse_args(argv)
    if not 0 <= args.seed <= MAX_SEED:
        parser.error(f"--seed must be an integer from 0 to {MAX_SEED}, got {args.seed}")
    if not 1 <= args.transitions <= MAX_TRANSITIONS:
        parser.error(f"--transitions must be an integer from 1 to {MAX_TRANSITIONS}, got {args.transitions}")
    if not 1 <= args.batch_size <= args.transitions:
        parser.error(f"--batch-size must be an integer from 1 to --transitions ({args.transitions}), got "
                     f"{args.batch_size}")
    if min(args.hidden_sizes) < 1 or max(args.hidden_sizes) > MAX_WIDTH or len(args.hidden_sizes) > MAX_DEPTH:
        parser.error(f"--hidden-sizes must be 1 to {MAX_DEPTH} widths, each 1 to {MAX_WIDTH}, got "
                     f"{args.hidden_sizes}")
    try:
        check_settings(DEFAULT_EPS, args.tol)
    except ValueError as e:
        parser.error(f"--{e}")
    if args.max_entries is not None and args.max_entries < 1:
        parser.error(f"--max-entries must be at least 1, got {args.max_entries}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    policy_seq, replay_seq, agent_seq, noise_seq, check_seq, env_seq = np.random.SeedSequence(args.seed).spawn(6)
    env = VecEnv(ENV_ID, 1, np.random.default_rng(env_seq))
    config = DQNConfig(hidden_sizes=tuple(args.hidden_sizes), dtype="float64", batch_size=args.batch_size,
                       loss=args.loss, double_dqn=args.double_dqn, dueling=args.dueling,
                       buffer_size=max(args.transitions, args.batch_size), learning_starts=args.batch_size)
    replay = ReplayBuffer(config.buffer_size, env.obs_dim, np.random.default_rng(replay_seq), "float64")
    episodes, terminated = collect(env, args.transitions, np.random.default_rng(policy_seq), replay, config.gamma)
    env.close()

    agent = DQNAgent(env.obs_dim, env.n_actions, config, np.random.default_rng(agent_seq))
    for _ in range(WARMUP_UPDATES):  # fewer than target_update_interval: the target stays at the initial weights
        agent.update(replay.sample(config.batch_size))
    noise_rng = np.random.default_rng(noise_seq)
    for p in agent.target.params.values():
        p += noise_rng.normal(scale=TARGET_NOISE, size=p.shape)
    batch = replay.sample(config.batch_size)
    if args.weights:
        batch = batch._replace(weights=np.random.default_rng(noise_seq.spawn(1)[0]).uniform(0.1, 1.0, args.batch_size))
    disagree = next_action_disagreements(agent, batch)
    zs = pre_activations(agent.online, batch.obs)

    # The agent's own update path up to the optimizer step: target (held fixed), prediction, loss, backward.
    loss, _, td_target = agent.compute_gradients(batch)  # fills agent.online.grads; y: (batch,) is a constant

    def loss_fn() -> float:
        q = agent.online.forward(batch.obs)
        return td_loss(q, batch.actions, td_target, kind=config.loss, delta=config.huber_delta,
                       weights=batch.weights)[0]

    reports = check_gradients(loss_fn, agent.online.params, agent.online.grads, tol=args.tol,
                              max_entries=args.max_entries, rng=np.random.default_rng(check_seq))

    n_params = sum(p.size for p in agent.online.params.values())
    entries = "every entry" if args.max_entries is None else f"up to {args.max_entries} sampled entries"
    loss_text = f"huber (delta {config.huber_delta:g})" if config.loss == "huber" else "mse"
    a_next = "online" if config.double_dqn else "target"
    print(f"TD-loss gradient check on real {ENV_ID} data (seed {args.seed})")
    print(f"  transitions  {args.transitions} from a uniform random policy ({episodes} episodes ended, "
          f"{terminated} terminated), float64 replay")
    print(f"  network      Q {' -> '.join(map(str, agent.online.sizes))} float64, after {agent.n_updates} "
          f"{config.optimizer} updates (lr {config.learning_rate:g}) on that replay")
    print(f"  target       initial weights + N(0, {TARGET_NOISE:g}^2) noise; its greedy a' differs from the online "
          f"network's on {disagree} of {args.batch_size} next states")
    print(f"  double DQN   {str(config.double_dqn).lower()}: a' = argmax of the {a_next} network, "
          f"evaluated by the target network")
    head = "dueling: Q = V + A - mean_a A (the last W, b: row 0 is V)" if config.dueling else "linear"
    print(f"  head         {head}")
    weighted = ", each sample weighted by its IS weight in [0.1, 1]" if args.weights else ""
    print(f"  loss         {loss_text} = {loss:.6g} on a batch of {args.batch_size}, TD targets held fixed{weighted}")
    print(f"  checked      {entries} of each of the {len(reports)} parameters ({n_params} numbers), "
          f"eps {DEFAULT_EPS:g}, tol {args.tol:g}")
    near = [(i, int((np.abs(z) < KINK_ZONE).sum())) for i, z in enumerate(zs, start=1)]
    closest = min(float(np.abs(z).min()) for z in zs)
    print(f"  ReLU kinks   smallest |pre-activation| in the batch: {closest:.2e}")
    if any(n for _, n in near):
        where = ", ".join(f"{n} in z{i}" for i, n in near if n)
        print(f"  note: pre-activations within {KINK_ZONE:g} of 0 ({where}): central differences there straddle the "
              "ReLU kink, where the loss is not differentiable, so entries feeding them may disagree without a bug")
    print(format_report(reports, tol=args.tol))
    failed = [r.name for r in reports if not r.passed]
    print(f"FAIL: {', '.join(failed)}" if failed else f"all {len(reports)} parameters pass")
    return 1 if failed else 0


if __name__ == "__main__":
    run_command(main, "gradcheck_td.py", lambda: "nothing was written")
