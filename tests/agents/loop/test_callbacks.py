"""agents/callbacks.py: the progress bar keeps one width whatever its figures, and says when the final evaluation
runs."""

from types import SimpleNamespace

from agents.loop.events import EvalRow, ProgressBar


def fake_trainer(env_steps: int, last_return: float | None, best: float | None) -> SimpleNamespace:
    return SimpleNamespace(
        env_steps=env_steps, epsilon=0.05,
        last_episode=None if last_return is None else SimpleNamespace(episode_return=last_return),
        evaluator=SimpleNamespace(best_mean=best if best is not None else float("-inf"),
                                  best_step=None if best is None else env_steps))


def test_bar_keeps_its_width_through_evaluations_and_announces_the_final_evaluation(capsys) -> None:
    bar = ProgressBar(total=5000, every=1000)
    bar.on_run_start(fake_trainer(0, None, None))
    for step, last, best in [(1000, 9.0, 9.0), (2000, -500.0, 9.0), (3000, 12345.6, 12345.6), (5000, 1.0, -0.5)]:
        trainer = fake_trainer(step, last, best)
        bar.on_step(trainer, step - 1000)
        bar.on_eval(trainer, EvalRow(1, step, best, 0.0, best, best, 3, 1.0, True))
    bar.on_run_end(fake_trainer(5000, 1.0, -0.5))
    with bar.final_evaluation(250) as shown:
        shown.update(100)
        shown.update(150)
    frames = [f for f in capsys.readouterr().err.replace("\n", "\r").split("\r") if f.strip()]
    assert {len(f) for f in frames} == {110}, [f for f in frames if len(f) != 110]
    assert any("5000/5000" in f and "best eval   -0.5" in f for f in frames)  # tqdm may skip the frames between
    assert frames[-1].startswith("final evaluation over 250 episodes: 100%") and "250/250" in frames[-1]


def test_disabled_bar_draws_nothing(capsys) -> None:
    bar = ProgressBar(total=10, enabled=False)
    bar.on_run_start(fake_trainer(0, None, None))
    bar.on_run_end(fake_trainer(10, 1.0, None))
    with bar.final_evaluation(3) as shown:
        shown.update(3)
    assert capsys.readouterr().err == ""
