"""The engine with several members: seed k alone (S = 1) is bit for bit member j of any batch that holds k
(parameters, target, optimizer moments, actions, episode and evaluation rows, summaries; float64 and float32, and
through `train_one` / `train`), members never couple (another seed beside it, a diverged or stopped neighbour, one
that solves), the batch resumes bit-identically, and bad seeds or buffers too large are refused before anything is
built. The stacked parts themselves (replay, agent, env groups, evaluate): test_members.py."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from statecheck import assert_states_equal

import agents.data.replay
import envs
from agents.algo.dqn import DQNAgent
from agents.config import DQNConfig
from agents.data.replay import MemberReplay
from agents.loop import Callback, Engine, EpisodeRow, EvalRow
from agents.run import train, train_one
from agents.run.checkpoint import flatten_state, load_checkpoint, save_checkpoint, unflatten_state
from agents.validate import seeds as check_seeds

CARTPOLE = "CartPole-v1"
OBS_DIM, N_ACTIONS = 4, 2  # CartPole's
TIMING_KEYS = ("train_seconds", "solved_at_seconds", "eval_seconds", "phase_seconds", "wall_seconds")


def make_env(n_envs: int, rngs) -> envs.VecEnv:
    return envs.VecEnv(CARTPOLE, n_envs, rngs)


def small_config(**overrides) -> DQNConfig:
    """Tiny float64 runs: one update every vector step of 2 envs once 64 transitions are in."""
    base = dict(dtype="float64", hidden_sizes=(16,), batch_size=16, buffer_size=2_000, n_envs=2, learning_starts=64,
                train_freq=2, gradient_steps=1, target_update_interval=50, epsilon_decay_steps=500, eval_freq=0,
                eval_episodes=2, learning_rate=1e-3, n_step=1)
    return DQNConfig(**{**base, **overrides})


class RecordingVecEnv(envs.VecEnv):
    """A VecEnv that appends every action vector it is given to `log` (when it has one)."""

    def __init__(self, *args, log: list | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.log = log

    def step(self, actions):
        if self.log is not None:
            self.log.append(actions.copy())
        return super().step(actions)


def recording(log: list, n_train: int):
    """make_env whose training env (the one of `n_train` envs, not the evaluation env) records into `log`."""
    return lambda n, rngs: RecordingVecEnv(CARTPOLE, n, rngs, log=log if n == n_train else None)


class NaNRewardVecEnv(envs.VecEnv):
    """Returns NaN rewards in envs `bad` from its `after + 1`-th step on."""

    def __init__(self, *args, bad: slice = slice(0, 0), after: int = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.bad, self.after, self.calls = bad, after, 0

    def step(self, actions):
        out = super().step(actions)
        self.calls += 1
        if self.calls > self.after:
            out.reward[self.bad] = np.nan
        return out


class Recorder(Callback):
    """Every per-member event, in order."""

    def __init__(self) -> None:
        self.episodes: dict[int, list[EpisodeRow]] = {}
        self.evals: dict[int, list[EvalRow]] = {}
        self.stopped: list[tuple[int, str, int]] = []

    def on_episode(self, loop, member, row):
        self.episodes.setdefault(member, []).append(row)

    def on_eval(self, loop, member, row):
        self.evals.setdefault(member, []).append(row)

    def on_stopped(self, loop, member, reason):
        self.stopped.append((member, reason, int(loop.episodes[member])))


def untimed(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in TIMING_KEYS}


def untimed_rows(rows: list) -> list:
    return [row._replace(train_seconds=0.0) for row in rows]


def member_params(engine: Engine, s: int) -> dict[str, np.ndarray]:
    """Member s's online parameters, whether it is live (a row of the parts) or has left them."""
    return engine.member_agent(s).online.params


def assert_params_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def assert_agents_equal(a: DQNAgent, b: DQNAgent) -> None:
    """Two unstacked agents bit for bit: online and target parameters, optimizer moments and step, generator."""
    assert_params_equal(a.online.params, b.online.params)
    assert_params_equal(a.target.params, b.target.params)
    assert_states_equal(a.optimizer.state_dict(), b.optimizer.state_dict())
    assert a.n_updates == b.n_updates
    assert a.rng.bit_generator.state == b.rng.bit_generator.state


# --- 1. one engine: member j of a batch is the single run of its seed ---------------------------------------------


