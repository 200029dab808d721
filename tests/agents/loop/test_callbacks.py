"""The callback protocol (agents.loop.events) and the progress bar (agents.loop.progress): every callback gets
per-member events with their rows, for one seed and for many, run start and end exactly once per run; the bar works
as an engine callback for one seed and for many, keeps one width whatever its figures, and says when the final
evaluation runs."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

import envs
from agents.config import DQNConfig
from agents.loop import Callback, Engine, EpisodeRow, EvalRow, ProgressBar

CARTPOLE = "CartPole-v1"


def make_env(n_envs: int, rngs) -> envs.VecEnv:
    return envs.VecEnv(CARTPOLE, n_envs, rngs)


def small_config(**overrides) -> DQNConfig:
    base = dict(dtype="float64", hidden_sizes=(16,), batch_size=16, buffer_size=2_000, n_envs=2, learning_starts=64,
                train_freq=2, gradient_steps=1, target_update_interval=50, epsilon_decay_steps=500, eval_freq=150,
                eval_episodes=3, learning_rate=1e-3, n_step=1)
    return DQNConfig(**{**base, **overrides})


class EventLog(Callback):
    """Every event it receives, as `(name, env_steps then, args)`, checking that the loop is the engine's."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, tuple]] = []
        self.loop = None

    def _log(self, name: str, loop, *args) -> None:
        if self.loop is None:
            self.loop = loop
        assert loop is self.loop
        self.events.append((name, loop.env_steps, args))

    def on_run_start(self, loop):
        self._log("on_run_start", loop)

    def on_step(self, loop, steps_before):
        self._log("on_step", loop, steps_before)

    def on_episode(self, loop, member, row):
        self._log("on_episode", loop, member, row)

    def on_eval(self, loop, member, row):
        self._log("on_eval", loop, member, row)

    def on_stopped(self, loop, member, reason):
        self._log("on_stopped", loop, member, reason)

    def on_run_end(self, loop):
        self._log("on_run_end", loop)

    def named(self, name: str) -> list[tuple[int, tuple]]:
        return [(steps, args) for event, steps, args in self.events if event == name]


# --- the protocol --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seeds", [[4], [4, 0, 9]])
def test_every_callback_gets_per_member_events_with_their_rows(seeds):
    S, cfg, total = len(seeds), small_config(), 600
    E = cfg.n_envs
    log = EventLog()
    engine = Engine(make_env, cfg, seeds, callbacks=[log])
    engine.run(total)
    assert log.loop is engine

    names = [event for event, _, _ in log.events]
    assert names[0] == "on_run_start" and names[-1] == "on_run_end"
    assert names.count("on_run_start") == names.count("on_run_end") == 1
    assert "on_stopped" not in names
    # one on_step per vector step, each after the env steps moved by E
    assert [(steps, args) for steps, args in log.named("on_step")] == [
        (before + E, (before,)) for before in range(0, total, E)]

    episodes = log.named("on_episode")
    assert {args[0] for _, args in episodes} == set(range(S))  # every member, and only members, report
    for s in range(S):
        rows = [args[1] for _, args in episodes if args[0] == s]
        assert all(type(row) is EpisodeRow for row in rows)
        assert len(rows) == engine.episodes[s] > 10
        assert [row.episode for row in rows] == list(range(1, len(rows) + 1))
        assert all(steps == row.env_steps for steps, (member, row) in episodes if member == s)  # sent as it ends
        assert rows[-1] == engine.last_episode[s]
        decay = [min(row.env_steps / cfg.epsilon_decay_steps, 1.0) for row in rows]  # linear, then flat
        assert [row.epsilon for row in rows] == pytest.approx(
            [cfg.epsilon_start + (cfg.epsilon_end - cfg.epsilon_start) * f for f in decay], rel=1e-12)

    evals = log.named("on_eval")
    assert {args[0] for _, args in evals} == set(range(S))
    for s in range(S):
        rows = [args[1] for _, args in evals if args[0] == s]
        assert all(type(row) is EvalRow for row in rows)
        assert [row.env_steps for row in rows] == [150, 300, 450, 600]  # every eval_freq transitions per member
        assert [steps for steps, (member, _) in evals if member == s] == [150, 300, 450, 600]
        assert len(rows) == engine.evaluator.member_evals[s] == engine.summary(s)["n_evals"]
        assert [row.eval_index for row in rows] == [1, 2, 3, 4]
        assert all(row.episodes == cfg.eval_episodes and row.min <= row.mean <= row.max for row in rows)
        assert rows[-1] == engine.evaluator.last[s]
        best = max(row.mean for row in rows)
        assert engine.evaluator.best_mean[s] == best
        assert [row.is_best for row in rows] == [row.mean > max([-math.inf] + [r.mean for r in rows[:i]])
                                                  for i, row in enumerate(rows)]

    engine.run(total + 100)  # another run: its own start and end, once each
    names = [event for event, _, _ in log.events]
    assert names.count("on_run_start") == names.count("on_run_end") == 2
    assert names[-1] == "on_run_end"


