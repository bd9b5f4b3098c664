"""Strict F1 of subsets of the entities: by entity length, by sentence length, seen or unseen in training."""

from __future__ import annotations

from collections import Counter

import pandas as pd
from nervaluate.entities import Entity

from llmner.evaluation.analyze.categories import entities, evaluate, surface
from llmner.evaluation.predictions import Predictions

ENTITY_LENGTHS = ((1, 1, "1"), (2, 2, "2"), (3, 3, "3"), (4, 4, "4"), (5, None, "5+"))
SENTENCE_LENGTHS = ((1, 5, "1-5"), (6, 10, "6-10"), (11, 20, "11-20"), (21, 40, "21-40"), (41, None, "41+"))


def strict_prf(gold: list[list[Entity]], pred: list[list[Entity]], types: list[str]) -> dict:
    """Strict (conlleval) precision/recall/F1 of the given entities, by nervaluate."""
    out = {"gold": sum(map(len, gold)), "pred": sum(map(len, pred)), "correct": 0,
           "precision": 0.0, "recall": 0.0, "f1": 0.0}
    if out["gold"] + out["pred"] == 0:
        return out
    r = evaluate(gold, pred, types)["overall"]["strict"]
    return out | {"correct": r.correct, "precision": r.precision, "recall": r.recall, "f1": r.f1}


def _bucket(n: int, buckets) -> str:
    return next(name for lo, hi, name in buckets if n >= lo and (hi is None or n <= hi))


def by_property(p: Predictions, key, order: list[str], types: list[str]) -> pd.DataFrame:
    """Strict P/R/F1 of the entities grouped by ``key(sentence, tokens, entity) -> bucket``."""
    gold, pred = entities(p.gold), entities(p.pred)
    rows = []
    for name in order:
        g = [[e for e in doc if key(i, p.tokens[i], e) == name] for i, doc in enumerate(gold)]
        q = [[e for e in doc if key(i, p.tokens[i], e) == name] for i, doc in enumerate(pred)]
        rows.append({"bucket": name, **strict_prf(g, q, types)})
    return pd.DataFrame(rows)


def length_tables(p: Predictions, types: list[str], train: set[str] | None) -> dict[str, pd.DataFrame]:
    """F1 by entity length, by sentence length and (with ``train``) for seen vs unseen entities."""
    out = {
        "by_entity_length": by_property(p, lambda i, toks, e: _bucket(e.end - e.start + 1, ENTITY_LENGTHS),
                                        [b[2] for b in ENTITY_LENGTHS], types),
        "by_sentence_length": by_property(p, lambda i, toks, e: _bucket(len(toks), SENTENCE_LENGTHS),
                                          [b[2] for b in SENTENCE_LENGTHS], types),
    }
    sentences = Counter(_bucket(len(t), SENTENCE_LENGTHS) for t in p.tokens)
    out["by_sentence_length"].insert(1, "sentences", [sentences[b] for b in out["by_sentence_length"]["bucket"]])
    if train is not None:
        out["by_seen"] = by_property(p, lambda i, toks, e: "seen" if surface(toks, e) in train else "unseen",
                                     ["seen", "unseen"], types)
    return out