@pytest.mark.parametrize("j", [1, 0, 2])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_seed_k_alone_is_bit_identical_to_member_j_of_a_batch(dtype, j):
    """Engine(seeds=[7]) and member j of a batch of three that holds seed 7: the same parameters, target, optimizer
    moments, episode rows, evaluation rows and summary, bit for bit, after 600 steps with learning, clipping and
    evaluations."""
    cfg = small_config(dtype=dtype, eval_freq=150, eval_episodes=3, target_update_interval=40, max_grad_norm=1.0)
    seeds = [3, 11]
    seeds.insert(j, 7)
    alone_rec, batch_rec = Recorder(), Recorder()
    alone = Engine(make_env, cfg, [7], callbacks=[alone_rec])
    batch = Engine(make_env, cfg, seeds, callbacks=[batch_rec])
    [summary] = alone.run(600)
    summaries = batch.run(600)

    assert alone.agent.n_updates == batch.agent.n_updates == (600 - 64) // 2 + 1
    assert_agents_equal(alone.agent.member(0), batch.agent.member(j))
    assert set(alone.agent.optimizer.state) == {"m", "v"} and alone.agent.optimizer.t == alone.agent.n_updates
    assert alone.learner.last_metrics["grad_norm"][0] > 1.0  # clipping was active on the last step
    assert len(alone_rec.episodes[0]) > 20 and len(alone_rec.evals[0]) == 4
    assert untimed_rows(alone_rec.episodes[0]) == untimed_rows(batch_rec.episodes[j])
    assert untimed_rows(alone_rec.evals[0]) == untimed_rows(batch_rec.evals[j])
    assert untimed(summary) == untimed(summaries[j])
    assert_params_equal({k: v[0] for k, v in alone.evaluator.best_params.items()},  # the best models too
                        {k: v[j] for k, v in batch.evaluator.best_params.items()})
    np.testing.assert_array_equal(alone.replay.buffers[0].state_dict()["obs"],
                                  batch.replay.buffers[j].state_dict()["obs"])
    # the neighbours are other runs, so the comparisons above could have failed
    for s in {0, 1, 2} - {j}:
        assert not np.array_equal(member_params(batch, s)["W1"], member_params(alone, 0)["W1"])
        assert untimed_rows(batch_rec.episodes[s]) != untimed_rows(alone_rec.episodes[0])


def test_member_reproduces_the_single_run_of_its_seed_action_by_action():
    """Seeds [3, 7, 11] batched vs seeds [7] alone: the same actions over 5,000 steps, the same parameters after
    exactly 100 updates and at the end, and the same evaluation figures (20 episodes, so solving counts)."""
    cfg = DQNConfig(dtype="float64", hidden_sizes=(32,), batch_size=32, buffer_size=5_000, n_envs=4,
                    learning_starts=200, train_freq=4, gradient_steps=1, target_update_interval=64,
                    epsilon_decay_steps=2_000, eval_freq=1_000, eval_episodes=20, n_step=1)
    seeds, S, E = [3, 7, 11], 3, cfg.n_envs
    batch_log: list[np.ndarray] = []
    single_log: list[np.ndarray] = []
    threshold = 12.0  # low enough for an early solve, so solved_at_step is compared as a step, not as None
    batch = Engine(recording(batch_log, S * E), cfg, seeds, solve_threshold=threshold)
    single = Engine(recording(single_log, E), cfg, [7], solve_threshold=threshold)

    # one update per vector step from env step 200 on: update 100 comes at env step 200 + 99 * 4
    batch.run(596)
    single.run(596)
    assert batch.agent.n_updates == single.agent.n_updates == 100
    assert_params_equal(member_params(batch, 1), member_params(single, 0))

    batch_summaries = batch.run(5_000)
    [summary] = single.run(5_000)
    assert len(batch_log) == len(single_log) == 5_000 // E
    actions = np.array(batch_log).reshape(-1, S, E)[:, 1]  # member 1 owns env slots 4..7
    np.testing.assert_array_equal(actions, np.array(single_log))
    assert_params_equal(member_params(batch, 1), member_params(single, 0))

    mine = batch_summaries[1]
    assert mine["status"] == "completed" and mine["error"] is None
    assert summary["n_evals"] == 5 and summary["solved_at_step"] is not None
    for key in ("best_eval_mean", "best_eval_step", "solved", "solved_at_step", "last_eval_mean", "n_evals",
                "env_steps", "episodes", "updates", "last_episode_return", "seed"):
        assert mine[key] == summary[key], key
    for k, v in single.evaluator.best_params.items():
        np.testing.assert_array_equal(batch.evaluator.best_params[k][1], v[0], err_msg=k)
    # the other members are other runs: they did not act as seed 7 did
    assert not np.array_equal(np.array(batch_log).reshape(-1, S, E)[:, 0], actions)


