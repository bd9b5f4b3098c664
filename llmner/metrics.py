"""Entity-level metrics (seqeval, conlleval-compatible) and the prediction files of a run."""

from __future__ import annotations

import json
from pathlib import Path

from seqeval.metrics import classification_report, f1_score, precision_score, recall_score


def entity_scores(gold: list[list[str]], pred: list[list[str]], split: str) -> dict[str, float]:
    """Micro and per-type precision/recall/F1 of entities, and word accuracy, named ``split/name``.

    seqeval's default mode follows conlleval (an ``I-X`` after ``O`` starts an entity), so these
    figures equal what the official script prints for the ``.conll`` file that ``write_conll`` writes.
    """
    out = {
        f"{split}/precision": precision_score(gold, pred, zero_division=0),
        f"{split}/recall": recall_score(gold, pred, zero_division=0),
        f"{split}/f1": f1_score(gold, pred, zero_division=0),
    }
    report = classification_report(gold, pred, output_dict=True, zero_division=0)
    for label, row in report.items():
        if " avg" in label:
            continue
        for name in ("precision", "recall", "f1-score"):
            out[f"{split}/{name.split('-')[0]}_{label}"] = float(row[name])
    words = sum(len(g) for g in gold)
    correct = sum(a == b for g, p in zip(gold, pred) for a, b in zip(g, p))
    out[f"{split}/accuracy"] = correct / words if words else 0.0
    return {k: float(v) for k, v in out.items()}


def write_conll(path: str | Path, tokens: list[list[str]], gold: list[list[str]], pred: list[list[str]]) -> None:
    """``token gold predicted`` per word, a blank line between sentences (conlleval's input)."""
    with Path(path).open("w", encoding="utf-8") as f:
        for toks, gs, ps in zip(tokens, gold, pred):
            for t, g, p in zip(toks, gs, ps):
                f.write(f"{t.replace(' ', '_')} {g} {p}\n")  # conlleval splits on spaces
            f.write("\n")


def write_metrics(path: str | Path, metrics: dict[str, float]) -> None:
    """All final figures of a run as one JSON object, keys sorted."""
    Path(path).write_text(json.dumps(dict(sorted(metrics.items())), indent=2) + "\n")


def _field_set(answers: dict[str, list]) -> set[tuple[str, str]]:
    return {(k, " ".join(str(v).split())) for k, values in answers.items() for v in values if str(v).strip()}


def field_scores(gold: list[dict[str, list]], pred: list[dict[str, list]], split: str,
                 types: list[str] | None = None) -> dict[str, float]:
    """Field-level precision/recall/F1 of ``(type, value)`` pairs, micro and per type.

    Each sentence's answers are sets (a value listed twice counts once); values compare as text
    with whitespace collapsed, so the integer 47 equals "47". Per-type figures cover ``types``
    (default: every type seen). Names: ``split/field_f1``, ``split/field_f1_<Type>``, ...
    """
    counts: dict[str | None, list[int]] = {}  # type (None: all) -> [tp, fp, fn]
    for g, p in zip(gold, pred, strict=True):
        gs, ps = _field_set(g), _field_set(p)
        for pairs, slot in ((gs & ps, 0), (ps - gs, 1), (gs - ps, 2)):
            for label, _ in pairs:
                for key in (None, label):
                    counts.setdefault(key, [0, 0, 0])[slot] += 1
    labels = types if types is not None else sorted(k for k in counts if k is not None)
    out: dict[str, float] = {}
    for key in [None, *labels]:
        tp, fp, fn = counts.get(key, [0, 0, 0])
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        suffix = "" if key is None else f"_{key}"
        out |= {f"{split}/field_precision{suffix}": precision, f"{split}/field_recall{suffix}": recall,
                f"{split}/field_f1{suffix}": f1}
    return out
