"""Backpropagation by hand, step by step, checked against dqn_np.MLP and against finite differences.

Three parts, all drawn from `numpy.random.default_rng(--seed)`:

1. One example through the seed's network (3 -> 4 -> 2 by default). Every quantity of the equations is computed
   here by the explicit formulas and printed with its shape, then compared with `mlp.grads` after `mlp.backward`:

       z1 = x @ W1.T + b1        h1 = relu(z1)        y_hat = h1 @ W2.T + b2
       delta2 = dL/dy_hat        (for MSE: (2/n)(y_hat - y))
       dW2 = delta2.T @ h1       db2 = delta2.sum(axis=0)
       delta1 = (delta2 @ W2) * (z1 > 0)
       dW1 = delta1.T @ x        db1 = delta1.sum(axis=0)

   With `--hidden 4 4` the middle line repeats once per extra hidden layer (delta3 -> delta2 -> delta1).
2. The warm-up check: nudge W1[0, 0] by +-eps and compare (L(+) - L(-)) / (2 eps) with the analytic dW1[0, 0].
3. Full-batch gradient descent on a small regression task, printing the loss every 20 steps; or, with
   `--compare-losses`, MSE and MAE trained from the same initial weights on the same data.

Run: `PYTHONPATH=. python scripts/backprop_demo.py [--seed 0] [--loss mse|mae|huber] [--hidden 4 4] [--lr 0.1]`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

from dqn_np import MLP, SGD, huber, mae, mse

N_IN, N_OUT = 3, 2
LOSSES: dict[str, Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]] = {
    "mse": mse,
    "mae": mae,
    "huber": huber,
}


def explicit_delta_out(loss: str, y_hat: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dL/dy_hat written out per loss (Huber with its default threshold 1): the start of the backward pass."""
    n = y_hat.shape[0]  # the batch average puts 1/n into every gradient
    residual = y_hat - y
    if loss == "mse":
        return (2.0 / n) * residual
    if loss == "mae":
        return np.sign(residual) / n  # sign(0) = 0: no push at a tie
    return np.clip(residual, -1.0, 1.0) / n  # huber: the residual inside the quadratic zone, +-1 beyond it


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
    show("x", x)
    h = {0: x}  # h[0] is the input, so dW1 = delta1.T @ h[0] has the same form as every other layer
    z = {}
    for i in range(1, n_layers):
        z[i] = h[i - 1] @ p[f"W{i}"].T + p[f"b{i}"]  # z_i = h_{i-1} W_i^T + b_i
        h[i] = np.maximum(z[i], 0.0)  # h_i = ReLU(z_i)
        show(f"z{i}", z[i])
        show(f"h{i}", h[i])
    y_hat = h[n_layers - 1] @ p[f"W{n_layers}"].T + p[f"b{n_layers}"]  # linear output layer
    show("y_hat", y_hat)
    show("y", y)

    print("Backward pass (output -> input): each delta needs the one above it.")
    grads = {}
    delta = explicit_delta_out(loss, y_hat, y)  # delta_L = dL/dy_hat
    for i in range(n_layers, 0, -1):
        show(f"delta{i}", delta)
        grads[f"W{i}"] = delta.T @ h[i - 1]  # dW_i = delta_i^T h_{i-1}: (n_out, batch) @ (batch, n_in)
        grads[f"b{i}"] = delta.sum(axis=0)  # db_i = sum over the batch of delta_i
        show(f"dW{i}", grads[f"W{i}"])
        show(f"db{i}", grads[f"b{i}"])
        if i > 1:
            delta = (delta @ p[f"W{i}"]) * (z[i - 1] > 0)  # delta_{i-1} = (delta_i W_i) * ReLU'(z_{i-1})

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


def train(mlp: MLP, x: np.ndarray, y: np.ndarray, loss: str, lr: float, steps: int) -> dict[str, list[float]]:
    """Full-batch gradient descent for `steps` steps.

    Returns:
        `{"loss", "mse", "mae"}`, each `steps + 1` values: entry t is measured after t steps (entry 0 at the start).
        MSE and MAE are recorded for every run, so runs trained on different losses can be compared.
    """
    opt = SGD(lr)
    history: dict[str, list[float]] = {"loss": [], "mse": [], "mae": []}
    for t in range(steps + 1):
        y_hat = mlp.forward(x)
        value, delta_out = LOSSES[loss](y_hat, y)  # delta_out = dL/dy_hat (delta2 in the 2-layer net)
        history["loss"].append(value)
        history["mse"].append(mse(y_hat, y)[0])
        history["mae"].append(mae(y_hat, y)[0])
        if t == steps:
            break  # the last entry only measures the trained net
        mlp.backward(delta_out)  # fills mlp.grads
        opt.step(mlp.params, mlp.grads)  # theta <- theta - lr * grad
    return history


def report_steps(steps: int, every: int = 20) -> list[int]:
    """The step counts to print: 0, 20, 40, ... and the last one."""
    return sorted(set(range(0, steps, every)) | {steps})


def train_one(
    sizes: tuple[int, ...], x: np.ndarray, y: np.ndarray, args: argparse.Namespace, rng: np.random.Generator
) -> None:
    """Train one network with `--loss` and print its loss every 20 steps."""
    history = train(MLP(sizes, rng), x, y, args.loss, args.lr, args.steps)
    print(f"\nTraining {' -> '.join(map(str, sizes))} with {args.loss}, lr {args.lr:g}, full batch of {len(x)}:")
    for t in report_steps(args.steps):
        print(f"  after {t:>4} steps  {args.loss} loss {history['loss'][t]:.4f}")


def compare_losses(
    sizes: tuple[int, ...], x: np.ndarray, y: np.ndarray, args: argparse.Namespace, rng: np.random.Generator
) -> None:
    """Train MSE and MAE from the same initial weights and data; compare them in both metrics."""
    runs = {"mse": MLP(sizes, rng), "mae": MLP(sizes, rng)}
    runs["mae"].copy_from(runs["mse"])  # same starting weights for both
    history = {loss: train(mlp, x, y, loss, args.lr, args.steps) for loss, mlp in runs.items()}
    print(f"\nMSE vs MAE training: same initial weights, same {len(x)} examples, lr {args.lr:g}, {args.steps} steps.")
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of numpy.random.default_rng (all randomness)")
    parser.add_argument("--loss", choices=sorted(LOSSES), default="mse", help="loss for the demo and training")
    parser.add_argument("--hidden", type=int, nargs="+", default=[4], help="hidden widths, e.g. --hidden 4 4")
    parser.add_argument("--lr", type=float, default=0.1, help="SGD learning rate")
    parser.add_argument("--steps", type=int, default=100, help="gradient-descent iterations")
    parser.add_argument("--compare-losses", action="store_true", help="train MSE and MAE from the same start")
    args = parser.parse_args(argv)
    if min(args.hidden) < 1 or args.steps < 1 or not args.lr > 0:
        parser.error("--hidden widths and --steps must be >= 1 and --lr must be > 0")

    rng = np.random.default_rng(args.seed)
    sizes = (N_IN, *args.hidden, N_OUT)
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
    if args.compare_losses:
        compare_losses(sizes, x_train, y_train, args, rng)
    else:
        train_one(sizes, x_train, y_train, args, rng)


if __name__ == "__main__":
    main()
