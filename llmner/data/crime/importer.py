"""Import conversation JSONL files (``{"conversation": "..."}`` per line) as span-annotated reports.

Each answer value is located in the report text; the result is a ``Report`` with character spans,
from which the BIO and JSON views follow (``views.py``).

How a value is located (``locate_values``):

1. Values are placed longest first (ties: ``ENTITY_TYPES`` order, then answer order), so that a
   short value such as an age ``35`` is not taken from inside a longer value such as the address
   ``35 Elm Street`` or the time ``14:35``.
2. A value matches only at word edges: ``35`` does not match inside ``356`` or ``1435``.
3. Each value takes the first occurrence that no placed span overlaps, searching first for the
   exact text, then case- and whitespace-insensitively. A value listed k times takes the first k
   such occurrences (a value listed once is tagged once, however often it occurs).
4. If every occurrence is already covered by another span, the value is nested: it takes the
   first occurrence anyway (the BIO view then resolves the overlap, see ``views.py``). As a last
   resort a value may match inside a word (case-insensitive).
5. Integers (ages) are searched as their digits. A value found nowhere (or that is not a string
   or an integer) is recorded as ``Unlocated`` and counted, never silently dropped.

"Not provided" is an ordinary string: it is an entity only if the answer lists it.
Types outside ``ENTITY_TYPES`` are ignored and counted in ``ImportResult.ignored_types``.
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from llmner.data.crime import ENTITY_TYPES
from llmner.data.crime.generator import Report
from llmner.data.crime.views import report_to_json, report_to_sentence
from llmner.data.schema import DataError, Sentence, Span

_ORDER = {label: i for i, label in enumerate(ENTITY_TYPES)}
_TEXT_START = re.compile(r"^User:[ \t]*Text:[ \t]*\n?", re.MULTILINE)
_TURN = re.compile(r"^(User|Assistant):[ \t]?", re.MULTILINE)
_QUESTION = re.compile(r"What describes\s+(.+?)\s+in the text\?", re.IGNORECASE)


@dataclass(frozen=True)
class Unlocated:
    """An answer value that could not be found in its report."""

    report: int  # index of the report in the file (0-based)
    label: str
    value: object
    source: str  # "file.jsonl:17"


@dataclass
class ImportResult:
    """Reports imported from one conversation file, with their views and what went wrong."""

    path: str
    reports: list[Report] = field(default_factory=list)
    answers: list[dict[str, list]] = field(default_factory=list)  # as given in the file (17 keys)
    sentences: list[Sentence] = field(default_factory=list)  # BIO view
    jsons: list[dict[str, list]] = field(default_factory=list)  # JSON view of the located spans
    unlocated: list[Unlocated] = field(default_factory=list)
    overlaps: int = 0  # spans left out of the BIO view because they overlap a longer span
    ignored_types: Counter = field(default_factory=Counter)

    @property
    def num_unlocated(self) -> int:
        return len(self.unlocated)

    @property
    def num_spans(self) -> int:
        return sum(len(r.spans) for r in self.reports)


def parse_conversation(conversation: str, source: str = "conversation") -> tuple[str, dict[str, list]]:
    """Split a conversation string into the report text and ``{type: values}``.

    The report is the text between ``User: Text:`` and the next ``Assistant:`` turn; each later
    ``User: What describes X in the text?`` turn is answered by the following ``Assistant:`` turn,
    a JSON object (a Python-literal dict is accepted too). Answers merge in order of appearance.

    Raises:
        DataError: naming ``source`` when the text or an answer cannot be read.
    """
    conversation = conversation.replace("\r\n", "\n")
    start = _TEXT_START.search(conversation)
    if start is None:
        raise DataError(f"{source}: expected a 'User: Text:' turn followed by the report")
    rest = conversation[start.end():]
    end = re.search(r"^Assistant:", rest, re.MULTILINE)
    if end is None:
        raise DataError(f"{source}: expected an 'Assistant:' turn after the report text")
    text = rest[:end.start()].strip()
    marks = [m for m in _TURN.finditer(rest) if m.start() >= end.start()]  # turns after the text
    answers: dict[str, list] = {}
    question: str | None = None
    for i, m in enumerate(marks[1:], 1):  # marks[0] is the reply to the text
        body = rest[m.end():marks[i + 1].start() if i + 1 < len(marks) else len(rest)].strip()
        if m.group(1) == "User":
            found = _QUESTION.search(body)
            question = found.group(1).strip() if found else None
            continue
        if question is None and not body.startswith("{"):
            continue  # chatter that answers no question
        for label, values in _parse_answer(body, question, source).items():
            answers.setdefault(label, []).extend(values)
        question = None
    return text, answers


def _parse_answer(body: str, question: str | None, source: str) -> dict[str, list]:
    where = f"{source}: answer to {question!r}" if question else f"{source}: answer"
    try:
        obj = json.loads(body)
    except json.JSONDecodeError:
        try:
            obj = ast.literal_eval(body)
        except (ValueError, SyntaxError):
            raise DataError(f"{where} is not a JSON object: {body[:80]!r}") from None
    if isinstance(obj, list) and question:
        obj = {question: obj}
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object like {{\"Type\": [...]}}, got {body[:80]!r}")
    out: dict[str, list] = {}
    for label, values in obj.items():
        if values is None:
            values = []
        out[str(label)] = values if isinstance(values, list) else [values]
    return out


def _needle(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _edges_ok(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` does not cut a word (letters and digits) at either end."""
    cut_left = start > 0 and text[start - 1].isalnum() and text[start].isalnum()
    cut_right = end < len(text) and text[end - 1].isalnum() and text[end].isalnum()
    return not (cut_left or cut_right)


