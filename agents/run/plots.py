"""Plots of a run: the learning curve of one seed (the aggregate over seeds is `agents.run.stats.plot_aggregate`).

Drawing is optional: without matplotlib these return None, and the commands say so in one line.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from agents.run.checkpoint import atomic_open
from agents.run.folder import RunFiles

NO_PLOT = "matplotlib is not installed: no learning_curve.png (pip install -e '.[plot]' to get it)"


def plot_learning_curve(files: RunFiles, env_id: str, threshold: float | None = None) -> Path | None:
    """Draw returns and evaluations against environment steps into DIR/learning_curve.png; None without matplotlib.

    Training episodes are a thin line; each greedy evaluation is its mean with a bar from its worst to its best
    episode (never past a return that happened); a star marks the evaluation saved as best.npz. The legend sits
    below the axes, so it never hides the data.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    progress = _read_csv(files.progress)
    evals = _read_csv(files.evals)
    fig, ax = plt.subplots(figsize=(7, 4.6))
    if len(progress):
        ax.plot(progress["env_steps"], progress["episode_return"], lw=0.6, alpha=0.5, color="tab:blue",
                label="training episode return")
    if len(evals):
        mean = evals["mean"]
        # mean - min and max - mean, never below 0: a mean of equal returns can round past them (0.8000000000000002
        # over returns of 0.8), and matplotlib refuses a negative error bar
        spread = np.maximum(np.stack([mean - evals["min"], evals["max"] - mean]), 0.0)
        ax.errorbar(evals["env_steps"], mean, yerr=spread, fmt="o-", ms=3, lw=1.2, capsize=2, color="tab:orange",
                    label="greedy evaluation: mean, min to max")
        bests = np.flatnonzero(evals["is_best"])
        if len(bests):
            b = bests[-1]  # the last new best is the one in best.npz
            ax.plot(evals["env_steps"][b], mean[b], "*", ms=14, color="tab:red", mec="black", mew=0.6, zorder=5,
                    label=f"best.npz (eval mean {mean[b]:g} at step {int(evals['env_steps'][b])})")
    if threshold is not None:
        ax.axhline(threshold, color="gray", ls="--", lw=1, label=f"solved ({threshold:g})")
    ax.set(xlabel="environment steps", ylabel="return", title=f"DQN on {env_id}")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False, fontsize="small")
    fig.tight_layout()
    with atomic_open(files.curve) as f:
        fig.savefig(f, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return files.curve


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    """Columns of a log as arrays (True/False become booleans)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: np.array([float(r[k]) if r[k] not in ("True", "False") else r[k] == "True" for r in rows])
            for k in rows[0]}
