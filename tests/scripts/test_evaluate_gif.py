"""scripts/evaluate.py --gif: the GIF replays the evaluation's episodes (same seeds, same greedy actions, same
returns), every kept step is one frame, each frame shows its own caption (checked pixel for pixel against the
caption re-drawn from the evaluation's figures) and the scene (against a fresh rendering); bad paths and missing
packages are one line and exit 2 before evaluating, and a GIF that fails later leaves the results and no file."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scripttools import load_script, run_main, snapshot

from agents.config import DQNConfig
from agents.run import load_agent, train_one
from agents.run.gif import BOX_COLOR, BOX_INDEX, HOLD_MS, TEXT_COLOR, TEXT_INDEX, caption, draw_caption
from envs import EnvError
from envs.render import open_render_env, render_episodes

REPO = Path(__file__).resolve().parents[2]
TINY = DQNConfig(hidden_sizes=(16,), batch_size=32, buffer_size=1_000, learning_starts=100, eval_freq=0)


@pytest.fixture(scope="module")
def agent_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A barely trained CartPole agent (600 steps): short episodes of different lengths, so GIFs stay small."""
    out = tmp_path_factory.mktemp("run") / "run"
    assert train_one(TINY, "CartPole-v1", 0, out, 600)["status"] == "completed"
    return out / "final.npz"


@pytest.fixture(scope="module")
def evaluate_script():
    """scripts/evaluate.py as a module, to run `main` in-process (and monkeypatch what it imports)."""
    return load_script("evaluate")



def gif_frames(path: Path) -> list[tuple[np.ndarray, dict, int]]:
    """Every frame of a GIF as shown (RGB `(H, W, 3)`), with its comment (JSON) and its delay in ms."""
    frames = []
    with Image.open(path) as gif:
        for k in range(gif.n_frames):
            gif.seek(k)
            frames.append((np.asarray(gif.convert("RGB")), json.loads(gif.info["comment"]), gif.info["duration"]))
    return frames


