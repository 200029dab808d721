"""A minimal straight-line NumPy DQN training step: the yardstick `bench_update.py` times the library against.

No classes and no argument checks: parameters are a flat list `[W1, b1, W2, b2, ...]` with `W: (n_out, n_in)`,
updated in place; Adam's state is a dict `{"t": int, "m": [...], "v": [...]}` parallel to that list. The math is
the library's: ReLU hidden layers (derivative `z > 0`), a linear output, the MSE TD loss with mean reduction,
global-norm clipping and Adam with bias correction (eps outside the square root).
"""

from __future__ import annotations

import numpy as np


def forward(params: list[np.ndarray], x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """`x: (batch, n_in)` -> `q: (batch, n_out)`, plus each layer's input `hs` and each hidden pre-activation `zs`."""
    hs, zs = [x], []
    h = x
    for i in range(0, len(params) - 2, 2):
        z = h @ params[i].T + params[i + 1]
        h = np.maximum(z, 0)
        zs.append(z)
        hs.append(h)
    return h @ params[-2].T + params[-1], hs, zs


def backward(
    params: list[np.ndarray], hs: list[np.ndarray], zs: list[np.ndarray], delta2: np.ndarray
) -> list[np.ndarray]:
    """Gradients `[dW1, db1, ...]` from `delta2 = dL/dq: (batch, n_out)` and the caches of `forward`."""
    grads: list[np.ndarray] = []
    delta = delta2
    for layer in range(len(hs) - 1, -1, -1):
        grads[:0] = [delta.T @ hs[layer], delta.sum(axis=0)]  # dW = delta.T @ h_in, db = sum over the batch
        if layer > 0:
            delta = (delta @ params[2 * layer]) * (zs[layer - 1] > 0)  # back through W and the ReLU below
    return grads


def init_adam(params: list[np.ndarray]) -> dict:
    """Zero first and second moments for every parameter, step count 0."""
    return {"t": 0, "m": [np.zeros_like(p) for p in params], "v": [np.zeros_like(p) for p in params]}


def train_step(
    params: list[np.ndarray],
    target_params: list[np.ndarray],
    adam: dict,
    batch: tuple[np.ndarray, ...],
    gamma: float = 0.99,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    max_norm: float = 10.0,
) -> float:
    """One DQN update of `params` in place from `batch = (states, actions, rewards, next_states, terminated)`.

    Returns:
        The TD loss before the update.
    """
    states, actions, rewards, next_states, terminated = batch
    n = states.shape[0]
    rows = np.arange(n)

    q, hs, zs = forward(params, states)
    q_next, _, _ = forward(target_params, next_states)
    y = rewards + gamma * (1.0 - terminated) * q_next.max(axis=1)  # TD target, held constant

    td_error = q[rows, actions] - y
    loss = float(np.mean(td_error**2))
    delta2 = np.zeros_like(q)
    delta2[rows, actions] = 2.0 * td_error / n  # only the taken action's Q-value gets gradient

    grads = backward(params, hs, zs, delta2)

    norm = np.sqrt(sum(np.sum(g * g) for g in grads))
    if norm > max_norm:
        scale = max_norm / (norm + 1e-6)
        for g in grads:
            g *= scale

    adam["t"] += 1
    t = adam["t"]
    b1, b2 = betas
    for p, g, m, v in zip(params, grads, adam["m"], adam["v"], strict=True):
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        p -= lr * m_hat / (np.sqrt(v_hat) + eps)
    return loss