class LowThresholdVecEnv(envs.VecEnv):
    """CartPole whose reward threshold is low enough for a tiny run to solve it (greedy episodes last 8 steps or
    more), so the solved step is compared as a step, not as None."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reward_threshold = 8.0


def test_train_one_is_seed_k_of_train():
    """train_one(seed=7) and seed 7 of train(seeds=[2, 7]), both without a folder: the same learning figures."""
    cfg = small_config(eval_freq=200, eval_episodes=20, learning_rate=3e-3)

    def make(n, rngs):
        return LowThresholdVecEnv(CARTPOLE, n, rngs)

    one = train_one(cfg, CARTPOLE, 7, None, 800, make_env=make, final_eval_episodes=5)
    result = train(cfg, CARTPOLE, [2, 7], None, 800, make_env=make, final_eval_episodes=5)
    assert result["seeds"] == [2, 7] and result["layout"] == "batch"
    mine, other = result["summaries"][1], result["summaries"][0]
    assert one["seed"] == mine["seed"] == 7 and one["status"] == mine["status"] == "completed"
    assert one["solve_threshold"] == 8.0 and one["n_evals"] == 4 and one["solved_at_step"] is not None
    figures = ("env_steps", "episodes", "updates", "last_episode_return", "best_eval_mean", "best_eval_step",
               "last_eval_mean", "n_evals", "solved", "solved_at_step", "final_eval_mean", "final_eval_std",
               "final_eval_episodes", "best_model_eval_mean", "best_model_eval_min", "last_metrics")
    for key in figures:
        assert one[key] == mine[key], key
    assert untimed(one) == untimed(mine)
    assert one["final_eval_mean"] is not None and one["best_model_eval_mean"] is not None
    assert one["last_metrics"] != other["last_metrics"]  # seed 2 is another run: the comparison could fail


# --- 2. members are independent -------------------------------------------------------------------------------------


def test_a_member_does_not_depend_on_the_seeds_beside_it():
    cfg = small_config()
    logs = {}
    batches = {}
    for other in (1, 5):
        logs[other] = []
        batches[other] = Engine(recording(logs[other], 2 * cfg.n_envs), cfg, [0, other])
        batches[other].run(2_000)
    a, b = batches[1], batches[5]
    assert a.agent.n_updates == b.agent.n_updates > 900
    acts = {k: np.array(v).reshape(-1, 2, cfg.n_envs) for k, v in logs.items()}
    np.testing.assert_array_equal(acts[1][:, 0], acts[5][:, 0])
    assert_params_equal(member_params(a, 0), member_params(b, 0))
    assert a.summary(0)["episodes"] == b.summary(0)["episodes"]
    # member 1 is another seed in each batch, so it differs: the comparison above could have failed
    assert not np.array_equal(acts[1][:, 1], acts[5][:, 1])
    assert not np.array_equal(member_params(a, 1)["W1"], member_params(b, 1)["W1"])


def test_solving_is_a_figure_not_a_stop():
    """A threshold that some members reach early records their solved step; every member trains to the end."""
    cfg = small_config(eval_freq=200, eval_episodes=20)
    threshold = 11.0
    recorder = Recorder()
    solved = Engine(make_env, cfg, [0, 1, 2], solve_threshold=threshold, callbacks=[recorder])
    never = Engine(make_env, cfg, [0, 1, 2], solve_threshold=None)
    summaries = solved.run(800)
    never.run(800)
    steps = solved.evaluator.solved_at_step
    assert any(step is not None and step < 800 for step in steps)
    for s, step in enumerate(steps):  # solved at the first evaluation whose mean reached the threshold
        reached = [row.env_steps for row in recorder.evals[s] if row.mean >= threshold]
        assert step == (reached[0] if reached else None)
        assert summaries[s]["solved"] == (step is not None) and summaries[s]["solved_at_step"] == step
    assert never.evaluator.solved_at_step == [None, None, None]
    assert solved.active.all() and not solved.stopped and solved.env_steps == 800
    for s in range(3):  # solving changed nothing of the training
        assert_params_equal(member_params(solved, s), member_params(never, s))
        assert summaries[s]["status"] == "completed" and summaries[s]["env_steps"] == 800


# --- 3. one member stops (diverges), the others go on ---------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("how", ["nan_reward", "nan_weights", "inf_weights"])
def test_a_diverged_member_is_stopped_and_the_others_go_on_untouched(how):
    cfg = small_config(eval_freq=300, eval_episodes=2)
    seeds, S, E = [0, 1, 2], 3, cfg.n_envs
    poison_step, total = 400, 1_000
    if how == "nan_reward":  # member 1 owns env slots E..2E-1
        def poisoned_env(n, rngs):
            bad = slice(E, 2 * E) if n == S * E else slice(0, 0)
            return NaNRewardVecEnv(CARTPOLE, n, rngs, bad=bad, after=poison_step // E)
    else:
        poisoned_env = make_env
    recorder = Recorder()
    batch = Engine(poisoned_env, cfg, seeds, callbacks=[recorder])
    clean = Engine(make_env, cfg, seeds)
    batch.run(poison_step)
    clean.run(poison_step)
    assert batch.active.all() and not batch.stopped
    if how != "nan_reward":
        batch.agent.online.params["W1"][1, 0, 0] = np.nan if how == "nan_weights" else np.inf
    summaries = batch.run(total)
    clean.run(total)

    assert batch.active.tolist() == [True, False, True]
    assert list(batch.stopped) == [1]
    what = "non-finite reward or observation" if how == "nan_reward" else "non-finite loss, Q-value or gradient"
    assert what in batch.stopped[1] and f"env step {poison_step + E}" in batch.stopped[1]  # the first bad step
    assert [(m, reason) for m, reason, _ in recorder.stopped] == [(1, batch.stopped[1])]
    assert summaries[1]["status"] == "diverged" and summaries[1]["error"] == batch.stopped[1]
    assert summaries[1]["env_steps"] == poison_step + E < total  # its count ends where it stopped
    assert summaries[1]["updates"] < batch.agent.n_updates
    assert [summaries[s]["status"] for s in (0, 2)] == ["completed", "completed"]
    assert summaries[0]["error"] is None and summaries[2]["error"] is None
    # the stopped member counts no more episodes and gets no more evaluation rows
    assert batch.episodes[1] == recorder.stopped[0][2] == len(recorder.episodes[1]) < clean.episodes[1]
    assert [row.env_steps for row in recorder.evals[1]] == [300]
    assert [row.env_steps for row in recorder.evals[0]] == [row.env_steps for row in recorder.evals[2]] == [300, 600,
                                                                                                              900]
    # the others trained to the end, finite, exactly as in the batch that never diverged
    assert batch.env_steps == clean.env_steps == total and batch.agent.n_updates == clean.agent.n_updates
    for s in (0, 2):
        for k, v in member_params(batch, s).items():
            assert np.isfinite(v).all(), (s, k)
        assert_params_equal(member_params(batch, s), member_params(clean, s))
        assert untimed(summaries[s]) == untimed(clean.summary(s))


class _PoisonedEnv(envs.VecEnv):
    """Member 1's env (slot 1 of two) returns a NaN observation or reward from its `at`-th step on (training env)."""

    def __init__(self, env_id, n_envs, rngs, what: str, at: int) -> None:
        super().__init__(env_id, n_envs, rngs)
        self.what, self.at, self.calls = what, at, 0

    def step(self, actions):
        out = super().step(actions)
        self.calls += 1
        if self.n_envs == 2 and self.calls >= self.at:
            if self.what == "obs":  # the physics of member 1's env blows up: its state, and so its observations
                self._backend.vec.state[:, 1] = np.nan
                out.next_obs[1] = np.nan
                self.obs = self.obs.copy()
                self.obs[1] = np.nan
            else:
                out.reward[1] = np.nan
        return out


