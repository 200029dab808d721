"""Tests for agents.train: reproducibility, when updates happen, what replay stores, exact resume, divergence and
interruption."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest

import envs
from agents.checkpoint import load_checkpoint, save_checkpoint
from agents.config import DQNConfig
from agents.dqn import DivergenceError
from agents.train import Callback, EpisodeRow, EvalRow, Trainer

CARTPOLE = "CartPole-v1"
CHAIN = "dqn_np/Chain-v0"
CONSTANT = "dqn_np/ConstantReward-v0"  # 20-step episodes that only ever truncate


class Recorder(Callback):
    """Collects every episode and evaluation row."""

    def __init__(self) -> None:
        self.episodes: list[EpisodeRow] = []
        self.evals: list[EvalRow] = []

    def on_episode(self, trainer: Trainer, row: EpisodeRow) -> None:
        self.episodes.append(row)

    def on_eval(self, trainer: Trainer, row: EvalRow) -> None:
        self.evals.append(row)


def small_config(**overrides) -> DQNConfig:
    # One update per step, pinned here so these tests do not follow changes to the CartPole defaults.
    base = dict(hidden_sizes=(16,), batch_size=16, buffer_size=2_000, learning_starts=100, epsilon_decay_steps=500,
                target_update_interval=50, eval_freq=0, eval_episodes=2, train_freq=1, gradient_steps=1,
                learning_rate=1e-3)
    return DQNConfig(**{**base, **overrides})


def make_trainer(env_id: str, config: DQNConfig, seed: int = 0, callback: Callback | None = None,
                 with_eval: bool = False, wrapper: Callable[[gym.Env], gym.Env] | None = None) -> Trainer:
    gym_env = envs.make_env(env_id)
    if wrapper is not None:
        gym_env = wrapper(gym_env)
    eval_env = envs.GymEnv(envs.make_env(env_id)) if with_eval else None
    return Trainer(envs.GymEnv(gym_env), eval_env, config, seed=seed, callback=callback)


def untimed(rows: list) -> list:
    """Rows with the wall-clock field zeroed: everything else must be reproducible."""
    return [row._replace(train_seconds=0.0) for row in rows]


def assert_arrays_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def params_differ(a: Trainer, b: Trainer) -> bool:
    return any(not np.array_equal(a.agent.online.params[k], b.agent.online.params[k]) for k in a.agent.online.params)


# --- reproducibility ---------------------------------------------------------------------------------------


def test_same_seed_same_run_and_a_different_seed_differs():
    cfg = small_config(learning_starts=200, eval_freq=500, eval_episodes=2, epsilon_decay_steps=1000)

    def train(seed: int) -> tuple[Trainer, Recorder]:
        recorder = Recorder()
        trainer = make_trainer(CARTPOLE, cfg, seed=seed, callback=recorder, with_eval=True)
        trainer.run(1500)
        return trainer, recorder

    (a, rec_a), (b, rec_b), (c, rec_c) = train(0), train(0), train(1)

    assert len(rec_a.episodes) > 10 and len(rec_a.evals) == 3
    assert a.agent.n_updates == 1301
    assert_arrays_equal(a.agent.online.params, b.agent.online.params)
    assert_arrays_equal(a.agent.target.params, b.agent.target.params)
    assert_arrays_equal(a.agent.optimizer.state_dict(), b.agent.optimizer.state_dict())
    assert untimed(rec_a.episodes) == untimed(rec_b.episodes)
    assert untimed(rec_a.evals) == untimed(rec_b.evals)

    assert params_differ(a, c)
    assert untimed(rec_a.episodes) != untimed(rec_c.episodes)


# --- when gradient steps happen ----------------------------------------------------------------------------


@pytest.mark.parametrize("learning_starts, train_freq, gradient_steps, total", [
    (16, 1, 1, 100),
    (50, 4, 2, 203),
    (40, 3, 3, 41),
    (64, 5, 1, 64),  # no step at all: 64 is not a multiple of 5
    (30, 7, 4, 30),
    (100, 1, 2, 100),  # exactly one training moment, at step 100
])
@pytest.mark.parametrize("in_two_runs", [False, True])
def test_number_of_updates(learning_starts, train_freq, gradient_steps, total, in_two_runs):
    cfg = small_config(learning_starts=learning_starts, train_freq=train_freq, gradient_steps=gradient_steps)
    trainer = make_trainer(CONSTANT, cfg)
    if in_two_runs:
        trainer.run(total // 2)
    summary = trainer.run(total)
    expected = gradient_steps * sum(1 for s in range(learning_starts, total + 1) if s % train_freq == 0)
    assert trainer.env_steps == total
    assert trainer.agent.n_updates == expected
    assert summary["updates"] == expected


# --- what the replay stores --------------------------------------------------------------------------------


def test_truncation_is_stored_as_not_terminated():
    trainer = make_trainer(CONSTANT, small_config())
    trainer.run(100)
    stored = trainer.replay.state_dict()
    assert trainer.episodes == 5  # every 20th step ended an episode by truncation
    assert len(stored["terminated"]) == 100
    assert (stored["terminated"] == 0).all()


def test_the_truncation_as_termination_double_is_caught_by_the_replay_check():
    trainer = make_trainer(CONSTANT, small_config(), wrapper=envs.TruncationAsTermination)
    trainer.run(100)
    terminated = trainer.replay.state_dict()["terminated"]
    np.testing.assert_array_equal(np.flatnonzero(terminated), [19, 39, 59, 79, 99])


def test_chain_stores_terminal_transitions_as_terminated():
    cfg = small_config(learning_starts=1_000, epsilon_start=1.0, epsilon_end=1.0)  # a random walk, no learning
    recorder = Recorder()
    trainer = make_trainer(CHAIN, cfg, callback=recorder)
    trainer.run(600)
    stored = trainer.replay.state_dict()
    reached_goal = stored["next_obs"].argmax(axis=1) == 3  # the one-hot goal state of the 4-state chain
    np.testing.assert_array_equal(stored["terminated"], reached_goal.astype(stored["terminated"].dtype))
    lengths = [row.length for row in recorder.episodes]
    ends = np.cumsum(lengths) - 1  # the index of each finished episode's last transition
    assert reached_goal[ends[np.array(lengths) < 20]].all()  # short episodes ended at the goal, stored terminated
    assert reached_goal.sum() > 5
    # ... and some hit the time limit instead; those are stored with terminated = 0
    assert any(n == 20 and not reached_goal[e] for n, e in zip(lengths, ends, strict=True))


# --- exact resume ------------------------------------------------------------------------------------------

RESUME_STEPS = 290  # an episode is in progress after 290 steps (asserted below)


@pytest.mark.parametrize("via_file", [False, True])
@pytest.mark.parametrize("optimizer, momentum", [("adam", 0.0), ("sgd", 0.9)])
def test_resume_is_bit_identical(tmp_path, optimizer, momentum, via_file):
    cfg = small_config(optimizer=optimizer, momentum=momentum, learning_rate=1e-3, eval_freq=100, eval_episodes=2,
                       target_update_interval=30)
    full_rec = Recorder()
    full = make_trainer(CARTPOLE, cfg, seed=3, callback=full_rec, with_eval=True)
    full.run(2 * RESUME_STEPS)

    first_rec = Recorder()
    first = make_trainer(CARTPOLE, cfg, seed=3, callback=first_rec, with_eval=True)
    first.run(RESUME_STEPS)
    arrays, meta = first.state_dict()
    assert arrays["episode.actions"].size > 0  # saved mid-episode
    if via_file:
        ckpt = load_checkpoint(save_checkpoint(tmp_path / "run.npz", cfg, 4, 2, arrays, meta))
        arrays, meta = ckpt.arrays, ckpt.meta
    second_rec = Recorder()
    second = make_trainer(CARTPOLE, cfg, seed=3, callback=second_rec, with_eval=True)
    second.load_state_dict(arrays, meta)
    second.run(2 * RESUME_STEPS)

    assert second.env_steps == full.env_steps == 2 * RESUME_STEPS
    assert second.agent.n_updates == full.agent.n_updates > 0
    assert_arrays_equal(second.agent.online.params, full.agent.online.params)
    assert_arrays_equal(second.agent.target.params, full.agent.target.params)
    assert_arrays_equal(second.agent.optimizer.state_dict(), full.agent.optimizer.state_dict())
    assert_arrays_equal(second.replay.state_dict(), full.replay.state_dict())
    assert untimed(first_rec.episodes + second_rec.episodes) == untimed(full_rec.episodes)
    assert untimed(first_rec.evals + second_rec.evals) == untimed(full_rec.evals)
    assert len(full_rec.evals) == 5 and len(full_rec.episodes) > 10
    # ... and every generator is where it would be, so they would go on identically.
    assert second.agent.rng.bit_generator.state == full.agent.rng.bit_generator.state
    assert second.replay.rng.bit_generator.state == full.replay.rng.bit_generator.state
    assert second.env_rng.bit_generator.state == full.env_rng.bit_generator.state
    timeless = ("train_seconds", "eval_seconds")
    assert {k: v for k, v in second.summary().items() if k not in timeless} == {
        k: v for k, v in full.summary().items() if k not in timeless}


# --- divergence and interruption ---------------------------------------------------------------------------


class NonFiniteAt(gym.Wrapper):
    """Returns a NaN reward (or observation) at the `at`-th step counted over all episodes."""

    def __init__(self, env: gym.Env, at: int, what: str) -> None:
        super().__init__(env)
        self.at, self.what, self.steps = at, what, 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        if self.steps == self.at:
            if self.what == "reward":
                reward = float("nan")
            else:
                obs = np.full_like(obs, np.nan)
        return obs, reward, terminated, truncated, info


@pytest.mark.parametrize("what", ["reward", "observation"])
@pytest.mark.parametrize("at", [1, 37])
def test_non_finite_environment_output_raises_divergence_naming_the_step(at, what):
    cfg = small_config(learning_starts=16)
    trainer = make_trainer(CONSTANT, cfg, wrapper=lambda env: NonFiniteAt(env, at, what))
    with pytest.raises(DivergenceError, match=rf"non-finite reward .* at env step {at}\b"):
        trainer.run(100)
    assert trainer.env_steps == at - 1  # the bad step was not applied ...
    assert len(trainer.replay) == at - 1  # ... nor stored
    assert trainer.agent.n_updates == max(0, at - 1 - 16 + 1)


class StopAtEpisode(Recorder):
    def __init__(self, episode: int) -> None:
        super().__init__()
        self.episode = episode

    def on_episode(self, trainer: Trainer, row: EpisodeRow) -> None:
        super().on_episode(trainer, row)
        if row.episode == self.episode:
            trainer.stop_requested = "SIGINT"


@pytest.mark.parametrize("stop_episode", [1, 3])
def test_stop_requested_ends_the_run_after_that_step(stop_episode):
    callback = StopAtEpisode(stop_episode)
    trainer = make_trainer(CONSTANT, small_config(learning_starts=16, eval_freq=0), callback=callback)
    summary = trainer.run(1_000)
    assert summary["interrupted"] == "SIGINT"
    assert summary["env_steps"] == trainer.env_steps == 20 * stop_episode  # ConstantReward episodes last 20 steps
    assert summary["episodes"] == len(callback.episodes) == stop_episode
    assert trainer.agent.n_updates == 20 * stop_episode - 16 + 1  # that step's training still happened
