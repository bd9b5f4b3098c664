"""Import conversation JSONL files (``{"conversation": "..."}`` per line) as span-annotated reports.

Each answer value is located in the report text; the result is a ``Report`` with character spans,
from which the BIO and JSON views follow (``views.py``).

Values are located by ``llmner.data.text.locate_values`` (longest first, at word edges, first free
occurrence, nested if every occurrence is covered; ties in ``ENTITY_TYPES`` order), the rule that
also places the generative head's predicted values. A value found nowhere (or that is not a string
or an integer) is recorded as ``Unlocated`` and counted, never silently dropped.

``mentions="every"`` labels every further free mention of a located value too (the "every mention"
convention, ``locate_values(every=True)``); the default ``"first"`` labels a value listed once once.
Scored as values (``field_f1``, which tag heads report too), the two conventions are the same.

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

from llmner.data.crime import ENTITY_TYPES
from llmner.data.crime.generator import Report
from llmner.data.crime.views import report_to_json, report_to_sentence
from llmner.data.schema import DataError, Sentence
from llmner.data.text import locate_values

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


MENTIONS = ("first", "every")


def import_conversations(path: str | Path, mentions: str = "first") -> ImportResult:
    """Read a conversation JSONL file into reports, their views and the unlocated values.

    Args:
        mentions: ``"first"`` (a value listed k times labels its first k free mentions) or
            ``"every"`` (every free mention of a located value).

    Raises:
        DataError: ``file:line: ...`` for a line that is not ``{"conversation": "..."}``.
    """
    if mentions not in MENTIONS:
        raise DataError(f"mentions={mentions!r} is not one of {MENTIONS}")
    if not Path(path).is_file():
        raise DataError(f"{path}: {'is a directory' if Path(path).is_dir() else 'no such file'} (expected a JSONL file "
                        'of {"conversation": "..."} lines)')
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
            spans, missing = locate_values(text, answers, list(ENTITY_TYPES), every=mentions == "every")
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