def nearest(colors: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Each pixel of `image: (H, W, 3)` replaced by its nearest color among `colors: (n, 3)` (the first on a tie)."""
    flat = image.reshape(-1, 3).astype(np.int64)
    codes, inverse = np.unique(flat @ [1 << 16, 1 << 8, 1], return_inverse=True)  # one integer per color
    unique = np.stack([codes >> 16, (codes >> 8) & 255, codes & 255], axis=1)  # (k, 3)
    distance = ((unique[:, None, :] - colors[None, :, :].astype(np.int64)) ** 2).sum(axis=2)
    return colors[distance.argmin(axis=1)][inverse.reshape(-1)].reshape(image.shape).astype(np.uint8)


def drawn_caption(size: tuple[int, int], text: str) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The caption `text` drawn alone, as the GIF draws it (on palette indices), on a frame of `size` (W, H), as RGB
    `(H, W, 3)`, and its box."""
    image = Image.new("P", size, 0)
    box = draw_caption(image, text, BOX_INDEX, TEXT_INDEX)
    colors = np.full((256, 3), 90, np.uint8)  # anything outside the box: grey
    colors[BOX_INDEX], colors[TEXT_INDEX] = BOX_COLOR, TEXT_COLOR
    return colors[np.asarray(image)], box


def test_the_gif_replays_the_evaluation_and_shows_its_returns(agent_file, tmp_path):
    """As a user types it: every frame counted, sized, captioned and drawn as the evaluation's episodes were."""
    out = tmp_path / "agent.gif"
    report_path = tmp_path / "report.json"
    result = subprocess.run([sys.executable, "scripts/evaluate.py", str(agent_file), "--episodes", "3", "--json",
                             str(report_path), "--gif", str(out), "--gif-episodes", "3", "--gif-every", "1"],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    report = json.loads(report_path.read_text())
    returns = report["returns"]
    assert f"gif {out}: 3 episode(s)" in result.stdout
    frames = gif_frames(out)

    agent = load_agent(agent_file)  # the raw frames, rendered afresh with the same greedy action choice
    env = open_render_env("CartPole-v1")
    raw = list(render_episodes(env, lambda obs: int(agent.greedy(obs[None])[0]), 3, 0))
    env.close()
    lengths = [max(f.step for f in raw if f.episode == i) for i in range(3)]
    assert [float(r) for r in lengths] == returns  # CartPole pays 1 per step: the rendered episodes are the same
    assert len(set(lengths)) > 1, lengths
    assert len(frames) == sum(length + 1 for length in lengths) == len(raw)  # --gif-every 1: steps 0..L of each
    assert report["gif"]["frames"] == len(frames) and report["gif"]["bytes"] == out.stat().st_size
    assert [e["return"] for e in report["gif"]["episodes"]] == returns

    palette = np.unique(raw[0].image.reshape(-1, 3), axis=0)  # the first frame's colors, exactly (few of them)
    for (shown, comment, ms), frame in zip(frames, raw, strict=True):
        assert shown.shape == frame.image.shape == (400, 600, 3)  # the env's render size
        assert comment == {"episode": frame.episode, "step": frame.step, "return": frame.running_return,
                           "done": frame.done}
        assert ms == (HOLD_MS if frame.done else 20)  # CartPole renders at 50 fps
        expected_caption, (left, top, right, bottom) = drawn_caption((600, 400), caption(frame.episode, frame.step,
                                                                                       frame.running_return))
        np.testing.assert_array_equal(shown[top:bottom, left:right], expected_caption[top:bottom, left:right])
        scene = np.ones((400, 600), bool)
        scene[top:bottom, left:right] = False
        np.testing.assert_array_equal(shown[scene], nearest(palette, frame.image)[scene])

    last = [k for k, (_, comment, _) in enumerate(frames) if comment["done"]]
    assert [frames[k][1]["return"] for k in last] == returns  # the exact return, from the evaluation
    for i, k in enumerate(last):  # what the last frame shows is the evaluation's return, and only that number
        expected, (left, top, right, bottom) = drawn_caption((600, 400), caption(i, lengths[i], returns[i]))
        np.testing.assert_array_equal(frames[k][0][top:bottom, left:right], expected[top:bottom, left:right])
        wrong, box = drawn_caption((600, 400), caption(i, lengths[i], returns[i] + 1))
        assert not np.array_equal(frames[k][0][box[1]:box[3], box[0]:box[2]], wrong[box[1]:box[3], box[0]:box[2]])


@pytest.mark.parametrize("every", [2, 3])
def test_every_keeps_every_nth_step_and_always_the_last(every, agent_file, evaluate_script, capsys, tmp_path):
    out = tmp_path / "every.gif"
    status, stdout, _ = run_main(evaluate_script, capsys, agent_file, "--episodes", "2", "--json",
                                 tmp_path / "report.json", "--gif", out, "--gif-episodes", "2", "--gif-every", every)
    assert status == 0
    returns = json.loads((tmp_path / "report.json").read_text())["returns"]
    frames = gif_frames(out)
    for i, length in enumerate(int(r) for r in returns):  # CartPole: the return is the episode's length
        steps = [comment["step"] for _, comment, _ in frames if comment["episode"] == i]
        assert steps == sorted({*range(0, length + 1, every), length})
        assert len(steps) == length // every + 1 + (length % every != 0)
        final = [comment for _, comment, _ in frames if comment["episode"] == i][-1]
        assert final == {"episode": i, "step": length, "return": returns[i], "done": True}
    assert {ms for _, comment, ms in frames if not comment["done"]} == {round(1000 / (50 / every), -1)}


def test_scale_downsizes_frames(agent_file, evaluate_script, capsys, tmp_path):
    out = tmp_path / "small.gif"
    status, _, _ = run_main(evaluate_script, capsys, agent_file, "--episodes", "1", "--gif", out, "--gif-scale", "0.5",
                            "--gif-fps", "10")
    assert status == 0
    frames = gif_frames(out)
    assert {f.shape for f, _, _ in frames} == {(200, 300, 3)}
    assert {ms for _, comment, ms in frames if not comment["done"]} == {100}


def assert_refused(status: int, stdout: str, stderr: str, tmp_path: Path, before: dict, *fragments: str) -> None:
    """Exit 2, one line on stderr, nothing evaluated (no stdout) and nothing written."""
    assert status == 2, stdout + stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("evaluate.py: error: --gif") or "needs" in lines[0], stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert stdout == ""
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(("where", "fragment"), [
    ("missing/agent.gif", "does not exist"),
    ("a_folder.gif", "it is a folder"),
    ("agent.png", "must end in .gif"),
    ("file/agent.gif", "is not a folder"),
    ("x" * 250 + ".gif", "too long"),
], ids=["missing-parent", "a-folder", "not-gif", "parent-is-a-file", "name-too-long"])
def test_a_bad_gif_path_is_refused_before_evaluating(where, fragment, agent_file, evaluate_script, capsys, tmp_path):
    (tmp_path / "a_folder.gif").mkdir()
    (tmp_path / "file").write_text("a file")
    before = snapshot(tmp_path)
    status, stdout, stderr = run_main(evaluate_script, capsys, agent_file, "--episodes", "2", "--gif",
                                      tmp_path / where)
    assert_refused(status, stdout, stderr, tmp_path, before, fragment)


@pytest.mark.parametrize(("args", "fragment"), [
    (["--gif-every", "2"], "--gif-every given without --gif"),
    (["--gif", "G", "--gif-episodes", "0"], "--gif-episodes must be at least 1, got 0"),
    (["--gif", "G", "--gif-every", "0"], "--gif-every must be at least 1, got 0"),
    (["--gif", "G", "--gif-scale", "1.5"], "--gif-scale must be in (0, 1], got 1.5"),
    (["--gif", "G", "--gif-fps", "0"], "--gif-fps must be in [0.1, 50], got 0.0"),
    (["--gif", "G", "--gif-fps", "60"], "--gif-fps must be in [0.1, 50], got 60.0"),
])
def test_bad_gif_options_are_one_line(args, fragment, agent_file, evaluate_script, capsys, tmp_path):
    args = [str(tmp_path / "agent.gif") if a == "G" else a for a in args]
    status, stdout, stderr = run_main(evaluate_script, capsys, agent_file, *args)
    assert status == 2 and stdout == "" and len(stderr.strip().splitlines()) == 1 and fragment in stderr, stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("module", "message"), [
    ("PIL", "writing a GIF needs Pillow, which is not installed: pip install -e '.[render]'"),
    ("pygame", "env_id 'CartPole-v1' needs pygame, which is not installed: pip install -e '.[render]'"),
])
def test_a_missing_render_package_is_one_line_before_evaluating(module, message, agent_file, evaluate_script, capsys,
                                                                 monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, module, None)  # `import PIL` / `import pygame` now fail, as without the extra
    status, stdout, stderr = run_main(evaluate_script, capsys, agent_file, "--episodes", "2", "--gif",
                                      tmp_path / "agent.gif")
    assert status == 2 and stdout == ""
    assert stderr.strip().splitlines() == [f"evaluate.py: error: {message}"]
    assert list(tmp_path.iterdir()) == []


def test_a_gif_failing_after_the_evaluation_keeps_the_results_and_leaves_no_file(agent_file, evaluate_script, capsys,
                                                                                   monkeypatch, tmp_path):
    real = evaluate_script.render_episodes

    def breaks_midway(*args, **kwargs):  # a renderer that fails after some frames were written
        for k, frame in enumerate(real(*args, **kwargs)):
            if k == 5:
                raise EnvError("the renderer broke")
            yield frame

    monkeypatch.setattr(evaluate_script, "render_episodes", breaks_midway)
    out, report = tmp_path / "agent.gif", tmp_path / "report.json"
    out.write_bytes(b"an older GIF")
    status, stdout, stderr = run_main(evaluate_script, capsys, agent_file, "--episodes", "2", "--json", report,
                                      "--gif", out, "--force")  # --force: the older GIF may be replaced
    assert status == 1
    assert "return " in stdout and json.loads(report.read_text())["gif"] is None  # the results, written first
    assert stderr.strip().splitlines() == [f"evaluate.py: warning: could not write the GIF {out}: EnvError: the "
                                           "renderer broke"]
    assert sorted(tmp_path.iterdir()) == [out, report] and out.read_bytes() == b"an older GIF"  # no temporary file


def test_a_gif_whose_return_differs_from_the_evaluation_says_so(agent_file, evaluate_script, capsys, monkeypatch,
                                                                tmp_path):
    real = evaluate_script.evaluate
    monkeypatch.setattr(evaluate_script, "evaluate", lambda *args, **kwargs: real(*args, **kwargs) + 1.0)
    status, stdout, stderr = run_main(evaluate_script, capsys, agent_file, "--episodes", "1", "--json",
                                      tmp_path / "report.json", "--gif", tmp_path / "agent.gif")
    assert status == 0 and (tmp_path / "agent.gif").exists()
    report = json.loads((tmp_path / "report.json").read_text())
    (shown,) = [e["return"] for e in report["gif"]["episodes"]]
    assert stderr.strip().splitlines() == [f"evaluate.py: warning: the GIF's episode 0 earned {shown:g} but the "
                                           f"evaluation's {shown + 1:g} (the rendered env and the vector env "
                                           "disagree in the last bits of their physics)"]
