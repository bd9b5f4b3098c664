"""Entity-level (seqeval, conlleval-compatible) and field-level scores of a split."""

from __future__ import annotations

from seqeval.metrics import classification_report

from llmner.evaluation.statistics import prf


def entity_scores(gold: list[list[str]], pred: list[list[str]], split: str) -> dict[str, float]:
    """Micro and per-type precision/recall/F1 of entities, and word accuracy, named ``split/name``.

    seqeval's default mode follows conlleval (an ``I-X`` after ``O`` starts an entity), so these
    figures equal what the official script prints for the ``.conll`` file the run writes. One
    ``classification_report`` gives every figure: its ``micro avg`` row is ``precision_score``'s,
    ``recall_score``'s and ``f1_score``'s.
    """
    report = classification_report(gold, pred, output_dict=True, zero_division=0)
    micro = report["micro avg"]
    out = {f"{split}/precision": micro["precision"], f"{split}/recall": micro["recall"], f"{split}/f1": micro["f1-score"]}
    for label, row in report.items():
        if " avg" in label:
            continue
        for name in ("precision", "recall", "f1-score"):
            out[f"{split}/{name.split('-')[0]}_{label}"] = row[name]
    words = sum(len(g) for g in gold)
    correct = sum(a == b for g, p in zip(gold, pred) for a, b in zip(g, p))
    out[f"{split}/accuracy"] = correct / words if words else 0.0
    return {k: float(v) for k, v in out.items()}


def group_scores(gold: dict[int, list[str]], pred: dict[int, list[str]], groups: dict[str, tuple[int, int]],
                 split: str) -> dict[str, float]:
    """``entity_scores`` of each group of sentences (e.g. each corpus of a mix), named ``split/<group>/...``.

    Args:
        gold, pred: sentence index -> tags.
        groups: group name -> the ``[start, end)`` of its sentence indices.

    A group's figures are those of scoring its sentences alone (predictions of another group's types
    count as false positives). With two groups or more, ``split/corpus_mean/f1`` is the mean of their F1s.
    """
    out: dict[str, float] = {}
    f1s = []
    for name, (start, end) in groups.items():
        keys = [s for s in sorted(pred) if start <= s < end and s in gold]
        if keys:
            out |= entity_scores([gold[s] for s in keys], [pred[s] for s in keys], f"{split}/{name}")
            f1s.append(out[f"{split}/{name}/f1"])
    if len(f1s) > 1:
        out[f"{split}/corpus_mean/f1"] = sum(f1s) / len(f1s)
    return out


def _field_set(answers: dict[str, list]) -> set[tuple[str, str]]:
    return {(k, " ".join(str(v).split())) for k, values in answers.items() for v in values if str(v).strip()}


def field_scores(gold: list[dict[str, list]], pred: list[dict[str, list]], split: str,
                 types: list[str] | None = None) -> dict[str, float]:
    """Field-level precision/recall/F1 of ``(type, value)`` pairs, micro and per type.

    Each sentence's answers are sets (a value listed twice counts once); values compare as text
    with whitespace collapsed, so the integer 47 equals "47". Per-type figures cover ``types``
    (default: every type seen). Names: ``split/field_f1``, ``split/field_f1_<Type>``, ...
    """
    counts: dict[str | None, list[int]] = {}  # type (None: all) -> [tp, predicted, gold]
    for g, p in zip(gold, pred, strict=True):
        gs, ps = _field_set(g), _field_set(p)
        for pairs, slot in ((gs & ps, 0), (ps, 1), (gs, 2)):
            for label, _ in pairs:
                for key in (None, label):
                    counts.setdefault(key, [0, 0, 0])[slot] += 1
    labels = types if types is not None else sorted(k for k in counts if k is not None)
    out: dict[str, float] = {}
    for key in [None, *labels]:
        precision, recall, f1 = (float(x) for x in prf(*counts.get(key, [0, 0, 0])))
        suffix = "" if key is None else f"_{key}"
        out |= {f"{split}/field_precision{suffix}": precision, f"{split}/field_recall{suffix}": recall,
                f"{split}/field_f1{suffix}": f1}
    return out
