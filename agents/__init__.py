"""agents: the DQN agent and the one training engine, in four rooms whose imports follow the data flow.

    config.py, validate.py   the hyperparameters (`DQNConfig`, `config_for`) and the one module of validators
    algo/     the DQN update: targets, TD loss, backward, clip, step; schedules       imports data
    data/     replay buffers with a member axis, n-step windows                       imports neither
    loop/     collector, learner, events and callbacks, evaluation, progress, Engine  imports algo, data
    run/      folders, checkpoints, model files, logs, stats, plots, train(), CLI     imports all; meets envs/

No room imports one to its right at import time (`tests/agents/test_rooms.py` checks it).
"""

from agents.algo import DivergenceError, DQNAgent, linear_epsilon
from agents.config import DQNConfig, config_for
from agents.data import Batch, MemberReplay, NStepWindows, ReplayBuffer
from agents.loop import (
    Callback,
    Collector,
    Engine,
    EpisodeRow,
    EvalRow,
    Evaluator,
    Learner,
    LoopView,
    ProgressBar,
    StopFlag,
    evaluate,
    spawn_generators,
)
from agents.run import CheckpointError, load_agent, load_checkpoint, save_agent, save_checkpoint, train, train_one

__all__ = [
    "Batch",
    "Callback",
    "CheckpointError",
    "Collector",
    "DQNAgent",
    "DQNConfig",
    "DivergenceError",
    "Engine",
    "EpisodeRow",
    "EvalRow",
    "Evaluator",
    "Learner",
    "LoopView",
    "MemberReplay",
    "NStepWindows",
    "ProgressBar",
    "ReplayBuffer",
    "StopFlag",
    "config_for",
    "evaluate",
    "linear_epsilon",
    "load_agent",
    "load_checkpoint",
    "save_agent",
    "save_checkpoint",
    "spawn_generators",
    "train",
    "train_one",
]
