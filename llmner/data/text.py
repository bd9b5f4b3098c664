"""Raw text and words: word splitters with character offsets, placing answer values on words.

The one owner of two rules that every path must apply the same way:

- **Word splitting** of raw text (``split_words``). A model must see raw text split as its training
  data was: a CoNLL-trained model reads "U.S." as one word, a crime-report model reads "#1457" as
  "#" and "1457". Each corpus names its splitter (``ConllCorpus.splitter == "conll"``, the crime
  corpora ``"punct"``); the model's encoder stores it in the checkpoint.
- **Placing values on words** (``locate_values``, ``values_to_tags``): the importer places gold
  answer values of conversation files, the generative head its predicted values, by the same rule;
  and back (``spans_to_answers``): tagged words become values without the sentence's punctuation
  at their edges (``trim_value``: "14 Elm Street." -> "14 Elm Street", "969 3rd Rd." stays);
  ``group_entities`` gives entities with offsets (``llmner.heads.spans``) the same grouped view.

Why by hand: the splitters are two regexes (nltk's Treebank tokenizer would be a dependency for
one rule and splits "U.S." at the end of a sentence); the value-placing rule is this project's
annotation convention (``llmner/data/crime/__init__.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import regex

from llmner.data.schema import DataError, Span, tags_to_spans

Offsets = list[tuple[int, int]]

# --- word splitters ----------------------------------------------------------------------------
# Letters and digits in runs; any other visible character alone, a whole grapheme at a time (an
# emoji flag or a letter with combining marks is one character to a reader, and one word here).
_PUNCT_WORD = regex.compile(r"[^\W_]+|(?=\S)\X")
# CoNLL-2003 (Penn Treebank style): whitespace-separated chunks, with leading/trailing punctuation
# and a final possessive "'s" split off. Internal punctuation stays ("1,000", "e-mail", "U.S.").
_LEAD = "\"'([{`"
_TRAIL = "\"')]}.,;:!?`"
_ABBREVIATION = re.compile(r"^(?:[A-Za-z]\.)+[A-Za-z]?$|^(?:Mr|Mrs|Ms|Dr|Jr|Sr|St|Inc|Corp|Co|Ltd|Bros|Gen|Gov|Sen|Rep|"
                           r"Rev|Prof|Capt|Lt|Col|Sgt|No|vs|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)$")


def _conll_chunk(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Split one whitespace-free chunk ``text[start:end]`` the CoNLL way."""
    head: list[tuple[int, int]] = []
    while start < end - 1 and text[start] in _LEAD:
        head.append((start, start + 1))
        start += 1
    tail: list[tuple[int, int]] = []
    while end - 1 > start and text[end - 1] in _TRAIL:
        if text[end - 1] == "." and _ABBREVIATION.match(text[start:end - 1]):
            break  # "U.S." and "Inc." keep their full stop
        tail.append((end - 1, end))
        end -= 1
    if end - start > 2 and text[end - 2:end].lower() == "'s":
        tail.append((end - 2, end))
        end -= 2
    yield from head
    yield (start, end)
    yield from reversed(tail)


def split_words(text: str, splitter: str = "punct") -> Offsets:
    """``(start, end)`` of each word of ``text``.

    Args:
        splitter: ``punct`` (letters and digits in runs, any other character alone: the crime
            reports' rule), ``conll`` (whitespace, then punctuation at word edges split off, as
            CoNLL-2003 is tokenized) or ``whitespace``.
    """
    if splitter == "punct":
        return [m.span() for m in _PUNCT_WORD.finditer(text)]
    chunks = [m.span() for m in re.finditer(r"\S+", text)]
    if splitter == "whitespace":
        return chunks
    if splitter == "conll":
        return [span for s, e in chunks for span in _conll_chunk(text, s, e)]
    raise ValueError(f"word splitter must be one of {SPLITTERS}, got {splitter!r}")


SPLITTERS = ("punct", "conll", "whitespace")


def join_words(words: list[str]) -> tuple[str, Offsets]:
    """The text of pre-split words joined by single spaces, and each word's offsets in it."""
    offsets, pos = [], 0
    for w in words:
        offsets.append((pos, pos + len(w)))
        pos += len(w) + 1
    return " ".join(words), offsets


