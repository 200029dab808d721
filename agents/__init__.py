"""agents: the DQN agent, its replay buffer, the batched training loop (one seed or many) and run folders."""

from agents.callbacks import Callback, EpisodeRow, EvalRow, ProgressBar
from agents.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from agents.collector import Collector
from agents.config import DQNConfig
from agents.dqn import DivergenceError, DQNAgent
from agents.evaluation import Evaluator, evaluate
from agents.learner import Learner
from agents.nstep import NStepWindows
from agents.replay import Batch, MemberReplay, ReplayBuffer
from agents.schedules import linear_epsilon
from agents.seeds import SeedBatch, SeedCallback
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
    "MemberReplay",
    "NStepWindows",
    "ProgressBar",
    "ReplayBuffer",
    "SeedBatch",
    "SeedCallback",
    "Trainer",
    "evaluate",
    "linear_epsilon",
    "load_checkpoint",
    "save_checkpoint",
    "spawn_generators",
]
