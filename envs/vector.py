"""E copies of one environment stepped together, with Gymnasium's vector autoreset hidden inside.

The training loop sees `VecEnv.step(actions: (E,)) -> VecStep(next_obs: (E, obs_dim), reward: (E,), terminated: (E,),
truncated: (E,))` where `next_obs` is always the TRUE observation after the action (the final one where an episode
ended), while `VecEnv.obs: (E, obs_dim)` already holds the first observation of the next episode in those rows. Every
episode starts from a seed drawn from the Generator passed in, so a run is reproducible, and `state_dict` captures
everything needed to continue it exactly.

The backends, chosen by `VecEnv` (the first three are NumPy vector kernels, taken by default where one exists):

- "cartpole-vector": Gymnasium's NumPy `CartPoleVectorEnv` (one call steps all E envs). Its own autoreset (NEXT_STEP
  mode, one shared generator) is bypassed: ended slots are reset here, drawing exactly what `CartPoleEnv.reset(seed=s)`
  draws, so each episode matches a single `gym.make("CartPole-v1")` env reset with the same seed.
- "acrobot-numpy", "mountaincar-numpy": our own kernels for Acrobot-v1 and MountainCar-v0 (`envs.classic`), whose
  trajectories equal those of single `gym.make` envs reset with the same seeds, bit for bit.
- "sync": `SyncVectorEnv` with autoreset disabled, for every other environment (and for any env given wrappers,
  kwargs its kernel does not implement, or `backend="gymnasium"`); ended envs are reset with a mask.
"""

import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np

from envs.classic import KERNELS
from envs.make import EnvError, _env_name, check_spaces, make_env, reward_threshold

try:  # Gymnasium >= 1.0; without it every env takes the sync backend
    from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv
except ImportError:  # pragma: no cover - depends on the installed Gymnasium
    CartPoleVectorEnv = None

BACKENDS = ("auto", "numpy", "gymnasium")
"""`VecEnv(backend=...)`: "auto" takes a NumPy vector kernel where one exists, else Gymnasium's synchronous vector env;
"numpy" requires the kernel; "gymnasium" always takes the synchronous reference path."""
KERNEL_IDS = ("CartPole-v1", *KERNELS)
"""The env ids with a NumPy vector kernel (when built without wrappers and without kwargs the kernel lacks)."""
_SEED_BOUND = 2**31
"""Episode seeds are drawn with `rng.integers(_SEED_BOUND, size=k)`."""
_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
"""Unsigned view of a signed integer itemsize: negative actions wrap to huge values, so one `max` checks both ends."""


class VecStep(NamedTuple):
    """One transition in each of E environments, without Gymnasium's info dicts."""

    next_obs: np.ndarray
    """(E, obs_dim) TRUE observation after the action; where an episode ended, its final observation."""
    reward: np.ndarray
    """(E,) float64 reward for the action."""
    terminated: np.ndarray
    """(E,) bool: the MDP reached a terminal state; the target must not bootstrap from `next_obs`."""
    truncated: np.ndarray
    """(E,) bool: the episode was cut short (time limit); the target still bootstraps from `next_obs`."""