def test_a_stopped_member_is_reported_once_and_sends_nothing_after():
    log = EventLog()
    engine = Engine(make_env, small_config(), [4, 0, 9], callbacks=[log])
    engine.run(300)
    engine.agent.online.params["W1"][2, 0, 0] = np.nan  # member 2 diverges on its next update
    with np.errstate(invalid="ignore"):
        engine.run(600)
    stopped = log.named("on_stopped")
    assert [(steps, args[0]) for steps, args in stopped] == [(302, 2)]
    assert stopped[0][1][1] == engine.stopped[2] and "non-finite" in engine.stopped[2]
    for name in ("on_episode", "on_eval"):
        assert all(steps <= 302 for steps, args in log.named(name) if args[0] == 2), name
        assert any(steps > 302 for steps, args in log.named(name) if args[0] == 0), name


class Boom(Callback):
    def on_step(self, loop, steps_before):
        if loop.env_steps == 40:
            raise RuntimeError("boom")


def test_run_end_is_sent_when_a_callback_raises():
    log = EventLog()
    engine = Engine(make_env, small_config(), [1], callbacks=[log, Boom()])
    with pytest.raises(RuntimeError, match="boom"):
        engine.run(100)
    assert [event for event, _, _ in log.events].count("on_run_end") == 1
    assert log.events[-1][:2] == ("on_run_end", 40)


# --- the progress bar as an engine callback ------------------------------------------------------------------------


class KeptBar(ProgressBar):
    """A ProgressBar that keeps its tqdm bar after closing it, to read its counters."""

    def on_run_start(self, loop):
        super().on_run_start(loop)
        self.kept = self.bar


def frames_of(err: str) -> list[str]:
    return [f for f in err.replace("\n", "\r").split("\r") if f.strip()]


@pytest.mark.parametrize("seeds", [[4], [4, 0, 9]])
def test_progress_bar_follows_an_engine_run_of_one_seed_or_many(capsys, seeds):
    S, total = len(seeds), 600
    bar = KeptBar(total, enabled=True, every=100)
    cfg = small_config(eval_freq=200, eval_episodes=20)
    engine = Engine(make_env, cfg, seeds, solve_threshold=9.0, callbacks=[bar])
    engine.run(total)
    assert bar.bar is None  # closed at the end of the run
    assert bar.kept.n == bar.kept.total == total
    assert bar.kept.desc == ("" if S == 1 else f"{S} seeds")
    frames = frames_of(capsys.readouterr().err)
    assert {len(f) for f in frames} == {110}, [f for f in frames if len(f) != 110]
    last = frames[-1]
    assert f"{total}/{total}" in last and f"eps {engine.epsilon:5.3f}" in last
    if S == 1:
        assert f"return {engine.last_episode[0].episode_return:6.1f}" in last
        assert f"best eval {engine.evaluator.best_mean[0]:6.1f}" in last
    else:
        assert last.startswith(f"{S} seeds: 100%")
        assert f"solved {engine.n_solved}/{S}" in last and engine.n_solved > 0
        assert "stopped" not in last


