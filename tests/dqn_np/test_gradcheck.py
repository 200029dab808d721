"""Tests for dqn_np.gradcheck: the checker's arithmetic, that it catches real backprop bugs, and its command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dqn_np.gradcheck import (
    ParamReport,
    check_gradients,
    check_mlp,
    format_report,
    main,
    numerical_gradient,
    relative_error,
)
from dqn_np.layers import ReLU
from dqn_np.losses import mse
from dqn_np.mlp import MLP

REPO_ROOT = Path(__file__).resolve().parents[2]
TOL = 1e-6


def test_relative_error_is_norm_wise():
    assert relative_error(np.array([3.0, 4.0]), np.array([3.0, 4.0])) == 0.0
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(np.array([1.0, -2.0]), np.array([-1.0, 2.0])) == 2.0  # a sign flip
    assert relative_error(np.array([3.0, 4.0]), np.array([3.0, 4.5])) == pytest.approx(0.5 / np.hypot(3.0, 4.5))
    # a tiny entry with a large elementwise error does not dominate when the rest is right
    assert relative_error(np.array([1.0, 1e-12]), np.array([1.0, 2e-12])) < 1e-11


def test_numerical_gradient_is_exact_on_a_quadratic_and_restores_the_parameter():
    p = np.array([[1.0, -2.0], [0.5, 3.0]])
    before = p.copy()
    numeric = numerical_gradient(lambda: float(np.sum(p**2) + p[0, 1]), p, list(np.ndindex(p.shape)), eps=1e-4)
    np.testing.assert_allclose(numeric, (2 * before + [[0.0, 1.0], [0.0, 0.0]]).ravel(), rtol=1e-9)
    np.testing.assert_array_equal(p, before)


def checked_net(rng: np.random.Generator, batch: int = 7) -> tuple[MLP, np.ndarray, object]:
    """A float64 4->16->16->3 net with small random biases, inputs x (batch, 4), and an MSE loss with targets bound."""
    mlp = MLP((4, 16, 16, 3), rng=rng)
    for name, p in mlp.params.items():
        if name.startswith("b"):
            p[...] = rng.normal(scale=0.1, size=p.shape)
    x = rng.standard_normal((batch, 4))
    y = rng.standard_normal((batch, 3))
    return mlp, x, lambda q: mse(q, y)


def grads_after_backward(mlp: MLP, x: np.ndarray, loss, scale: float = 1.0) -> dict[str, np.ndarray]:
    """Forward, loss, then `backward(scale * delta2)`; a copy of the resulting grads."""
    _, delta2 = loss(mlp.forward(x))
    mlp.backward(scale * delta2)
    return {name: g.copy() for name, g in mlp.grads.items()}


def test_checker_passes_a_correct_backward():
    mlp, x, loss = checked_net(np.random.default_rng(0))
    reports = check_gradients(lambda: loss(mlp.forward(x))[0], mlp.params, grads_after_backward(mlp, x, loss))
    assert all(r.passed and r.rel_error < TOL for r in reports)


def test_checker_fails_every_parameter_when_delta2_has_the_wrong_sign():
    mlp, x, loss = checked_net(np.random.default_rng(0))
    grads = grads_after_backward(mlp, x, loss, scale=-1.0)  # backward(-delta2)
    reports = check_gradients(lambda: loss(mlp.forward(x))[0], mlp.params, grads)
    assert [r.name for r in reports] == list(mlp.params)
    for r in reports:
        assert not r.passed and r.rel_error == pytest.approx(2.0, rel=1e-6), r


def test_checker_fails_when_the_gradient_is_summed_instead_of_averaged():
    mlp, x, loss = checked_net(np.random.default_rng(0), batch=7)
    grads = grads_after_backward(mlp, x, loss, scale=7.0)  # the batch-size bug
    reports = check_gradients(lambda: loss(mlp.forward(x))[0], mlp.params, grads)
    assert not any(r.passed for r in reports)


@pytest.mark.parametrize(
    ("bug", "broken"),
    [
        (lambda g: g.T, "W2"),  # dW transposed (W2 is square, so the shapes still agree)
        (lambda g: g * (1 + 1e-4), "W1"),  # off by one part in ten thousand
        (lambda g: g + np.eye(*g.shape, k=1) * 1e-3 * np.abs(g).max(), "W3"),  # a few entries nudged
        (lambda g: np.zeros_like(g), "b2"),  # a gradient never filled in
    ],
    ids=["transposed", "scaled", "perturbed", "zeroed"],
)
def test_checker_fails_exactly_the_parameter_whose_gradient_is_wrong(bug, broken):
    mlp, x, loss = checked_net(np.random.default_rng(0))
    grads = grads_after_backward(mlp, x, loss)
    grads[broken] = bug(grads[broken])
    reports = check_gradients(lambda: loss(mlp.forward(x))[0], mlp.params, grads)
    assert {r.name for r in reports if not r.passed} == {broken}


def test_checker_fails_when_backward_forgets_the_relu_mask(monkeypatch):
    mlp, x, loss = checked_net(np.random.default_rng(0))
    monkeypatch.setattr(ReLU, "backward", lambda self, grad_out, *_: grad_out)  # pretend ReLU' = 1 everywhere
    reports = check_gradients(lambda: loss(mlp.forward(x))[0], mlp.params, grads_after_backward(mlp, x, loss))
    failed = {r.name for r in reports if not r.passed}
    assert failed == {"W1", "b1", "W2", "b2"}  # every layer below a ReLU; the output layer is still right


def test_sampled_mode_checks_at_most_max_entries_per_parameter():
    mlp, x, loss = checked_net(np.random.default_rng(0))
    reports = check_mlp(mlp, x, loss, max_entries=5, rng=np.random.default_rng(1))
    assert [r.n_checked for r in reports] == [min(5, p.size) for p in mlp.params.values()]
    assert all(r.passed for r in reports)


def test_check_mlp_leaves_parameters_unchanged():
    mlp, x, loss = checked_net(np.random.default_rng(0))
    before = {name: p.copy() for name, p in mlp.params.items()}
    check_mlp(mlp, x, loss)
    for name, p in mlp.params.items():
        np.testing.assert_array_equal(p, before[name])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"grads": {"W": np.zeros((2, 2))}}, r"grads must have the keys of params \['W', 'b'\], got \['W'\]"),
        (
            {"grads": {"W": np.zeros((3, 2)), "b": np.zeros(2)}},
            r"grads\['W'\] must have shape \(2, 3\) .* got \(3, 2\)",
        ),
        ({"max_entries": 3}, "rng is required when max_entries is set"),
        ({"max_entries": 0, "rng": np.random.default_rng(0)}, "max_entries must be a positive integer or None, got 0"),
        ({"eps": 0.0}, "eps must be positive, got 0.0"),
        (
            {"params": {"W": np.zeros((2, 3), np.float32), "b": np.zeros(2)}},
            r"params\['W'\] must be float64 .* float32",
        ),
    ],
)
def test_check_gradients_rejects_bad_arguments(kwargs, match):
    args = {"params": {"W": np.zeros((2, 3)), "b": np.zeros(2)}, "grads": {"W": np.zeros((2, 3)), "b": np.zeros(2)}}
    with pytest.raises(ValueError, match=match):
        check_gradients(lambda: 0.0, **{**args, **kwargs})


def test_format_report_lists_every_parameter_with_its_verdict_and_optional_depth():
    reports = [ParamReport("W1", (16, 4), 64, 3e-9, 1e-9, True), ParamReport("b1", (16,), 16, 0.5, 0.1, False)]
    lines = format_report(reports, tol=1e-6).splitlines()
    assert "param" in lines[0] and "1e-06" in lines[0] and len(lines) == 3
    assert lines[1].split()[0] == "W1" and lines[1].endswith("pass")
    assert lines[2].split()[0] == "b1" and lines[2].endswith("FAIL")
    with_depth = format_report(reports, depths=[2, 3]).splitlines()
    assert with_depth[0].startswith("depth") and with_depth[1].split()[:2] == ["2", "W1"]
    with pytest.raises(ValueError, match="depths must have one entry per report"):
        format_report(reports, depths=[1])


def test_command_line_passes_and_reports_every_parameter_at_every_depth_unstacked_and_stacked():
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "dqn_np.gradcheck"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    labels = [str(d) for d in (1, 2, 3)] + [f"{d},S=3" for d in (1, 2, 3)]  # unstacked, then stacked (3 members)
    rows = [line.split() for line in proc.stdout.splitlines() if line.split()[:1] and line.split()[0] in labels]
    expected = [(label, f"{kind}{i}") for label in labels for i in range(1, int(label[0]) + 2) for kind in ("W", "b")]
    assert [(row[0], row[1]) for row in rows] == expected
    assert all(row[-1] == "pass" for row in rows)
    assert "FAIL" not in proc.stdout


def test_main_returns_1_with_an_impossible_tolerance(capsys):
    assert main(["--tol", "1e-30", "--max-entries", "2", "--seed", "3"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "tol 1e-30" in out


def test_main_returns_0_on_a_sampled_check_with_another_seed(capsys):
    assert main(["--max-entries", "4", "--seed", "11"]) == 0
    assert "all pass" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "fragment"), [
    (["--eps", "0"], "--eps must be positive, got 0.0"),
    (["--eps", "nan"], "--eps must be positive, got nan"),
    (["--eps", "0.5"], "--eps must be at most 0.01"),
    (["--max-entries", "0"], "--max-entries must be at least 1, got 0"),
    (["--tol", "abc"], "argument --tol: invalid float value: 'abc'"),
    (["--tol", "-1"], "--tol must be a number in (0, 1)"),
    (["--tol", "nan"], "--tol must be a number in (0, 1)"),
    (["--tol", "0"], "--tol must be a number in (0, 1)"),
    (["--tol", "inf"], "--tol must be a number in (0, 1)"),
    (["--tol", "2"], "--tol must be a number in (0, 1)"),
    (["--seed", "-1"], "--seed must be an integer from 0 to 4294967295, got -1"),
    (["--seed", str(10**40)], "--seed must be an integer from 0 to 4294967295"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_main_rejects_bad_options_in_one_line_before_any_check(argv, fragment, capsys, monkeypatch):
    monkeypatch.setattr("dqn_np.gradcheck.check_mlp", lambda *a, **k: pytest.fail("checked despite bad options"))
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("python -m dqn_np.gradcheck: error: "), err
    assert fragment in err and "usage:" not in err