class _CartPoleBackend:
    """Gymnasium's `CartPoleVectorEnv`, with per-slot seeded resets instead of its own NEXT_STEP autoreset."""

    name = "cartpole-vector"
    obs_dtype = np.dtype(np.float32)
    slot_axes = {"state": 1, "steps": 0}  # the env axis of each array of `state_dict` (`VecEnv.select_state`)

    def __init__(self, vec: gym.vector.VectorEnv) -> None:
        self.vec = vec

    @classmethod
    def create(cls, env_id: str, n_envs: int, kwargs: dict[str, Any]) -> "_CartPoleBackend | None":
        """The backend if `make_vec(env_id)`'s default mode gives a `CartPoleVectorEnv` we can drive, else None."""
        if CartPoleVectorEnv is None:
            return None
        try:
            if gym.spec(env_id).vector_entry_point is None:
                return None
            vec = gym.make_vec(env_id, num_envs=n_envs, **kwargs)
        except Exception:  # e.g. a kwarg the vector entry point does not take: the sync backend may still work
            return None
        if isinstance(vec, CartPoleVectorEnv):
            vec.reset(seed=0)  # creates `state`; every slot is overwritten by our own seeded reset
            if (
                np.shape(getattr(vec, "state", None)) == (4, n_envs)
                and np.shape(getattr(vec, "steps", None)) == (n_envs,)
                and np.shape(getattr(vec, "prev_done", None)) == (n_envs,)
                and isinstance(getattr(vec, "max_episode_steps", None), int)
            ):
                return cls(vec)
        vec.close()  # another Gymnasium version, or another vector env: not ours to drive
        return None

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Step all slots; the vector env never autoresets, since `prev_done` is cleared by `reset_envs`."""
        obs, reward, terminated, truncated, _info = self.vec.step(actions)
        return obs, reward.astype(np.float64), terminated, truncated

    def reset_envs(self, idx: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        """Reset slots `idx: (k,)` with `seeds: (k,)` as `CartPoleEnv.reset(seed=s)` would; returns obs (k, 4)."""
        vec = self.vec
        for i, seed in zip(idx.tolist(), seeds.tolist(), strict=True):
            # CartPoleEnv.reset draws uniform(-0.05, 0.05, size=4) from seeding.np_random(s) == PCG64(SeedSequence(s))
            vec.state[:, i] = np.random.default_rng(seed).uniform(-0.05, 0.05, size=4)
        vec.steps[idx] = 0
        vec.prev_done[idx] = False  # so the next step is a real step, not the vector env's own reset
        return vec.state[:, idx].T.astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        """`state`: (4, E) float64 physical state; `steps`: (E,) int64 steps taken in each episode."""
        return {"state": self.vec.state.copy(), "steps": self.vec.steps.astype(np.int64)}

    def load_state_dict(self, state: dict[str, Any], episode_seeds: np.ndarray) -> np.ndarray | None:
        """Restore the slots; returns the observations (E, 4) they imply."""
        n_envs = self.vec.num_envs
        phys = _array(state, "state", (4, n_envs), "f")
        steps = _array(state, "steps", (n_envs,), "iu")
        self.vec.state = phys.astype(np.float64)  # a fresh array: the vector env replaces `state` every step anyway
        self.vec.steps[:] = steps
        self.vec.prev_done[:] = False
        return self.vec.state.T.astype(np.float32)

    def close(self) -> None:
        self.vec.close()


class _SyncBackend:
    """`SyncVectorEnv` with autoreset disabled; logs each env's actions in its current episode, for `state_dict`."""

    name = "sync"
    slot_axes = {"actions": 0, "lengths": 0}  # the env axis of each array of `state_dict` (`VecEnv.select_state`)

    def __init__(self, vec: gym.vector.SyncVectorEnv, obs_dtype: np.dtype) -> None:
        self.vec = vec
        self.obs_dtype = obs_dtype
        n_envs = vec.num_envs
        self._rows = np.arange(n_envs)
        self._log = np.zeros((n_envs, 64), dtype=np.int64)  # (E, cap) actions of each env's current episode
        self._lengths = np.zeros(n_envs, dtype=np.int64)  # (E,) how many of them are valid
        self._headroom = self._log.shape[1]  # writes left before some length can reach cap (lengths grow by <= 1)

    @classmethod
    def create(cls, env_id: str, n_envs: int, kwargs: dict[str, Any], obs_dtype: np.dtype,
               wrappers: tuple[Callable[[gym.Env], gym.Env], ...] = ()) -> "_SyncBackend":
        # copy=False: step hands out its own buffer, which we copy once (cheaper than SyncVectorEnv's deepcopy)
        vector_kwargs = {"autoreset_mode": gym.vector.AutoresetMode.DISABLED, "copy": False}
        try:
            vec = gym.make_vec(env_id, n_envs, vectorization_mode="sync", vector_kwargs=vector_kwargs,
                               wrappers=wrappers or None, **kwargs)
        except Exception as err:
            raise EnvError(f"cannot vectorize env_id {env_id!r}: {type(err).__name__}: {err}") from err
        return cls(vec, obs_dtype)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        obs, reward, terminated, truncated, _info = self.vec.step(actions)
        self._log[self._rows, self._lengths] = actions
        self._lengths += 1
        self._headroom -= 1
        if self._headroom == 0:
            self._grow()
        # copy=False hands out the vector env's own buffer, which the next call overwrites
        return np.array(obs, dtype=self.obs_dtype), reward, terminated, truncated

    def _grow(self) -> None:
        """Double the log's capacity if some episode filled it; recompute the headroom."""
        longest = int(self._lengths.max())
        if longest >= self._log.shape[1]:
            self._log = np.concatenate([self._log, np.zeros_like(self._log)], axis=1)
        self._headroom = self._log.shape[1] - longest

    def reset_envs(self, idx: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        """Reset envs `idx: (k,)` with `seeds: (k,)`; returns their first obs (k, obs_dim)."""
        per_env: list[int | None] = [None] * self.vec.num_envs  # SyncVectorEnv reads the seed of env i at position i
        for i, seed in zip(idx.tolist(), seeds.tolist(), strict=True):
            per_env[i] = seed
        mask = np.zeros(self.vec.num_envs, dtype=bool)
        mask[idx] = True
        obs, _info = self.vec.reset(seed=per_env, options={"reset_mask": mask})
        self._lengths[idx] = 0
        return np.array(obs[idx], dtype=self.obs_dtype)

    def state_dict(self) -> dict[str, Any]:
        """`actions`: (E, max_len) int64 actions of each env's current episode; `lengths`: (E,) valid prefix."""
        return {"actions": self._log[:, : int(self._lengths.max())].copy(), "lengths": self._lengths.copy()}

    def load_state_dict(self, state: dict[str, Any], episode_seeds: np.ndarray) -> np.ndarray | None:
        """Reset every env with its episode seed and replay its logged actions; returns the obs (E, obs_dim) reached.

        Returns None if a replayed action ended the episode (the env is not deterministic given its seed).
        """
        n_envs = self.vec.num_envs
        lengths = _array(state, "lengths", (n_envs,), "iu").astype(np.int64)
        actions = _array(state, "actions", None, "iu")
        if actions.ndim != 2 or actions.shape[0] != n_envs or (lengths < 0).any() or actions.shape[1] < lengths.max():
            raise ValueError(
                f"state['actions'] has shape {actions.shape} and state['lengths'] is {lengths.tolist()}; expected "
                f"actions of shape ({n_envs}, max_len) with 0 <= lengths <= max_len"
            )
        obs = np.array(self.vec.reset(seed=episode_seeds.tolist())[0], dtype=self.obs_dtype)
        for i, env in enumerate(self.vec.envs):
            for action in actions[i, : lengths[i]].astype(np.int64):  # np.int64 scalars, as `step` hands them out
                next_obs, _reward, terminated, truncated, _info = env.step(action)
                if terminated or truncated:
                    return None
                obs[i] = next_obs
        cap = max(64, 1 << int(lengths.max()).bit_length())
        self._log = np.zeros((n_envs, cap), dtype=np.int64)
        width = min(actions.shape[1], cap)  # columns past every length are padding
        self._log[:, :width] = actions[:, :width]
        self._lengths = lengths
        self._headroom = cap - int(lengths.max())
        return obs

    def close(self) -> None:
        self.vec.close()


def _array(state: dict[str, Any], key: str, shape: tuple[int, ...] | None, kinds: str) -> np.ndarray:
    """`state[key]` as an array, checked to have `shape` (None: any) and a dtype kind in `kinds`."""
    if key not in state:
        raise ValueError(f"state has no key {key!r}; expected a dict from VecEnv.state_dict() (keys {sorted(state)})")
    value = np.asarray(state[key])
    if (shape is not None and value.shape != shape) or value.dtype.kind not in kinds:
        raise ValueError(
            f"state[{key!r}] has shape {value.shape} and dtype {value.dtype}; expected shape {shape} and dtype kind "
            f"in {kinds!r}"
        )
    return value


class VecEnv:
    """E copies of one environment, stepped together; ended episodes restart at once from seeds drawn from `rng`.

    Args:
        env_id: A registered id such as "CartPole-v1" or "dqn_np/Chain-v0".
        n_envs: E, the number of environment copies (an int >= 1).
        rng: Draws every episode's reset seed (`rng.integers(2**31, size=k)`); nothing else draws from it. A list of
            S Generators splits the envs into S equal groups (the members of a seed-batched run): group s's seeds
            come from `rng[s]` alone, exactly as a VecEnv of `n_envs // S` envs given `rng[s]` would draw them.
        wrappers: Gymnasium wrappers applied to each env, innermost first (test doubles, observation transforms);
            with any, every env takes the sync backend.
        backend: "auto" (the NumPy vector kernel where one exists, else sync), "numpy" (the kernel, or an EnvError
            naming the env) or "gymnasium" (always sync: the reference path); see `BACKENDS`. Kernels exist for
            the ids in `KERNEL_IDS`.
        **kwargs: Passed to the environment (e.g. `max_episode_steps=50`, or constructor arguments like `n_states=6`).
            The Acrobot and MountainCar kernels implement `max_episode_steps` (and MountainCar's `goal_velocity`);
            with any other kwarg those envs take the sync backend. Build the VecEnv with the same `env_id`, `n_envs`,
            kwargs and backend before `load_state_dict`.

    Attributes:
        name: The registered id.
        n_envs: E.
        obs_dim: Observation length.
        n_actions: A; actions are `0, ..., A - 1`.
        reward_threshold: The return at which the env counts as solved, or None.
        backend: "cartpole-vector" (Gymnasium's NumPy CartPole vector env), "acrobot-numpy" or "mountaincar-numpy"
            (our kernels, `envs.classic`) or "sync" (Gymnasium's `SyncVectorEnv`, any env).
        obs: (E, obs_dim) current observations, float32 (float64 for float64 or wide-integer observation spaces);
            None until `reset`. A fresh array after every `reset`/`step`.
        episode_seeds: (E,) int64 reset seed of each env's current episode.
        rng: The Generator passed in (or the list of them).

    Raises:
        ValueError: If `n_envs` is not an int >= 1.
        TypeError: If `rng` is not a `numpy.random.Generator`.
        EnvError: If `env_id` is unknown, its spaces are not supported (see `check_spaces`), or it cannot be
            vectorized.

    Example:
        >>> venv = VecEnv("CartPole-v1", n_envs=4, rng=np.random.default_rng(0))
        >>> venv.reset().shape, venv.backend
        ((4, 4), 'cartpole-vector')
        >>> out = venv.step(np.zeros(4, dtype=np.int64))
        >>> out.next_obs.shape, out.reward.dtype, out.terminated.dtype
        ((4, 4), dtype('float64'), dtype('bool'))
    """

    def __init__(self, env_id: str, n_envs: int, rng: np.random.Generator | Sequence[np.random.Generator],
                 wrappers: Sequence[Callable[[gym.Env], gym.Env]] = (), backend: str = "auto", **kwargs: Any) -> None:
        if not isinstance(n_envs, (int, np.integer)) or isinstance(n_envs, (bool, np.bool_)) or n_envs < 1:
            raise ValueError(f"n_envs={n_envs!r} is not a valid number of environments; expected an int >= 1")
        self._grouped = isinstance(rng, (list, tuple))
        if self._grouped:
            if not rng or not all(isinstance(g, np.random.Generator) for g in rng) or n_envs % len(rng):
                raise TypeError(f"rng must be a numpy.random.Generator or a list of them, one per group of envs "
                                f"(n_envs={n_envs} a multiple of its length), got {rng!r}")
            self._groups = list(rng)
        elif not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        else:
            self._groups = [rng]
        probe = make_env(env_id, **kwargs)  # EnvError for an unknown id or unsupported spaces, in make_env's words
        try:
            self.name = _env_name(probe)
            self.obs_dim, self.n_actions = check_spaces(probe)
            self.reward_threshold = reward_threshold(probe)
            obs_dtype = np.result_type(probe.observation_space.dtype, np.float32)
        finally:
            probe.close()
        self.n_envs = int(n_envs)
        self.rng = rng
        wrappers = tuple(wrappers)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        vector = None  # wrappers need the sync backend
        if not wrappers and backend != "gymnasium":
            kernel = KERNELS.get(env_id)
            vector = (kernel or _CartPoleBackend).create(env_id, self.n_envs, kwargs)
        if vector is None and backend == "numpy":
            if env_id in KERNEL_IDS and (wrappers or kwargs):
                unsupported = "wrappers" if wrappers else f"the arguments {sorted(kwargs)}"
                raise EnvError(f"env_backend 'numpy': the vector kernel for {env_id!r} does not support "
                               f"{unsupported}; use 'auto' or 'gymnasium'")
            raise EnvError(f"env_backend 'numpy' has no vector kernel for {env_id!r} (kernels exist for "
                           f"{', '.join(KERNEL_IDS)}); use 'auto' or 'gymnasium'")
        self._backend = vector or _SyncBackend.create(env_id, self.n_envs, kwargs, obs_dtype, wrappers)
        self.backend: str = self._backend.name
        self.obs: np.ndarray | None = None
        self.episode_seeds = np.zeros(self.n_envs, dtype=np.int64)

    def reset(self, seeds: np.ndarray | None = None) -> np.ndarray:
        """Start a new episode in every env.

        Args:
            seeds: (E,) non-negative integer reset seeds, or None to draw them from `rng` in one call
                (`rng.integers(2**31, size=E)`).

        Returns:
            obs: (E, obs_dim) first observations (also kept as `self.obs`).

        Raises:
            ValueError: If `seeds` is not (E,) non-negative integers.
        """
        if seeds is None:
            seeds = np.concatenate([g.integers(_SEED_BOUND, size=self.n_envs // len(self._groups))
                                    for g in self._groups])
        else:
            given = np.asarray(seeds)
            if given.shape != (self.n_envs,) or given.dtype.kind not in "iu" or (given < 0).any():
                raise ValueError(
                    f"seeds={seeds!r} is not valid; expected shape ({self.n_envs},) non-negative integers, or None"
                )
            seeds = given.astype(np.int64)
        self.episode_seeds = seeds.copy()
        self.obs = self._backend.reset_envs(np.arange(self.n_envs), seeds)
        return self.obs.copy()

    def step(self, actions: np.ndarray) -> VecStep:
        """Step every env once; envs whose episode ended restart at once with fresh seeds.

        The k ended envs (terminated or truncated) get seeds from ONE call `rng.integers(2**31, size=k)`, in env
        order. `VecStep.next_obs` holds their true final observation and `self.obs` their new first one, so a
        reset is never returned as a transition and no step is spent on it.

        Args:
            actions: (E,) integers in [0, A).

        Returns:
            VecStep(next_obs: (E, obs_dim), reward: (E,) float64, terminated: (E,) bool, truncated: (E,) bool).

        Raises:
            ValueError: If `actions` does not have shape (E,), is not an integer array, or is out of range.
            RuntimeError: If `reset` was never called.
        """
        if not isinstance(actions, np.ndarray):
            actions = np.asarray(actions)
        if actions.shape != (self.n_envs,) or actions.dtype.kind not in "iu":
            raise ValueError(
                f"actions has shape {actions.shape} and dtype {actions.dtype}; expected shape ({self.n_envs},) integers"
            )
        unsigned = actions if actions.dtype.kind == "u" else actions.view(_UNSIGNED[actions.itemsize])
        if unsigned.max() >= self.n_actions:
            bad = np.flatnonzero((actions < 0) | (actions >= self.n_actions))
            raise ValueError(
                f"actions={actions[bad].tolist()} (of envs {bad.tolist()}) are out of range; expected integers in "
                f"[0, {self.n_actions})"
            )
        if self.obs is None:
            raise RuntimeError(f"VecEnv({self.name!r}).step called before reset(); call reset() first")
        next_obs, reward, terminated, truncated = self._backend.step(actions.astype(np.int64, copy=False))
        obs = next_obs.copy()
        ended = terminated | truncated
        if ended.any():
            idx = np.flatnonzero(ended)
            if len(self._groups) == 1:
                seeds = self._groups[0].integers(_SEED_BOUND, size=idx.size)
            else:  # each group's ended envs draw from the group's own generator, in env order
                group = idx // (self.n_envs // len(self._groups))
                seeds = np.concatenate([self._groups[g].integers(_SEED_BOUND, size=int(np.count_nonzero(group == g)))
                                        for g in np.unique(group)])
            obs[idx] = self._backend.reset_envs(idx, seeds)
            self.episode_seeds[idx] = seeds
        self.obs = obs
        return VecStep(next_obs, reward, terminated, truncated)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: numpy arrays plus JSON-able values (no pickle needed).

        Returns:
            A flat dict. JSON-able: `name`, `n_envs`, `backend`, `captured` (True: the envs' own state is included),
            `rng` (the Generator's `bit_generator.state`, ints and strings for PCG64). Arrays: `obs` (E, obs_dim),
            `episode_seeds` (E,) int64, and for the NumPy kernels `state` (n_state, E) float64 (4 rows for CartPole
            and Acrobot, 2 for MountainCar) and `steps` (E,) int64, for "sync" `actions` (E, max_len) int64 and
            `lengths` (E,) int64 (each env's actions this episode).

        Raises:
            RuntimeError: If `reset` was never called.
        """
        if self.obs is None:
            raise RuntimeError(f"VecEnv({self.name!r}).state_dict called before reset(); call reset() first")
        return {
            "name": self.name,
            "n_envs": self.n_envs,
            "backend": self.backend,
            "captured": True,
            "rng": self.rng.bit_generator.state if not self._grouped else
            {str(i): g.bit_generator.state for i, g in enumerate(self._groups)},
            "obs": self.obs.copy(),
            "episode_seeds": self.episode_seeds.copy(),
            **self._backend.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        """Restore `rng` and every env from `state_dict()`, possibly of another VecEnv built the same way.

        Sync envs are reset with their episode seed and replay their logged actions; the result must equal the saved
        `obs` exactly. If it does not (an env that is not deterministic given its seed), or the state was saved by
        another backend or without the envs' state, this warns in one line and starts fresh episodes with `reset()`.

        Args:
            state: A dict from `state_dict`, possibly round-tripped through `np.savez`/`np.load` and JSON.

        Returns:
            True if restored exactly; False if fresh episodes were started instead.

        Raises:
            ValueError: If `state` lacks a key, has a wrong shape, or belongs to another env id or number of envs.
        """
        for key, mine in (("name", self.name), ("n_envs", self.n_envs)):
            if key not in state or state[key] != mine:
                raise ValueError(f"state[{key!r}]={state.get(key)!r} does not match this VecEnv's {key} {mine!r}")
        obs = _array(state, "obs", (self.n_envs, self.obs_dim), "fiu")
        episode_seeds = _array(state, "episode_seeds", (self.n_envs,), "iu").astype(np.int64)
        if "rng" not in state:
            raise ValueError("state has no key 'rng'; expected a dict from VecEnv.state_dict()")
        if not self._grouped:
            self.rng.bit_generator.state = state["rng"]
        else:
            for i, g in enumerate(self._groups):
                g.bit_generator.state = state["rng"][str(i)]
        reason = None
        if state.get("backend") != self.backend:
            reason = f"saved by the {state.get('backend')!r} backend, this VecEnv uses {self.backend!r}"
        elif not state.get("captured", False):
            reason = "the saved state holds no environment state"
        else:
            restored = self._backend.load_state_dict(state, episode_seeds)
            if restored is None or not np.array_equal(restored, obs, equal_nan=True):
                reason = "replaying the episode from its seed did not reproduce the saved observations"
        if reason is not None:
            warnings.warn(
                f"state of {self.name} could not be restored exactly ({reason}); continuing with fresh episodes",
                RuntimeWarning,
                stacklevel=2,
            )
            self.reset()
            return False
        self.obs = obs.astype(self._backend.obs_dtype)
        self.episode_seeds = episode_seeds
        return True

    def select_state(self, envs: np.ndarray) -> dict[str, Any]:
        """The `state_dict` a VecEnv of only the envs `envs: (k,)` (in order) would have: what a new VecEnv of k envs
        built the same way needs to continue exactly where they are (`load_state_dict`).

        With grouped generators `envs` must be whole groups (a member's envs); group i of the result is the group of
        `envs[i * E]`.
        """
        envs = np.asarray(envs, np.int64)
        state = self.state_dict()
        out = {**state, "n_envs": len(envs), "obs": state["obs"][envs], "episode_seeds": state["episode_seeds"][envs]}
        for key, axis in self._backend.slot_axes.items():
            out[key] = np.take(state[key], envs, axis=axis)
        if self._grouped:
            per_group = self.n_envs // len(self._groups)
            groups = envs[::per_group] // per_group
            if len(envs) % per_group or not np.array_equal(np.repeat(groups, per_group) * per_group
                                                          + np.tile(np.arange(per_group), len(groups)), envs):
                raise ValueError(f"envs {envs.tolist()} are not whole groups of {per_group} envs")
            out["rng"] = {str(i): state["rng"][str(g)] for i, g in enumerate(groups.tolist())}
        return out

    def close(self) -> None:
        """Release the environments' resources."""
        self._backend.close()
