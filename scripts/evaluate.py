"""Greedy evaluation of a saved agent: mean ± std of the return over N seeded episodes.

Takes a `best.npz` / `final.npz`, a training checkpoint, or a run folder (its `best.npz`). The environment defaults
to the `env_id` recorded in the file (CartPole-v1 if none); episode i starts from `reset(seed + i)`, so the same
command gives the same numbers. The episodes run side by side in a vector environment.
Every error (missing, corrupt, foreign or too-new file; unknown environment; a network that does not fit the
environment) is one line on stderr and exit status 2.

`--gif out.gif` then renders the first `--gif-episodes` of those episodes (episode i from `reset(seed + i)`, the
same greedy actions, so the same returns) with `render_mode="rgb_array"` and writes them as an animated GIF, each
frame captioned with its episode, step and running return (needs `pip install -e '.[render]'`; Box2D envs also
`.[box2d]`). A missing package or an unusable path is refused before evaluating (exit 2, nothing written); a GIF that
fails after the evaluation is one warning line, the results stay printed, and the exit status is 1.

`--json PATH` also writes the results as one JSON object to PATH (atomically; stdout stays human text). Every output
path (--json, --gif) is checked before the evaluation starts, and an existing file is never replaced unless --force.
Seeds: episode i resets with `seed + i`, an int64, so `--seed` lies in [0, 2**63 - episodes].

Exit status: 0 evaluated (and every file asked for written); 1 an optional GIF or the JSON file could not be
written after the evaluation; 2 bad input (one line on stderr, nothing written).

Usage:
    PYTHONPATH=. python scripts/evaluate.py runs/cartpole/best.npz [--episodes 100] [--seed 0] [--env-id ID]
        [--json PATH] [--force]
    PYTHONPATH=. python scripts/evaluate.py runs/cartpole --episodes 10 --gif cartpole.gif [--gif-episodes 2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from agents.algo.dqn import DQNAgent
from agents.loop.evaluation import evaluate
from agents.run.aggregate import check_output_file
from agents.run.checkpoint import CheckpointError, atomic_write_text, check_compatible, load_checkpoint
from agents.run.cli import OneLineParser, fail, path_arg
from agents.run.entry import run_command  # noqa: E402
from agents.run.gif import MAX_FPS, MIN_FPS, check_gif_path, default_fps, pillow, write_gif
from agents.run.models import agent_from_checkpoint
from envs import EnvError, VecEnv
from envs.render import open_render_env, render_episodes, render_fps

PROG = "evaluate.py"
DEFAULT_ENV_ID = "CartPole-v1"
MAX_ENVS = 100  # episodes beyond this run in waves
MAX_EPISODES = 1_000_000  # a (episodes,) array of returns, and hours of CartPole at most
MAX_RESET_SEED = 2**63 - 1  # reset seeds are int64: the last episode's, seed + episodes - 1, must fit
GIF_FPS = 25  # --gif-every's default keeps about this many frames per second of the env's own time


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineParser(prog=PROG, description=__doc__.splitlines()[0],
                           epilog="exit status: 0 evaluated; 1 the GIF or the JSON file could not be written after "
                                  "the evaluation; 2 bad input (nothing written)")
    parser.add_argument("checkpoint", type=path_arg, help="best.npz, final.npz, a training checkpoint, or a run folder")
    parser.add_argument("--episodes", type=int, default=100,
                        help=f"greedy episodes to run, 1 to {MAX_EPISODES} (default 100)")
    parser.add_argument("--seed", type=int, default=0,
                        help="episode i resets with seed + i; 0 <= seed <= 2**63 - episodes (default 0)")
    parser.add_argument("--env-id", help=f"Gymnasium id (default: the file's env_id, else {DEFAULT_ENV_ID})")
    parser.add_argument("--json", type=path_arg, metavar="PATH", default=None,
                        help="also write the results as one JSON object to PATH (default: none)")
    parser.add_argument("--force", action="store_true",
                        help="replace existing --json and --gif files (default: an existing file is refused)")
    gif = parser.add_argument_group("GIF of the agent (needs pip install -e '.[render]')")
    gif.add_argument("--gif", type=path_arg, metavar="OUT.gif",
                     help="after the evaluation, write its first --gif-episodes episodes as an animated GIF "
                          "(default: none)")
    gif.add_argument("--gif-episodes", type=int, default=None, metavar="K",
                     help="episodes in the GIF, at most --episodes; episode i is the evaluation's episode i, seed + i "
                          "(default 1)")
    gif.add_argument("--gif-every", type=int, default=None, metavar="N",
                     help=f"keep every N-th step of each episode, and always its last (default: the env's "
                          f"render_fps / {GIF_FPS}, rounded, at least 1: 2 for CartPole and LunarLander, 1 for "
                          "Acrobot and MountainCar)")
    gif.add_argument("--gif-fps", type=float, default=None, metavar="F",
                     help=f"frames per second, {MIN_FPS} to {MAX_FPS} (default: real time, render_fps / N); the "
                          "last frame of each episode stays 1 s")
    gif.add_argument("--gif-scale", type=float, default=None, metavar="S",
                     help="downscale frames by S in (0, 1] (default 1: the env's render size)")
    args = parser.parse_args(argv)
    for name in ("checkpoint", "json", "gif"):  # path_arg keeps the text as given
        if getattr(args, name) is not None:
            setattr(args, name, Path(getattr(args, name)))
    if not 1 <= args.episodes <= MAX_EPISODES:
        parser.error(f"--episodes must be in [1, {MAX_EPISODES}], got {_short(args.episodes)}")
    if not 0 <= args.seed <= MAX_RESET_SEED - (args.episodes - 1):  # the last episode's reset seed is an int64
        parser.error(f"--seed must be an integer in [0, 2**63 - episodes] = [0, {MAX_RESET_SEED - args.episodes + 1}] "
                     f"(episode i resets with seed + i), got {_short(args.seed)}")
    given = [f"--gif-{name}" for name in ("episodes", "every", "fps", "scale")
             if getattr(args, f"gif_{name}") is not None]
    if args.gif is None and given:
        parser.error(f"{', '.join(given)} given without --gif OUT.gif")
    checks = (("episodes", args.gif_episodes, args.gif_episodes is None or args.gif_episodes >= 1, "at least 1"),
              ("every", args.gif_every, args.gif_every is None or args.gif_every >= 1, "at least 1"),
              ("fps", args.gif_fps, args.gif_fps is None or MIN_FPS <= args.gif_fps <= MAX_FPS,
               f"in [{MIN_FPS}, {MAX_FPS}]"),
              ("scale", args.gif_scale, args.gif_scale is None or 0 < args.gif_scale <= 1, "in (0, 1]"))
    for name, value, ok, want in checks:
        if not ok:
            parser.error(f"--gif-{name} must be {want}, got {value}")
    if args.gif_episodes is not None and args.gif_episodes > args.episodes:  # the GIF replays evaluated episodes
        parser.error(f"--gif-episodes {args.gif_episodes} is more than --episodes {args.episodes}: the GIF shows "
                     f"episodes of the evaluation; give --gif-episodes {args.episodes} or fewer, or more --episodes")
    return args


def _short(value: int) -> str:
    """An integer for a message: as is, or its first digits and length when it is huge (10**23, 10**4000)."""
    text = str(value) if abs(value) < 10**30 else f"{str(value)[:12]}... ({len(str(abs(value)))} digits)"
    return text


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse, before any work, an output path that cannot be written or would replace a file (without --force)."""
    if args.json is not None:
        check_output_file("--json", args.json, args.force)
        if args.gif is not None and args.json.absolute() == args.gif.absolute():
            raise ValueError(f"--json and --gif name the same file {args.json}")
    if args.gif is not None:  # a path that cannot be written, an existing file, Pillow missing
        check_gif_path(args.gif)
        check_output_file("--gif", args.gif, args.force)  # its folder takes a new file; an existing one needs --force
        pillow()


