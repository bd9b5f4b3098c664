"""Three views of one crime ``Report``: BIO-tagged words, JSON answers and a conversation string.

BIO view rules:

- Words come from the ``punct`` splitter of ``llmner.data.text`` (runs of letters/digits, each other
  visible character on its own), and a word is also cut at every span boundary, so ``#1457`` with the badge span ``1457``
  gives ``#`` and ``1457``. Tokens therefore never contain whitespace.
- Overlapping spans cannot all be IOB2-tagged. Rule: the longer span wins, then the earlier one,
  then the label that comes first in ``ENTITY_TYPES``. Losers are kept in
  ``meta["dropped_spans"]`` (and counted by the importer); the JSON view still lists them.
"""

from __future__ import annotations

import json
from bisect import bisect_right

from llmner.data.chat import QUESTION, READ_REPLY, SYSTEM
from llmner.data.crime import ENTITY_TYPES
from llmner.data.crime.generator import Report
from llmner.data.schema import Sentence, Span, tag_set
from llmner.data.text import split_words

TAGS: list[str] = tag_set(list(ENTITY_TYPES))  # "O" + B-/I- of the 17 types: 35 tags

_ORDER = {label: i for i, label in enumerate(ENTITY_TYPES)}


def tokenize(text: str, boundaries: list[int] | tuple[int, ...] = ()) -> list[tuple[int, int]]:
    """Character offsets ``(start, end)`` of the words of ``text``, also cut at ``boundaries``."""
    cuts = sorted(set(boundaries))
    offsets: list[tuple[int, int]] = []
    for start, end in split_words(text, "punct"):
        i = bisect_right(cuts, start)
        while i < len(cuts) and cuts[i] < end:
            offsets.append((start, cuts[i]))
            start = cuts[i]
            i += 1
        offsets.append((start, end))
    return offsets


def resolve_overlaps(spans: list[Span]) -> tuple[list[Span], list[Span]]:
    """Split spans into ``(kept, dropped)`` so that kept spans do not overlap (see module doc)."""
    kept: list[Span] = []
    dropped: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start - s.end, s.start, _ORDER.get(s.label, len(_ORDER)), s.label)):
        if span.end <= span.start or any(span.start < k.end and k.start < span.end for k in kept):
            dropped.append(span)
        else:
            kept.append(span)
    return sorted(kept, key=lambda s: s.start), dropped


def report_to_sentence(report: Report, source: str = "") -> Sentence:
    """The BIO view: one ``Sentence`` per report with IOB2 tags over the words of the text.

    ``meta`` holds ``text``, ``offsets`` (one ``(start, end)`` per token), ``spans`` (those the
    tags encode) and ``dropped_spans`` (overlap losers, and spans that cover no word).
    """
    kept, dropped = resolve_overlaps(report.spans)
    offsets = tokenize(report.text, [b for s in kept for b in (s.start, s.end)])
    tags = ["O"] * len(offsets)
    encoded: list[Span] = []
    j = 0
    for span in kept:
        while j < len(offsets) and offsets[j][1] <= span.start:
            j += 1
        k = j
        while k < len(offsets) and offsets[k][1] <= span.end:
            tags[k] = ("B-" if k == j else "I-") + span.label
            k += 1
        (encoded if k > j else dropped).append(span)
        j = k
    tokens = [report.text[s:e] for s, e in offsets]
    meta = {"text": report.text, "offsets": offsets, "spans": encoded, "dropped_spans": dropped}
    return Sentence(tokens=tokens, tags=tags, source=source, meta=meta)


def report_to_json(report: Report) -> dict[str, list]:
    """The JSON view: all 17 types in ``ENTITY_TYPES`` order, values as verbatim text slices.

    Values are listed once each, in order of first occurrence; ``Victim_Age`` values are ints
    (left as strings if they are not plain digits).
    """
    answers: dict[str, list] = {label: [] for label in ENTITY_TYPES}
    for span in sorted(report.spans, key=lambda s: (s.start, s.end)):
        value: str | int = report.text[span.start:span.end]
        if span.label == "Victim_Age" and value.isdigit():
            value = int(value)
        values = answers.setdefault(span.label, [])
        if value not in values:
            values.append(value)
    return answers


def answers_to_conversation(text: str, answers: dict[str, list]) -> str:
    """The conversation string for a report text and its answers (one question per type)."""
    lines = [SYSTEM, "User: Text:", text, f"Assistant: {READ_REPLY}"]
    for label in ENTITY_TYPES:
        lines.append(f"User: {QUESTION.format(label=label)}")
        lines.append(f"Assistant: {json.dumps({label: answers.get(label, [])})}")
    return "\n".join(lines)


def report_to_conversation(report: Report) -> str:
    """The conversation view: ``answers_to_conversation`` of the text and its JSON view."""
    return answers_to_conversation(report.text, report_to_json(report))
