"""Exploration schedules."""

from __future__ import annotations


def linear_epsilon(step: int, start: float, end: float, decay_steps: int) -> float:
    """Epsilon that falls linearly from `start` at step 0 to `end` at `decay_steps`, then stays at `end`.

    Args:
        step: environment steps taken so far (>= 0).
        start: epsilon at step 0.
        end: epsilon from `decay_steps` on.
        decay_steps: length of the decay in environment steps; 0 means `end` from the start.

    Returns:
        The exploration probability for this step.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if decay_steps <= 0 or step >= decay_steps:
        return end
    return start + (end - start) * (step / decay_steps)
