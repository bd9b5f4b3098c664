"""The shapes data takes in llmner: BIO-tagged sentences, character spans and JSON answers.

Everything under ``llmner.data`` produces or consumes these; nothing here knows about models.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from seqeval.metrics.sequence_labeling import get_entities

from llmner.errors import LlmnerError


class DataError(LlmnerError, ValueError):
    """A user-facing data problem. The message names the file, the line and what was expected."""


@dataclass(frozen=True)
class Span:
    """A labelled half-open character span ``text[start:end]``."""

    start: int
    end: int
    label: str


@dataclass
class Sentence:
    """One tagged sequence of words (IOB2 tags, one per word)."""

    tokens: list[str]
    tags: list[str]
    # Where the sentence came from, for error messages and reports (e.g. "train.txt:1204").
    source: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.tokens) != len(self.tags):
            raise DataError(
                f"{self.source or 'sentence'}: {len(self.tokens)} tokens but {len(self.tags)} tags"
            )


def split_tag(tag: str) -> tuple[str, str | None]:
    """``"B-PER" -> ("B", "PER")``, ``"O" -> ("O", None)``. Raises ``DataError`` on anything else."""
    if tag == "O":
        return "O", None
    prefix, sep, label = tag.partition("-")
    if sep and prefix in ("B", "I") and label:
        return prefix, label
    raise DataError(f"tag {tag!r} is not O, B-<type> or I-<type>")


def iob1_to_iob2(tags: list[str]) -> list[str]:
    """Normalise IOB1 (or IOB2) tags to IOB2: an ``I-X`` that does not continue an ``X`` becomes ``B-X``.

    IOB2 input comes back unchanged, so readers apply this unconditionally.
    """
    out: list[str] = []
    prev_label: str | None = None
    for tag in tags:
        prefix, label = split_tag(tag)
        if prefix == "I" and prev_label != label:
            tag = f"B-{label}"
        out.append(tag)
        prev_label = label
    return out


def is_allowed_transition(prev: str | None, tag: str) -> bool:
    """Whether IOB2 allows ``tag`` after ``prev`` (``prev=None`` is the start of a sentence)."""
    prefix, label = split_tag(tag)
    if prefix != "I":
        return True
    return prev is not None and split_tag(prev)[1] == label


def tags_to_spans(tokens: list[str], tags: list[str]) -> list[tuple[int, int, str]]:
    """IOB1 or IOB2 tags to word-index spans ``(start_word, end_word_exclusive, label)``, by seqeval.

    seqeval's ``get_entities`` reads tags as conlleval does: an ``I-X`` that does not continue an
    ``X`` (after ``O``, another type, or at the start) starts an entity, so IOB1 and IOB2 give the
    same spans. Raises ``DataError`` on a tag that is not ``O``, ``B-X`` or ``I-X``.
    """
    for tag in tags:
        split_tag(tag)  # seqeval would read E-/S- tags (IOBES) or warn on junk; here they are errors
    return [(start, end + 1, label) for label, start, end in get_entities(list(tags))]


def tag_set(labels: list[str]) -> list[str]:
    """The IOB2 tag list for entity types ``labels``: ``O`` first, then ``B-``/``I-`` per type, sorted."""
    out = ["O"]
    for label in sorted(set(labels)):
        out += [f"B-{label}", f"I-{label}"]
    return out


def labels_of(sentences: list[Sentence]) -> list[str]:
    """The entity types that occur in ``sentences``, sorted."""
    return sorted({split_tag(t)[1] for s in sentences for t in s.tags if t != "O"})