def _candidates(text: str, needle: str) -> Iterator[tuple[int, int, bool]]:
    """Occurrences ``(start, end, at_word_edges)``: exact, then case- and whitespace-insensitive,
    then (``at_word_edges=False``) anywhere. Regexes are built only when the exact search is not enough.
    """
    start = text.find(needle)
    while start >= 0:
        if _edges_ok(text, start, start + len(needle)):
            yield start, start + len(needle), True
        start = text.find(needle, start + 1)
    loose = re.compile(r"\s+".join(re.escape(part) for part in needle.split()), re.IGNORECASE)
    matches = [m.span() for m in loose.finditer(text)]
    yield from ((s, e, True) for s, e in matches if _edges_ok(text, s, e))
    yield from ((s, e, False) for s, e in matches if not _edges_ok(text, s, e))


def locate_values(text: str, answers: dict[str, list]) -> tuple[list[Span], list[tuple[str, object]]]:
    """Character spans for the answer values in ``text`` (rules in the module docstring).

    Returns:
        ``(spans sorted by start, [(label, value) not found])``.
    """
    items = []
    for label, values in answers.items():
        for value in values:
            needle = _needle(value)
            items.append((-len(needle or ""), _ORDER.get(label, len(_ORDER)), len(items), label, value, needle))
    spans: list[Span] = []
    missing: list[tuple[str, object]] = []
    for *_, label, value, needle in sorted(items, key=lambda t: t[:3]):
        span = _place(text, label, needle, spans) if needle else None
        if span is None:
            if not needle or not any(s.label == label and text[s.start:s.end] == needle for s in spans):
                missing.append((label, value))
        elif span not in spans:
            spans.append(span)
    return sorted(spans, key=lambda s: (s.start, s.end)), missing


def _place(text: str, label: str, needle: str, spans: list[Span]) -> Span | None:
    seen: list[Span] = []
    for start, end, at_edges in _candidates(text, needle):
        span = Span(start, end, label)
        if at_edges and not any(start < s.end and s.start < end for s in spans):
            return span  # the first free occurrence
        seen.append(span)
    # every occurrence is covered: nest inside the first one that is not this very span already
    return next((span for span in seen if span not in spans), None)


def import_conversations(path: str | Path) -> ImportResult:
    """Read a conversation JSONL file into reports, their views and the unlocated values.

    Raises:
        DataError: ``file:line: ...`` for a line that is not ``{"conversation": "..."}``.
    """
    result = ImportResult(path=str(path))
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            source = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                obj = None
            if not isinstance(obj, dict) or not isinstance(obj.get("conversation"), str):
                raise DataError(f'{source}: expected a JSON object with a "conversation" string')
            text, given = parse_conversation(obj["conversation"], source)
            for label in given:
                if label not in _ORDER:
                    result.ignored_types[label] += 1
            answers = {label: list(given.get(label, [])) for label in ENTITY_TYPES}
            spans, missing = locate_values(text, answers)
            index = len(result.reports)
            report = Report(text=text, spans=spans)
            sentence = report_to_sentence(report, source=source)
            result.reports.append(report)
            result.answers.append(answers)
            result.sentences.append(sentence)
            result.jsons.append(report_to_json(report))
            result.unlocated += [Unlocated(index, label, value, source) for label, value in missing]
            result.overlaps += len(sentence.meta["dropped_spans"])
    if result.unlocated:
        shown = "; ".join(f"{u.source} {u.label}={u.value!r}" for u in result.unlocated[:5])
        more = f" (and {len(result.unlocated) - 5} more)" if len(result.unlocated) > 5 else ""
        warnings.warn(f"{path}: {len(result.unlocated)} answer values not found in their report: {shown}{more}",
                      stacklevel=2)
    if result.ignored_types:
        warnings.warn(f"{path}: ignored entity types {dict(result.ignored_types)}", stacklevel=2)
    return result
