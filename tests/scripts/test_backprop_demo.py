"""scripts/backprop_demo.py, run the way a user types it: exit status and the numbers it prints."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FLOAT = r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?"


def run_demo(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "scripts/backprop_demo.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def floats(pattern: str, text: str) -> list[float]:
    return [float(v) for v in re.findall(pattern, text)]


def check_lesson(out: str, param_names: list[str]) -> None:
    """The one-example walkthrough and the warm-up check, whatever the loss or depth."""
    for name in ["x", "z1", "h1", "y_hat", "y", "delta1", "dW1", "db1", *param_names]:
        assert re.search(rf"^  {re.escape(name)}\s+\(", out, re.M), f"{name} is not printed with its shape"
    (max_diff,) = floats(rf"max abs difference \(explicit vs mlp\.grads, all parameters\): ({FLOAT})", out)
    assert max_diff < 1e-12

    rel_errors = floats(rf"relative error \|a - n\| / max\(\|a\|, \|n\|\)\s+= ({FLOAT})", out)
    analytic = floats(rf"analytic dW1\[\d,\d\]\s+= ({FLOAT})", out)
    assert "Warm-up check of W1[0,0]" in out
    assert rel_errors and all(r < 1e-6 for r in rel_errors)
    assert any(a != 0.0 for a in analytic), "no warm-up check on a live path"


def check_training(out: str, loss: str) -> None:
    steps = [int(s) for s in re.findall(rf"after\s+(\d+) steps\s+{loss} loss", out)]
    losses = floats(rf"after\s+\d+ steps\s+{loss} loss ({FLOAT})", out)
    assert steps == [0, 20, 40, 60, 80, 100]
    assert losses[-1] < losses[0]


@pytest.mark.parametrize(("args", "loss"), [((), "mse"), (("--loss", "mae"), "mae"), (("--loss", "huber"), "huber")])
def test_two_layer_net(args, loss):
    result = run_demo(*args)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"Network 3 -> 4 -> 2, loss {loss}" in out
    check_lesson(out, ["W1", "b1", "W2", "b2", "delta2", "dW2", "db2"])
    check_training(out, loss)


def test_three_layer_net():
    result = run_demo("--hidden", "4", "4")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Network 3 -> 4 -> 4 -> 2" in out
    check_lesson(out, ["W3", "z2", "h2", "delta3", "dW3", "db3", "delta2", "dW2", "db2"])
    check_training(out, "mse")


def test_compare_losses_names_a_winner():
    result = run_demo("--compare-losses")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    check_lesson(out, ["W2", "delta2"])
    (winner,) = re.findall(r"^winner: (MSE|MAE) \(", out, re.M)
    first = re.findall(r"after\s+0 steps\s+mse run: MSE (\S+) MAE (\S+)\s+mae run: MSE (\S+) MAE (\S+)", out)
    assert len(first) == 1 and first[0][:2] == first[0][2:], "the runs must start from the same weights"
    reached = dict(re.findall(r"(mse|mae) run first reaches MAE <= \S+ \(half the initial MAE\) (.+)$", out, re.M))
    assert set(reached) == {"mse", "mae"}
    mae_after = {k: floats(rf"after\s+\d+ steps.*?{k} run: MSE {FLOAT} MAE ({FLOAT})", out) for k in ("mse", "mae")}
    for k in ("mse", "mae"):
        assert mae_after[k][-1] < mae_after[k][0]
    n_steps = {k: int(v.split()[1]) for k, v in reached.items() if v.startswith("after ")}
    if len(n_steps) == 2 and n_steps["mse"] != n_steps["mae"]:
        assert winner.lower() == min(n_steps, key=n_steps.get), "the winner must be the first to reach the target"


def test_same_seed_same_output_and_seed_matters():
    assert run_demo("--seed", "3").stdout == run_demo("--seed", "3").stdout
    assert run_demo("--seed", "3").stdout != run_demo("--seed", "4").stdout


def test_bad_loss_is_a_usage_error():
    result = run_demo("--loss", "bogus")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
