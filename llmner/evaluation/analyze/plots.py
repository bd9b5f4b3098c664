"""The failure analysis' figures: type confusion, F1 by bucket, errors by category."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from llmner.evaluation.analyze.categories import ERRORS
from llmner.evaluation.plots import grouped_bars, save_figure, subplots


def plot_confusion(table: pd.DataFrame, title: str, path: Path) -> None:
    """Heat map of the type confusion matrix, counts written in the cells."""
    fig, ax = subplots(figsize=(1.1 * len(table) + 1.5, 1.0 * len(table) + 1))
    values = table.to_numpy()
    im = ax.imshow(np.log1p(values), cmap="Blues")  # log: correct cells would wash out the errors
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if np.log1p(v) > np.log1p(values.max()) / 2 else "black")
    ax.set_xticks(range(len(table.columns)), table.columns)
    ax.set_yticks(range(len(table.index)), table.index)
    ax.set_xlabel("predicted (O: missed)")
    ax.set_ylabel("gold (O: spurious)")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="log(1 + count)")
    save_figure(fig, path)


BUCKET_TITLES = {"by_entity_length": "by entity length (words)", "by_sentence_length": "by sentence length (words)",
                 "by_seen": "entity seen in training?"}


def plot_buckets(tables: dict[str, dict[str, pd.DataFrame]], path: Path) -> None:
    """F1 by entity length, sentence length and seen/unseen: one panel each, one line of bars per run."""
    names = [n for n in ("by_entity_length", "by_sentence_length", "by_seen") if all(n in t for t in tables.values())]
    fig, axes = subplots(1, len(names), figsize=(4.5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        for k, (run, t) in enumerate(tables.items()):
            df = t[name]
            grouped_bars(ax, len(df), len(tables), k, df["f1"], label=run)
        ax.set_xticks(range(len(df)), df["bucket"])
        ax.set_ylim(0, 1)
        ax.set_title(BUCKET_TITLES[name])
        ax.set_ylabel("strict F1")
    axes[0][0].legend(fontsize=8)
    save_figure(fig, path)


def plot_categories(categories: dict[str, pd.DataFrame], path: Path) -> None:
    """Error counts per category (all types), grouped bars per run."""
    fig, ax = subplots(figsize=(7, 3.6))
    for k, (run, df) in enumerate(categories.items()):
        row = df[df["type"] == "all"].iloc[0]
        grouped_bars(ax, len(ERRORS), len(categories), k, [row[c] for c in ERRORS], label=run)
    ax.set_xticks(range(len(ERRORS)), [c.replace("_and_", "+\n").replace("_", " ") for c in ERRORS], fontsize=8)
    ax.set_ylabel("entities")
    ax.set_title("Errors by SemEval-2013 category")
    ax.legend(fontsize=8)
    save_figure(fig, path)
