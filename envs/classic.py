"""NumPy vector kernels for Acrobot-v1 and MountainCar-v0: E copies stepped as arrays, exactly as Gymnasium steps one.

The physics are pure array functions of a state `(n_state, E)` (one row per state variable, so each row is a
contiguous `(E,)` array) and the actions `(E,)`; the backends below hold the state and the step counters and follow
the protocol of `envs.vector`'s backends (`create`, `step`, `reset_envs`, `state_dict`, `load_state_dict`, `close`).

Exactness. Every expression keeps the operation order of Gymnasium's scalar code (floating-point addition is not
associative), drops only multiplications by the constant 1.0 (exact), squares with C `pow` as NumPy float64 scalars do
(`np.float_power`; `x * x` differs from it in about 1 value in 1,000) and keeps Gymnasium's dtypes: Acrobot resets to
a float32 state (its first observation is computed in float32) that the first step promotes to float64; MountainCar's
state is float64. Elementwise IEEE arithmetic gives the same bits on an (E,) array as on a scalar; NumPy's float64
cos/sin are assumed to agree with libm's (Gymnasium's MountainCar calls `math.cos`), as they do on the builds we test.
`tests/envs/test_classic.py` checks the trajectories against `gym.make` envs with `np.array_equal`.

Resets: a slot reset with seed s starts where `gym.make(env_id).reset(seed=s)` starts. Gymnasium seeds an env with
`Generator(PCG64(SeedSequence(s)))`, which is `np.random.default_rng(s)`, and draws `uniform(-0.1, 0.1, size=4)`
(Acrobot) or `uniform(-0.6, -0.4)` for the position with velocity 0 (MountainCar).
"""

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

# --- Acrobot-v1 (Sutton & Barto's "book" dynamics, RK4 over one step of DT) -------------------------------------------

DT = 0.2
"""Integration step (s)."""
M1 = M2 = 1.0
"""Link masses (kg); M2 = 1.0 multiplies exactly, so the products with it are left out below."""
L1 = 1.0
"""Length of link 1 (m)."""
LC1 = LC2 = 0.5
"""Position of each link's centre of mass (m)."""
I1 = I2 = 1.0
"""Moments of inertia."""
G = 9.8
"""Gravity (m/s^2)."""
MAX_VEL_1, MAX_VEL_2 = 4 * np.pi, 9 * np.pi
"""Bounds of the angular velocities (rad/s)."""
TORQUES = np.array([-1.0, 0.0, 1.0])
"""(A,) torque of each action on the joint between the links."""

# Constant factors as 0-d float64 arrays (NumPy combines them with an (E,) array faster than Python floats), grouped
# as Gymnasium's expressions group them: Python evaluates `a * b * x` as `(a * b) * x` and `a + b + x` as `(a + b) + x`.
_D1_0, _D1_1 = np.array(M1 * LC1**2), np.array(L1**2 + LC2**2)  # d1 = _D1_0 + (_D1_1 + 2 l1 lc2 cos t2) + I1 + I2
_D2_0, _D2_1 = np.array(LC2**2), np.array(L1 * LC2)  # d2 = (_D2_0 + _D2_1 cos t2) + I2
_I1, _I2 = np.array(I1), np.array(I2)
_PHI2, _PHI1 = np.array(M2 * LC2 * G), np.array((M1 * LC1 + M2 * L1) * G)  # gravity factors of phi2 and phi1
_CENTRIPETAL2 = np.array(-M2 * L1 * LC2)  # the factor of dtheta2^2 sin t2 in phi1
_CENTRIPETAL1 = np.array(M2 * L1 * LC2)  # the factor of dtheta1^2 sin t2 in ddtheta2
_DD2_DEN = np.array(M2 * LC2**2 + I2)
_HALF_PI = np.array(np.pi / 2.0)
_VEL_LOW, _VEL_HIGH = np.array([[-MAX_VEL_1], [-MAX_VEL_2]]), np.array([[MAX_VEL_1], [MAX_VEL_2]])
# Left out below, since x * 1.0 == x exactly: the factor M2 of d1, d2 and ddtheta2's numerator, and 2 M2 L1 LC2 == 1.0


