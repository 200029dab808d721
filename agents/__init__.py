"""agents: the DQN agent, its replay buffer, the batched training loop and run folders (checkpoints, resume)."""

from agents.callbacks import Callback, EpisodeRow, EvalRow, ProgressBar
from agents.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from agents.collector import Collector
from agents.config import DQNConfig
from agents.dqn import DivergenceError, DQNAgent
from agents.evaluation import Evaluator, evaluate
from agents.learner import Learner
from agents.nstep import NStepWindows
from agents.replay import Batch, ReplayBuffer
from agents.schedules import linear_epsilon
from agents.train import Trainer, spawn_generators

__all__ = [
    "Batch",
    "Callback",
    "CheckpointError",
    "Collector",
    "DQNAgent",
    "DQNConfig",
    "DivergenceError",
    "EpisodeRow",
    "EvalRow",
    "Evaluator",
    "Learner",
    "NStepWindows",
    "ProgressBar",
    "ReplayBuffer",
    "Trainer",
    "evaluate",
    "linear_epsilon",
    "load_checkpoint",
    "save_checkpoint",
    "spawn_generators",
]
