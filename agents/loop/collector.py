"""The collector: acts in S x E environments at once, steps them, keeps episode statistics, and feeds replay.

The agent is stacked with S members (one per seed; a single run is S = 1); the env holds S * E slots, member s owning
slots `s*E .. s*E + E - 1`. One call of `Collector.step` is one vector step, S * E transitions:

    obs (S*E, obs_dim) -> (S, E, obs_dim) -> actions (S, E)     one forward pass, one uniform draw per env for epsilon
    env.step(actions) -> next_obs, reward, terminated, truncated   (S*E,) each; the true final obs where one ended
    n-step windows -> finished transitions -> each member's replay buffer   discount = gamma^k, 0 at termination

The environment is anything with the `VecEnvLike` shape (`envs.VecEnv` adapts Gymnasium); the collector never sees
Gymnasium's autoreset, info dicts or reset transitions.
"""

from __future__ import annotations

import warnings
from typing import Any, Protocol

import numpy as np

from agents.algo.dqn import DQNAgent
from agents.data.nstep import NStepWindows
from agents.data.replay import MemberReplay


class VecStepLike(Protocol):
    next_obs: np.ndarray  # (E, obs_dim)
    reward: np.ndarray  # (E,)
    terminated: np.ndarray  # (E,) bool
    truncated: np.ndarray  # (E,) bool


class VecEnvLike(Protocol):
    """What the loop needs from E environments stepped together (`envs.VecEnv` provides it)."""

    n_envs: int
    obs_dim: int
    n_actions: int
    obs: np.ndarray  # (E, obs_dim): the current observation of each env (a new episode's first after an end);
    # `step` replaces it with a new array and never writes into the old one, which the collector still reads

    def reset(self, seeds: np.ndarray | None = None) -> np.ndarray: ...

    def step(self, actions: np.ndarray) -> VecStepLike: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> bool: ...

    def select_state(self, envs: np.ndarray) -> dict[str, Any]:
        """The `state_dict` of an env of only the envs `envs: (k,)` (in order; whole groups of generators)."""
        ...


