"""agents: the DQN agent, its replay buffer, the training loop and run folders (checkpoints, resume)."""

from agents.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from agents.config import DQNConfig
from agents.dqn import DivergenceError, DQNAgent
from agents.replay import Batch, ReplayBuffer
from agents.schedules import linear_epsilon
from agents.train import Callback, EpisodeRow, EvalRow, Trainer, evaluate

__all__ = [
    "Batch",
    "Callback",
    "CheckpointError",
    "DQNAgent",
    "DQNConfig",
    "DivergenceError",
    "EpisodeRow",
    "EvalRow",
    "ReplayBuffer",
    "Trainer",
    "evaluate",
    "linear_epsilon",
    "load_checkpoint",
    "save_checkpoint",
]
