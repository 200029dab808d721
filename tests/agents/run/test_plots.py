"""The learning curve is drawn from the logs alone, whatever rounding put in them."""

from pathlib import Path

import matplotlib  # noqa: F401 (in the [dev] extra: the plots are tested, not skipped)
import pytest

from agents.run.folder import RunFiles
from agents.run.plots import plot_learning_curve

PROGRESS = "episode,env_steps,episode_return,length,epsilon,train_seconds\r\n1,1,0.8,1,1.0,0.0\r\n2,2,0.0,1,1.0,0.0\r\n"


@pytest.mark.parametrize("mean", ["0.8000000000000002", "0.7999999999999998", "0.8"])
def test_an_evaluation_mean_rounded_past_its_min_or_max_still_draws(tmp_path: Path, mean: str) -> None:
    """Twenty returns of 0.8 average to 0.8000000000000002 in float64 (the TwoArmedBandit run of issue 19): the
    mean lies past the max by one ulp, and an error bar of mean - min / max - mean must not go negative."""
    files = RunFiles(tmp_path)
    files.progress.write_text(PROGRESS)
    files.evals.write_text("eval_index,env_steps,mean,std,min,max,episodes,train_seconds,is_best\r\n"
                           f"1,2,{mean},0.0,0.8,0.8,20,0.0,True\r\n")
    path = plot_learning_curve(files, "dqn_np/TwoArmedBandit-v0")
    assert path == tmp_path / "learning_curve.png" and path.stat().st_size > 1000