def model_path(given: Path) -> Path:
    """The model file to evaluate: `given`, or a run folder's best.npz (a batch folder is refused, naming a seed)."""
    try:
        if not given.is_dir():
            return given
        seeds = sorted(p.name for p in given.glob("seed*") if (p / "best.npz").exists())
        has_best = (given / "best.npz").exists()
    except OSError as e:  # a name too long, a loop of links
        raise CheckpointError(f"{given}: cannot read it: {e.strerror or e}") from None
    if not has_best and seeds:
        raise CheckpointError(f"{given} is a batch of seeds ({len(seeds)} seed folders): evaluate one of them, e.g. "
                              f"{given / seeds[0]}")
    print(f"{given} is a run folder: evaluating its best checkpoint {given / 'best.npz'}")
    return given / "best.npz"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_outputs(args)
        path = model_path(args.checkpoint)
    except (ValueError, CheckpointError) as e:
        fail(PROG, str(e))
    try:
        ckpt = load_checkpoint(path)  # validates the file before an environment is built
        seeds = ckpt.meta.get("seeds")
        if ckpt.meta.get("kind") in ("seed_batch", "engine") and isinstance(seeds, list) and len(seeds) > 1:
            raise CheckpointError(f"{ckpt.path}: a seed-batch checkpoint holds {len(seeds)} agents: "
                                  f"evaluate one seed's model, e.g. {ckpt.path.parent / 'seed<k>' / 'best.npz'}")
        env_id = args.env_id if args.env_id is not None else ckpt.meta.get("env_id", DEFAULT_ENV_ID)
        if not isinstance(env_id, str):
            raise CheckpointError(f"{ckpt.path}: env_id in its metadata must be a string, got {env_id!r}")
        env = VecEnv(env_id, min(args.episodes, MAX_ENVS), np.random.default_rng(args.seed))
        render_env = open_render_env(env_id) if args.gif is not None else None  # pygame, Box2D: refused here
    except (CheckpointError, EnvError) as e:
        fail(PROG, str(e))
    try:
        check_compatible(ckpt, env.obs_dim, env.n_actions, env_id)
        agent = agent_from_checkpoint(ckpt)
        returns = evaluate(agent, env, args.episodes, args.seed)
    except CheckpointError as e:
        if render_env is not None:
            render_env.close()
        fail(PROG, str(e))
    finally:
        env.close()

    mean, std = float(returns.mean()), float(returns.std())
    print(f"checkpoint {ckpt.path} on {env_id}, greedy, seeds {args.seed}..{args.seed + args.episodes - 1}")
    print(f"return {mean:.2f} ± {std:.2f} over {args.episodes} episodes (min {returns.min():g}, max {returns.max():g})")
    results = {
        "checkpoint": str(ckpt.path),
        "env_id": env_id,
        "seed": args.seed,
        "episodes": args.episodes,
        "mean": mean,
        "std": std,
        "min": float(returns.min()),
        "max": float(returns.max()),
        "returns": returns.tolist(),
        **({"gif": None} if args.gif is not None else {}),
    }
    status = write_json(args.json, results)  # the results first, before the optional GIF
    if render_env is not None:
        try:
            results["gif"] = write_episodes_gif(args, agent, render_env, returns)
        except Exception as e:  # an optional step after the results: one line, the results stand
            print(f"{PROG}: warning: could not write the GIF {args.gif}: {type(e).__name__}: {e}", file=sys.stderr)
            status = 1
        finally:
            render_env.close()
        if results["gif"] is not None and status == 0:
            status = write_json(args.json, results)  # now with the GIF's figures
    return status


