"""run: where a training run meets the outside world: run folders, checkpoints and atomic I/O, model files, logs,
statistics, plots and the command line; the only room that imports `envs` (Gymnasium). Imports every other room."""

from agents.run.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from agents.run.folder import RunFiles, RunFolderError
from agents.run.models import load_agent, save_agent
from agents.run.train import (
    DEFAULT_TOTAL_STEPS,
    env_facts,
    make_vec_env,
    stop_on_signals,
    train,
    train_one,
)

__all__ = ["DEFAULT_TOTAL_STEPS", "CheckpointError", "RunFiles", "RunFolderError", "env_facts", "load_agent",
           "load_checkpoint", "make_vec_env", "save_agent", "save_checkpoint", "stop_on_signals", "train", "train_one"]
