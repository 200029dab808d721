"""A lean straight-line NumPy DQN update: the yardstick `bench_update.py` times `DQNAgent.update` against.

No classes and no argument checks. Everything is allocated once by `init` and written in place afterwards:

- the parameters `[W1, b1, W2, b2, ...]` (`W: (n_out, n_in)`), their gradients and Adam's two moments are views of
  one flat buffer each, so clipping is one dot product and Adam is a handful of whole-buffer ops;
- every layer's pre-activation `z: (B, n)`, activation `h: (B, n)`, ReLU mask and backward delta has a `(B, n)`
  buffer, and every NumPy call writes through `out=` (or in place).

The math is the agent's default update: the Double DQN target `y = r + discount * Q'(s', argmax_a Q(s', a))`, the
Huber TD loss (delta 1) with mean reduction, ReLU'(z) = (z > 0), global-norm clipping (max norm 10, scale
`max_norm / (norm + 1e-6)`), Adam with bias correction (eps outside the square root) and a hard target copy every
`target_update_interval` updates.
"""

from __future__ import annotations

import math

import numpy as np


def _views(flat: np.ndarray, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    out, offset = [], 0
    for shape in shapes:
        size = math.prod(shape)
        out.append(flat[offset:offset + size].reshape(shape))
        offset += size
    return out


def init(params: list[np.ndarray], target_params: list[np.ndarray], batch_size: int, lr: float = 1e-3,
         betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, max_norm: float = 10.0,
         huber_delta: float = 1.0, target_update_interval: int = 128) -> dict:
    """Copy `params` and `target_params` into flat buffers and preallocate every array one update needs."""
    dtype = params[0].dtype
    shapes = [p.shape for p in params]
    flat = {name: np.zeros(sum(p.size for p in params), dtype) for name in ("p", "tp", "g", "m", "v", "scratch")}
    s = {"flat_" + k: v for k, v in flat.items()}
    s["params"], s["target"], s["grads"] = (_views(flat[k], shapes) for k in ("p", "tp", "g"))
    for dst, src in ((s["params"], params), (s["target"], target_params)):
        for d, p in zip(dst, src, strict=True):
            d[...] = p
    B, widths = batch_size, [p.shape[0] for p in params[::2]]  # widths of z1, z2, ..., q
    n_actions = widths[-1]
    for net in ("online", "target"):
        s[net + "_z"] = [np.empty((B, n), dtype) for n in widths]  # z_i; the last one is Q
        s[net + "_h"] = [np.empty((B, n), dtype) for n in widths[:-1]]  # h_i = relu(z_i)
    s["mask"] = [np.empty((B, n), bool) for n in widths[:-1]]  # z_i > 0
    s["grad_h"] = [np.empty((B, n), dtype) for n in widths[:-1]]  # dL/dh_i, then delta_i in place
    s["delta2"] = np.zeros((B, n_actions), dtype)
    s["row_offsets"] = np.arange(B) * n_actions  # flat index of row i's first action
    s["a_next"], s["idx"] = np.empty(B, np.int64), np.empty(B, np.int64)
    for name in ("q_next", "y", "q_taken", "err", "abs_err", "quad", "tmp", "grad_taken"):
        s[name] = np.empty(B, dtype)
    s.update(t=0, lr=lr, b1=betas[0], b2=betas[1], eps=eps, max_norm=max_norm, huber_delta=huber_delta,
             target_update_interval=target_update_interval)
    return s


def forward(params: list[np.ndarray], x: np.ndarray, zs: list[np.ndarray], hs: list[np.ndarray]) -> np.ndarray:
    """`x: (B, n_in)` -> `q: (B, n_out)` (the last buffer of `zs`); fills `z_i` and `h_i = relu(z_i)`."""
    h = x
    for i in range(len(hs)):
        np.matmul(h, params[2 * i].T, out=zs[i])
        zs[i] += params[2 * i + 1]
        h = np.maximum(zs[i], 0, out=hs[i])
    np.matmul(h, params[-2].T, out=zs[-1])
    zs[-1] += params[-1]
    return zs[-1]


def train_step(s: dict, batch: tuple[np.ndarray, ...]) -> float:
    """One Double DQN update of `s["params"]` in place from `batch = (obs, actions, rewards, next_obs, discounts)`.

    Returns:
        The TD loss before the update.
    """
    obs, actions, rewards, next_obs, discounts = batch[:5]
    n = len(actions)
    params, grads, idx = s["params"], s["grads"], s["idx"]

    # TD target, held constant. The online pass on s' comes first: the pass on s below overwrites its buffers.
    q_next_target = forward(s["target"], next_obs, s["target_z"], s["target_h"])
    q_next_online = forward(params, next_obs, s["online_z"], s["online_h"])
    q_next_online.argmax(axis=1, out=s["a_next"])  # a' = argmax_a Q(s', a)
    np.add(s["row_offsets"], s["a_next"], out=idx)
    q_next_target.take(idx, out=s["q_next"], mode="clip")  # Q'(s', a')
    y = np.multiply(discounts, s["q_next"], out=s["y"])
    y += rewards

    # Prediction and Huber loss on the taken actions.
    zs, hs = s["online_z"], s["online_h"]
    q = forward(params, obs, zs, hs)
    np.add(s["row_offsets"], actions, out=idx)
    q.take(idx, out=s["q_taken"], mode="clip")
    err = np.subtract(s["q_taken"], y, out=s["err"])
    abs_err = np.abs(err, out=s["abs_err"])
    quad = np.minimum(abs_err, s["huber_delta"], out=s["quad"])
    tmp = np.multiply(quad, 0.5, out=s["tmp"])
    np.subtract(abs_err, tmp, out=tmp)
    loss = float(np.dot(quad, tmp)) / n
    g = np.copysign(quad, err, out=s["grad_taken"])  # clip(err, -delta, delta)
    np.divide(g, n, out=g)
    delta2 = s["delta2"]
    delta2.fill(0)
    delta2.ravel()[idx] = g  # only the taken action's Q-value gets gradient

    # Backward: dW = delta.T @ h_in, db = sum over the batch, delta_below = (delta @ W) * (z > 0).
    delta = delta2
    for i in range(len(hs), 0, -1):
        np.matmul(delta.T, hs[i - 1], out=grads[2 * i])
        np.add.reduce(delta, axis=0, out=grads[2 * i + 1])
        grad_h = np.matmul(delta, params[2 * i], out=s["grad_h"][i - 1])
        np.greater(zs[i - 1], 0, out=s["mask"][i - 1])
        delta = np.multiply(grad_h, s["mask"][i - 1], out=grad_h)
    np.matmul(delta.T, obs, out=grads[0])
    np.add.reduce(delta, axis=0, out=grads[1])

    # Clip by the global norm, then Adam on the flat buffers.
    G, P, m, v, scratch = s["flat_g"], s["flat_p"], s["flat_m"], s["flat_v"], s["flat_scratch"]
    norm = math.sqrt(float(np.dot(G, G)))
    if norm > s["max_norm"]:
        G *= s["max_norm"] / (norm + 1e-6)
    s["t"] += 1
    b1, b2 = s["b1"], s["b2"]
    m *= b1
    np.multiply(G, 1.0 - b1, out=scratch)
    m += scratch
    v *= b2
    np.multiply(G, G, out=scratch)
    scratch *= 1.0 - b2
    v += scratch
    np.sqrt(v, out=scratch)
    scratch /= math.sqrt(1.0 - b2 ** s["t"])
    scratch += s["eps"]
    np.divide(m, scratch, out=scratch)
    scratch *= s["lr"] / (1.0 - b1 ** s["t"])
    P -= scratch
    if s["t"] % s["target_update_interval"] == 0:
        np.copyto(s["flat_tp"], P)
    return loss
