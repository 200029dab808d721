"""The progress bar: one tqdm bar over each member's environment steps, for one seed or many."""

from __future__ import annotations

import math
from typing import Any

from agents.loop.events import Callback, EvalRow, LoopView, crossed


class ProgressBar(Callback):
    """A tqdm bar over environment steps (per member): steps/s, epsilon, and for one seed the last episode return
    and the best evaluation, for many the number of seeds solved (and stopped) so far.

    Args:
        total: the run's total environment steps per member.
        enabled: False draws nothing (the callback still costs nothing).
        every: transitions between bar updates (a bar redraw per vector step would cost more than the step).
    """

    def __init__(self, total: int, enabled: bool = True, every: int = 1000) -> None:
        self.total, self.enabled, self.every = total, enabled, every
        self.bar: Any = None
        self._shown = 0

    def on_run_start(self, loop: LoopView) -> None:
        from tqdm import tqdm

        self._shown = min(loop.env_steps, self.total)
        S = len(loop.seeds)
        self.bar = tqdm(total=self.total, initial=self._shown, unit="step", disable=not self.enabled, ncols=110,
                        desc=None if S == 1 else f"{S} seeds",
                        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}] {postfix}")
        self._postfix(loop)

    def on_step(self, loop: LoopView, steps_before: int) -> None:
        if crossed(steps_before, loop.env_steps, self.every):
            self._advance(loop)

    def on_eval(self, loop: LoopView, member: int, row: EvalRow) -> None:
        if self.bar is not None:
            self._advance(loop)

    def on_run_end(self, loop: LoopView) -> None:
        if self.bar is not None:
            self._advance(loop)
            self.bar.close()
            self.bar = None

    def final_evaluation(self, episodes: int, models: int = 1) -> Any:
        """A second bar, "final evaluation over N episodes", counting episodes; a context manager (`with`).

        Without it the step bar would sit at 100% while a long final evaluation runs.
        """
        from tqdm import tqdm

        what = "" if models == 1 else f" of {models} models"
        return tqdm(total=episodes * models, desc=f"final evaluation{what} over {episodes} episodes", unit="episode",
                    disable=not self.enabled, ncols=110)

    def _advance(self, loop: LoopView) -> None:
        self._postfix(loop)
        self.bar.update(min(loop.env_steps, self.total) - self._shown)
        self._shown = min(loop.env_steps, self.total)

    def _postfix(self, loop: LoopView) -> None:
        S = len(loop.seeds)
        if S == 1:
            last = loop.last_episode[0].episode_return if loop.last_episode[0] else math.nan
            best = loop.evaluator.best_mean[0] if loop.evaluator.best_step[0] is not None else math.nan
            # fixed widths, so the bar does not change length when an evaluation arrives
            text = f"eps {loop.epsilon:5.3f} return {last:6.1f} best eval {best:6.1f}"
        else:
            stopped = f" stopped {len(loop.stopped)}" if loop.stopped else ""
            text = f"eps {loop.epsilon:5.3f} solved {loop.n_solved}/{S}{stopped}"
        self.bar.set_postfix_str(text, refresh=False)
