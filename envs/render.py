"""Rendering greedy episodes of one environment as RGB frames (`render_mode="rgb_array"`), for GIFs of an agent.

`open_render_env` makes one environment that draws itself and renders its first frame at once, so a missing pygame
(classic control draws with it) or Box2D is a one-line `EnvError` before any other work. `render_episodes` plays
episodes with the caller's action function and yields a `Frame` per kept step: episode i starts from
`reset(seed=seed + i)`, exactly as the episodes of `agents.loop.evaluation.evaluate`, so with the same greedy
action choice it plays the same episodes and earns the same returns.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np

from envs.make import EnvError, make_env, missing_dependency

# pygame greets stdout on import, and SDL complains on stderr without a display or sound card; neither is needed
# to draw into an off-screen surface. A user's own settings win.
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

DEFAULT_FPS = 30
"""Frames per second of an environment whose metadata names no `render_fps`."""


class Frame(NamedTuple):
    """One rendered step of one episode."""

    image: np.ndarray
    """(H, W, 3) uint8 RGB: the environment after `step` actions of this episode (0: right after the reset)."""
    episode: int
    """Episode index i, reset with `seed + i`."""
    step: int
    """Actions taken so far in this episode."""
    running_return: float
    """Sum of the rewards of those actions (0.0 at the reset frame)."""
    done: bool
    """True on the episode's last frame (terminated or truncated): `running_return` is then its return."""


def open_render_env(env_id: str, **kwargs: Any) -> gym.Env:
    """One environment with `render_mode="rgb_array"`, checked by rendering a first frame.

    Args:
        env_id: A registered id with a flat Box observation and Discrete actions (as for `make_env`).
        **kwargs: Passed to `gym.make` (e.g. `max_episode_steps=50`).

    Returns:
        The environment, reset once (seed 0); `render_episodes` resets it again with each episode's seed.

    Raises:
        EnvError: An unknown id or unsupported spaces (`make_env`'s words); a missing package (pygame, Box2D) in one
            line naming the extra that installs it; an environment that cannot render RGB frames.
    """
    env = make_env(env_id, render_mode="rgb_array", **kwargs)
    try:
        env.reset(seed=0)
        frame_shape(_render(env, env_id))
    except BaseException:
        env.close()
        raise
    return env


def frame_shape(image: Any) -> tuple[int, int]:
    """`(H, W)` of an `(H, W, 3)` uint8 frame; an `EnvError` for anything else (None, greyscale, RGBA, floats)."""
    shape, dtype = np.shape(image), getattr(image, "dtype", None)
    if len(shape) != 3 or shape[2] != 3 or dtype != np.uint8 or 0 in shape:
        raise EnvError(f"the environment rendered {type(image).__name__} of shape {shape} and dtype {dtype}; "
                       "expected an (H, W, 3) uint8 RGB frame from render_mode='rgb_array'")
    return int(shape[0]), int(shape[1])


def render_fps(env: gym.Env) -> float:
    """The frames per second the environment's metadata names (`render_fps`), else `DEFAULT_FPS`."""
    fps = env.metadata.get("render_fps")
    return float(fps) if isinstance(fps, (int, float)) and fps > 0 else float(DEFAULT_FPS)


def render_episodes(env: gym.Env, act: Callable[[np.ndarray], int], episodes: int, seed: int,
                    every: int = 1) -> Iterator[Frame]:
    """Play `episodes` episodes and yield their frames: every `every`-th step of each, and always its last.

    Episode i resets with `seed + i`; its frames are steps `0, every, 2 * every, ...` and its final step, so an
    episode of L actions yields `L // every + 1` frames, one more when `every` does not divide L. Only kept steps
    are rendered.

    Args:
        env: From `open_render_env`.
        act: `obs: (obs_dim,) -> action`, e.g. argmax Q of the agent (it must draw nothing to replay an evaluation).
        episodes: Episodes to play, >= 1.
        seed: The first episode's reset seed, >= 0.
        every: Keep every `every`-th step, >= 1.

    Yields:
        `Frame(image: (H, W, 3) uint8, episode, step, running_return, done)`.

    Raises:
        EnvError: A frame is not `(H, W, 3)` uint8, or changes shape, or a package the renderer needs is missing.
    """
    env_id = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    shape = None
    for i in range(episodes):
        obs, _info = env.reset(seed=seed + i)
        step, total, done = 0, 0.0, False
        while True:
            if done or step % every == 0:
                image = _render(env, env_id)
                got = frame_shape(image)
                if shape is not None and got != shape:
                    raise EnvError(f"{env_id} rendered a frame of size {got} after frames of size {shape}")
                shape = got
                yield Frame(image, i, step, total, done)
            if done:
                break
            obs, reward, terminated, truncated, _info = env.step(act(np.asarray(obs)))
            step, total, done = step + 1, total + float(reward), bool(terminated or truncated)


def _render(env: gym.Env, env_id: str) -> Any:
    """`env.render()`, with Gymnasium's missing-package error as our one-line `EnvError`."""
    try:
        return env.render()
    except gym.error.DependencyNotInstalled as err:
        raise missing_dependency(env_id, err, "render") from err
