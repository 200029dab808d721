"""Gymnasium environments for dqn-np: creation, space checks, reset/step without info dicts, VecEnv, diagnostic MDPs.

Importing this package registers the diagnostic ids "dqn_np/Chain-v0", "dqn_np/TwoArmedBandit-v0" and
"dqn_np/ConstantReward-v0", so `make_env("dqn_np/Chain-v0")` works.
"""

from envs.diagnostic import (
    DIAGNOSTIC_IDS,
    ChainEnv,
    ConstantRewardEnv,
    TruncationAsTermination,
    TwoArmedBanditEnv,
    register_diagnostics,
)
from envs.make import EnvError, Step, check_spaces, make_env, reset_env, reward_threshold, step_env
from envs.vector import BACKENDS, VecEnv, VecStep

register_diagnostics()

__all__ = [
    "DIAGNOSTIC_IDS",
    "ChainEnv",
    "ConstantRewardEnv",
    "EnvError",
    "Step",
    "TruncationAsTermination",
    "TwoArmedBanditEnv",
    "BACKENDS",
    "VecEnv",
    "VecStep",
    "check_spaces",
    "make_env",
    "register_diagnostics",
    "reset_env",
    "reward_threshold",
    "step_env",
]