def write_json(path: Path | None, results: dict) -> int:
    """Write `results` to `path` atomically (nothing if None); 0 if written, 1 (and one line) if not."""
    if path is None:
        return 0
    try:
        atomic_write_text(path, json.dumps(results) + "\n")
    except OSError as e:  # a full disk, a folder removed since the check
        print(f"{PROG}: error: cannot write {path}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(f"results in {path}")
    return 0


def write_episodes_gif(args: argparse.Namespace, agent: DQNAgent, render_env: Any, returns: np.ndarray) -> dict:
    """Render the evaluation's first `--gif-episodes` episodes with the same greedy actions and write the GIF.

    Prints one line on the GIF, and a warning for an episode whose return differs from the evaluation's (the vector
    env and the rendered env are two implementations of one environment: CartPole's vector kernel may differ from
    the scalar one in the last bit of a cosine, which can flip a near-tie between two actions).
    """
    episodes = args.gif_episodes or 1
    every = args.gif_every or max(1, round(render_fps(render_env) / GIF_FPS))
    fps = args.gif_fps or default_fps(render_fps(render_env), every)

    def greedy(obs: np.ndarray) -> int:  # the evaluation's action choice: argmax_a Q(obs, a)
        return int(agent.greedy(obs[None])[0])

    frames = render_episodes(render_env, greedy, episodes, args.seed, every)
    gif = write_gif(args.gif, frames, fps, args.gif_scale or 1.0)
    shown = [e["return"] for e in gif["episodes"]]
    print(f"gif {gif['path']}: {episodes} episode(s), seeds {args.seed}..{args.seed + episodes - 1}, returns "
          f"{', '.join(f'{r:g}' for r in shown)}; {gif['frames']} frames of {gif['width']}x{gif['height']} "
          f"(every {every} step(s), {gif['frame_ms']} ms each), {gif['bytes'] / 1e3:.0f} kB")
    for i, r in enumerate(shown[: len(returns)]):
        if r != returns[i]:
            print(f"{PROG}: warning: the GIF's episode {i} earned {r:g} but the evaluation's {returns[i]:g} (the "
                  "rendered env and the vector env disagree in the last bits of their physics)", file=sys.stderr)
    return {**gif, "every": every, "fps": fps, "seed": args.seed}


if __name__ == "__main__":
    run_command(main, "evaluate.py", lambda: "nothing was written")
