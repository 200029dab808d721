"""scripts/backprop_demo.py, run the way a user types it: exit status and the numbers it prints."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from scripttools import writes_nothing

REPO = Path(__file__).resolve().parents[2]
FLOAT = r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?"


def run_demo(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "backprop_demo.py"), *args],
        cwd=cwd,
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
    result = run_demo("--hidden-sizes", "4", "4")
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


def test_bad_loss_is_a_usage_error(tmp_path):
    with writes_nothing(tmp_path):  # run from an empty folder: it stays empty
        result = run_demo("--loss", "bogus", cwd=tmp_path)
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


# --bug NAME: a bug planted in the script's copy of the backward pass, gradient-checked next to mlp.backward.

CHECK_ROW = re.compile(rf"^  (\w+)\s+\(([\d, ]*)\)\s+\d+\s+({FLOAT})\s+({FLOAT})\s+(pass|FAIL)$")
REFUSED_ROW = re.compile(r"^  (\w+)\s+refused by check_gradients: (.*)$")
ALL_PARAMS = {"W1", "b1", "W2", "b2"}


def check_blocks(out: str) -> list[dict]:
    """Every gradient-check table the demo prints, in order: its label, rows `{name: (rel error, max |a-n|, verdict)}`
    and refused parameters `{name: message}`."""
    blocks: list[dict] = []
    for line in out.splitlines():
        if re.match(r"^(Correct backward|Backward with the bug)\b.*:$", line):
            blocks.append({"label": line, "rows": {}, "refused": {}})
        elif blocks and (m := CHECK_ROW.match(line)):
            blocks[-1]["rows"][m[1]] = (float(m[3]), float(m[4]), m[5])
        elif blocks and (m := REFUSED_ROW.match(line)):
            blocks[-1]["refused"][m[1]] = m[2]
    return blocks


def batch_size(out: str) -> int:
    """The batch the planted bug is checked on, as the demo prints it."""
    (n,) = {int(v) for v in re.findall(r"loss mse, (\d+) random examples", out)}
    return n


def failing(block: dict) -> set[str]:
    return {name for name, (_, _, verdict) in block["rows"].items() if verdict == "FAIL"} | set(block["refused"])


def run_bug(name: str) -> tuple[str, list[dict]]:
    result = run_demo("--bug", name)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr == ""
    blocks = check_blocks(result.stdout)
    for correct in blocks[::2]:
        assert correct["label"].startswith("Correct backward")
        assert set(correct["rows"]) == ALL_PARAMS and not correct["refused"]
    for planted in blocks[1::2]:
        assert planted["label"].startswith(f"Backward with the bug {name}")
        assert set(planted["rows"]) | set(planted["refused"]) == ALL_PARAMS
    return result.stdout, blocks


def test_bug_delta2_sign_fails_every_parameter_with_rel_error_2():
    out, blocks = run_bug("delta2-sign")
    correct, planted = blocks
    assert not failing(correct)
    assert failing(planted) == ALL_PARAMS
    for name, (rel, _, _) in planted["rows"].items():
        assert rel == pytest.approx(2.0, abs=0.01), name  # analytic = -numeric: ||-g - g|| / ||g|| = 2
    assert "Why:" in out
    assert re.search(r"^Verdict: .*caught the bug in W1, b1, W2, b2: exit status 1\.$", out, re.M)


def test_bug_sum_not_mean_fails_every_parameter_with_rel_error_n_minus_1_over_n():
    out, blocks = run_bug("sum-not-mean")
    n = batch_size(out)
    correct, planted = blocks
    assert not failing(correct)
    assert failing(planted) == ALL_PARAMS
    for name, (rel, _, _) in planted["rows"].items():
        assert rel == pytest.approx((n - 1) / n, abs=0.006), name  # analytic = n * numeric


def test_bug_transposed_dw_is_refused_where_non_square_and_wrong_where_square():
    out, blocks = run_bug("transposed-dW")
    assert len(blocks) == 4, "the lesson's net, then a square one"
    correct, planted, correct_square, planted_square = blocks
    assert not failing(correct) and not failing(correct_square)
    assert set(planted["refused"]) == {"W1", "W2"} and failing(planted) == {"W1", "W2"}
    for name, message in planted["refused"].items():
        shape = re.search(r"must have shape \((\d+), (\d+)\) like params\['(\w+)'\], got \((\d+), (\d+)\)", message)
        assert shape[3] == name and (shape[4], shape[5]) == (shape[2], shape[1]), message  # (n_in, n_out) for W
    assert "Network 3 -> 3 -> 3" in out
    assert failing(planted_square) == {"W1", "W2"}
    assert all(planted_square["rows"][b][2] == "pass" for b in ("b1", "b2"))


def test_bug_relu_ge_is_invisible_on_random_inputs_and_shows_at_an_exact_zero():
    out, blocks = run_bug("relu-ge")
    correct_random, planted_random, correct_zero, planted_zero = blocks
    assert not failing(correct_random) and not failing(planted_random), "random inputs never hit z = 0 exactly"
    (smallest,) = floats(rf"smallest \|z1\| = ({FLOAT})", out)
    assert smallest > 0
    zeros, total = map(int, re.search(r"(\d+) of the (\d+) entries of z1 are exactly 0", out).groups())
    assert zeros == total // batch_size(out) > 0, "one example's whole row of z1 is 0"

    # At the kink both conventions fail b1, the only parameter fed by the zero pre-activations, by the same amount.
    assert failing(correct_zero) == failing(planted_zero) == {"b1"}
    assert correct_zero["rows"]["b1"][1] == planted_zero["rows"]["b1"][1]

    rows = re.findall(rf"^\s+\d+\s+({FLOAT})\s+({FLOAT})\s+({FLOAT})\s+({FLOAT})\s+({FLOAT})$", out, re.M)
    assert len(rows) == zeros
    for library, bug, central, forward, backward in (map(float, row) for row in rows):
        assert library != bug
        assert central == pytest.approx((library + bug) / 2, abs=1e-5)  # the kink's average slope, 1/2
        assert forward == pytest.approx(bug, abs=1e-5)
        assert backward == pytest.approx(library, abs=1e-5)

    diffs = dict(re.findall(rf"(W1|b1|W2|b2) ({FLOAT})", out.split("max |diff|:")[1].splitlines()[1]))
    assert {name for name, d in diffs.items() if float(d) > 0} == {"b1"}
    assert re.search(r"^Verdict: the bug differs from mlp.backward in b1: exit status 1\.$", out, re.M)


def test_bug_list_names_every_bug_on_one_line():
    result = run_demo("--bug", "list")
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert names == ["delta2-sign", "relu-ge", "sum-not-mean", "transposed-dW"]
    assert all(len(line.split()) > 3 for line in result.stdout.splitlines()), "each name with a description"


@pytest.mark.parametrize("args", [("--bug", "bogus"), ("--bug", "relu-ge", "--hidden-sizes", "4", "4")])
def test_bad_bug_is_a_one_line_usage_error(args, tmp_path):
    with writes_nothing(tmp_path):  # run from an empty folder: it stays empty
        result = run_demo(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and "error" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("args", [("--learning-rate", "1e6"), ("--learning-rate", "2"), ("--learning-rate", "1e300"),
                                  ("--learning-rate", "1e6", "--loss", "mae"),
                                  ("--learning-rate", "1e6", "--compare-losses")])
def test_a_diverging_learning_rate_is_explained_in_two_lines_with_status_1(args):
    result = run_demo(*args)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr == ""  # no RuntimeWarning, no traceback
    lines = result.stdout.strip().splitlines()
    what, why = lines[-2:]
    lr = float(args[1])
    assert re.fullmatch(rf"Diverged: the (mse|mae) loss went from {FLOAT} at step 0 to ({FLOAT}|inf \(an overflow\)) "
                        r"at step \d+, so training stopped there\.", what), what
    assert why.startswith(f"The learning rate {lr:g} is too large") and "try 0.01 to 0.5" in why, why
    start, reached = re.search(rf"from ({FLOAT}) at step 0 to (\S+)", what).groups()
    assert reached == "inf" or float(reached) > 100 * float(start)  # what the demo calls diverged
    assert not any(line.lstrip().startswith("after") and "steps" in line for line in lines[lines.index(what) - 1:])


def test_a_rate_that_only_ends_above_its_start_gets_a_note_and_status_0():
    result = run_demo("--learning-rate", "1")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    losses = floats(rf"after\s+\d+ steps\s+mse loss ({FLOAT})", result.stdout)
    assert losses[-1] > losses[0]
    assert "note: the loss ended above its start: lr 1 overshoots; try 0.01 to 0.5" in result.stdout


@pytest.mark.parametrize(("args", "fragment"), [
    (("--learning-rate", "nan"), "--learning-rate must be a finite number > 0, got nan"),
    (("--learning-rate", "inf"), "--learning-rate must be a finite number > 0, got inf"),
    (("--learning-rate", "0"), "--learning-rate must be a finite number > 0, got 0.0"),
    (("--hidden-sizes", "0"), "--hidden-sizes must be 1 to 8 widths"),
    (("--hidden-sizes", str(10**9)), "each 1 to 4096"),
    (("--steps", str(10**9)), "--steps must be an integer from 1 to 100000"),
    (("--seed", "-1"), "--seed must be an integer from 0 to"),
    (("--lr", "0.1"), "unrecognized arguments"),  # the old name is gone: one name per concept
], ids=["lr-nan", "lr-inf", "lr-zero", "width-zero", "width-huge", "steps-huge", "seed-negative", "old-lr-name"])
def test_bad_numbers_are_one_line_usage_errors(args, fragment, tmp_path):
    with writes_nothing(tmp_path):  # run from an empty folder: it stays empty
        result = run_demo(*args, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and fragment in result.stderr, result.stderr
