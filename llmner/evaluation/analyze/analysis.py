"""Every table of one run (``analyze_run``), and two runs on the same test set compared (``compare_runs``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from llmner.data.schema import DataError
from llmner.evaluation.analyze.buckets import length_tables
from llmner.evaluation.analyze.categories import CATEGORIES, Match, category_table, classify, confusion, score_table
from llmner.evaluation.analyze.patterns import error_table, pattern_table
from llmner.evaluation.predictions import Predictions
from llmner.evaluation.statistics import paired_bootstrap, sentence_counts
from llmner.metrics import entity_scores


@dataclass
class RunAnalysis:
    """Every table of one run."""

    predictions: Predictions
    matches: list[Match]
    types: list[str]
    categories: pd.DataFrame
    scores: pd.DataFrame
    confusion: pd.DataFrame
    buckets: dict[str, pd.DataFrame]
    errors: pd.DataFrame
    patterns: pd.DataFrame
    seqeval_f1: float


def analyze_run(p: Predictions, train: set[str] | None = None, top: int = 20) -> RunAnalysis:
    """The single-run tables of ``p`` (``train``: the training split's entity strings, for seen/unseen)."""
    matches, results = classify(p.gold, p.pred)
    types = sorted({(m.gold or m.pred).label for m in matches})
    errors = error_table(p, matches)
    return RunAnalysis(
        predictions=p, matches=matches, types=types,
        categories=category_table(matches, types), scores=score_table(results, types),
        confusion=confusion(matches, types), buckets=length_tables(p, types, train), errors=errors,
        patterns=pattern_table(errors, top), seqeval_f1=entity_scores(p.gold, p.pred, "test")["test/f1"],
    )


def check_same_test_set(a: Predictions, b: Predictions) -> None:
    """Raise ``DataError`` unless ``a`` and ``b`` hold the same sentences, words and gold tags."""
    if len(a.tokens) != len(b.tokens):
        raise DataError(f"{a.path} and {b.path} are not the same test set: {len(a.tokens)} vs {len(b.tokens)} sentences")
    for i, (ta, tb, ga, gb) in enumerate(zip(a.tokens, b.tokens, a.gold, b.gold)):
        if ta != tb or ga != gb:
            what = "words" if ta != tb else "gold tags"
            raise DataError(f"{a.path}:{a.lines[i]} and {b.path}:{b.lines[i]}: sentence {i + 1} differs in its "
                            f"{what}; the two runs must be scored on the same test set")


def compare_runs(a: RunAnalysis, b: RunAnalysis, samples: int = 1000, seed: int = 0) -> dict:
    """Category deltas, sentences right in one run and wrong in the other, paired bootstrap on F1.

    A sentence is right when its predicted entities are exactly its gold ones (none at all counts).

    Returns:
        ``categories`` (type, category, a, b, a_minus_b), ``sentences`` (one row per sentence:
        ``a_right``, ``b_right``), ``counts`` (the four cells) and ``bootstrap`` (``llmner.evaluation.statistics``'
        ``paired_bootstrap``: delta F1(A) - F1(B), 95% interval, p).
    """
    check_same_test_set(a.predictions, b.predictions)
    ca = a.categories.set_index("type")
    cb = b.categories.set_index("type")
    types = list(dict.fromkeys([*ca.index[:-1], *cb.index[:-1]])) + ["all"]
    ca, cb = ca.reindex(types, fill_value=0), cb.reindex(types, fill_value=0)
    cats = pd.DataFrame([{"type": t, "category": c, "a": int(ca.loc[t, c]), "b": int(cb.loc[t, c]),
                          "a_minus_b": int(ca.loc[t, c] - cb.loc[t, c])} for t in types for c in CATEGORIES])
    pa, pb = a.predictions, b.predictions
    counts_a, counts_b = sentence_counts(pa.gold, pa.pred), sentence_counts(pb.gold, pb.pred)

    def right(c: np.ndarray) -> np.ndarray:  # (S,) every predicted entity correct and none missing
        return (c[:, 0] == c[:, 1]) & (c[:, 0] == c[:, 2])

    ra, rb = right(counts_a), right(counts_b)
    sentences = pd.DataFrame({"sentence": range(len(ra)), "line": pa.lines, "gold_entities": counts_a[:, 2],
                              "a_right": ra, "b_right": rb})
    cells = {"both_right": int((ra & rb).sum()), "only_a_right": int((ra & ~rb).sum()),
             "only_b_right": int((~ra & rb).sum()), "both_wrong": int((~ra & ~rb).sum())}
    with_entities = counts_a[:, 2] > 0
    cells |= {f"{k}_with_entities": int(v) for k, v in (
        ("both_right", (ra & rb & with_entities).sum()), ("only_a_right", (ra & ~rb & with_entities).sum()),
        ("only_b_right", (~ra & rb & with_entities).sum()), ("both_wrong", (~ra & ~rb & with_entities).sum()))}
    boot = paired_bootstrap([counts_a], [counts_b], samples=samples, seed=seed)
    return {"categories": cats, "sentences": sentences, "counts": cells, "bootstrap": boot}
