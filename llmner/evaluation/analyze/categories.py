"""Every gold and predicted entity in one SemEval-2013 category (nervaluate), scores and type confusion."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import pandas as pd
from nervaluate import Evaluator, collect_named_entities
from nervaluate.entities import Entity

log = logging.getLogger(__name__)

CATEGORIES = ("correct", "wrong_type", "wrong_boundary", "wrong_type_and_boundary", "missed", "spurious")
ERRORS = CATEGORIES[1:]
SCENARIOS = ("strict", "exact", "partial", "ent_type")  # nervaluate's names


@dataclass(frozen=True)
class Match:
    """One gold or predicted entity and what became of it; ``gold``/``pred`` is ``None`` for spurious/missed."""

    sentence: int
    category: str
    gold: Entity | None
    pred: Entity | None


def entities(tags: list[list[str]]) -> list[list[Entity]]:
    """Entities per sentence, as nervaluate reads BIO tags (conlleval's rule: an ``I-X`` after ``O`` starts one)."""
    return [[Entity(e["label"], e["start"], e["end"]) for e in collect_named_entities(t)] for t in tags]


def _as_dicts(docs: list[list[Entity]]) -> list[list[dict]]:
    return [[{"label": e.label, "start": e.start, "end": e.end} for e in doc] for doc in docs]


def evaluate(gold: list[list[Entity]], pred: list[list[Entity]], types: list[str]) -> dict:
    """nervaluate's ``Evaluator.evaluate()`` on entity lists (1.x API: ``overall``, ``entities``, ``*_indices``)."""
    return Evaluator(_as_dicts(gold), _as_dicts(pred), tags=types, loader="dict").evaluate()


def _overlaps(a: Entity, b: Entity) -> bool:
    return a.start <= b.end and b.start <= a.end


def surface(tokens: list[str], e: Entity) -> str:
    """The words of entity ``e``, space-separated."""
    return " ".join(tokens[e.start:e.end + 1])


def _partners(gold: list[Entity], pred: list[Entity], categories: list[str]) -> dict[int, int]:
    """Prediction index -> the index of the gold entity its category is about.

    nervaluate lists each prediction's category per scenario, not the gold entity it was paired
    with, which the confusion matrix and the error examples need. Predictions take, in order, an
    unpaired gold entity: for ``correct`` and ``wrong_type`` the one with the same span; for
    ``wrong_boundary`` an overlapping one of the same type, the closest in boundaries (ent_type's
    rule); otherwise the first overlapping one (strict's rule). So the confusion matrix's diagonal
    is correct + wrong_boundary, and the gold entities left unpaired are the missed ones.
    """
    paired: dict[int, int] = {}
    for i, (p, category) in enumerate(zip(pred, categories)):
        if category == "spurious":
            continue
        free = [j for j in range(len(gold)) if j not in paired.values() and _overlaps(p, gold[j])]
        if category in ("correct", "wrong_type"):
            best = [j for j in free if (gold[j].start, gold[j].end) == (p.start, p.end)]
        elif category == "wrong_boundary":
            best = sorted((j for j in free if gold[j].label == p.label),
                          key=lambda j: abs(gold[j].start - p.start) + abs(gold[j].end - p.end))
        else:
            best = []
        if best or free:
            paired[i] = (best or free)[0]
    return paired


def classify(gold_tags: list[list[str]], pred_tags: list[list[str]]) -> tuple[list[Match], dict]:
    """Every gold and predicted entity in one SemEval-2013 category, and nervaluate's results.

    A prediction's category follows from its status in three nervaluate scenarios (the table in
    nervaluate's README): strict ``correct`` -> correct; strict ``spurious`` -> spurious; strict
    ``incorrect`` and exact ``correct`` (same span) -> wrong_type; and ent_type ``correct`` (same
    type, overlapping) -> wrong_boundary; otherwise wrong_type_and_boundary. Each prediction that
    is not spurious is paired with a gold entity (``_partners``); the gold entities left unpaired
    are missed, as many as strict's ``missed`` (a warning says if spans cross so that they are not).

    Returns:
        The matches, sentence by sentence, and ``Evaluator.evaluate()``'s dict.
    """
    gold, pred = entities(gold_tags), entities(pred_tags)
    types = sorted({e.label for doc in gold + pred for e in doc})
    results = evaluate(gold, pred, types)
    status: dict[str, dict[tuple[int, int], str]] = {}
    for scenario in ("strict", "exact", "ent_type"):
        indices = results["overall_indices"].get(scenario)
        status[scenario] = {}
        for name in ("correct", "incorrect", "partial", "spurious"):
            for key in getattr(indices, f"{name}_indices", []) if indices else []:
                status[scenario][tuple(key)] = name
    matches: list[Match] = []
    for s, (gs, ps) in enumerate(zip(gold, pred)):
        categories = []
        for i in range(len(ps)):
            strict = status["strict"][(s, i)]
            if strict in ("correct", "spurious"):
                categories.append(strict)
            elif status["exact"].get((s, i)) == "correct":
                categories.append("wrong_type")
            elif status["ent_type"].get((s, i)) == "correct":
                categories.append("wrong_boundary")
            else:
                categories.append("wrong_type_and_boundary")
        partners = _partners(gs, ps, categories)
        matches += [Match(s, c, gs[partners[i]] if i in partners else None, p)
                    for i, (p, c) in enumerate(zip(ps, categories))]
        matches += [Match(s, "missed", g, None) for j, g in enumerate(gs) if j not in partners.values()]
    missed = sum(m.category == "missed" for m in matches)
    if "strict" in results["overall"] and missed != results["overall"]["strict"].missed:
        log.warning("%d gold entities unpaired but nervaluate's strict scenario misses %d", missed,
                    results["overall"]["strict"].missed)
    return matches, results


def category_table(matches: list[Match], types: list[str]) -> pd.DataFrame:
    """Counts per category, one row per type and ``all``; a spurious entity counts under its predicted type."""
    counts = Counter(((m.gold or m.pred).label, m.category) for m in matches)
    rows = [{"type": t, **{c: counts[(t, c)] for c in CATEGORIES}} for t in types]
    rows.append({"type": "all", **{c: sum(r[c] for r in rows) for c in CATEGORIES}})
    return pd.DataFrame(rows)


def score_table(results: dict, types: list[str]) -> pd.DataFrame:
    """nervaluate's precision/recall/F1 per scenario, overall and per type (long format)."""
    rows = []
    for name, by_scenario in [("all", results["overall"]), *[(t, results["entities"].get(t, {})) for t in types]]:
        for scenario in SCENARIOS:
            r = by_scenario.get(scenario)
            if r is None:
                continue
            rows.append({"type": name, "scenario": scenario, "precision": r.precision, "recall": r.recall,
                         "f1": r.f1, "correct": r.correct, "incorrect": r.incorrect, "partial": r.partial,
                         "missed": r.missed, "spurious": r.spurious})
    return pd.DataFrame(rows)


def confusion(matches: list[Match], types: list[str]) -> pd.DataFrame:
    """Gold type (rows) x predicted type (columns), ``O`` for no entity, as ``_partners`` pairs them."""
    labels = [*types, "O"]
    table = pd.DataFrame(0, index=pd.Index(labels, name="gold"), columns=pd.Index(labels, name="pred"))
    for m in matches:
        table.loc[m.gold.label if m.gold else "O", m.pred.label if m.pred else "O"] += 1
    return table
