"""Backpropagation by hand, step by step, checked against dqn_np.MLP and against finite differences.

Three parts, all drawn from `numpy.random.default_rng(--seed)`:

1. One example through the seed's network (3 -> 4 -> 2 by default). Every quantity of the equations is computed
   here by the explicit formulas and printed with its shape, then compared with `mlp.grads` after `mlp.backward`:

       z1 = x @ W1.T + b1        h1 = relu(z1)        y_hat = h1 @ W2.T + b2
       delta2 = dL/dy_hat        (for MSE: (2/n)(y_hat - y))
       dW2 = delta2.T @ h1       db2 = delta2.sum(axis=0)
       delta1 = (delta2 @ W2) * (z1 > 0)
       dW1 = delta1.T @ x        db1 = delta1.sum(axis=0)

   With `--hidden-sizes 4 4` the middle line repeats once per extra hidden layer (delta3 -> delta2 -> delta1).
2. The warm-up check: nudge W1[0, 0] by +-eps and compare (L(+) - L(-)) / (2 eps) with the analytic dW1[0, 0].
3. Full-batch gradient descent on a small regression task, printing the loss every 20 steps; or, with
   `--compare-losses`, MSE and MAE trained from the same initial weights on the same data. A learning rate too
   large for the task makes the loss explode; the demo stops at the first step whose loss is not finite or above
   `DIVERGED_FACTOR` times its start, says so in two lines (with the range of rates that suit this task), and exits
   with status 1: the training asked for did not happen. A loss that only ends above its start gets one note.

With `--bug NAME` the script does none of that: it plants one classic backprop bug in its own copy of the backward
pass (`explicit_backward`; the library is never changed), gradient-checks it next to `mlp.backward` on a batch of 8,
explains the error pattern and exits 1 when the bug is caught. `--bug list` names the bugs.

Run: `PYTHONPATH=. python scripts/backprop_demo.py [--seed 0] [--loss mse|mae|huber] [--hidden-sizes 4 4]
[--learning-rate 0.1]` or `PYTHONPATH=. python scripts/backprop_demo.py --bug delta2-sign|relu-ge|sum-not-mean|
transposed-dW [--seed 0]`. The flags are the training commands' names for the same things (`--hidden-sizes`,
`--learning-rate`).

Exit status: 0 the lesson ran (with --bug: the check missed the bug); 1 the training diverged, or (--bug) the check
caught the planted bug; 2 bad input (one line).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import numpy as np

from agents.run.cli import OneLineParser
from agents.run.entry import run_command  # noqa: E402
from agents.validate import MAX_SEED
from dqn_np import MLP, SGD, huber, mae, mse
from dqn_np.gradcheck import DEFAULT_EPS, DEFAULT_TOL, check_gradients, format_report

N_IN, N_OUT = 3, 2
DIVERGED_FACTOR = 100.0  # a loss this many times its start (or not finite) has diverged
GOOD_LEARNING_RATES = "0.01 to 0.5"  # full-batch SGD on this task: 0.1 (the default) halves the loss fast; 1 grows it
MAX_WIDTH, MAX_DEPTH, MAX_STEPS = 4096, 8, 100_000  # a lesson's sizes: printed in full, and quick
LOSSES: dict[str, Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]] = {
    "mse": mse,
    "mae": mae,
    "huber": huber,
}


def explicit_delta_out(loss: str, y_hat: np.ndarray, y: np.ndarray, bug: str | None = None) -> np.ndarray:
    """dL/dy_hat written out per loss (Huber with its default threshold 1): the start of the backward pass.

    `bug="delta2-sign"` flips its sign; `bug="sum-not-mean"` leaves out the 1/n of the batch average.
    """
    n = 1 if bug == "sum-not-mean" else y_hat.shape[0]  # the batch average puts 1/n into every gradient
    residual = y_hat - y if bug != "delta2-sign" else y - y_hat
    if loss == "mse":
        return (2.0 / n) * residual
    if loss == "mae":
        return np.sign(residual) / n  # sign(0) = 0: no push at a tie
    return np.clip(residual, -1.0, 1.0) / n  # huber: the residual inside the quadratic zone, +-1 beyond it


def explicit_forward(
    p: dict[str, np.ndarray], x: np.ndarray
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray], np.ndarray]:
    """The forward equations on `x: (n, n_in)`: `z`, `h` (keyed by layer, `h[0] = x`) and `y_hat: (n, n_out)`."""
    n_layers = len(p) // 2  # a W and a b per layer
    h = {0: x}  # h[0] is the input, so dW1 = delta1.T @ h[0] has the same form as every other layer
    z = {}
    for i in range(1, n_layers):
        z[i] = h[i - 1] @ p[f"W{i}"].T + p[f"b{i}"]  # z_i = h_{i-1} W_i^T + b_i
        h[i] = np.maximum(z[i], 0.0)  # h_i = ReLU(z_i)
    y_hat = h[n_layers - 1] @ p[f"W{n_layers}"].T + p[f"b{n_layers}"]  # linear output layer
    return z, h, y_hat


def explicit_backward(
    p: dict[str, np.ndarray],
    z: dict[int, np.ndarray],
    h: dict[int, np.ndarray],
    delta_out: np.ndarray,
    bug: str | None = None,
) -> tuple[dict[str, np.ndarray], dict[int, np.ndarray]]:
    """The backward equations from `delta_out = dL/dy_hat: (n, n_out)`, output to input.

    Args:
        p: the parameters `{"W1": (n_1, n_0), "b1": (n_1,), ...}`.
        z, h: the pre-activations and activations of `explicit_forward`.
        delta_out: the last layer's delta.
        bug: None for the equations as derived; `"relu-ge"` writes ReLU' as `z >= 0`, `"transposed-dW"` stores
            `dW = h.T @ delta`, shape `(n_in, n_out)`.

    Returns:
        The gradients (keys and, without the transposed-dW bug, shapes of `p`) and the deltas keyed by layer.
    """
    grads, deltas = {}, {}
    delta = delta_out
    for i in range(len(p) // 2, 0, -1):
        deltas[i] = delta
        if bug == "transposed-dW":
            grads[f"W{i}"] = h[i - 1].T @ delta  # the bug: (n_in, batch) @ (batch, n_out) -> (n_in, n_out)
        else:
            grads[f"W{i}"] = delta.T @ h[i - 1]  # dW_i = delta_i^T h_{i-1}: (n_out, batch) @ (batch, n_in)
        grads[f"b{i}"] = delta.sum(axis=0)  # db_i = sum over the batch of delta_i
        if i > 1:
            on = z[i - 1] >= 0 if bug == "relu-ge" else z[i - 1] > 0  # ReLU'(z): the library takes 0 at z = 0
            delta = (delta @ p[f"W{i}"]) * on  # delta_{i-1} = (delta_i W_i) * ReLU'(z_{i-1})
    return grads, deltas


def show(name: str, a: np.ndarray) -> None:
    """Print one quantity of the equations with its shape."""
    values = np.array2string(np.asarray(a), precision=4, suppress_small=True, prefix=" " * 22)
    print(f"  {name:<7} {str(np.shape(a)):<12} {values}")


def walkthrough(mlp: MLP, x: np.ndarray, y: np.ndarray, loss: str) -> None:
    """Forward and backward on `x: (1, n_in)` by the explicit equations, then compare with `mlp.backward`."""
    p = mlp.params
    n_layers = len(mlp.linears)  # 2 for the default net: W1 is the hidden layer, W2 the output layer
    print(f"Network {' -> '.join(map(str, mlp.sizes))}, loss {loss}, one example (n = 1)")
    for name, value in p.items():
        show(name, value)

    print("Forward pass (input -> output), caching z and h for the backward pass:")
    z, h, y_hat = explicit_forward(p, x)
    show("x", x)
    for i in range(1, n_layers):
        show(f"z{i}", z[i])
        show(f"h{i}", h[i])
    show("y_hat", y_hat)
    show("y", y)

    print("Backward pass (output -> input): each delta needs the one above it.")
    grads, deltas = explicit_backward(p, z, h, explicit_delta_out(loss, y_hat, y))  # delta_L = dL/dy_hat
    for i in range(n_layers, 0, -1):
        show(f"delta{i}", deltas[i])
        show(f"dW{i}", grads[f"W{i}"])
        show(f"db{i}", grads[f"b{i}"])

    _, delta_out = LOSSES[loss](mlp.forward(x), y)  # the library: loss gradient, then the layers' backward
    mlp.backward(delta_out)
    print("Explicit equations vs mlp.grads after mlp.backward:")
    for name, g in grads.items():
        print(f"  d{name:<5} max |explicit - mlp.grads| = {np.abs(g - mlp.grads[name]).max():.2e}")
    max_diff = max(float(np.abs(g - mlp.grads[name]).max()) for name, g in grads.items())
    print(f"max abs difference (explicit vs mlp.grads, all parameters): {max_diff:.2e}")


def warmup_check(mlp: MLP, x: np.ndarray, y: np.ndarray, loss: str, index: tuple[int, int], eps: float = 1e-6) -> None:
    """Central difference on one entry of W1 against the analytic dW1 entry from the last `mlp.backward`."""
    W1 = mlp.params["W1"]
    name = f"W1[{index[0]},{index[1]}]"
    analytic = float(mlp.grads["W1"][index])
    original = W1[index]
    W1[index] = original + eps
    loss_plus = LOSSES[loss](mlp.forward(x), y)[0]
    W1[index] = original - eps
    loss_minus = LOSSES[loss](mlp.forward(x), y)[0]
    W1[index] = original  # restore exactly
    numeric = (loss_plus - loss_minus) / (2.0 * eps)
    scale = max(abs(analytic), abs(numeric))
    rel = abs(analytic - numeric) / scale if scale > 0 else 0.0  # both exactly 0 (a dead unit) agree
    print(f"\nWarm-up check of {name} (eps = {eps:g}):")
    print(f"  {'numeric  (L(+eps) - L(-eps)) / (2 eps)':<39} = {numeric:+.10f}")
    print(f"  {'analytic d' + name:<39} = {analytic:+.10f}")
    print(f"  {'relative error |a - n| / max(|a|, |n|)':<39} = {rel:.2e}")


def make_task(rng: np.random.Generator, n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """x ~ N(0, I) in R^3 and a fixed nonlinear target y in R^2: `(n, 3)`, `(n, 2)`."""
    x = rng.standard_normal((n, N_IN))
    y = np.stack([np.sin(2.0 * x[:, 0]) + 0.5 * x[:, 1], x[:, 1] * x[:, 2] - 0.5 * x[:, 0]], axis=1)
    return x, y


class DivergedError(Exception):
    """The training loss exploded: `step` is the first step whose loss is not finite or above `DIVERGED_FACTOR`
    times its start; `start` and `value` are the losses at step 0 and there (`value` inf when not finite)."""

    def __init__(self, loss: str, lr: float, step: int, start: float, value: float) -> None:
        super().__init__(f"{loss} loss diverged at step {step}")
        self.loss, self.lr, self.step, self.start, self.value = loss, lr, step, start, value

    def explain(self) -> str:
        """Two lines: what happened, and why (the learning rate) with the range that suits this task."""
        reached = "inf (an overflow)" if not math.isfinite(self.value) else f"{self.value:.3g}"
        return (f"Diverged: the {self.loss} loss went from {self.start:.4g} at step 0 to {reached} at step "
                f"{self.step}, so training stopped there.\n"
                f"The learning rate {self.lr:g} is too large: each step overshoots the minimum by more than it "
                f"corrects, so the error grows; try {GOOD_LEARNING_RATES} for this task (--learning-rate 0.1).")


def train(mlp: MLP, x: np.ndarray, y: np.ndarray, loss: str, lr: float, steps: int) -> dict[str, list[float]]:
    """Full-batch gradient descent for `steps` steps.

    Returns:
        `{"loss", "mse", "mae"}`, each `steps + 1` values: entry t is measured after t steps (entry 0 at the start).
        MSE and MAE are recorded for every run, so runs trained on different losses can be compared.

    Raises:
        DivergedError: at the first step whose loss is not finite or above `DIVERGED_FACTOR` times the loss at step 0
            (before any overflow reaches the network's finiteness checks).
    """
    opt = SGD(lr)
    history: dict[str, list[float]] = {"loss": [], "mse": [], "mae": []}
    for t in range(steps + 1):
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is caught just below, by the loss
            y_hat = mlp.forward(x)
            if not np.isfinite(y_hat).all():
                raise DivergedError(loss, lr, t, history["loss"][0] if t else math.inf, math.inf)
            value, delta_out = LOSSES[loss](y_hat, y)  # delta_out = dL/dy_hat (delta2 in the 2-layer net)
        if t and (not math.isfinite(value) or value > DIVERGED_FACTOR * history["loss"][0]):
            raise DivergedError(loss, lr, t, history["loss"][0], value)
        history["loss"].append(value)
        history["mse"].append(mse(y_hat, y)[0])
        history["mae"].append(mae(y_hat, y)[0])
        if t == steps:
            break  # the last entry only measures the trained net
        mlp.backward(delta_out)  # fills mlp.grads
        with np.errstate(over="ignore", invalid="ignore"):  # a step that overflows shows in the next loss
            opt.step(mlp.params, mlp.grads)  # theta <- theta - lr * grad
    return history


def report_steps(steps: int, every: int = 20) -> list[int]:
    """The step counts to print: 0, 20, 40, ... and the last one."""
    return sorted(set(range(0, steps, every)) | {steps})


def train_one(
    sizes: tuple[int, ...], x: np.ndarray, y: np.ndarray, args: argparse.Namespace, rng: np.random.Generator
) -> None:
    """Train one network with `--loss` and print its loss every 20 steps (and a note if it ends above its start)."""
    print(f"\nTraining {' -> '.join(map(str, sizes))} with {args.loss}, lr {args.learning_rate:g}, full batch of "
          f"{len(x)}:")
    history = train(MLP(sizes, rng), x, y, args.loss, args.learning_rate, args.steps)
    for t in report_steps(args.steps):
        print(f"  after {t:>4} steps  {args.loss} loss {history['loss'][t]:.4f}")
    if history["loss"][-1] > history["loss"][0]:
        print(f"  note: the loss ended above its start: lr {args.learning_rate:g} overshoots; try "
              f"{GOOD_LEARNING_RATES} for this task.")


def compare_losses(
    sizes: tuple[int, ...], x: np.ndarray, y: np.ndarray, args: argparse.Namespace, rng: np.random.Generator
) -> None:
    """Train MSE and MAE from the same initial weights and data; compare them in both metrics."""
    runs = {"mse": MLP(sizes, rng), "mae": MLP(sizes, rng)}
    runs["mae"].copy_from(runs["mse"])  # same starting weights for both
    print(f"\nMSE vs MAE training: same initial weights, same {len(x)} examples, lr {args.learning_rate:g}, "
          f"{args.steps} steps.")
    history = {loss: train(mlp, x, y, loss, args.learning_rate, args.steps) for loss, mlp in runs.items()}
    print("Both runs are measured in both metrics: MSE = (1/n) sum ||y_hat - y||^2, MAE = (1/n) sum ||y_hat - y||_1.")
    for t in report_steps(args.steps):
        row = "  ".join(f"{loss} run: MSE {h['mse'][t]:.4f} MAE {h['mae'][t]:.4f}" for loss, h in history.items())
        print(f"  after {t:>4} steps  {row}")

    target = 0.5 * history["mse"]["mae"][0]  # both runs start from the same MAE
    reached = {loss: next((t for t, v in enumerate(h["mae"]) if v <= target), None) for loss, h in history.items()}
    when = {k: f"after {t} steps" if t is not None else f"not within {args.steps} steps" for k, t in reached.items()}
    for loss in reached:
        print(f"  {loss} run first reaches MAE <= {target:.4f} (half the initial MAE) {when[loss]}")
    if reached["mse"] != reached["mae"]:
        winner = min(reached, key=lambda k: np.inf if reached[k] is None else reached[k])
        how = f"first to halve the MAE: {when[winner]}, the {other(winner)} run {when[other(winner)]}"
    else:  # a tie on the target, or neither reached it
        winner = min(history, key=lambda k: history[k]["mae"][-1])
        how = "no run halved the MAE first, so by the lower final MAE"
    print(f"winner: {winner.upper()} ({how}; MAE on the training data, one seed, same lr)")
    for metric in ("mae", "mse"):
        best = min(history, key=lambda k: history[k][metric][-1])
        print(
            f"  After {args.steps} steps the {best} run has the lower {metric.upper()}: "
            f"{history[best][metric][-1]:.4f} vs {history[other(best)][metric][-1]:.4f}."
        )
    print("  At the same lr the steps differ in size: MSE's gradient grows with the residual, MAE's is sign/n.")


def other(loss: str) -> str:
    """The other run of the MSE-vs-MAE comparison."""
    return "mae" if loss == "mse" else "mse"


BUGS = {
    "delta2-sign": "delta2 with its sign flipped, (2/n)(y - y_hat) for MSE: every step would climb the loss",
    "relu-ge": "ReLU'(z) written as z >= 0: a pre-activation exactly at 0 counts as on (the library's mask is z > 0)",
    "sum-not-mean": "the loss gradient summed over the batch instead of averaged: delta2 without its 1/n",
    "transposed-dW": "dW = x.T @ delta: every weight gradient stored (n_in, n_out), the wrong way round",
}
WHY = {  # two lines each: why the bug gives the error pattern the check prints
    "delta2-sign": (
        "every gradient is delta2 carried through maps linear in it (dW2 = delta2.T @ h1, delta1 = (delta2 @ W2) * m),",
        "so -delta2 gives -g for every parameter: rel error = ||-g - g|| / ||g|| = 2 for all of them, W1 as for b2.",
    ),
    "sum-not-mean": (
        "without the 1/n of the mean, delta2 and with it every gradient is n times the true one: every parameter fails",
        "with rel error ||n g - g|| / ||n g|| = (n - 1)/n. At batch 1 it is invisible; at batch 256 steps are 256x.",
    ),
    "transposed-dW": (
        "x.T @ delta holds the sums of delta.T @ x laid out (n_in, n_out): the check refuses it where n_in != n_out;",
        "a square layer takes it silently and gets dW[k, j] where dW[j, k] belongs: wrong off the diagonal; db right.",
    ),
    "relu-ge": (
        "the masks differ only where z is exactly 0, which continuous random inputs hit with probability 0. There ReLU",
        "has no derivative: central differences see slope 1/2, midway between the library's 0 and the bug's 1.",
    ),
}
BUG_BATCH = 8  # examples in the batch the planted bugs are checked on
SAME_TOL = 1e-12  # largest |difference| between two backward passes that compute the same sums
LossFn = Callable[[np.ndarray], tuple[float, np.ndarray]]


def planted_grads(mlp: MLP, x: np.ndarray, y: np.ndarray, loss: str, bug: str | None) -> dict[str, np.ndarray]:
    """The gradients of this script's copy of the backward pass, with `bug` planted (None: as derived)."""
    z, h, y_hat = explicit_forward(mlp.params, x)
    return explicit_backward(mlp.params, z, h, explicit_delta_out(loss, y_hat, y, bug), bug)[0]


def library_grads(mlp: MLP, x: np.ndarray, loss_fn: LossFn) -> dict[str, np.ndarray]:
    """The gradients of `mlp.backward` (a copy): the correct backward pass."""
    mlp.backward(loss_fn(mlp.forward(x))[1])
    return {name: g.copy() for name, g in mlp.grads.items()}


def check_backward(mlp: MLP, x: np.ndarray, loss_fn: LossFn, label: str, grads: dict[str, np.ndarray]) -> list[str]:
    """Gradient-check `grads` parameter by parameter, print the table under `label`, return the failing names.

    A gradient whose shape does not fit its parameter is refused by `check_gradients`; its message is printed.
    """
    reports, refused = [], {}
    for name, param in mlp.params.items():
        try:
            reports += check_gradients(lambda: loss_fn(mlp.forward(x))[0], {name: param}, {name: grads[name]})
        except ValueError as e:
            refused[name] = str(e)
    print(f"{label}:")
    print("\n".join("  " + line for line in format_report(reports).splitlines()))
    for name, message in refused.items():
        print(f"  {name:<8} refused by check_gradients: {message}")
    failed = [f"{r.name} (rel error {r.rel_error:.2e})" for r in reports if not r.passed]
    failed += [f"{name} (shape refused)" for name in refused]
    print(f"  FAIL: {', '.join(failed)}" if failed else f"  pass: all {len(reports)} parameters")
    return [f.split()[0] for f in failed]


def bind(loss: str, y: np.ndarray) -> LossFn:
    """The library's `loss` with its targets `y` bound: `y_hat -> (loss, dL/dy_hat)`."""
    return lambda y_hat: LOSSES[loss](y_hat, y)


def describe(mlp: MLP, loss: str, x: np.ndarray, seed: int, what: str) -> None:
    """One line: the network, the loss and the batch a check runs on."""
    print(f"Network {' -> '.join(map(str, mlp.sizes))} (float64, seed {seed}), loss {loss}, {len(x)} {what}.")


def check_both(mlp: MLP, x: np.ndarray, y: np.ndarray, loss: str, bug: str) -> list[str]:
    """The correct backward and the planted one, checked on the same batch; returns the planted one's failures."""
    loss_fn = bind(loss, y)
    check_backward(mlp, x, loss_fn, "Correct backward (mlp.backward)", library_grads(mlp, x, loss_fn))
    return check_backward(mlp, x, loss_fn, f"Backward with the bug {bug}", planted_grads(mlp, x, y, loss, bug))


def one_sided(loss_value: Callable[[], float], param: np.ndarray, index: tuple[int, ...]) -> tuple[float, float, float]:
    """Central, forward and backward differences of the loss in `param[index]`, with eps = DEFAULT_EPS."""
    original, eps = param[index], DEFAULT_EPS
    at = loss_value()
    param[index] = original + eps
    plus = loss_value()
    param[index] = original - eps
    minus = loss_value()
    param[index] = original  # restore exactly
    return (plus - minus) / (2 * eps), (plus - at) / eps, (at - minus) / eps


def relu_at_zero(mlp: MLP, x: np.ndarray, y: np.ndarray, loss: str, seed: int) -> list[str]:
    """relu-ge on random inputs, then at exact zeros of z1; returns the parameters where it differs from the library."""
    loss_fn = bind(loss, y)
    z1 = x @ mlp.params["W1"].T + mlp.params["b1"]
    print("\n1. On random inputs, as a gradient check usually runs:")
    describe(mlp, loss, x, seed, "random examples")
    print(f"No entry of z1 is exactly 0 (smallest |z1| = {np.abs(z1).min():.2e}), so z > 0 and z >= 0 give one mask.")
    check_both(mlp, x, y, loss, "relu-ge")

    x_zero = x.copy()
    x_zero[0] = 0.0  # an all-zero observation: z1[0] = b1, and He init starts b1 at 0
    z1 = x_zero @ mlp.params["W1"].T + mlp.params["b1"]
    print("\n2. At a pre-activation exactly 0: example 0 set to x = 0, so z1[0] = b1, and He init leaves b1 at 0:")
    describe(mlp, loss, x_zero, seed, "examples, the first of them x = 0")
    print(f"b1 = {mlp.params['b1']}: {int((z1 == 0).sum())} of the {z1.size} entries of z1 are exactly 0, "
          f"all in example 0.")
    print("dW1's share from example 0, the outer product of delta1[0] and x[0] = 0, is 0 whatever the mask: only db1")
    print("can tell the masks apart.")
    correct, planted = library_grads(mlp, x_zero, loss_fn), planted_grads(mlp, x_zero, y, loss, "relu-ge")
    check_backward(mlp, x_zero, loss_fn, "Correct backward (mlp.backward, ReLU'(0) = 0)", correct)
    check_backward(mlp, x_zero, loss_fn, "Backward with the bug relu-ge (ReLU'(0) = 1)", planted)

    print("db1 unit by unit: the two conventions against central and one-sided differences of the loss in b1[j]:")
    print(f"  {'unit':>4} {'z > 0 (library)':>16} {'z >= 0 (bug)':>13} "
          f"{'central':>10} {'forward':>10} {'backward':>10}")
    b1 = mlp.params["b1"]
    for j in range(b1.size):
        central, forward, backward = one_sided(lambda: loss_fn(mlp.forward(x_zero))[0], b1, (j,))
        print(f"  {j:>4} {correct['b1'][j]:>+16.6f} {planted['b1'][j]:>+13.6f} {central:>+10.6f} {forward:>+10.6f} "
              f"{backward:>+10.6f}")
    print("Central = (library + bug) / 2, forward = bug, backward = library, to O(eps): at z = 0 the two conventions")
    print("are the slopes on the two sides of the kink: the check fails both by the same max |a-n| and cannot judge.")
    print("What tells them apart is the library's convention. The bug's gradients against mlp.backward's, max |diff|:")
    diff = {name: float(np.abs(planted[name] - g).max()) for name, g in correct.items()}
    print("  " + ", ".join(f"{name} {d:.2e}" for name, d in diff.items()))
    return [name for name, d in diff.items() if d > SAME_TOL]


def planted_bug(bug: str, loss: str, hidden: int, seed: int) -> int:
    """Plant `bug` in this script's copy of the backward pass and gradient-check it next to `mlp.backward`.

    Returns:
        1 if the check found the planted backward wrong (for relu-ge: different from `mlp.backward`), else 0.
    """
    rng = np.random.default_rng(seed)
    mlp = MLP((N_IN, hidden, N_OUT), rng)
    x, y = rng.standard_normal((BUG_BATCH, N_IN)), rng.standard_normal((BUG_BATCH, N_OUT))
    print(f"Planted bug {bug}: {BUGS[bug]}.")
    print("It lives in this script's copy of the backward pass (explicit_backward); dqn_np/ is not changed.")
    print(f"Each check is dqn_np.gradcheck.check_gradients: central differences, eps {DEFAULT_EPS:g}, "
          f"tol {DEFAULT_TOL:g}.")
    if bug == "relu-ge":
        failed = relu_at_zero(mlp, x, y, loss, seed)
    else:
        print()
        describe(mlp, loss, x, seed, "random examples")
        failed = check_both(mlp, x, y, loss, bug)
    if bug == "transposed-dW":  # a square network, where every transposed dW fits its W
        square = MLP((N_IN, N_IN, N_IN), rng)
        x, y = rng.standard_normal((BUG_BATCH, N_IN)), rng.standard_normal((BUG_BATCH, N_IN))
        print()
        describe(square, loss, x, seed, "random examples; square layers, so every transposed dW fits its W")
        failed += check_both(square, x, y, loss, bug)
    print(f"\nWhy: {WHY[bug][0]}\n     {WHY[bug][1]}")
    failed = list(dict.fromkeys(failed))  # each parameter once
    if bug == "relu-ge":
        verdict = f"the bug differs from mlp.backward in {', '.join(failed) or 'no parameter'}"
    else:
        verdict = f"the gradient check caught the bug in {', '.join(failed)}" if failed else "the check missed the bug"
    print(f"Verdict: {verdict}: exit status {1 if failed else 0}.")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="backprop_demo.py", description=__doc__.splitlines()[0],
                           epilog="exit status: 0 the lesson ran; 1 the training diverged, or --bug: the check caught "
                                  "the bug; 2 bad input")
    parser.add_argument("--seed", type=int, default=0,
                        help=f"seed of numpy.random.default_rng (all randomness), 0 to {MAX_SEED} (default: 0)")
    parser.add_argument("--loss", choices=sorted(LOSSES), default="mse",
                        help="loss for the demo and training (default: mse)")
    parser.add_argument("--hidden-sizes", type=int, nargs="+", default=[4], metavar="N",
                        help=f"hidden widths, 1 to {MAX_WIDTH}, up to {MAX_DEPTH} layers, e.g. --hidden-sizes 4 4 "
                             "(default: 4)")
    parser.add_argument("--learning-rate", type=float, default=0.1,
                        help=f"SGD learning rate, > 0; {GOOD_LEARNING_RATES} suits this task (default: 0.1)")
    parser.add_argument("--steps", type=int, default=100,
                        help=f"gradient-descent iterations, 1 to {MAX_STEPS} (default: 100)")
    parser.add_argument("--compare-losses", action="store_true",
                        help="train MSE and MAE from the same start (default: off)")
    parser.add_argument("--bug", choices=["list", *BUGS], metavar="NAME",
                        help="plant a bug in a copy of the backward pass and gradient-check it (exit 1 when caught); "
                             "--bug list names them (default: none)")
    args = parser.parse_args(argv)
    if min(args.hidden_sizes) < 1 or max(args.hidden_sizes) > MAX_WIDTH or len(args.hidden_sizes) > MAX_DEPTH:
        parser.error(f"--hidden-sizes must be 1 to {MAX_DEPTH} widths, each 1 to {MAX_WIDTH}, got "
                     f"{args.hidden_sizes}")
    if not 1 <= args.steps <= MAX_STEPS:
        parser.error(f"--steps must be an integer from 1 to {MAX_STEPS}, got {args.steps}")
    if not (math.isfinite(args.learning_rate) and args.learning_rate > 0):
        parser.error(f"--learning-rate must be a finite number > 0, got {args.learning_rate}")
    if not 0 <= args.seed <= MAX_SEED:
        parser.error(f"--seed must be an integer from 0 to {MAX_SEED}, got {args.seed}")
    if args.bug == "list":
        for name, what in BUGS.items():
            print(f"{name:<14} {what}")
        return 0
    if args.bug:
        if len(args.hidden_sizes) > 1 or args.compare_losses:
            parser.error("--bug checks the lesson's one-hidden-layer net: give one --hidden-sizes width, no "
                         "--compare-losses")
        return planted_bug(args.bug, args.loss, args.hidden_sizes[0], args.seed)

    rng = np.random.default_rng(args.seed)
    sizes = (N_IN, *args.hidden_sizes, N_OUT)
    mlp = MLP(sizes, rng)
    x, y = rng.standard_normal((1, N_IN)), rng.standard_normal((1, N_OUT))
    walkthrough(mlp, x, y, args.loss)
    warmup_check(mlp, x, y, args.loss, (0, 0))
    z1 = x @ mlp.params["W1"].T + mlp.params["b1"]  # (1, n_hidden): which hidden units are on for this example
    if z1[0, 0] <= 0:
        print("  Hidden unit 0 is off for this example (z1[0] <= 0): W1[0,0] is on a dead path, ReLU'(z1[0]) = 0,")
        print("  so the analytic gradient is 0, and nudging W1[0,0] by eps leaves the loss unchanged.")
        live = np.flatnonzero(z1[0] > 0)
        if live.size:
            print(f"  The same check on a live path, through hidden unit {live[0]}:")
            warmup_check(mlp, x, y, args.loss, (int(live[0]), 0))

    x_train, y_train = make_task(rng)
    try:
        if args.compare_losses:
            compare_losses(sizes, x_train, y_train, args, rng)
        else:
            train_one(sizes, x_train, y_train, args, rng)
    except DivergedError as e:
        print(e.explain())
        return 1
    return 0


if __name__ == "__main__":
    run_command(main, "backprop_demo.py", lambda: "nothing was written")