def _one_env_config() -> DQNConfig:
    return DQNConfig(hidden_sizes=(8,), n_envs=1, batch_size=8, learning_starts=8, buffer_size=100, eval_freq=0,
                     eval_episodes=1, train_freq=1, gradient_steps=1, dtype="float64", n_step=1)


@pytest.mark.parametrize("what", ["obs", "reward"])
def test_a_member_whose_env_turns_non_finite_is_frozen_and_its_checkpoint_loads(what):
    def make(n, rngs):
        return _PoisonedEnv(CARTPOLE, n, rngs, what, at=12)

    batch = Engine(make, _one_env_config(), [0, 1])
    batch.run(20)  # a NaN observation used to crash every member at the next act; now only member 1 stops
    assert not batch.active[1] and "non-finite" in batch.stopped[1] and batch.active[0]
    # it left the compute: the stacked parts hold member 0 alone
    assert batch.live.tolist() == [0] and batch.agent.members == 1 and len(batch.replay.buffers) == 1
    assert batch.env.n_envs == 1 and batch.evaluator.env.n_envs == 1
    stopped = batch.member_agent(1)
    frozen = {k: v.copy() for k, v in stopped.online.params.items()}
    moments = {k: v.copy() for k, v in stopped.optimizer.state["m"].items()}
    batch.run(200)
    assert batch.env_steps == 200 and batch.agent.n_updates > 150
    again = batch.member_agent(1)
    for k, v in again.online.params.items():  # a stopped member never changes again
        np.testing.assert_array_equal(v, frozen[k])
        np.testing.assert_array_equal(again.optimizer.state["m"][k], moments[k])
        assert np.isfinite(v).all() and np.isfinite(member_params(batch, 0)[k]).all()
    state = batch.replay.buffers[0].state_dict()  # nothing non-finite was stored for the member that went on
    assert all(np.isfinite(state[k]).all() for k in ("obs", "rewards", "next_obs"))
    resumed = Engine(make, _one_env_config(), [0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the envs restore exactly: no member starts afresh
        assert resumed.load_state_dict(unflatten_state(*flatten_state(batch.state_dict()))) == []
    assert resumed.stopped == batch.stopped and resumed.live.tolist() == [0]
    assert_params_equal(member_params(resumed, 1), frozen)
    batch.run(260)
    resumed.run(260)  # the member that went on is unaffected by the resume
    assert_params_equal(member_params(resumed, 0), member_params(batch, 0))


def test_a_stopped_member_with_a_small_buffer_does_not_hold_the_others_back():
    def make(n, rngs):
        return _PoisonedEnv(CARTPOLE, n, rngs, "reward", at=3)  # member 1 stops with 2 transitions, below B = 8

    batch = Engine(make, _one_env_config(), [0, 1])
    batch.run(100)
    assert batch.stopped and batch.stopped_at[1][0] < 8  # it stopped holding fewer transitions than a batch
    single = Engine(make_env, _one_env_config(), [0])
    single.run(100)
    assert batch.agent.n_updates == single.agent.n_updates > 80  # member 0 trains as it would alone
    assert_params_equal(member_params(batch, 0), member_params(single, 0))


def test_in_float32_with_clipping_a_member_is_bit_identical_to_its_single_run():
    # max_grad_norm 1 keeps clipping active: a single run computes its norm as a member of a batch does
    cfg = DQNConfig(hidden_sizes=(32, 32), n_envs=4, batch_size=32, learning_starts=200, train_freq=8,
                    gradient_steps=8, eval_freq=0, max_grad_norm=1.0, dtype="float32", n_step=1)
    single = Engine(make_env, cfg, [4])
    single.run(1200)
    batch = Engine(make_env, cfg, [9, 4])
    batch.run(1200)
    assert single.agent.n_updates == batch.agent.n_updates > 900
    assert single.learner.last_metrics["grad_norm"][0] > 1.0  # the last step was clipped
    assert_agents_equal(batch.agent.member(1), single.agent.member(0))


# --- 4. the batch's state round trip -------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("diverged", [False, True])
def test_batch_resumes_bit_identically_from_a_checkpoint(tmp_path, dtype, diverged):
    cfg = small_config(dtype=dtype, eval_freq=200, eval_episodes=20)
    seeds = [3, 7, 5]

    def build() -> Engine:
        return Engine(make_env, cfg, seeds, solve_threshold=10.0)

    uninterrupted = build()
    uninterrupted.run(400)
    if diverged:  # member 1 stopped before the checkpoint: active and stopped must come back too
        # its Q-values blow up (their sum overflows) while every array of the state stays finite
        uninterrupted.agent.online.params["b2"][1] = np.finfo(dtype).max / 2
        uninterrupted.run(404)
        assert list(uninterrupted.stopped) == [1]
    arrays, meta = flatten_state(uninterrupted.state_dict())
    path = save_checkpoint(tmp_path / "batch.npz", cfg, OBS_DIM, N_ACTIONS, arrays, meta)
    ckpt = load_checkpoint(path)
    resumed = build()
    assert resumed.load_state_dict(unflatten_state(ckpt.arrays, ckpt.meta)) == []
    final_a = uninterrupted.run(1_000)
    final_b = resumed.run(1_000)

    assert uninterrupted.env_steps == resumed.env_steps == 1_000
    assert_states_equal(uninterrupted.agent.state_dict(), resumed.agent.state_dict())
    assert [untimed(s) for s in final_a] == [untimed(s) for s in final_b]
    assert final_a[0]["n_evals"] == 5 and final_a[0]["best_eval_mean"] is not None
    np.testing.assert_array_equal(uninterrupted.episodes, resumed.episodes)
    np.testing.assert_array_equal(uninterrupted.active, resumed.active)
    assert uninterrupted.stopped == resumed.stopped
    assert_states_equal(uninterrupted.evaluator.best_params, resumed.evaluator.best_params)
    assert uninterrupted.evaluator.solved_at_step == resumed.evaluator.solved_at_step
    for a, b in zip(uninterrupted.replay.buffers, resumed.replay.buffers, strict=True):
        assert_states_equal(a.state_dict(), b.state_dict())
        assert a.rng.bit_generator.state == b.rng.bit_generator.state
    for a, b in zip(uninterrupted.agent.rng, resumed.agent.rng, strict=True):
        assert a.bit_generator.state == b.bit_generator.state
    # the checkpoint was taken mid-run: the resumed engine went on, it did not replay the saved state again
    assert resumed.agent.n_updates > int(ckpt.arrays["agent/agent.n_updates"])


def test_batch_refuses_the_state_of_other_seeds():
    cfg = small_config()
    batch = Engine(make_env, cfg, [3, 7])
    batch.run(100)
    other = Engine(make_env, cfg, [3, 8])
    with pytest.raises(ValueError, match=re.escape("[3, 7]") + ".*" + re.escape("[3, 8]")):
        other.load_state_dict(batch.state_dict())


# --- 5. bad input ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seeds, named", [
    ([], "none"),
    ([0, -1], "-1"),
    ([1, 2, 1], "[1]"),
    ([4, 2, 4, 2], "[2, 4]"),
    ([True], "True"),
    ([1, False], "False"),
    ([1.5], "1.5"),
    ([2.0], "2.0"),
    (["3"], "'3'"),
    ([None], "None"),
    ([np.bool_(True)], "True"),
])
def test_bad_seeds_are_refused_naming_the_value(seeds, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        check_seeds(seeds)

    def never(n, rngs):
        raise AssertionError("make_env must not be called with bad seeds")

    with pytest.raises(ValueError, match=re.escape(named)):
        Engine(never, small_config(), seeds)


def test_check_seeds_takes_numpy_integers_and_returns_ints():
    got = check_seeds(np.array([4, 0, 2]))
    assert got == [4, 0, 2] and all(type(s) is int for s in got)


def test_replay_memory_is_refused_before_allocation(monkeypatch):
    cfg = small_config(buffer_size=100_000, dtype="float32")
    need = MemberReplay.nbytes_for(3, 100_000, OBS_DIM, "float32")
    monkeypatch.setattr(agents.data.replay, "available_memory", lambda: need - 1)

    def never(*args, **kwargs):
        raise AssertionError("allocated before the memory check")

    monkeypatch.setattr(MemberReplay, "__init__", never)
    monkeypatch.setattr(DQNAgent, "__init__", never)
    with pytest.raises(ValueError, match=re.escape("3 seeds x buffer_size 100000") + f".*{need} bytes"):
        Engine(make_env, cfg, [0, 1, 2])


def test_replay_memory_that_fits_is_allocated(monkeypatch):
    cfg = small_config(buffer_size=1_000)
    need = MemberReplay.nbytes_for(2, 1_000, OBS_DIM, cfg.dtype) + DQNAgent.nbytes_for(OBS_DIM, N_ACTIONS, cfg, 2)
    monkeypatch.setattr(agents.data.replay, "available_memory", lambda: need)  # the buffers and networks, exactly
    batch = Engine(make_env, cfg, [0, 1])
    assert batch.replay.capacity == 1_000 and batch.replay.members == 2
    monkeypatch.setattr(agents.data.replay, "available_memory", lambda: need - 1)  # one byte short: refused
    with pytest.raises(ValueError, match=r"would need \d+ bytes"):
        Engine(make_env, cfg, [0, 1])