# --- values <-> words ----------------------------------------------------------------------------
def at_word_edges(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` does not cut a run of letters and digits at either end."""
    cut_left = start > 0 and text[start - 1].isalnum() and text[start].isalnum()
    cut_right = end < len(text) and text[end - 1].isalnum() and text[end].isalnum()
    return not (cut_left or cut_right)


def _needle(value: object) -> str | None:
    """The text to search for an answer value (integers as their digits); None if it is not searchable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _candidates(text: str, needle: str) -> Iterator[tuple[int, int, bool]]:
    """Occurrences ``(start, end, at_word_edges)``: exact, then case- and whitespace-insensitive,
    then (``at_word_edges=False``) anywhere. The regex is built only when the exact search is not enough."""
    start = text.find(needle)
    while start >= 0:
        if at_word_edges(text, start, start + len(needle)):
            yield start, start + len(needle), True
        start = text.find(needle, start + 1)
    loose = re.compile(r"\s+".join(re.escape(part) for part in needle.split()), re.IGNORECASE)
    matches = [m.span() for m in loose.finditer(text)]
    yield from ((s, e, True) for s, e in matches if at_word_edges(text, s, e))
    yield from ((s, e, False) for s, e in matches if not at_word_edges(text, s, e))


def _place(text: str, label: str, needle: str, spans: list[Span]) -> Span | None:
    seen: list[Span] = []
    for start, end, at_edges in _candidates(text, needle):
        span = Span(start, end, label)
        if at_edges and not any(start < s.end and s.start < end for s in spans):
            return span  # the first free occurrence
        seen.append(span)
    # every occurrence is covered: nest inside the first one that is not this very span already
    return next((span for span in seen if span not in spans), None)


def locate_values(text: str, answers: dict[str, list], order: list[str] | None = None,
                  every: bool = False) -> tuple[list[Span], list[tuple[str, object]]]:
    """Character spans of answer values in ``text``: one rule for gold answers and predictions.

    1. Values are placed longest first (ties: the type's place in ``order``, default the order of
       ``answers``; then answer order), so that a short value such as an age "35" is not taken
       from inside a longer one such as "35 Elm Street" or "14:35".
    2. A value matches at word edges first: "35" does not match inside "356".
    3. Each value takes the first occurrence that no placed span overlaps, exact text first, then
       case- and whitespace-insensitive. A value listed k times takes the first k occurrences.
    4. If every occurrence is covered, the value nests inside the first one (word tags then keep
       the longer span); as a last resort it may match inside a word.
    5. Integers are searched as their digits. A value found nowhere (or not a string or integer)
       is returned in the second list, never silently dropped.
    6. ``every=True`` (the "every mention" convention) then also labels each further occurrence of
       a placed value that is at word edges and overlaps no placed span, values again longest
       first: a victim named twice is tagged twice. The default labels a value listed once once.

    Returns:
        ``(spans sorted by start, [(label, value) not found])``.
    """
    rank = {label: i for i, label in enumerate(order if order is not None else answers)}
    items = []
    for label, values in answers.items():
        for value in values:
            needle = _needle(value)
            items.append((-len(needle or ""), rank.get(label, len(rank)), len(items), label, value, needle))
    spans: list[Span] = []
    missing: list[tuple[str, object]] = []
    for *_, label, value, needle in sorted(items, key=lambda t: t[:3]):
        span = _place(text, label, needle, spans) if needle else None
        if span is None:
            if not needle or not any(s.label == label and text[s.start:s.end] == needle for s in spans):
                missing.append((label, value))
        elif span not in spans:
            spans.append(span)
    if every:
        ranked = dict.fromkeys((label, needle) for *_, label, _, needle in sorted(items, key=lambda t: t[:3]) if needle)
        for label, needle in ranked:  # longest first, a value listed twice once
            for start, end, at_edges in _candidates(text, needle):
                if at_edges and not any(start < s.end and s.start < end for s in spans):
                    spans.append(Span(start, end, label))
    return sorted(spans, key=lambda s: (s.start, s.end)), missing


def values_to_entities(text: str, answers: dict[str, list], keys: list[str] | None = None) -> tuple[list[dict], list[tuple[str, object]]]:
    """Answer values placed in ``text`` (``locate_values``) as entities ``{"type", "text", "start",
    "end", "score": None}`` in text order, ``text[start:end]`` as written in the text; and the
    ``(type, value)`` pairs found nowhere."""
    spans, missing = locate_values(text, answers, keys)
    entities = [{"type": s.label, "text": text[s.start:s.end], "start": s.start, "end": s.end, "score": None}
                for s in spans]
    return entities, missing


def spans_to_tags(offsets: Offsets, spans: list[Span]) -> list[str]:
    """IOB2 tags over the words at ``offsets``: a span covers every word it overlaps; where spans
    overlap, the longer one (then the earlier one) keeps the words."""
    tags = ["O"] * len(offsets)
    for span in sorted(spans, key=lambda s: (s.start - s.end, s.start)):
        words = [i for i, (s, e) in enumerate(offsets) if s < span.end and span.start < e]
        if any(tags[i] != "O" for i in words):
            continue
        for n, i in enumerate(words):
            tags[i] = ("B-" if n == 0 else "I-") + span.label
    return tags


def values_to_tags(text: str, offsets: Offsets, answers: dict[str, list], keys: list[str] | None = None) -> list[str]:
    """IOB2 tags over the words at ``offsets`` for the values in ``answers`` (``locate_values``;
    values not in the text are skipped)."""
    spans, _ = locate_values(text, answers, keys)
    return spans_to_tags(offsets, spans)


def dedup(values: list) -> list:
    """The values once each, in order of first occurrence."""
    return list(dict.fromkeys(values))


# A full stop that ends one of these stays on a value ("969 3rd Rd.", "Acme Corp.", "9:25 p.m."): the
# conll splitter's abbreviations, and those of street addresses.
_ADDRESS_ABBREVIATION = re.compile(r"^(?:Ave|Blvd|Rd|Ln|Ct|Pl|Hwy|Pkwy|Sq|Ste|Apt|Mt|Ft|Dept|Ter|Cres)$")
_SENTENCE_PUNCT = ".,;:!?"
_CLOSERS = {")": "(", "]": "[", "}": "{"}


def _ends_abbreviation(text: str, start: int, dot: int) -> bool:
    """Whether the full stop at ``dot`` ends an abbreviation that starts after ``start``."""
    run = re.search(r"[A-Za-z.]*[A-Za-z]$", text[start:dot])  # "a.m" of "9:25a.m", "Corp" of "Acme Corp"
    return bool(run) and bool(_ABBREVIATION.match(run.group()) or _ADDRESS_ABBREVIATION.match(run.group()))


def _unmatched(text: str, start: int, end: int, char: str) -> bool:
    """Whether the bracket or double quote ``char`` has no partner in ``text[start:end]``."""
    if char == '"':
        return text.count('"', start, end) % 2 == 1
    opener = _CLOSERS.get(char)
    if opener is not None:
        return text.count(opener, start, end) < text.count(char, start, end)
    closer = {v: k for k, v in _CLOSERS.items()}[char]
    return text.count(closer, start, end) < text.count(char, start, end)


def trim_value(text: str, start: int, end: int) -> tuple[int, int]:
    """``(start, end)`` of the value ``text[start:end]`` without the punctuation at its edges that
    belongs to the sentence around it.

    A word tagger tags words, and the punct splitter makes the full stop after "14 Elm Street" a word
    of its own: a value ends before a trailing ``.,;:!?`` (a full stop that ends an abbreviation,
    "Rd." or "p.m.", stays) and before an unmatched closing bracket or quote (an inch mark after a
    digit, 5'9", stays); it starts after a leading ``,;:`` or an unmatched opening bracket or quote;
    brackets or quotes around the whole value go.
    """
    while True:
        before = (start, end)
        while start < end and (text[end - 1].isspace() or (text[end - 1] in _SENTENCE_PUNCT and not (
                text[end - 1] == "." and _ends_abbreviation(text, start, end - 1)))):
            end -= 1
        while start < end and (text[start].isspace() or text[start] in ",;:"):
            start += 1
        if start >= end:
            return start, end
        first, last = text[start], text[end - 1]
        inch = last == '"' and text[end - 2:end - 1].isdigit()
        if (last in _CLOSERS or last == '"') and not inch and _unmatched(text, start, end, last):
            end -= 1
        elif first in "([{\"" and _unmatched(text, start, end, first):
            start += 1
        elif end - start > 1 and (_CLOSERS.get(last) == first or (first == last == '"' and not inch)):
            start, end = start + 1, end - 1  # "(Oak Park)", "\"Anna Berg\""
        if (start, end) == before:
            return start, end


def spans_to_answers(text: str, offsets: Offsets, tags: list[str], keys: list[str]) -> dict[str, list[str]]:
    """``{type: [text slices]}`` (every key, values once each in order) from IOB2 word tags, each
    value without the sentence's punctuation at its edges (``trim_value``)."""
    out: dict[str, list[str]] = {k: [] for k in keys}
    for start, end, label in tags_to_spans([""] * len(tags), tags):
        first, last = trim_value(text, offsets[start][0], offsets[end - 1][1])
        if first < last:  # a value of punctuation alone is no value
            out.setdefault(label, []).append(text[first:last])
    return {k: dedup(v) for k, v in out.items()}


def group_entities(entities: list[dict], keys: list[str]) -> dict[str, list[str]]:
    """The grouped view of entities ``{"type", "text", ...}``: ``{type: [texts]}`` with every key
    (then any other type met), each value once, in the entities' order."""
    out: dict[str, list[str]] = {k: [] for k in keys}
    for e in entities:
        out.setdefault(e["type"], []).append(e["text"])
    return {k: dedup(v) for k, v in out.items()}


def check_splitter(name: str | None) -> None:
    """Raise ``DataError`` for an unknown splitter name (``None`` means "the corpus decides")."""
    if name is not None and name not in SPLITTERS:
        raise DataError(f"word splitter {name!r} is not one of {SPLITTERS}")
