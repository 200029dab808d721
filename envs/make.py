"""Creating, checking, resetting and stepping Gymnasium environments.

This module and `envs.vector` are the only places that know Gymnasium's reset/step tuples and its space classes.
The training loop steps E envs at once through `envs.VecEnv`; `reset_env`/`step_env` are the single-env view, a
1-D observation `obs: (obs_dim,)`, an integer action and a `Step` with separate `terminated` and `truncated` flags.
"""

from typing import NamedTuple

import gymnasium as gym
import numpy as np

from envs.diagnostic import DIAGNOSTIC_IDS, check_action


class EnvError(ValueError):
    """An environment id is unknown, or the environment has spaces dqn-np cannot handle."""


class Step(NamedTuple):
    """One environment transition, without Gymnasium's info dict."""

    next_obs: np.ndarray
    """(obs_dim,) observation after the action; the true final observation when the episode ended."""
    reward: float
    """Reward for the action."""
    terminated: bool
    """True when the MDP reached a terminal state: the target must not bootstrap from `next_obs`."""
    truncated: bool
    """True when the episode was cut short (e.g. by a time limit): the target still bootstraps from `next_obs`."""


EXTRAS = {"box2d": ("Box2D", "box2d"), "pygame": ("pygame", "render")}
"""A word in Gymnasium's DependencyNotInstalled message -> (the package, the dqn-np extra that installs it)."""


def make_env(env_id: str, seed: int | None = None, **kwargs) -> gym.Env:
    """Create a Gymnasium environment and check that dqn-np supports its spaces.

    Args:
        env_id: A registered id such as "CartPole-v1" or "dqn_np/Chain-v0".
        seed: If given, seeds `env.action_space` and `env.observation_space` (their `sample()` streams). The
            environment itself is seeded by the caller's first `reset_env(env, seed)`.
        **kwargs: Passed to `gym.make` (e.g. `max_episode_steps=50`, or constructor arguments like `n_states=6`).

    Returns:
        The environment, with Gymnasium's default wrappers (time limit, order enforcing, checker).

    Raises:
        EnvError: If `env_id` is not registered, or its spaces are not supported (see `check_spaces`).

    Example:
        >>> env = make_env("CartPole-v1", seed=0)
        >>> check_spaces(env)
        (4, 2)
    """
    try:
        env = gym.make(env_id, **kwargs)
    except (gym.error.UnregisteredEnv, gym.error.DeprecatedEnv) as err:
        raise EnvError(
            f"env_id {env_id!r} is not a registered Gymnasium environment ({err}); expected an id such as "
            f"'CartPole-v1' or one of the dqn_np diagnostic ids {', '.join(DIAGNOSTIC_IDS)}"
        ) from err
    except gym.error.DependencyNotInstalled as err:  # an optional extra: ours to name, in one line
        raise missing_dependency(env_id, err, "create") from err
    except gym.error.Error as err:  # a malformed id, ...
        raise EnvError(f"cannot create env_id {env_id!r}: {err}") from err
    try:
        check_spaces(env)
    except EnvError:
        env.close()
        raise
    if seed is not None:
        env.action_space.seed(seed)
        env.observation_space.seed(seed)
    return env


def missing_dependency(env_id: str, err: gym.error.DependencyNotInstalled, doing: str) -> EnvError:
    """The one-line `EnvError` for Gymnasium's `DependencyNotInstalled`, naming the dqn-np extra that installs it.

    Box2D is missing when `gym.make` imports a Box2D env; pygame only when an env first renders, so both
    `make_env` and `envs.render` map the error here.

    Args:
        env_id: The environment that needed the package.
        err: Gymnasium's error; a package of `EXTRAS` is recognised by name in its message.
        doing: What failed, for an unknown package ("create", "render").
    """
    known = next((pair for key, pair in EXTRAS.items() if key in str(err).lower()), None)
    if known is None:
        return EnvError(f"cannot {doing} env_id {env_id!r}: {str(err).splitlines()[0]}")
    return EnvError(f"env_id {env_id!r} needs {known[0]}, which is not installed: pip install -e '.[{known[1]}]'")


def _env_name(env: gym.Env) -> str:
    """The registered id of `env`, or its class name when it was not created by `gym.make`."""
    return env.spec.id if env.spec is not None else type(env.unwrapped).__name__


def check_spaces(env: gym.Env) -> tuple[int, int]:
    """Check that `env` has a flat Box observation space and a Discrete action space numbered from 0.

    Args:
        env: A Gymnasium environment (wrapped or not).

    Returns:
        `(obs_dim, n_actions)`: observations have shape `(obs_dim,)`, actions are `0, ..., n_actions - 1`.

    Raises:
        EnvError: If the observation space is not a 1-D Box of a float or integer dtype (images, Dict, Tuple, ...), or
            the action space is not `Discrete(n)` with `start == 0` (continuous Box, MultiDiscrete, ...).
    """
    name = _env_name(env)
    obs_space, action_space = env.observation_space, env.action_space
    obs_ok = (
        isinstance(obs_space, gym.spaces.Box)
        and len(obs_space.shape) == 1
        and obs_space.shape[0] > 0
        and obs_space.dtype.kind in "fiu"
    )
    if not obs_ok:
        raise EnvError(
            f"{name}: observation space {obs_space!r} is not supported; dqn-np needs a Box observation space with a "
            "1-D shape (obs_dim,) of a float or integer dtype (flatten images or Dict/Tuple observations first)"
        )
    if not (isinstance(action_space, gym.spaces.Discrete) and int(action_space.start) == 0):
        raise EnvError(
            f"{name}: action space {action_space!r} is not supported; dqn-np needs a Discrete action space "
            "(n actions numbered from 0)"
        )
    return int(obs_space.shape[0]), int(action_space.n)


def reward_threshold(env: gym.Env) -> float | None:
    """The average return at which `env` counts as solved (`env.spec.reward_threshold`), or None if it has none."""
    if env.spec is None or env.spec.reward_threshold is None:
        return None
    return float(env.spec.reward_threshold)


def reset_env(env: gym.Env, seed: int | None) -> np.ndarray:
    """Start a new episode and return its first observation.

    Args:
        env: An environment from `make_env`.
        seed: Seeds the environment's own generator (`env.np_random`); pass it on the first reset of a run and
            None afterwards, so later episodes continue the same random stream.

    Returns:
        obs: (obs_dim,) the first observation; Gymnasium's info dict is dropped.
    """
    obs, _info = env.reset(seed=seed)
    return np.asarray(obs)


def step_env(env: gym.Env, action: int) -> Step:
    """Take one action and return the transition without Gymnasium's info dict.

    For a single (non-vector) Gymnasium environment, `next_obs` is the TRUE observation after the action, also when
    the episode ends by termination or truncation. That is the observation to store in replay: on truncation the TD
    target bootstraps from it; on termination it is stored but not bootstrapped from. After either flag is True the
    caller must call `reset_env` to start the next episode.

    Args:
        env: An environment from `make_env`.
        action: An integer in `range(n_actions)`.

    Returns:
        Step(next_obs: (obs_dim,), reward, terminated, truncated) as Python float and bools.

    Raises:
        ValueError: If `action` is not in the action space.
    """
    check_action(env.action_space, action)
    next_obs, reward, terminated, truncated, _info = env.step(action)
    return Step(np.asarray(next_obs), float(reward), bool(terminated), bool(truncated))