def _square(x: np.ndarray) -> np.ndarray:
    """x**2 as Gymnasium computes it on float64 scalars: C pow(x, 2), which is not always the rounded x * x."""
    return np.float_power(x, 2.0)


def acrobot_derivatives(state: np.ndarray, torque: np.ndarray) -> np.ndarray:
    """d/dt of the Acrobot state under `torque`: the book's equations, grouped as `AcrobotEnv._dsdt` groups them.

    Args:
        state: (4, E) float64 rows theta1, theta2, dtheta1, dtheta2.
        torque: (E,) float64.

    Returns:
        (4, E) float64 rows dtheta1, dtheta2, ddtheta1, ddtheta2.
    """
    theta1, theta2, dtheta1, dtheta2 = state[0], state[1], state[2], state[3]  # (E,) views; faster than unpacking
    cos_t2, sin_t2 = np.cos(theta2), np.sin(theta2)
    d1 = _D1_0 + (_D1_1 + cos_t2) + _I1 + _I2
    d2 = (_D2_0 + _D2_1 * cos_t2) + _I2
    phi2 = _PHI2 * np.cos(theta1 + theta2 - _HALF_PI)
    centripetal = _CENTRIPETAL2 * _square(dtheta2) * sin_t2 - dtheta2 * dtheta1 * sin_t2
    phi1 = centripetal + _PHI1 * np.cos(theta1 - _HALF_PI) + phi2
    out = np.empty_like(state)
    out[:2] = state[2:]
    numerator = torque + d2 / d1 * phi1 - _CENTRIPETAL1 * _square(dtheta1) * sin_t2 - phi2
    ddtheta2 = np.divide(numerator, _DD2_DEN - _square(d2) / d1, out=out[3])
    np.divide(-(d2 * ddtheta2 + phi1), d1, out=out[2])
    return out


def _wrap(x: np.ndarray, low: float, high: float) -> None:
    """In place: add or subtract (high - low) until every entry of `x` is in [low, high], one step at a time."""
    span = high - low
    while (above := x > high).any():
        x[above] -= span
    while (below := x < low).any():
        x[below] += span


def _bound_velocities(velocities: np.ndarray) -> None:
    """In place: clip `velocities: (2, k)` (dtheta1, dtheta2) to their bounds, as min(max(x, -bound), bound)."""
    np.minimum(np.maximum(velocities, _VEL_LOW, out=velocities), _VEL_HIGH, out=velocities)


def acrobot_step(state: np.ndarray, torque: np.ndarray) -> np.ndarray:
    """One step of DT: fourth-order Runge-Kutta, then angles wrapped to [-pi, pi] and velocities bounded.

    Args:
        state: (4, E) float64.
        torque: (E,) float64, `TORQUES[actions]`.

    Returns:
        (4, E) float64, a new array.
    """
    half = DT / 2.0
    k1 = acrobot_derivatives(state, torque)
    k2 = acrobot_derivatives(state + half * k1, torque)
    k3 = acrobot_derivatives(state + half * k2, torque)
    k4 = acrobot_derivatives(state + DT * k3, torque)
    new = state + DT / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    _wrap(new[:2], -np.pi, np.pi)
    _bound_velocities(new[2:])
    return new


def acrobot_terminated(state: np.ndarray) -> np.ndarray:
    """(E,) bool: the free end is above the target height, -cos(theta1) - cos(theta1 + theta2) > 1."""
    return -np.cos(state[0]) - np.cos(state[1] + state[0]) > 1.0


def acrobot_obs(state: np.ndarray) -> np.ndarray:
    """(E, 6) float32 observations [cos t1, sin t1, cos t2, sin t2, dt1, dt2] of `state: (4, E)`.

    The cosines and sines are computed in the state's dtype and then rounded to float32, as Gymnasium does: pass
    a float32 state for slots that were just reset.
    """
    obs = np.empty((state.shape[1], 6), dtype=np.float32)
    np.cos(state[:2], out=obs[:, 0:4:2].T)
    np.sin(state[:2], out=obs[:, 1:4:2].T)
    obs[:, 4:] = state[2:].T
    return obs


