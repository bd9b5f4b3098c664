"""Span corpora: annotation-tool exports (``llmner.data.annotations``) as tagged words.

Each text is split into words by the corpus's splitter (``llmner.data.text.split_words``), and
each span becomes IOB2 tags over the words it covers. The rules, in order:

- **Duplicates**: the same span twice (same offsets and label) counts once.
- **Overlapping or nested spans** (``overlapping``): ``error`` (the default) names both spans and
  the record; ``longest`` keeps the longer (then the earlier) and reports how many were left out.
- **Edges inside a word** (``misaligned``): a span edge that falls inside a word is kept when the
  word can be cut there, i.e. the cut does not split a run of letters and digits or a grapheme
  (an emoji sequence, a letter with its accents): "Paris" of "Paris," under the ``whitespace``
  splitter cuts the word in two. Otherwise the span is misaligned: ``error`` (the default) stops
  with the first one's ``file:line``, text and the word it cuts, and the count in that file;
  ``drop`` leaves such spans out and logs the count and the first few. A span is never moved. A span of whitespace alone covers no
  word and counts as misaligned. Whitespace at a span's edges belongs to no word.
- **Empty texts** (nothing but whitespace) give no sentence; they are counted and logged.

Under the default ``punct`` splitter every cut that is allowed is already a word boundary, so the
words of training texts are exactly those of raw text at prediction time; the ``conll`` and
``whitespace`` splitters may cut training words further at span edges.
A long text is one sentence: the model's encoder windows it (``llmner.data.alignment``).
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Mapping
from pathlib import Path

import regex

from llmner.data.annotations import FORMATS, SpanRecord, read_records
from llmner.data.schema import DataError, Sentence, Span
from llmner.data.schemes import entities
from llmner.data.splits import SPLITS, split_by_fractions
from llmner.data.text import Offsets, check_splitter, split_words

log = logging.getLogger(__name__)

SPLIT_ALIASES = {"train": ("train",), "validation": ("validation", "valid", "dev"), "test": ("test",)}
SUFFIXES = {"doccano": (".jsonl",), "spacy": (".jsonl",), "label_studio": (".json",), "auto": (".jsonl", ".json")}
POLICIES = ("error", "drop")


def _graphemes(text: str, start: int, end: int) -> set[int]:
    """The grapheme-cluster boundaries inside ``text[start:end]``."""
    return {m.end() for m in regex.finditer(r"\X", text, pos=start, endpos=end)}


_WORD_CHAR = regex.compile(r"[^\W_]")  # letters, digits and their marks: the runs of the punct splitter


def can_cut(text: str, start: int, end: int, at: int) -> bool:
    """Whether the word ``text[start:end]`` may be cut at ``at`` (``start < at < end``): not inside a
    run of letters and digits (with their combining marks), not inside a grapheme cluster."""
    inside_run = bool(_WORD_CHAR.match(text, at - 1)) and bool(_WORD_CHAR.match(text, at))
    return not inside_run and at in _graphemes(text, start, end)


def span_words(text: str, spans: list[Span], splitter: str) -> tuple[Offsets, dict[Span, str]]:
    """Word offsets of ``text`` (cut where the spans' edges need and allow it), and the spans that
    cannot be placed on whole words (misaligned), each with why."""
    words = split_words(text, splitter)
    starts = [s for s, _ in words]
    cuts: set[int] = set()
    bad: dict[Span, str] = {}
    for span in spans:
        why, need = None if text[span.start:span.end].strip() else "covers whitespace only", set()
        for edge in (span.start, span.end):
            i = bisect.bisect_right(starts, edge) - 1
            if i >= 0 and words[i][0] < edge < words[i][1]:  # inside word i
                if not can_cut(text, *words[i], edge):
                    why = why or f"cuts the word {text[words[i][0]:words[i][1]]!r} at {edge}"
                need.add(edge)
        if why is None:
            cuts |= need
        else:
            bad[span] = why
    out: Offsets = []
    for s, e in words:
        inner = sorted(c for c in cuts if s < c < e)
        out += list(zip([s, *inner], [*inner, e]))
    return out, bad


def spans_to_word_tags(offsets: Offsets, spans: list[Span]) -> list[str]:
    """IOB2 tags of the words at ``offsets`` (in text order) for non-overlapping spans on word edges."""
    tags = ["O"] * len(offsets)
    starts = [s for s, _ in offsets]
    for span in spans:
        i = bisect.bisect_left(starts, span.start)
        first = True
        while i < len(offsets) and offsets[i][1] <= span.end:
            tags[i] = ("B-" if first else "I-") + span.label
            first, i = False, i + 1
    return tags


def word_tags_to_spans(offsets: Offsets, tags: list[str]) -> list[Span]:
    """Character spans of tagged words (any scheme): from the first word's start to the last word's end."""
    return [Span(offsets[s][0], offsets[e - 1][1], label) for s, e, label in entities(tags)]


def first_overlap(spans: list[Span]) -> tuple[Span, Span] | None:
    """The first pair ``(a, b)`` of overlapping spans by start (``a`` the outer one if nested), or None."""
    ordered = sorted(spans, key=lambda s: (s.start, -s.end))
    reach: Span | None = None  # the span reaching furthest right so far
    for span in ordered:
        if reach is not None and span.start < reach.end:
            return reach, span
        if reach is None or span.end > reach.end:
            reach = span
    return None


def _show(text: str, span: Span) -> str:
    return f"[{span.start}, {span.end}) {text[span.start:span.end]!r} ({span.label})"


class SpanCorpus:
    """Texts with character spans from annotation tools, as IOB2-tagged words.

    Args:
        path: a directory with one file per split (``train``, ``validation`` (or ``valid``, ``dev``),
            ``test``; ``.jsonl`` for doccano and spaCy-style, ``.json`` for Label Studio), or one file
            cut into splits by ``split``.
        format: ``auto`` (from each file's keys), ``doccano``, ``label_studio`` or ``spacy``.
        splitter: how texts are split into words (``punct``, ``conll``, ``whitespace``); raw text
            is split the same way at prediction time.
        misaligned: ``error`` or ``drop`` for spans whose edges cut a word (module docstring).
        overlapping: ``error`` or ``longest`` for overlapping and nested spans.
        offsets: ``code_points`` (Python string indices; doccano, Label Studio, spaCy) or ``utf16``.
        text_key: the text's field name.
        split: fractions of the one-file case, e.g. ``{train: 0.8, validation: 0.1, test: 0.1}``.
        seed: the seed of that split.
    """

    scheme = "iob2"  # spans have no tag scheme; predictions are written in IOB2

    def __init__(self, path: str, format: str = "auto", splitter: str = "punct", misaligned: str = "error",
                 overlapping: str = "error", offsets: str = "code_points", text_key: str = "text",
                 split: Mapping[str, float] | None = None, seed: int = 0) -> None:
        if not path:
            raise DataError("data=spans needs data.path: a directory of train/validation/test exports, or one file")
        check_splitter(splitter)
        if misaligned not in POLICIES or overlapping not in ("error", "longest"):
            raise DataError(f"data.corpus.misaligned={misaligned!r}, data.corpus.overlapping={overlapping!r}: "
                            "expected misaligned error|drop and overlapping error|longest")
        if format not in (*FORMATS, "auto"):
            raise DataError(f"data.corpus.format={format!r}: expected auto or one of {', '.join(FORMATS)}")
        self.path, self.format, self.splitter = str(path), format, splitter
        self.misaligned, self.overlapping = misaligned, overlapping
        self.read = dict(format=format, offsets=offsets, text_key=text_key)
        self.fractions = {str(k): float(v) for k, v in (split or {"train": 0.8, "validation": 0.1, "test": 0.1}).items()}
        self.seed = seed

    def files(self) -> dict[str, Path]:
        """``{split: file}`` of a directory (named after the splits, with the format's suffix)."""
        directory = Path(self.path).expanduser()
        found = {}
        for split, names in SPLIT_ALIASES.items():
            hits = [directory / f"{n}{x}" for n in names for x in SUFFIXES[self.format] if (directory / f"{n}{x}").is_file()]
            if hits:
                found[split] = hits[0]
        if not found:
            tried = ", ".join(f"{n}{x}" for names in SPLIT_ALIASES.values() for n in names for x in SUFFIXES[self.format])
            raise DataError(f"{directory}: no split file (looked for {tried})")
        return found

    def load(self) -> dict[str, list[Sentence]]:
        """Split name -> sentences (IOB2 words; ``meta`` holds each text and its word offsets)."""
        path = Path(self.path).expanduser()
        if path.is_dir():
            out = {split: self.sentences(read_records(f, **self.read)) for split, f in self.files().items()}
        elif path.is_file():
            out = split_by_fractions(self.sentences(read_records(path, **self.read)), self.fractions, self.seed)
        else:
            raise DataError(f"{path}: no such file or directory (data.path of data=spans)")
        for split in SPLITS:
            if split in out:
                log.info("%s: %s: %d texts, %d entities", self.path, split, len(out[split]),
                         sum(len(entities(s.tags)) for s in out[split]))
        return out

    def sentences(self, records: list[SpanRecord]) -> list[Sentence]:
        """Tagged sentences of annotated texts, by the rules of the module docstring."""
        out, empty, dropped, left_out = [], [], [], []
        for record in records:
            spans = list(dict.fromkeys(record.spans))  # duplicates count once
            pair = first_overlap(spans)
            if pair is not None and self.overlapping == "error":
                a, b = pair
                raise DataError(f"{record.source}: spans {_show(record.text, a)} and {_show(record.text, b)} overlap; "
                                "expected flat spans (data.corpus.overlapping=longest keeps the longer one)")
            if pair is not None:
                kept: list[Span] = []
                for span in sorted(spans, key=lambda s: (s.start - s.end, s.start)):
                    if any(span.start < k.end and k.start < span.end for k in kept):
                        left_out.append(f"{record.source} {_show(record.text, span)}")
                    else:
                        kept.append(span)
                spans = sorted(kept, key=lambda s: s.start)
            offsets, bad = span_words(record.text, spans, self.splitter)
            dropped += [f"{record.source}: span {_show(record.text, s)} {why}" for s, why in bad.items()]
            if not offsets:
                empty.append(record.source)
                continue
            tags = spans_to_word_tags(offsets, [s for s in spans if s not in bad])
            out.append(Sentence([record.text[s:e] for s, e in offsets], tags, source=record.source,
                                meta={"text": record.text, "offsets": offsets}))
        if dropped and self.misaligned == "error":
            raise DataError(f"{dropped[0]}; expected spans on word edges ({len(dropped)} such spans in this file; "
                            f"data.corpus.misaligned=drop leaves them out, splitter={self.splitter})")
        if dropped:
            log.warning("dropped %d spans not on word edges: %s%s", len(dropped),
                        "; ".join(dropped[:5]), " ..." if len(dropped) > 5 else "")
        if left_out:
            log.warning("left out %d spans nested in or overlapping longer ones (first: %s)", len(left_out), left_out[0])
        if empty:
            log.warning("skipped %d empty texts (first: %s)", len(empty), empty[0])
        return out