class Collector:
    """Runs the behaviour policy in S x E envs and stores what happens.

    Args:
        env: the S * E training environments, reset before the first `step` (the engine does it, or restores them).
        agent: a stacked agent of S members; acts epsilon-greedily, member s from its own generator.
        replay: the members' buffers; receives the n-step transitions, each in its own member's buffer.
        n_step: n of the returns.
        gamma: the discount factor.

    Attributes:
        episodes: training episodes finished so far (over all members).
        nonfinite_members: members whose environments returned a non-finite reward or observation in the last step
            (their loop stops them; nothing of theirs was stored).
        active: `(S,)` bool, shared with the loop: a stopped member's transitions are no longer stored.
        episode_return: (S * E,) return of each env's current episode so far.
        episode_length: (S * E,) steps of each env's current episode so far.
    """

    def __init__(self, env: VecEnvLike, agent: DQNAgent, replay: MemberReplay, n_step: int, gamma: float) -> None:
        self.env, self.agent, self.replay = env, agent, replay
        E = env.n_envs
        self.members = agent.members
        if self.members is None or E % self.members or not isinstance(replay, MemberReplay):
            raise ValueError(f"the collector needs a stacked agent, a MemberReplay and a multiple of its members' "
                             f"count of envs, got members={self.members}, {E} envs and a {type(replay).__name__}")
        self._envs_per_member = E // self.members
        self.nonfinite_members = np.zeros(0, np.int64)
        self.active = np.ones(self.members, bool)
        self.windows = NStepWindows(E, n_step, gamma, env.obs_dim, replay.dtype)
        self.episodes = 0
        self.episode_return = np.zeros(E)
        self.episode_length = np.zeros(E, np.int64)

    def step(self, epsilon: float) -> list[tuple[int, float, int]]:
        """One vector step: act, step, store; returns `(env index, return, length)` of the episodes it ended."""
        S, E = self.members, self._envs_per_member
        obs = self.env.obs  # (S * E, obs_dim); the env replaces it on step, so this reference stays valid
        # (S, E, obs_dim) -> (S, E): one forward pass of every member, each drawing from its own generator
        actions = self.agent.act(obs.reshape(S, E, -1), epsilon).reshape(-1)
        step = self.env.step(actions)
        if not (np.isfinite(step.reward).all() and np.isfinite(step.next_obs).all()):
            bad = ~(np.isfinite(step.reward) & np.isfinite(step.next_obs).all(axis=1))
            self.nonfinite_members = np.unique(np.flatnonzero(bad) // E)
        elif len(self.nonfinite_members):
            self.nonfinite_members = self.nonfinite_members[:0]
        # Termination ends the n-step sum without a bootstrap; truncation keeps gamma^k (the time limit is not the MDP).
        t = self.windows.push(obs, actions, step.reward, step.next_obs, step.terminated, step.truncated)
        if len(t.actions):  # each window to its own member's buffer; none from a stopped member
            members = self.windows.last_envs // E
            if len(self.nonfinite_members) or not self.active.all():  # keep only the live, finite members' windows
                keep = self.active[members]
                if len(self.nonfinite_members):
                    keep &= ~np.isin(members, self.nonfinite_members)
                if keep.any():
                    self.replay.write(t.obs[keep], t.actions[keep], t.rewards[keep], t.next_obs[keep],
                                      t.discounts[keep], members[keep])
            else:  # the usual case: every window is kept, no copies
                self.replay.write(t.obs, t.actions, t.rewards, t.next_obs, t.discounts, members)
        self.episode_return += step.reward
        self.episode_length += 1
        done = step.terminated | step.truncated
        if not done.any():
            return []
        ended = [(int(i), float(self.episode_return[i]), int(self.episode_length[i])) for i in np.flatnonzero(done)]
        self.episodes += len(ended)
        self.episode_return[done] = 0.0
        self.episode_length[done] = 0
        return ended

    def select(self, members: np.ndarray, agent: DQNAgent, replay: MemberReplay, env: VecEnvLike) -> Collector:
        """A collector of only `members` (rows, in order), continuing exactly where they are: their envs' state and
        generators, pending n-step windows and episode statistics move to `env` (built for them) and the new parts.

        Args:
            members: `(k,)` rows of the stacked agent, replay and envs to keep.
            agent, replay: the parts already cut down to those members.
            env: a fresh `k * E` env whose group i is member `members[i]`'s (its generators).
        """
        E = self._envs_per_member
        envs = (np.asarray(members, np.int64)[:, None] * E + np.arange(E)).reshape(-1)  # their env slots, in order
        out = Collector(env, agent, replay, self.windows.n_step, self.windows.gamma)
        if getattr(self.env, "obs", None) is None:  # never reset (an engine about to load a state): nothing to carry
            return out
        out.load_state_dict({"episodes": self.episodes, "episode_return": self.episode_return[envs],
                             "episode_length": self.episode_length[envs], "windows": self.windows.select_state(envs),
                             "env": self.env.select_state(envs)})
        return out

    def state_dict(self) -> dict[str, Any]:
        """Episode statistics, the pending n-step windows and the environments' own state (their generators too)."""
        return {"episodes": self.episodes, "episode_return": self.episode_return.copy(),
                "episode_length": self.episode_length.copy(), "windows": self.windows.state_dict(),
                "env": self.env.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        """Restore `state_dict()`; returns False when the environments could not be restored exactly.

        In that case they start fresh episodes, so the pending windows and episode statistics are dropped too; the
        caller says so (the engine returns it as one warning line), so the env's own RuntimeWarning is not shown.
        """
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", r"state of .* could not be restored exactly", RuntimeWarning)
            exact = self.env.load_state_dict(state["env"])
        self.episodes = int(state["episodes"])
        if exact:
            self.windows.load_state_dict(state["windows"])
            self.episode_return[...] = state["episode_return"]
            self.episode_length[...] = state["episode_length"]
        return exact