def test_progress_bar_counts_stopped_members(capsys):
    bar = KeptBar(600, enabled=True, every=100)
    engine = Engine(make_env, small_config(), [4, 0, 9], solve_threshold=None, callbacks=[bar])
    engine.run(300)
    engine.agent.online.params["W1"][1, 0, 0] = np.nan
    with np.errstate(invalid="ignore"):
        engine.run(600)
    last = frames_of(capsys.readouterr().err)[-1]
    assert bar.kept.n == 600 and bar.kept.initial == 300  # the second run's bar starts where the first ended
    assert "solved 0/3 stopped 1" in last and "600/600" in last


def test_disabled_progress_bar_on_an_engine_draws_nothing(capsys):
    bar = KeptBar(200, enabled=False)
    Engine(make_env, small_config(), [4, 0], callbacks=[bar]).run(200)
    assert bar.bar is None and bar.kept.disable
    assert capsys.readouterr().err == ""


# --- the progress bar on its own -----------------------------------------------------------------------------------


def fake_loop(env_steps: int, last_return: float | None, best: float | None, S: int = 1,
              solved: int = 0, stopped: int = 0) -> SimpleNamespace:
    """What the bar reads of a loop (`agents.loop.events.LoopView`), member 0's figures for every member."""
    row = None if last_return is None else EpisodeRow(1, env_steps, last_return, 10, 0.05, 1.0)
    return SimpleNamespace(
        seeds=list(range(S)), env_steps=env_steps, epsilon=0.05, last_episode=[row] * S, n_solved=solved,
        stopped={s: "diverged" for s in range(stopped)},
        evaluator=SimpleNamespace(best_mean=np.full(S, best if best is not None else -math.inf),
                                  best_step=[None if best is None else env_steps] * S))


@pytest.mark.parametrize("S", [1, 3])
def test_bar_keeps_its_width_through_evaluations_and_announces_the_final_evaluation(capsys, S):
    bar = ProgressBar(total=5000, every=1000)
    bar.on_run_start(fake_loop(0, None, None, S))
    for step, last, best in [(1000, 9.0, 9.0), (2000, -500.0, 9.0), (3000, 12345.6, 12345.6), (5000, 1.0, -0.5)]:
        loop = fake_loop(step, last, best, S, solved=min(step // 2000, S), stopped=int(step >= 3000))
        bar.on_step(loop, step - 1000)
        for s in range(S):
            bar.on_eval(loop, s, EvalRow(1, step, best, 0.0, best, best, 3, 1.0, True))
    bar.on_run_end(fake_loop(5000, 1.0, -0.5, S, solved=2 if S > 1 else 0, stopped=1))
    with bar.final_evaluation(250, models=S) as shown:
        shown.update(100)
        shown.update(250 * S - 100)
    frames = frames_of(capsys.readouterr().err)
    assert {len(f) for f in frames} == {110}, [f for f in frames if len(f) != 110]
    if S == 1:
        assert any("5000/5000" in f and "best eval   -0.5" in f for f in frames)  # tqdm may skip the frames between
        assert frames[-1].startswith("final evaluation over 250 episodes: 100%") and "250/250" in frames[-1]
    else:
        assert any("5000/5000" in f and "solved 2/3 stopped 1" in f for f in frames)
        assert frames[-1].startswith("final evaluation of 3 models over 250 episodes: 100%")
        assert "750/750" in frames[-1]


def test_disabled_bar_draws_nothing(capsys):
    bar = ProgressBar(total=10, enabled=False)
    bar.on_run_start(fake_loop(0, None, None))
    bar.on_run_end(fake_loop(10, 1.0, None))
    with bar.final_evaluation(3) as shown:
        shown.update(3)
    assert capsys.readouterr().err == ""
