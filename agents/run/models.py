"""Model files: one agent (one seed) in one `.npz`, the file a user deploys, evaluates or loads (`best.npz`,
`final.npz`).

A model file holds the unstacked agent's arrays at the top level (`online.W1`, `target.W1`, `optim.m.W1`, ...,
`agent.n_updates`) and its exploration generator's state in the metadata (`agent_rng`), in every format version, so
files written by any version load alike. The agent itself does no file I/O; `DQNAgent.save` and `DQNAgent.load`
are conveniences that call these functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agents.algo.dqn import DQNAgent
from agents.run.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint


def save_agent(agent: DQNAgent, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write an unstacked agent (config, networks, optimizer state, exploration generator) to `path`, atomically.

    Args:
        agent: an unstacked agent (`engine.agent.member(s)` for member s of a stacked one).
        path: the `.npz` file to (re)place.
        meta: JSON-serialisable extras to store beside it (e.g. `{"env_id": "CartPole-v1"}`).
    """
    if agent.members is not None:
        raise ValueError(f"a model file holds one agent: save agent.member(s) of this stacked agent of "
                         f"{agent.members} members")
    state = agent.state_dict()
    rng = state.pop("rng")
    return save_checkpoint(path, agent.config, agent.obs_dim, agent.n_actions, state,
                           meta={**(meta or {}), "agent_rng": rng})


def load_agent(path: str | Path) -> DQNAgent:
    """The agent in a model file (any format version), or in a single-run training checkpoint.

    Raises:
        CheckpointError: a missing or bad file, arrays that do not fit its config, or a checkpoint of many seeds
            (whose seed folders hold each seed's model files).
    """
    return agent_from_checkpoint(load_checkpoint(path))


def agent_from_checkpoint(ckpt: Checkpoint) -> DQNAgent:
    """Build the unstacked agent held by an already loaded checkpoint; raises `CheckpointError` if it holds none."""
    arrays = ckpt.arrays
    nested = {k[len("agent/"):]: v for k, v in arrays.items() if k.startswith("agent/")}  # a training checkpoint
    old_rng = ckpt.meta.get("rng")
    rng_state = ckpt.meta.get("agent_rng") or (old_rng.get("agent") if isinstance(old_rng, dict) else None)
    if nested:
        arrays = nested
        agent_meta = ckpt.meta.get("agent", {})
        rng_state = agent_meta.get("rng") or ckpt.meta.get("rng", {}).get("agent")  # format 3 / format 2
        W1 = arrays.get("online.W1")
        if W1 is not None and W1.ndim == 3:  # a stacked agent: S members
            if W1.shape[0] != 1:
                raise CheckpointError(f"{ckpt.path}: a checkpoint of {W1.shape[0]} seeds holds no single agent; "
                                      f"load a seed's model file instead ({ckpt.path.parent}/seed<k>/best.npz)")
            arrays = {k: v if v.ndim == 0 else v[0] for k, v in arrays.items()}
            rng_state = rng_state[0] if isinstance(rng_state, list) else rng_state
    try:
        agent = DQNAgent(ckpt.obs_dim, ckpt.n_actions, ckpt.config, np.random.default_rng(0))
        agent.load_state_dict({**arrays, "rng": rng_state})
    except (KeyError, ValueError, TypeError, IndexError) as e:
        raise CheckpointError(f"{ckpt.path}: agent arrays do not match its config ({e})") from e
    return agent
