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
