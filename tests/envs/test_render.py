"""envs.render: rendered greedy episodes match plain seeded episodes of the same env, the kept-frame rule, and
one-line errors for a missing pygame or Box2D and for frames that are not RGB."""

import sys

import numpy as np
import pytest

from envs import EnvError, make_env
from envs.render import Frame, frame_shape, open_render_env, render_episodes, render_fps


def lean(obs: np.ndarray) -> int:
    """A deterministic CartPole controller that balances for a while: push the way the pole leans."""
    return int(obs[2] > 0)


def reference_episode(env_id: str, seed: int, act, **kwargs) -> tuple[list[np.ndarray], list[float]]:
    """Frames and running returns of one episode played on a fresh env, step by step, without envs.render."""
    env = make_env(env_id, render_mode="rgb_array", **kwargs)
    obs, _ = env.reset(seed=seed)
    frames, returns, total, done = [env.render()], [0.0], 0.0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(act(obs))
        total += float(reward)
        done = terminated or truncated
        frames.append(env.render())
        returns.append(total)
    env.close()
    return frames, returns


@pytest.mark.parametrize("every", [1, 3])
def test_episodes_are_the_seeded_episodes_and_every_keeps_steps_and_the_last(every):
    env = open_render_env("CartPole-v1", max_episode_steps=36)  # seeds 5, 6, 7: truncated at 36, falls at 32, 34
    frames = list(render_episodes(env, lean, episodes=3, seed=5, every=every))
    env.close()
    assert all(isinstance(f, Frame) for f in frames)
    lengths = []
    for i in range(3):
        ref_frames, ref_returns = reference_episode("CartPole-v1", 5 + i, lean, max_episode_steps=36)
        length = len(ref_returns) - 1
        lengths.append(length)
        kept = [t for t in range(length + 1) if t % every == 0 or t == length]
        mine = [f for f in frames if f.episode == i]
        assert [f.step for f in mine] == kept
        assert [f.done for f in mine] == [t == length for t in kept]
        assert [f.running_return for f in mine] == [ref_returns[t] for t in kept]
        for f in mine:
            np.testing.assert_array_equal(f.image, ref_frames[f.step])
            assert f.image.shape == (400, 600, 3) and f.image.dtype == np.uint8
    assert len(frames) == sum(length // every + 1 + (length % every != 0) for length in lengths)
    assert 36 in lengths and min(lengths) < 36, lengths  # truncated and terminated episodes: the rule is tested


def test_render_fps_reads_the_metadata():
    env = open_render_env("Acrobot-v1")
    assert render_fps(env) == 15
    env.close()


def test_missing_pygame_is_one_line_naming_the_render_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pygame", None)  # `import pygame` now fails, as on a machine without it
    with pytest.raises(EnvError) as error:
        open_render_env("CartPole-v1")
    assert str(error.value) == "env_id 'CartPole-v1' needs pygame, which is not installed: pip install -e '.[render]'"


def test_missing_box2d_is_one_line_naming_the_box2d_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "Box2D", None)
    for name in [m for m in sys.modules if m.startswith("gymnasium.envs.box2d")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(EnvError) as error:
        open_render_env("LunarLander-v3")
    assert str(error.value) == "env_id 'LunarLander-v3' needs Box2D, which is not installed: pip install -e '.[box2d]'"


@pytest.mark.parametrize("image", [None, np.zeros((4, 5), np.uint8), np.zeros((4, 5, 4), np.uint8),
                                   np.zeros((4, 5, 3), np.float32), np.zeros((0, 5, 3), np.uint8)],
                         ids=["none", "grey", "rgba", "float", "empty"])
def test_a_frame_that_is_not_rgb_uint8_is_refused(image):
    with pytest.raises(EnvError, match=r"expected an \(H, W, 3\) uint8 RGB frame"):
        frame_shape(image)
    assert frame_shape(np.zeros((4, 5, 3), np.uint8)) == (4, 5)