def acrobot_reset(seeds: Sequence[int]) -> np.ndarray:
    """(4, k) float64 first states of `gym.make("Acrobot-v1").reset(seed=s)` for each s; float32-valued."""
    draws = [np.random.default_rng(seed).uniform(-0.1, 0.1, size=4).astype(np.float32) for seed in seeds]
    return np.array(draws, dtype=np.float64).reshape(len(draws), 4).T.copy()


# --- MountainCar-v0 ---------------------------------------------------------------------------------------------------

MIN_POSITION, MAX_POSITION, MAX_SPEED, GOAL_POSITION = -1.2, 0.6, 0.07, 0.5
"""The track [MIN_POSITION, MAX_POSITION], the speed limit and the goal."""
FORCE, GRAVITY = 0.001, 0.0025
"""Engine force per unit of action and the slope's gravity."""
PUSHES = (np.arange(3) - 1) * FORCE
"""(A,) velocity change of each action: (action - 1) * FORCE."""


def mountaincar_step(state: np.ndarray, actions: np.ndarray, goal_velocity: float = 0.0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """One step: push, gravity along the slope, speed and track limits, and the inelastic left wall.

    Args:
        state: (2, E) float64 rows position, velocity.
        actions: (E,) integers in [0, 3).
        goal_velocity: The velocity the car needs at the goal (the env's constructor argument).

    Returns:
        `(new_state: (2, E) float64, terminated: (E,) bool)`.
    """
    position, velocity = state
    velocity = velocity + (PUSHES[actions] + np.cos(3 * position) * (-GRAVITY))
    velocity = np.minimum(np.maximum(velocity, -MAX_SPEED), MAX_SPEED)
    position = np.minimum(np.maximum(position + velocity, MIN_POSITION), MAX_POSITION)
    velocity[(position == MIN_POSITION) & (velocity < 0)] = 0.0
    terminated = (position >= GOAL_POSITION) & (velocity >= goal_velocity)
    return np.stack([position, velocity]), terminated


def mountaincar_obs(state: np.ndarray) -> np.ndarray:
    """(E, 2) float32 observations [position, velocity] of `state: (2, E)`."""
    return state.T.astype(np.float32, order="C")


def mountaincar_reset(seeds: Sequence[int]) -> np.ndarray:
    """(2, k) float64 first states of `gym.make("MountainCar-v0").reset(seed=s)` for each s."""
    state = np.zeros((2, len(seeds)))
    state[0] = [np.random.default_rng(seed).uniform(-0.6, -0.4) for seed in seeds]
    return state


# --- backends ---------------------------------------------------------------------------------------------------------


class _KernelBackend:
    """E copies of one classic-control env as a `(n_state, E)` float64 state and `(E,)` episode step counters."""

    name = ""
    env_id = ""
    entry_point = ""
    """Gymnasium's class for `env_id`: a re-registered id with another entry point is not ours to step."""
    n_state = 0
    accepted_kwargs: tuple[str, ...] = ()
    """Constructor arguments the kernel implements (besides `max_episode_steps`)."""
    obs_dtype = np.dtype(np.float32)
    slot_axes = {"state": 1, "steps": 0}  # the env axis of each array of `state_dict` (`VecEnv.select_state`)

    def __init__(self, n_envs: int, max_episode_steps: int, env_kwargs: dict[str, Any]) -> None:
        self.n_envs = n_envs
        self.max_episode_steps = max_episode_steps
        self.env_kwargs = env_kwargs
        self.state = np.zeros((self.n_state, n_envs))
        self.steps = np.zeros(n_envs, dtype=np.int64)

    @classmethod
    def create(cls, env_id: str, n_envs: int, kwargs: dict[str, Any]) -> "_KernelBackend | None":
        """The backend for `env_id` with `kwargs`, or None if the kernel does not implement them."""
        spec = gym.spec(env_id)
        env_kwargs = {key: value for key, value in kwargs.items() if key != "max_episode_steps"}
        limit = kwargs.get("max_episode_steps")
        limit = spec.max_episode_steps if limit is None else limit
        if (spec.entry_point != cls.entry_point or not set(env_kwargs) <= set(cls.accepted_kwargs)
                or not isinstance(limit, (int, np.integer)) or limit < 1):
            return None
        return cls(n_envs, int(limit), env_kwargs)

    def _physics(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Advance `self.state`; returns (next_obs, reward, terminated)."""
        raise NotImplementedError

    def _first_state(self, seeds: Sequence[int]) -> np.ndarray:
        """(n_state, k) first states of episodes reset with `seeds`."""
        raise NotImplementedError

    def _obs(self, state: np.ndarray, fresh: np.ndarray) -> np.ndarray:
        """(k, obs_dim) observations of `state: (n_state, k)`; `fresh: (k,)` marks slots that were just reset."""
        raise NotImplementedError

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Step every slot once; never resets (`VecEnv.step` resets ended slots through `reset_envs`)."""
        next_obs, reward, terminated = self._physics(actions)
        self.steps += 1
        return next_obs, reward, terminated, self.steps >= self.max_episode_steps

    def reset_envs(self, idx: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        """Reset slots `idx: (k,)` with `seeds: (k,)` as `env.reset(seed=s)` would; returns their obs (k, obs_dim)."""
        first = self._first_state(seeds.tolist())
        self.state[:, idx] = first
        self.steps[idx] = 0
        return self._obs(first, np.ones(len(idx), dtype=bool))

    def state_dict(self) -> dict[str, Any]:
        """`state`: (n_state, E) float64 physical state; `steps`: (E,) int64 steps taken in each episode."""
        return {"state": self.state.copy(), "steps": self.steps.copy()}

    def load_state_dict(self, state: dict[str, Any], episode_seeds: np.ndarray) -> np.ndarray | None:
        """Restore the slots; returns the observations (E, obs_dim) they imply."""
        from envs.vector import _array  # the validator of every backend (imported here: envs.vector imports us)

        self.state = _array(state, "state", (self.n_state, self.n_envs), "f").astype(np.float64)
        self.steps = _array(state, "steps", (self.n_envs,), "iu").astype(np.int64)
        return self._obs(self.state, self.steps == 0)

    def close(self) -> None:
        """Nothing to release."""


class AcrobotBackend(_KernelBackend):
    """Acrobot-v1 as arrays: `state` (4, E) rows theta1, theta2, dtheta1, dtheta2."""

    name = "acrobot-numpy"
    env_id = "Acrobot-v1"
    entry_point = "gymnasium.envs.classic_control.acrobot:AcrobotEnv"
    n_state = 4

    def _physics(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.state = acrobot_step(self.state, TORQUES[actions])
        terminated = acrobot_terminated(self.state)
        return acrobot_obs(self.state), np.where(terminated, 0.0, -1.0), terminated

    def _first_state(self, seeds: Sequence[int]) -> np.ndarray:
        return acrobot_reset(seeds)

    def _obs(self, state: np.ndarray, fresh: np.ndarray) -> np.ndarray:
        obs = acrobot_obs(state)
        # a reset state is float32 in Gymnasium (float32-valued here), so its first observation's trigonometry is too
        obs[fresh] = acrobot_obs(state[:, fresh].astype(np.float32))
        return obs


class MountainCarBackend(_KernelBackend):
    """MountainCar-v0 as arrays: `state` (2, E) rows position, velocity."""

    name = "mountaincar-numpy"
    env_id = "MountainCar-v0"
    entry_point = "gymnasium.envs.classic_control.mountain_car:MountainCarEnv"
    n_state = 2
    accepted_kwargs = ("goal_velocity",)

    def _physics(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.state, terminated = mountaincar_step(self.state, actions, self.env_kwargs.get("goal_velocity", 0))
        return mountaincar_obs(self.state), np.full(self.n_envs, -1.0), terminated

    def _first_state(self, seeds: Sequence[int]) -> np.ndarray:
        return mountaincar_reset(seeds)

    def _obs(self, state: np.ndarray, fresh: np.ndarray) -> np.ndarray:
        return mountaincar_obs(state)


KERNELS: dict[str, type[_KernelBackend]] = {backend.env_id: backend for backend in (AcrobotBackend, MountainCarBackend)}
"""Env id -> its NumPy vector kernel backend."""
