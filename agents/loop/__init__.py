"""loop: the one training engine and its parts (collector, learner, events and callbacks, evaluation, progress).
Imports `algo` and `data`, never `run`, and never Gymnasium (environments come in as `VecEnvLike`)."""

from agents.loop.collector import Collector, VecEnvLike
from agents.loop.engine import GENERATORS, Engine, MakeEnv, spawn_generators
from agents.loop.evaluation import EVAL_SEED_OFFSET, MIN_SOLVE_EPISODES, Evaluator, evaluate
from agents.loop.events import Callback, EpisodeRow, EvalRow, LoopView, StopFlag, crossed
from agents.loop.learner import Learner
from agents.loop.progress import ProgressBar

__all__ = ["EVAL_SEED_OFFSET", "GENERATORS", "MIN_SOLVE_EPISODES", "Callback", "Collector", "Engine", "EpisodeRow",
           "EvalRow", "Evaluator", "Learner", "LoopView", "MakeEnv", "ProgressBar", "StopFlag", "VecEnvLike",
           "crossed", "evaluate", "spawn_generators"]
