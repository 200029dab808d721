"""Tests for agents.train: reproducibility, when updates happen, what replay stores, exact resume, divergence and
interruption, for one env and for several stepped together."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs
from agents.loop.events import Callback, EpisodeRow, EvalRow
from agents.run.checkpoint import flatten_state, load_checkpoint, save_checkpoint, unflatten_state
from agents.config import DQNConfig
from agents.algo.dqn import DivergenceError
from agents.train import Trainer

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
    # One update per transition, pinned here so these tests do not follow changes to the CartPole defaults.
    base = dict(hidden_sizes=(16,), batch_size=16, buffer_size=2_000, learning_starts=100, epsilon_decay_steps=500,
                target_update_interval=50, eval_freq=0, eval_episodes=2, train_freq=1, gradient_steps=1,
                learning_rate=1e-3, n_envs=1, n_step=1)
    return DQNConfig(**{**base, **overrides})


def vec(env_id: str, wrappers=(), **kwargs):
    return lambda n_envs, rng: envs.VecEnv(env_id, n_envs, rng, wrappers=wrappers, **kwargs)


def make_trainer(env_id: str, config: DQNConfig, seed: int = 0, callback: Callback | None = None,
                 wrappers=(), **kwargs) -> Trainer:
    return Trainer(vec(env_id, wrappers, **kwargs), config, seed=seed, callbacks=[callback] if callback else [])


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


@pytest.mark.parametrize("n_envs, updates", [(1, 1301), (4, 1304)])  # E = 4: updates from step 200 to 1500 in 4s
def test_same_seed_same_run_and_a_different_seed_differs(n_envs, updates):
    cfg = small_config(learning_starts=200, eval_freq=500, eval_episodes=2, epsilon_decay_steps=1000, n_envs=n_envs)

    def train(seed: int) -> tuple[Trainer, Recorder]:
        recorder = Recorder()
        trainer = make_trainer(CARTPOLE, cfg, seed=seed, callback=recorder)
        trainer.run(1500)
        return trainer, recorder

    (a, rec_a), (b, rec_b), (c, rec_c) = train(0), train(0), train(1)

    assert len(rec_a.episodes) > 10 and len(rec_a.evals) == 3
    assert a.agent.n_updates == updates
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
    (64, 5, 1, 64),  # no step at all with one env: 64 is not a multiple of 5
    (30, 7, 4, 30),
    (100, 1, 2, 100),  # exactly one training moment with one env, at step 100
])
@pytest.mark.parametrize("n_envs", [1, 3, 8])
@pytest.mark.parametrize("in_two_runs", [False, True])
def test_number_of_updates_counts_transitions_whatever_n_envs(learning_starts, train_freq, gradient_steps, total,
                                                             n_envs, in_two_runs):
    cfg = small_config(learning_starts=learning_starts, train_freq=train_freq, gradient_steps=gradient_steps,
                       n_envs=n_envs)
    trainer = make_trainer(CONSTANT, cfg)
    if in_two_runs:
        trainer.run(total // 2)
    summary = trainer.run(total)
    # The run ends at the first multiple of E at or past `total`; every multiple of train_freq that a vector step
    # passes once learning has started is one burst of gradient steps, taken right after that vector step.
    steps = -(-total // n_envs) * n_envs
    expected = gradient_steps * sum(
        after // train_freq - (after - n_envs) // train_freq
        for after in range(n_envs, steps + 1, n_envs) if after >= learning_starts)
    assert trainer.env_steps == steps
    assert trainer.agent.n_updates == expected == summary["updates"]
    if n_envs == 1:  # the classic schedule: a burst at every multiple of train_freq from learning_starts on
        assert expected == gradient_steps * sum(1 for s in range(learning_starts, total + 1) if s % train_freq == 0)


# --- what the replay stores --------------------------------------------------------------------------------


@pytest.mark.parametrize("n_envs", [1, 5])
def test_truncation_is_stored_with_a_discount(n_envs):
    trainer = make_trainer(CONSTANT, small_config(n_envs=n_envs))
    trainer.run(100)
    stored = trainer.replay.state_dict()
    assert trainer.collector.episodes == 5  # every env's 20th step ended its episode by truncation
    assert len(stored["discounts"]) == 100
    np.testing.assert_array_equal(stored["discounts"], np.float32(0.99))  # truncation still bootstraps


def test_the_truncation_as_termination_double_is_caught_by_the_replay_check():
    trainer = make_trainer(CONSTANT, small_config(), wrappers=(envs.TruncationAsTermination,))
    trainer.run(100)
    discounts = trainer.replay.state_dict()["discounts"]
    np.testing.assert_array_equal(np.flatnonzero(discounts == 0), [19, 39, 59, 79, 99])


@pytest.mark.parametrize("n_step", [1, 3])
def test_chain_stores_terminal_transitions_with_discount_zero(n_step):
    cfg = small_config(learning_starts=1_000, epsilon_start=1.0, epsilon_end=1.0, n_step=n_step)  # a random walk
    recorder = Recorder()
    trainer = make_trainer(CHAIN, cfg, callback=recorder)
    trainer.run(600)
    stored = trainer.replay.state_dict()
    reached_goal = stored["next_obs"].argmax(axis=1) == 3  # the one-hot goal state of the 4-state chain
    assert reached_goal.sum() > 5
    np.testing.assert_array_equal(stored["discounts"] == 0, reached_goal)
    # every other transition bootstraps: gamma^n, or gamma^k < gamma^n where a time limit cut the window short
    powers = (0.99 ** np.arange(1, n_step + 1)).astype(stored["discounts"].dtype)  # gamma^k, stored in float32
    assert np.isin(stored["discounts"][~reached_goal], powers).all()
    lengths = [row.length for row in recorder.episodes]
    assert any(n == 20 for n in lengths) and any(n < 20 for n in lengths)  # both endings happened


# --- exact resume ------------------------------------------------------------------------------------------

RESUME_STEPS = 290  # episodes are in progress after 290 steps (asserted below)


@pytest.mark.parametrize("via_file", [False, True])
@pytest.mark.parametrize("optimizer, momentum, n_envs, n_step", [
    ("adam", 0.0, 1, 1), ("sgd", 0.9, 1, 3), ("adam", 0.0, 4, 3)])
@pytest.mark.parametrize("env_id", [CARTPOLE, "Acrobot-v1"])
def test_resume_is_bit_identical(tmp_path, optimizer, momentum, n_envs, n_step, via_file, env_id):
    cfg = small_config(optimizer=optimizer, momentum=momentum, learning_rate=1e-3, eval_freq=100, eval_episodes=2,
                       target_update_interval=30, n_envs=n_envs, n_step=n_step)
    kwargs = {"max_episode_steps": 60} if env_id == "Acrobot-v1" else {}  # episodes end during the test
    full_rec = Recorder()
    full = make_trainer(env_id, cfg, seed=3, callback=full_rec, **kwargs)
    full.run(2 * RESUME_STEPS)

    first_rec = Recorder()
    first = make_trainer(env_id, cfg, seed=3, callback=first_rec, **kwargs)
    first.run(RESUME_STEPS)
    state = first.state_dict()
    assert (state["collector"]["episode_length"] > 0).any()  # saved mid-episode
    if via_file:
        arrays, meta = flatten_state(state)
        ckpt = load_checkpoint(save_checkpoint(tmp_path / "run.npz", cfg, first.env.obs_dim, first.env.n_actions,
                                               arrays, meta))
        state = unflatten_state(ckpt.arrays, ckpt.meta)
    second_rec = Recorder()
    second = make_trainer(env_id, cfg, seed=3, callback=second_rec, **kwargs)
    assert second.load_state_dict(state) == []  # restored exactly: no warning
    second.run(2 * RESUME_STEPS)

    assert second.env_steps == full.env_steps >= 2 * RESUME_STEPS
    assert second.agent.n_updates == full.agent.n_updates > 0
    assert_arrays_equal(second.agent.online.params, full.agent.online.params)
    assert_arrays_equal(second.agent.target.params, full.agent.target.params)
    assert_arrays_equal(second.agent.optimizer.state_dict(), full.agent.optimizer.state_dict())
    assert_arrays_equal(second.replay.state_dict(), full.replay.state_dict())
    assert untimed(first_rec.episodes + second_rec.episodes) == untimed(full_rec.episodes)
    assert untimed(first_rec.evals + second_rec.evals) == untimed(full_rec.evals)
    assert len(full_rec.evals) == 5 and len(full_rec.episodes) > 3
    # ... and every generator is where it would be, so they would go on identically.
    assert second.agent.rng.bit_generator.state == full.agent.rng.bit_generator.state
    assert second.replay.rng.bit_generator.state == full.replay.rng.bit_generator.state
    assert second.env.rng.bit_generator.state == full.env.rng.bit_generator.state
    np.testing.assert_array_equal(second.env.obs, full.env.obs)
    timeless = ("train_seconds", "eval_seconds", "phase_seconds")
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
    trainer = make_trainer(CONSTANT, cfg, wrappers=(lambda env: NonFiniteAt(env, at, what),))
    with pytest.raises(DivergenceError, match=rf"non-finite reward .* at env steps {at}\.\.{at}\b"):
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


def test_episode_rows_number_every_episode_once_across_envs():
    recorder = Recorder()
    trainer = make_trainer(CARTPOLE, small_config(n_envs=6, learning_starts=1000, epsilon_end=1.0), callback=recorder)
    trainer.run(1200)
    assert [row.episode for row in recorder.episodes] == list(range(1, len(recorder.episodes) + 1))
    # every transition belongs to an episode that ended, or to one still running in some env
    assert sum(row.length for row in recorder.episodes) + trainer.collector.episode_length.sum() == trainer.env_steps
