"""Aggregates over seeds read from run folders: joining batches trained in several processes, and their report."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.run.folder import RunFiles


def _interval(entry: dict | None, fmt: str = "{:.1f}") -> str:
    """`value [lo, hi]` of an aggregate entry; an infinite (None) value or bound shows as inf."""
    if entry is None:
        return "n/a"

    def show(v: float | None) -> str:
        return "inf" if v is None else fmt.format(v)

    lo, hi = entry["ci"]
    return f"{show(entry['value'])} [{show(lo)}, {show(hi)}]"


def format_aggregate(agg: dict[str, Any]) -> str:
    """The aggregate in a few lines: seeds solved (Wilson 95% CI), steps to solve, scores (bootstrap 95% CIs)."""
    frac = agg["fraction_solved"]
    lines = [f"solved: {frac['solved']}/{frac['n']} (95% CI {frac['ci_wilson'][0]:.3f}-{frac['ci_wilson'][1]:.3f}, "
             f"Wilson); not solved: {agg['failed_seeds'] or 'none'}",
             f"median steps to solve: {_interval(agg['steps_to_solve']['median'], '{:.0f}')}; median seconds: "
             f"{_interval(agg['seconds_to_solve']['median'])} (95% bootstrap CIs)"]
    for key, label in (("best_eval_mean", "best evaluation"), ("final_eval_mean", "final model"),
                       ("best_model_eval_mean", "best model re-evaluated")):
        entry = agg.get(key)
        if entry:
            lines.append(f"{label}: IQM {_interval(entry['iqm'])}, median {_interval(entry['median'])}, "
                         f"mean {_interval(entry['mean'])} (n={entry['n']})")
    at = agg.get("best_model_at_threshold")
    if at and at["episodes"]:
        lines.append(f"best.npz >= {at['threshold']:g} over {at['episodes']} episodes: {at['count']}/{at['n']}"
                     f" (below: {at['below'] or 'none'})")
    return "\n".join(lines)


def read_seed_folders(roots: Sequence[str | Path]) -> tuple[list[dict[str, Any]], dict[int, tuple[np.ndarray,
                                                                                                    np.ndarray]]]:
    """The per-seed summaries and evaluation curves of finished runs: batch folders (their `seed<k>/`) or single-run
    folders, e.g. the two halves of a 100-seed study trained by two processes.

    Returns:
        The summaries (sorted by seed) and `{seed: (env_steps, eval means)}`.

    Raises:
        ValueError: a folder without a finished run, or a seed found twice.
    """
    summaries: dict[int, dict[str, Any]] = {}
    curves: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for root in map(Path, roots):
        runs = [root] if (root / "summary.json").exists() and not (root / "aggregate.json").exists() else sorted(
            p for p in root.glob("seed*") if (p / "summary.json").exists())
        if not runs:
            raise ValueError(f"{root}: holds no finished run (no summary.json, nor seed<k>/summary.json)")
        for run in runs:
            summary = json.loads((run / "summary.json").read_text())
            seed = int(summary["seed"])
            if seed in summaries:
                raise ValueError(f"{run}: seed {seed} was already read from another folder")
            summaries[seed] = summary
            evals = RunFiles(run).evals
            if evals.exists() and evals.stat().st_size > 0:
                rows = np.loadtxt(evals, delimiter=",", skiprows=1, usecols=(1, 2), ndmin=2)
                if len(rows):
                    curves[seed] = (rows[:, 0], rows[:, 1])
    return [summaries[k] for k in sorted(summaries)], curves
