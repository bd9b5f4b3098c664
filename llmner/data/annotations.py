"""Annotation-tool exports as texts with character spans: doccano, Label Studio, spaCy/Prodigy.

- **doccano** JSONL: ``{"text": ..., "label": [[start, end, "TYPE"], ...]}`` (``"labels"`` in newer
  exports; ``"entities"``: ``[{"start_offset", "end_offset", "label"}]`` or the list form).
- **Label Studio** JSON export: a list of tasks, ``data.text`` and
  ``annotations[].result[].value`` with ``start``, ``end``, ``text``, ``labels``. The first
  annotation that was not cancelled counts; a task without one is skipped (counted, logged):
  unannotated is not "no entities". Its JSON-MIN export (``{"text", "label": [{"start", "end",
  "text", "labels"}]}`` records) reads as doccano.
- **spaCy/Prodigy** JSONL: ``{"text": ..., "spans": [{"start", "end", "label", ...}]}``; extra keys
  in a span (``text``, ``score``, ``token_start``, ``token_end``, ...) are allowed, records with
  ``"answer": "reject"`` or ``"ignore"`` are skipped. llmner's own span predictions read back.

**Offsets** are Python string indices, i.e. Unicode code points, as doccano, Label Studio and spaCy
count them (JSON's ``\\ud83d\\ude00`` escapes decode to one code point). A tool that counts UTF-16
code units (JavaScript string indices) disagrees after any emoji or other non-BMP character, as
Label Studio did before late 2021 (label-studio#1008, #1347) and doccano before doccano#99:
``offsets=utf16`` converts. Where a span states its text (Label Studio's ``value.text``, a span's
``text``), it must equal ``text[start:end]``; a mismatch is an error that says whether UTF-16
offsets would have matched. Offsets past the text's end, ``start >= end`` and non-integers are errors.

Unknown keys of a record are logged once per file (a misspelt ``"lables"`` would otherwise read as
a text without entities); texts may hold CRLF, tabs, emoji: offsets count every character.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from llmner.data.schema import DataError, Span

log = logging.getLogger(__name__)

FORMATS = ("doccano", "label_studio", "spacy")
OFFSETS = ("code_points", "utf16")
_DOCCANO_KEYS = ("entities", "label", "labels")
_KNOWN = {
    "doccano": {"text", "id", "meta", "Comments", "comments", "relations", "cats", "annotation_approver",
                "created_at", "updated_at", "annotations", "annotator", "annotation_id", "lead_time", *_DOCCANO_KEYS},
    "spacy": {"text", "spans", "tokens", "meta", "answer", "id", "entities", "relations", "label", "options", "accept"},
    "label_studio": {"id", "data", "annotations", "completions", "predictions", "meta", "created_at", "updated_at",
                     "inner_id", "total_annotations", "cancelled_annotations", "total_predictions", "comment_count",
                     "unresolved_comment_count", "last_comment_updated_at", "project", "updated_by", "file_upload",
                     "comment_authors", "drafts", "annotators", "is_labeled", "overlap", "storage_filename"},
}


@dataclass
class SpanRecord:
    """One annotated text: spans in code-point offsets, checked to lie inside the text."""

    text: str
    spans: list[Span]
    source: str  # "train.jsonl:12" or "export.json: task #3 (id 17)"


@functools.lru_cache(maxsize=4)  # one table per text, not per span
def utf16_to_code_points(text: str) -> dict[int, int]:
    """``{UTF-16 offset: code-point offset}`` for every position of ``text`` that is not inside a surrogate pair."""
    out, pos = {0: 0}, 0
    for i, ch in enumerate(text):
        pos += 2 if ord(ch) > 0xFFFF else 1
        out[pos] = i + 1
    return out


def _utf16_slice(text: str, start: int, end: int) -> str | None:
    """``text[start:end]`` counting UTF-16 code units, or None if that cuts a surrogate pair."""
    units = text.encode("utf-16-le")
    try:
        return units[2 * start:2 * end].decode("utf-16-le")
    except UnicodeDecodeError:
        return None


def make_span(text: str, start, end, label, stated: str | None, offsets: str, where: str) -> Span:
    """A checked ``Span`` (see the module docstring for the checks); errors name ``where``."""
    shown = f"span [{start!r}, {end!r}) {label!r}"
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
        raise DataError(f"{where}: {shown}: expected integer character offsets")
    if not isinstance(label, str) or not label.strip() or any(c.isspace() for c in label):
        raise DataError(f"{where}: {shown}: expected a label string without spaces")
    if offsets == "utf16":
        table = utf16_to_code_points(text)
        if start not in table or end not in table:
            raise DataError(f"{where}: {shown}: UTF-16 offsets past the text's end ({2 * len(text)} units at most) "
                            "or inside a surrogate pair")
        start, end = table[start], table[end]
    if not 0 <= start < end:
        raise DataError(f"{where}: {shown}: expected 0 <= start < end")
    if end > len(text):
        hint = ""
        if offsets == "code_points" and end <= len(text.encode("utf-16-le")) // 2:
            hint = " (within its length in UTF-16 code units: if the tool counts those, set data.corpus.offsets=utf16)"
        raise DataError(f"{where}: {shown}: past the end of the text ({len(text)} characters){hint}")
    if stated is not None and stated != text[start:end]:
        hint = ""
        if offsets == "code_points" and _utf16_slice(text, start, end) == stated:
            hint = "; they match as UTF-16 code units: set data.corpus.offsets=utf16"
        raise DataError(f"{where}: {shown} says its text is {stated!r} but the text there is {text[start:end]!r} "
                        f"(offsets are counted in Unicode code points{hint})")
    return Span(start, end, label)


def _text(record: dict, key: str, where: str) -> str:
    text = record.get(key)
    if not isinstance(text, str):
        raise DataError(f"{where}: expected a {key!r} string, got {type(text).__name__}")
    return text


def doccano_record(record: dict, where: str, offsets: str = "code_points") -> SpanRecord:
    """A doccano record (``label``, ``labels`` or ``entities``)."""
    text = _text(record, "text", where)
    keys = [k for k in _DOCCANO_KEYS if record.get(k)]
    if len(keys) > 1:
        raise DataError(f"{where}: both {keys[0]!r} and {keys[1]!r} hold spans; expected one of them")
    items = record[keys[0]] if keys else []
    if not isinstance(items, list):
        raise DataError(f"{where}: {keys[0]!r}: expected a list of [start, end, label]")
    spans = []
    for item in items:
        if isinstance(item, dict):  # doccano's entities, or Label Studio's JSON-MIN {start, end, text, labels}
            start = item.get("start_offset", item.get("start"))
            end = item.get("end_offset", item.get("end"))
            labels = item["labels"] if isinstance(item.get("labels"), list) and "label" not in item else [item.get("label")]
            spans += [make_span(text, start, end, label, item.get("text"), offsets, where) for label in labels]
        elif isinstance(item, (list, tuple)) and len(item) == 3:
            spans.append(make_span(text, *item, None, offsets, where))
        else:
            raise DataError(f"{where}: {keys[0]!r}: expected [start, end, label] or "
                            f"{{\"start_offset\", \"end_offset\", \"label\"}}, got {item!r} (a text-classification export?)")
    return SpanRecord(text, spans, where)


def spacy_record(record: dict, where: str, offsets: str = "code_points") -> SpanRecord | None:
    """A spaCy/Prodigy record; None for a rejected or ignored Prodigy answer."""
    if record.get("answer") in ("reject", "ignore"):
        return None
    text = _text(record, "text", where)
    items = record.get("spans") or []
    if not isinstance(items, list) or not all(isinstance(s, dict) for s in items):
        raise DataError(f"{where}: 'spans': expected a list of {{\"start\", \"end\", \"label\"}} objects")
    return SpanRecord(text, [make_span(text, s.get("start"), s.get("end"), s.get("label"), s.get("text"), offsets, where)
                             for s in items], where)


def label_studio_task(task: dict, where: str, offsets: str = "code_points", text_key: str = "text") -> SpanRecord | None:
    """A Label Studio task: its first annotation not cancelled; None if it has none."""
    data = task.get("data")
    if not isinstance(data, dict):
        raise DataError(f"{where}: expected a task with a 'data' object")
    if text_key not in data:
        strings = [k for k, v in data.items() if isinstance(v, str)]
        if len(strings) != 1:
            raise DataError(f"{where}: 'data' has no {text_key!r} field (fields: {', '.join(data)}); "
                            "set data.corpus.text_key")
        text_key = strings[0]
    text = _text(data, text_key, f"{where}: data")
    annotations = task.get("annotations", task.get("completions")) or []
    done = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")]
    if not done:
        return None
    spans = []
    for item in done[0].get("result") or []:
        value = item.get("value") if isinstance(item, dict) else None
        if not isinstance(value, dict) or not any(k.endswith("labels") for k in value):
            continue  # choices, relations, text areas: not spans
        labels = next(v for k, v in value.items() if k.endswith("labels"))
        if not isinstance(labels, list) or not labels:
            raise DataError(f"{where}: result {item.get('id', '?')}: expected a non-empty 'labels' list")
        for label in labels:  # two labels on one region become two spans, then an overlap
            spans.append(make_span(text, value.get("start"), value.get("end"), label, value.get("text"), offsets, where))
    return SpanRecord(text, spans, where)


def _jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` of each non-blank line; errors name ``path:line``."""
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[err.start]:02x})") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{lineno}: not a JSON object: {err.msg} at column {err.colno}") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
            yield lineno, record


