"""The DQN agent: an online and a target `dqn_np.MLP`, epsilon-greedy acting, and the TD update.

One update reads top to bottom like the derivation:

    y      = R + discount * Q_target(s', a')                       the TD target, held constant
             (R the k-step discounted reward; discount = gamma^k, or 0 where the episode terminated)
    q      = Q(s, .)                                               the prediction
    delta2 = dL/dq, nonzero only in the column of the action taken
    grads  = backward(delta2); clip; optimizer step
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from agents.config import DQNConfig
from agents.replay import Batch
from dqn_np import MLP, SGD, Adam, clip_grad_norm, td_loss

if TYPE_CHECKING:
    from agents.checkpoint import Checkpoint


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss, gradient, TD target or Q-value; parameters were left untouched."""


class DQNAgent:
    """Deep Q-network agent on a flat observation vector and `n_actions` discrete actions.

    Args:
        obs_dim: length of an observation.
        n_actions: number of discrete actions.
        config: the hyperparameters.
        rng: draws the initial weights and, afterwards, exploration.

    Example:
        >>> import numpy as np
        >>> agent = DQNAgent(4, 2, DQNConfig(hidden_sizes=(16,)), np.random.default_rng(0))
        >>> agent.q_values(np.zeros(4)).shape, agent.act(np.zeros(4), epsilon=0.0) in (0, 1)
        ((2,), True)
    """

    def __init__(self, obs_dim: int, n_actions: int, config: DQNConfig, rng: np.random.Generator) -> None:
        if not isinstance(config, DQNConfig):
            raise TypeError(f"config must be a DQNConfig, got {type(config).__name__}")
        for name, value in (("obs_dim", obs_dim), ("n_actions", n_actions)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.config = config
        self.obs_dim, self.n_actions = int(obs_dim), int(n_actions)
        self.rng = rng
        self.online = MLP((self.obs_dim, *config.hidden_sizes, self.n_actions), rng=rng, dtype=config.dtype)
        self.target = self.online.clone()  # starts equal to the online network
        self.optimizer: Adam | SGD = (
            Adam(config.learning_rate) if config.optimizer == "adam" else SGD(config.learning_rate, config.momentum)
        )
        self.n_updates = 0
        self._rows = np.arange(config.batch_size)

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """Online Q-values: `obs: (obs_dim,)` -> `(n_actions,)`, or `(batch, obs_dim)` -> `(batch, n_actions)`."""
        obs = np.asarray(obs, dtype=self.online.dtype)
        if obs.ndim == 1:
            return self.online.forward(obs[None, :])[0]
        return self.online.forward(obs)

    def act(self, obs: np.ndarray, epsilon: float) -> int | np.ndarray:
        """Epsilon-greedy actions: `obs: (obs_dim,)` -> int, `(E, obs_dim)` -> `(E,)` int64.

        One uniform draw per env decides exploration; the k exploring envs then draw uniform actions.
        """
        if np.ndim(obs) == 1:
            return int(self.act(np.asarray(obs)[None], epsilon)[0])
        explore = self.rng.random(len(obs)) < epsilon
        actions = self.greedy(obs)
        k = int(explore.sum())
        if k:
            actions[explore] = self.rng.integers(self.n_actions, size=k)
        return actions

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """argmax_a Q(obs, a): `(E, obs_dim)` -> `(E,)` int64; draws nothing."""
        return self.online.forward(np.asarray(obs, dtype=self.online.dtype)).argmax(axis=1)

    def td_targets(self, batch: Batch) -> np.ndarray:
        """`y = R + discount * Q_target(s', a')`, shape `(B,)`, treated as a constant.

        For one step, `discount = gamma * (1 - terminated)`: the familiar `y = r + gamma (1 - terminated) Q'`.
        With Double DQN, `a' = argmax_a Q_online(s', a)`; otherwise `a' = argmax_a Q_target(s', a)`.
        Truncated transitions keep `discount = gamma^k`, so they bootstrap.
        """
        q_next_target = self.target.forward(batch.next_obs)  # (batch, n_actions)
        q_next_select = self.online.forward(batch.next_obs) if self.config.double_dqn else q_next_target
        a_next = q_next_select.argmax(axis=1)  # the greedy next action a'
        q_next = q_next_target[self._batch_rows(len(a_next)), a_next]  # Q_target(s', a')
        return batch.rewards + batch.discounts * q_next

    def compute_gradients(self, batch: Batch) -> tuple[float, np.ndarray, np.ndarray]:
        """Target, prediction, loss and backward: fills `online.grads` with dL/dtheta and changes no parameter.

        Returns:
            The loss, `Q(s, a)` of the actions taken `(batch,)`, and the TD targets `(batch,)`.

        Raises:
            DivergenceError: a TD target or Q-value is not finite.
        """
        td_target = self.td_targets(batch)  # y, constant: no gradient flows into the target network
        q = self.online.forward(batch.obs)  # Q(s, .), caches activations for backward
        if not (np.isfinite(td_target).all() and np.isfinite(q).all()):
            what = "TD target" if np.isfinite(q).all() else "Q-value"
            raise DivergenceError(f"non-finite {what} at update {self.n_updates + 1}")
        loss, delta2 = td_loss(q, batch.actions, td_target, kind=self.config.loss, delta=self.config.huber_delta)
        self.online.backward(delta2)  # delta2 = dL/dQ is nonzero only in the taken action's column
        return loss, q[self._batch_rows(len(q)), batch.actions], td_target

    def update(self, batch: Batch) -> dict[str, float]:
        """One gradient step on a batch; returns metrics `loss`, `q_mean`, `grad_norm`, `td_abs`.

        Raises:
            DivergenceError: a TD target, Q-value, loss or gradient is not finite; no parameter is changed.
        """
        cfg = self.config
        loss, q_taken, td_target = self.compute_gradients(batch)
        grads = self.online.grads
        # Clipping bounds the step when one TD error is huge (0 disables it; the norm is still reported).
        grad_norm = clip_grad_norm(grads, cfg.max_grad_norm) if cfg.max_grad_norm else _global_norm(grads)
        if not (np.isfinite(loss) and np.isfinite(grad_norm)):
            what = "loss" if not np.isfinite(loss) else "gradient"
            raise DivergenceError(f"non-finite {what} at update {self.n_updates + 1} (loss={loss}, "
                                  f"grad_norm={grad_norm})")
        self.optimizer.step(self.online.params, grads)
        self.n_updates += 1
        if self.n_updates % cfg.target_update_interval == 0:
            self.sync_target()  # the target moves only every so often, which keeps y still
        return {
            "loss": loss,
            "q_mean": float(q_taken.mean()),
            "grad_norm": grad_norm,
            "td_abs": float(np.abs(q_taken - td_target).mean()),
        }

    def _batch_rows(self, n: int) -> np.ndarray:
        return self._rows if n == len(self._rows) else np.arange(n)

    def sync_target(self) -> None:
        """Target update: a copy of the online network when `tau == 1`, else `theta' <- tau theta + (1-tau) theta'`."""
        self.target.soft_update_from(self.online, self.config.tau)

    # --- persistence ------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters, target parameters, optimizer state and update count as plain arrays (keys `online.W1`, ...)."""
        state: dict[str, np.ndarray] = {"agent.n_updates": np.array(self.n_updates, dtype=np.int64)}
        state.update({f"online.{k}": v.copy() for k, v in self.online.params.items()})
        state.update({f"target.{k}": v.copy() for k, v in self.target.params.items()})
        state.update({f"optim.{k}": v for k, v in self.optimizer.state_dict().items()})
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what `state_dict()` returned (shapes must match this agent's networks)."""
        self.online.load_params(_strip(state, "online."))
        self.target.load_params(_strip(state, "target."))
        self.optimizer.load_state_dict(_strip(state, "optim."))
        self.n_updates = int(state["agent.n_updates"])

    def save(self, path: str | Path, meta: dict | None = None) -> Path:
        """Write the agent (config, networks, optimizer state, exploration RNG) to one `.npz`, atomically.

        Args:
            path: the file to (re)place.
            meta: JSON-serialisable extras to store beside it (e.g. `{"env_id": "CartPole-v1"}`).
        """
        from agents.checkpoint import save_checkpoint

        return save_checkpoint(path, self.config, self.obs_dim, self.n_actions, self.state_dict(),
                               meta={**(meta or {}), "agent_rng": self.rng.bit_generator.state})

    @classmethod
    def load(cls, path: str | Path) -> DQNAgent:
        """Load an agent saved by `save` (or a training checkpoint); raises `CheckpointError` on a bad file."""
        from agents.checkpoint import load_checkpoint

        return cls.from_checkpoint(load_checkpoint(path))

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint) -> DQNAgent:
        """Build the agent held by an already loaded checkpoint; raises `CheckpointError` if its arrays don't fit."""
        from agents.checkpoint import CheckpointError

        try:
            agent = cls(ckpt.obs_dim, ckpt.n_actions, ckpt.config, np.random.default_rng(0))
            # a training checkpoint nests the agent under "agent/" (format 2); a model file holds it at the top
            agent.load_state_dict(_strip(ckpt.arrays, "agent/") or ckpt.arrays)
            rng_state = ckpt.meta.get("agent_rng") or ckpt.meta.get("rng", {}).get("agent")  # agent / training file
            if rng_state is not None:
                agent.rng.bit_generator.state = rng_state
        except (KeyError, ValueError, TypeError) as e:
            raise CheckpointError(f"{ckpt.path}: agent arrays do not match its config ({e})") from e
        return agent


def _strip(state: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _global_norm(grads: dict[str, np.ndarray]) -> float:
    return float(np.sqrt(sum(float(np.vdot(g, g)) for g in grads.values())))
