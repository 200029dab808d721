"""data: replay buffers with a member axis and n-step windows, the transitions the update learns from. Imports
nothing of `algo`, `loop` or `run`."""

from agents.data.nstep import NStepWindows, Transitions
from agents.data.replay import Batch, MemberReplay, ReplayBuffer, available_memory, require_memory

__all__ = ["Batch", "MemberReplay", "NStepWindows", "ReplayBuffer", "Transitions", "available_memory",
           "require_memory"]