def _format_of(record: dict) -> str | None:
    if "data" in record and ("annotations" in record or "completions" in record):
        return "label_studio"
    if "spans" in record:
        return "spacy"
    if any(k in record for k in _DOCCANO_KEYS):
        return "doccano"
    return None


def detect_format(path: Path, records: list[tuple[str, dict]]) -> str:
    """The format of a file's records: the first record that says decides."""
    for _, record in records:
        found = _format_of(record)
        if found:
            return found
    raise DataError(f"{path}: cannot tell the format (no record has 'spans', 'label', 'labels', 'entities' or "
                    f"'data' with 'annotations'); set data.corpus.format to one of {FORMATS}")


def read_records(path: str | Path, format: str = "auto", offsets: str = "code_points",
                 text_key: str = "text") -> list[SpanRecord]:
    """The annotated texts of one export file, in file order.

    Args:
        format: ``doccano``, ``label_studio``, ``spacy`` or ``auto`` (from the records' keys).
        offsets: ``code_points`` (Python, doccano, Label Studio, spaCy) or ``utf16``.
        text_key: the text's field (Label Studio: in ``data``; if absent there, its only string field).

    Raises:
        DataError: one line naming ``file:line`` (Label Studio: the task) and what was expected.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if format not in (*FORMATS, "auto") or offsets not in OFFSETS:
        raise DataError(f"data.corpus.format={format!r}, data.corpus.offsets={offsets!r}: expected format among "
                        f"auto, {', '.join(FORMATS)} and offsets among {', '.join(OFFSETS)}")
    if path.suffix == ".json":  # Label Studio: one JSON list of tasks (or of records, as its JSON-MIN export)
        try:
            tasks = json.loads(path.read_text(encoding="utf-8-sig"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataError(f"{path}: not a JSON file ({err}); expected a Label Studio export (a list of tasks)") from None
        if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            raise DataError(f"{path}: expected a list of Label Studio tasks (JSON objects)")
        records = [(f"{path}: task #{i} (id {t.get('id', '?')})", t) for i, t in enumerate(tasks)]
    else:
        records = [(f"{path}:{lineno}", record) for lineno, record in _jsonl(path)]
    if format == "auto":
        format = detect_format(path, records)
    unknown: dict[str, str] = {}
    out, skipped = [], []
    for where, record in records:
        for key in record:
            if key not in _KNOWN[format] and not key.startswith("_"):
                unknown.setdefault(key, where)
        if format == "doccano":
            parsed = doccano_record(record, where, offsets)
        elif format == "spacy":
            parsed = spacy_record(record, where, offsets)
        else:
            parsed = label_studio_task(record, where, offsets, text_key)
        if parsed is None:
            skipped.append(where)
        else:
            out.append(parsed)
    if unknown:
        log.warning("%s: keys not read by the %s reader: %s (first at %s)", path, format, ", ".join(sorted(unknown)),
                    next(iter(unknown.values())))
    if skipped:
        why = "no annotation that was not cancelled" if format == "label_studio" else "answer reject or ignore"
        log.warning("%s: skipped %d records (%s; first: %s)", path, len(skipped), why, skipped[0])
    log.info("%s: %d texts, %d spans (%s)", path, len(out), sum(len(r.spans) for r in out), format)
    return out
