"""The engine as a single run (S = 1): reproducibility, when updates happen, what replay stores, exact resume,
divergence, stopping, for one env and for several stepped together. Several members: test_engine_seeds.py."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from statecheck import assert_states_equal

import envs
from agents.config import DQNConfig
from agents.loop import Callback, Engine, EpisodeRow, EvalRow, StopFlag
from agents.run.checkpoint import flatten_state, load_checkpoint, save_checkpoint, unflatten_state

CARTPOLE = "CartPole-v1"
CHAIN = "dqn_np/Chain-v0"
CONSTANT = "dqn_np/ConstantReward-v0"  # 20-step episodes that only ever truncate
TIMELESS = ("train_seconds", "eval_seconds", "phase_seconds", "solved_at_seconds")


class Recorder(Callback):
    """Collects every episode and evaluation row, per member."""

    def __init__(self) -> None:
        self.episodes: dict[int, list[EpisodeRow]] = {}
        self.evals: dict[int, list[EvalRow]] = {}

    def on_episode(self, loop, member: int, row: EpisodeRow) -> None:
        self.episodes.setdefault(member, []).append(row)

    def on_eval(self, loop, member: int, row: EvalRow) -> None:
        self.evals.setdefault(member, []).append(row)


def small_config(**overrides) -> DQNConfig:
    # One update per transition, pinned here so these tests do not follow changes to the CartPole defaults.
    base = dict(hidden_sizes=(16,), batch_size=16, buffer_size=2_000, learning_starts=100, epsilon_decay_steps=500,
                target_update_interval=50, eval_freq=0, eval_episodes=2, train_freq=1, gradient_steps=1,
                learning_rate=1e-3, n_envs=1, n_step=1)
    return DQNConfig(**{**base, **overrides})


def vec(env_id: str, wrappers=(), **kwargs):
    return lambda n_envs, rngs: envs.VecEnv(env_id, n_envs, rngs, wrappers=wrappers, **kwargs)


def make_engine(env_id: str, config: DQNConfig, seed: int = 0, callback: Callback | None = None,
                wrappers=(), **kwargs) -> Engine:
    return Engine(vec(env_id, wrappers, **kwargs), config, [seed], callbacks=[callback] if callback else [])


def untimed(rows: list) -> list:
    """Rows with the wall-clock field zeroed: everything else must be reproducible."""
    return [row._replace(train_seconds=0.0) for row in rows]


def timeless(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in TIMELESS}


def assert_arrays_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def params_differ(a: Engine, b: Engine) -> bool:
    return any(not np.array_equal(a.agent.online.params[k], b.agent.online.params[k]) for k in a.agent.online.params)


# --- reproducibility ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_envs, updates", [(1, 1301), (4, 1304)])  # E = 4: updates from step 200 to 1500 in 4s
def test_same_seed_same_run_and_a_different_seed_differs(n_envs, updates):
    cfg = small_config(learning_starts=200, eval_freq=500, eval_episodes=2, epsilon_decay_steps=1000, n_envs=n_envs)

    def train(seed: int) -> tuple[Engine, Recorder]:
        recorder = Recorder()
        engine = make_engine(CARTPOLE, cfg, seed=seed, callback=recorder)
        engine.run(1500)
        return engine, recorder

    (a, rec_a), (b, rec_b), (c, rec_c) = train(0), train(0), train(1)

    assert len(rec_a.episodes[0]) > 10 and len(rec_a.evals[0]) == 3
    assert a.agent.n_updates == updates
    assert_arrays_equal(a.agent.online.params, b.agent.online.params)
    assert_arrays_equal(a.agent.target.params, b.agent.target.params)
    assert_arrays_equal(a.agent.optimizer.state_dict(), b.agent.optimizer.state_dict())
    assert untimed(rec_a.episodes[0]) == untimed(rec_b.episodes[0])
    assert untimed(rec_a.evals[0]) == untimed(rec_b.evals[0])

    assert params_differ(a, c)
    assert untimed(rec_a.episodes[0]) != untimed(rec_c.episodes[0])


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
    engine = make_engine(CONSTANT, cfg)
    if in_two_runs:
        engine.run(total // 2)
    [summary] = engine.run(total)
    # The run ends at the first multiple of E at or past `total`; every multiple of train_freq that a vector step
    # passes once learning has started is one burst of gradient steps, taken right after that vector step.
    steps = -(-total // n_envs) * n_envs
    expected = gradient_steps * sum(
        after // train_freq - (after - n_envs) // train_freq
        for after in range(n_envs, steps + 1, n_envs) if after >= learning_starts)
    assert engine.env_steps == steps == summary["env_steps"]
    assert engine.agent.n_updates == expected == summary["updates"]
    if n_envs == 1:  # the classic schedule: a burst at every multiple of train_freq from learning_starts on
        assert expected == gradient_steps * sum(1 for s in range(learning_starts, total + 1) if s % train_freq == 0)


# --- what the replay stores --------------------------------------------------------------------------------


@pytest.mark.parametrize("n_envs", [1, 5])
def test_truncation_is_stored_with_a_discount(n_envs):
    engine = make_engine(CONSTANT, small_config(n_envs=n_envs))
    engine.run(100)
    stored = engine.replay.buffers[0].state_dict()
    assert engine.collector.episodes == 5  # every env's 20th step ended its episode by truncation
    assert len(stored["discounts"]) == 100
    np.testing.assert_array_equal(stored["discounts"], np.float32(0.99))  # truncation still bootstraps


def test_the_truncation_as_termination_double_is_caught_by_the_replay_check():
    engine = make_engine(CONSTANT, small_config(), wrappers=(envs.TruncationAsTermination,))
    engine.run(100)
    discounts = engine.replay.buffers[0].state_dict()["discounts"]
    np.testing.assert_array_equal(np.flatnonzero(discounts == 0), [19, 39, 59, 79, 99])


@pytest.mark.parametrize("n_step", [1, 3])
def test_chain_stores_terminal_transitions_with_discount_zero(n_step):
    cfg = small_config(learning_starts=1_000, epsilon_start=1.0, epsilon_end=1.0, n_step=n_step)  # a random walk
    recorder = Recorder()
    engine = make_engine(CHAIN, cfg, callback=recorder)
    engine.run(600)
    stored = engine.replay.buffers[0].state_dict()
    reached_goal = stored["next_obs"].argmax(axis=1) == 3  # the one-hot goal state of the 4-state chain
    assert reached_goal.sum() > 5
    np.testing.assert_array_equal(stored["discounts"] == 0, reached_goal)
    # every other transition bootstraps: gamma^n, or gamma^k < gamma^n where a time limit cut the window short
    powers = (0.99 ** np.arange(1, n_step + 1)).astype(stored["discounts"].dtype)  # gamma^k, stored in float32
    assert np.isin(stored["discounts"][~reached_goal], powers).all()
    lengths = [row.length for row in recorder.episodes[0]]
    assert any(n == 20 for n in lengths) and any(n < 20 for n in lengths)  # both endings happened


def test_episode_rows_number_every_episode_once_across_envs():
    recorder = Recorder()
    engine = make_engine(CARTPOLE, small_config(n_envs=6, learning_starts=1000, epsilon_end=1.0), callback=recorder)
    engine.run(1200)
    rows = recorder.episodes[0]
    assert [row.episode for row in rows] == list(range(1, len(rows) + 1))
    assert len(rows) == engine.episodes[0] == engine.summary(0)["episodes"]
    # every transition belongs to an episode that ended, or to one still running in some env
    assert sum(row.length for row in rows) + engine.collector.episode_length.sum() == engine.env_steps


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
    full = make_engine(env_id, cfg, seed=3, callback=full_rec, **kwargs)
    full.run(2 * RESUME_STEPS)

    first_rec = Recorder()
    first = make_engine(env_id, cfg, seed=3, callback=first_rec, **kwargs)
    first.run(RESUME_STEPS)
    state = first.state_dict()
    assert (state["collector"]["episode_length"] > 0).any()  # saved mid-episode
    if via_file:
        arrays, meta = flatten_state(state)
        ckpt = load_checkpoint(save_checkpoint(tmp_path / "run.npz", cfg, first.env.obs_dim, first.env.n_actions,
                                               arrays, meta))
        state = unflatten_state(ckpt.arrays, ckpt.meta)
    second_rec = Recorder()
    second = make_engine(env_id, cfg, seed=3, callback=second_rec, **kwargs)
    assert second.load_state_dict(state) == []  # restored exactly: no warning
    second.run(2 * RESUME_STEPS)

    assert second.env_steps == full.env_steps >= 2 * RESUME_STEPS
    assert second.agent.n_updates == full.agent.n_updates > 0
    assert_arrays_equal(second.agent.online.params, full.agent.online.params)
    assert_arrays_equal(second.agent.target.params, full.agent.target.params)
    assert_arrays_equal(second.agent.optimizer.state_dict(), full.agent.optimizer.state_dict())
    assert_states_equal(second.replay.state_dict(), full.replay.state_dict())
    assert untimed(first_rec.episodes[0] + second_rec.episodes[0]) == untimed(full_rec.episodes[0])
    assert untimed(first_rec.evals[0] + second_rec.evals[0]) == untimed(full_rec.evals[0])
    assert len(full_rec.evals[0]) == 5 and len(full_rec.episodes[0]) > 3
    # ... and every generator is where it would be, so they would go on identically.
    assert second.agent.rng[0].bit_generator.state == full.agent.rng[0].bit_generator.state
    assert second.replay.buffers[0].rng.bit_generator.state == full.replay.buffers[0].rng.bit_generator.state
    assert second.env.rng[0].bit_generator.state == full.env.rng[0].bit_generator.state
    np.testing.assert_array_equal(second.env.obs, full.env.obs)
    assert timeless(second.summary(0)) == timeless(full.summary(0))


def test_resume_needs_the_same_seeds():
    cfg = small_config()
    engine = make_engine(CONSTANT, cfg, seed=3)
    engine.run(40)
    other = make_engine(CONSTANT, cfg, seed=4)
    with pytest.raises(ValueError, match=r"\[3\].*\[4\]"):
        other.load_state_dict(engine.state_dict())


# --- divergence and stopping -------------------------------------------------------------------------------


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
def test_non_finite_environment_output_stops_the_run_naming_the_step(at, what):
    cfg = small_config(learning_starts=16)
    engine = make_engine(CONSTANT, cfg, wrappers=(lambda env: NonFiniteAt(env, at, what),))
    [summary] = engine.run(100)  # a single run's only member stops, and with it the run
    assert summary["status"] == "diverged" and not engine.active[0]
    assert engine.stopped[0] == summary["error"]
    assert f"non-finite reward or observation at env step {at}" in summary["error"]
    assert summary["env_steps"] == engine.env_steps == at  # it ended on the bad step ...
    assert len(engine.replay.buffers[0]) == at - 1  # ... which was not stored
    assert engine.agent.n_updates == summary["updates"] == max(0, at - 1 - 16 + 1)  # nor learned from
    assert all(np.isfinite(v).all() for v in engine.agent.online.params.values())


class StopAtEpisode(Recorder):
    def __init__(self, episode: int) -> None:
        super().__init__()
        self.episode = episode

    def on_episode(self, loop, member: int, row: EpisodeRow) -> None:
        super().on_episode(loop, member, row)
        if row.episode == self.episode:
            loop.stop.set("SIGINT")


@pytest.mark.parametrize("stop_episode", [1, 3])
def test_a_stop_flag_set_by_a_callback_ends_the_run_within_that_step(stop_episode):
    callback = StopAtEpisode(stop_episode)
    engine = make_engine(CONSTANT, small_config(learning_starts=16, eval_freq=0), callback=callback)
    [summary] = engine.run(1_000)
    assert summary["interrupted"] == "SIGINT" and summary["status"] == "interrupted"
    assert summary["env_steps"] == engine.env_steps == 20 * stop_episode  # ConstantReward episodes last 20 steps
    assert summary["episodes"] == len(callback.episodes[0]) == stop_episode
    # the flag was set while the step collected: its one gradient step and its events are owed, not taken
    assert engine.agent.n_updates == 20 * stop_episode - 16
    assert engine.pending == (20 * stop_episode - 1, 1)
    engine.run(1_000)  # the flag stays set: the run takes no further step
    assert engine.env_steps == 20 * stop_episode and engine.agent.n_updates == 20 * stop_episode - 16
    engine.stop.reason = None  # asked to go on: the owed step is finished first, then the run continues
    engine.run(20 * stop_episode + 1)
    assert engine.pending is None and engine.env_steps == 20 * stop_episode + 1
    assert engine.agent.n_updates == 20 * stop_episode + 1 - 16 + 1


def test_a_stop_flag_set_before_the_run_takes_no_step():
    stop = StopFlag()
    stop.set("SIGTERM")
    stop.set("SIGINT")  # the first reason is kept
    engine = Engine(vec(CONSTANT), small_config(), [0], stop=stop)
    [summary] = engine.run(100)
    assert engine.stop is stop and summary["interrupted"] == "SIGTERM"
    assert engine.env_steps == summary["env_steps"] == 0 and engine.agent.n_updates == 0
