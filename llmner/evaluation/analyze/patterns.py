"""Every error of a run and its most frequent error patterns."""

from __future__ import annotations

import pandas as pd

from llmner.evaluation.analyze.categories import Match, surface
from llmner.evaluation.predictions import Predictions

PATTERN_KEY = ["category", "gold_type", "gold_words", "pred_type", "pred_words"]


def error_table(p: Predictions, matches: list[Match]) -> pd.DataFrame:
    """Every match that is not correct: sentence, its first line in the file, category, gold and predicted entity."""
    rows = []
    for m in matches:
        if m.category == "correct":
            continue
        toks = p.tokens[m.sentence]
        rows.append({
            "sentence": m.sentence, "line": p.lines[m.sentence], "category": m.category,
            "gold_type": m.gold.label if m.gold else "O", "gold_words": surface(toks, m.gold) if m.gold else "",
            "pred_type": m.pred.label if m.pred else "O", "pred_words": surface(toks, m.pred) if m.pred else "",
            "gold_start": m.gold.start if m.gold else -1, "gold_end": m.gold.end if m.gold else -1,
            "pred_start": m.pred.start if m.pred else -1, "pred_end": m.pred.end if m.pred else -1,
        })
    return pd.DataFrame(rows, columns=["sentence", "line", "category", "gold_type", "gold_words", "pred_type",
                                       "pred_words", "gold_start", "gold_end", "pred_start", "pred_end"])


def pattern_table(errors: pd.DataFrame, top: int = 20) -> pd.DataFrame:
    """The ``top`` most frequent (category, gold type and words, predicted type and words); ties: first seen."""
    if errors.empty:
        return pd.DataFrame(columns=["rank", *PATTERN_KEY, "count"])
    counts = errors.groupby(PATTERN_KEY, sort=False).size().reset_index(name="count")
    counts = counts.sort_values("count", ascending=False, kind="stable").head(top).reset_index(drop=True)
    counts.insert(0, "rank", range(1, len(counts) + 1))
    return counts
