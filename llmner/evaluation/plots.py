"""The one matplotlib setup (``subplots``, ``save_figure``) and the benchmark and curve plots.

Every figure of llmner is made by ``subplots`` (headless ``Agg`` backend) and written by
``save_figure``; the failure analysis' own figures are in ``llmner.evaluation.analyze.plots``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def subplots(*args, **kwargs):
    """``plt.subplots`` on the ``Agg`` backend (no display needed); matplotlib is imported only here."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save_figure(fig, path: str | Path) -> None:
    """Lay out, write (PNG, 120 dpi) and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def grouped_bars(ax, groups: int, series: int, k: int, values, **kwargs) -> None:
    """Bar ``k`` of ``series`` side by side in each of ``groups`` groups (0.8 of a group's width)."""
    width = 0.8 / series
    ax.bar(np.arange(groups) + k * width - 0.4 + width / 2, values, width, **kwargs)


def plot_per_type(summary: pd.DataFrame, results: pd.DataFrame, path: str | Path) -> None:
    """Grouped bars: per-type test F1 (mean over seeds, sd as error bars) for each system."""
    types = [c.removeprefix("f1_") for c in summary.columns if c.startswith("f1_")] + ["all"]
    systems = summary["system"].tolist()
    fig, ax = subplots(figsize=(1.6 * len(types) + 2, 4))
    for k, name in enumerate(systems):
        runs = results[results["system"] == name]
        cols = [f"test/f1_{t}" if t != "all" else "test/f1" for t in types]
        means = [runs[c].mean() for c in cols]
        sds = [runs[c].std(ddof=1) if len(runs) > 1 else 0.0 for c in cols]
        grouped_bars(ax, len(types), len(systems), k, means, yerr=sds, label=name, capsize=2)
    ax.set_xticks(np.arange(len(types)), types)
    ax.set_ylabel("test F1")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("Test F1 by entity type (mean ± sd over seeds)")
    save_figure(fig, path)


def plot_f1_vs_time(results: pd.DataFrame, path: str | Path) -> None:
    """Test F1 against training seconds: one dot per run, a cross at each system's means."""
    fig, ax = subplots(figsize=(6, 4))
    for name, runs in results.groupby("system", sort=False):
        dots = ax.scatter(runs["train/seconds"], runs["test/f1"], alpha=0.5, label=name)
        ax.scatter(runs["train/seconds"].mean(), runs["test/f1"].mean(), marker="x", s=80, color=dots.get_facecolor()[0])
    ax.set_xlabel("training seconds")
    ax.set_ylabel("test F1")
    ax.set_title("Test F1 against training time (x: mean over seeds)")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_curves(curves: pd.DataFrame, path: str | Path, metric: str = "val/f1") -> None:
    """``metric`` against training step (left) and against seconds since the run began (right), a line per run."""
    fig, axes = subplots(1, 2, figsize=(11, 4), sharey=True)
    for name, runs in curves.groupby("run", sort=False):
        axes[0].plot(runs["step"], runs[metric], marker="o", label=name)
        axes[1].plot(runs["seconds"], runs[metric], marker="o", label=name)
    axes[0].set_xlabel("training step")
    axes[1].set_xlabel("seconds since the run began")
    axes[0].set_ylabel(metric)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{metric} at each validation")
    save_figure(fig, path)
