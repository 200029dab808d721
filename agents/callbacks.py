"""Callbacks: everything around the training loop that is not collecting or learning.

The loop (`agents.train.Trainer`) calls every callback with events that carry their figures:

    on_run_start(trainer)                 before the first step of `Trainer.run` (also after a resume)
    on_step(trainer, steps_before)        after each vector step and its gradient steps; env_steps moved by E
    on_episode(trainer, row: EpisodeRow)  a training episode ended
    on_eval(trainer, row: EvalRow)        a greedy evaluation finished (emitted by `agents.evaluation.Evaluator`)
    on_run_end(trainer)                   `Trainer.run` returns (finished, stopped or diverged)

A cadence is a number of transitions, and a vector step moves the count by E, so callbacks act when the count
*crosses* a multiple of their period (`crossed`), never on `env_steps % period == 0`. A callback with state that a
resumed run needs has `state_dict()` / `load_state_dict()`; the trainer nests them under the callback's `name`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from agents.train import Trainer


class EpisodeRow(NamedTuple):
    """One finished training episode (a row of progress.csv)."""

    episode: int
    env_steps: int
    episode_return: float
    length: int
    epsilon: float
    train_seconds: float


class EvalRow(NamedTuple):
    """One greedy evaluation (a row of evals.csv)."""

    eval_index: int
    env_steps: int
    mean: float
    std: float
    min: float
    max: float
    episodes: int
    train_seconds: float
    is_best: bool


def crossed(before: int, after: int, period: int) -> int:
    """How many multiples of `period` lie in `(before, after]` (0 when `period` is 0: never)."""
    return after // period - before // period if period else 0


class Callback:
    """Hooks the loop calls; override what you need. `name` keys the callback's state in checkpoints."""

    name = ""

    def on_run_start(self, trainer: Trainer) -> None:
        """Before the first step of a `run` call."""

    def on_step(self, trainer: Trainer, steps_before: int) -> None:
        """After each vector step (`trainer.env_steps` moved from `steps_before` by E) and its gradient steps."""

    def on_episode(self, trainer: Trainer, row: EpisodeRow) -> None:
        """After each training episode."""

    def on_eval(self, trainer: Trainer, row: EvalRow) -> None:
        """After each evaluation; when `row.is_best`, `trainer.agent` holds the new best parameters."""

    def on_run_end(self, trainer: Trainer) -> None:
        """When `run` returns or raises."""


class ProgressBar(Callback):
    """A tqdm bar over environment steps: steps/s, epsilon, the last episode return and the best evaluation.

    Args:
        total: the run's total environment steps.
        enabled: False draws nothing (the callback still costs nothing).
        every: transitions between bar updates (a bar redraw per vector step would cost more than the step).
    """

    def __init__(self, total: int, enabled: bool = True, every: int = 1000) -> None:
        self.total, self.enabled, self.every = total, enabled, every
        self.bar: Any = None
        self._shown = 0

    def on_run_start(self, trainer: Trainer) -> None:
        from tqdm import tqdm

        self._shown = trainer.env_steps
        self.bar = tqdm(total=self.total, initial=trainer.env_steps, unit="step", disable=not self.enabled,
                        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}] {postfix}",
                        ncols=110)
        self._postfix(trainer)

    def on_step(self, trainer: Trainer, steps_before: int) -> None:
        if crossed(steps_before, trainer.env_steps, self.every):
            self._advance(trainer)

    def on_eval(self, trainer: Trainer, row: EvalRow) -> None:
        self._advance(trainer)

    def on_run_end(self, trainer: Trainer) -> None:
        if self.bar is not None:
            self._advance(trainer)
            self.bar.close()
            self.bar = None

    def final_evaluation(self, episodes: int) -> Any:
        """A second bar, "final evaluation over N episodes", counting episodes; a context manager (`with`).

        Without it the step bar would sit at 100% while a long final evaluation runs.
        """
        from tqdm import tqdm

        return tqdm(total=episodes, desc=f"final evaluation over {episodes} episodes", unit="episode",
                    disable=not self.enabled, ncols=110)

    def _advance(self, trainer: Trainer) -> None:
        self._postfix(trainer)
        self.bar.update(min(trainer.env_steps, self.total) - self._shown)
        self._shown = min(trainer.env_steps, self.total)

    def _postfix(self, trainer: Trainer) -> None:
        last = trainer.last_episode.episode_return if trainer.last_episode else float("nan")
        best = trainer.evaluator.best_mean if trainer.evaluator.best_step is not None else float("nan")
        # fixed widths, so the bar does not change length when an evaluation arrives
        self.bar.set_postfix_str(f"eps {trainer.epsilon:5.3f} return {last:6.1f} best eval {best:6.1f}", refresh=False)
