"""Markdown rendering shared by the benchmark summary and the failure analysis."""

from __future__ import annotations

import math

import pandas as pd


def markdown_table(df: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub markdown table (no ``tabulate`` dependency)."""
    def cell(v):
        if isinstance(v, float):
            return "nan" if math.isnan(v) else (f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.{digits}g}")
        return str(v)

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def summary_markdown(summary: pd.DataFrame, comparisons: pd.DataFrame, samples: int) -> str:
    """``summary.md``: the per-system table and the pairwise tests, with what each column means."""
    shown = summary.copy()
    shown.insert(2, "test_f1", [f"{m:.4f} ± {s:.4f}" for m, s in zip(shown.pop("test_f1_mean"), shown.pop("test_f1_sd"))])
    text = "# Benchmark summary\n\n"
    text += ("Test F1: entity micro F1 (conlleval), mean ± sd over seeds. Per-type columns: mean F1. "
             "Model selection on validation only. `test_sentences_per_s`: test sentences / seconds of the "
             "whole test pass (`test/seconds`); `test_words_per_s` likewise in words. `peak_memory_mb`: peak RSS of the process during the run "
             "(CPU), or peak CUDA memory allocated (GPU); max over seeds.\n\n")
    text += markdown_table(shown)
    if len(comparisons):
        text += (f"\n## Paired tests\n\n`ttest_p`: paired t-test over seeds on test F1. `bootstrap_*`: paired "
                 f"bootstrap over test sentences ({samples} samples, seeds pooled: each sample scores both "
                 "systems on the same resampled sentences, F1 averaged over seeds); 95% interval of F1(A) - F1(B) "
                 "and two-sided p.\n\n")
        text += markdown_table(comparisons)
    return text
