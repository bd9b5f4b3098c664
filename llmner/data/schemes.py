"""Tag schemes: IOB1, IOB2, IOBES (BIOES) and BILOU in, IOB2 inside, the input's scheme back out.

Everything below the readers works in IOB2. Readers convert with ``to_iob2`` and remember the scheme,
so that ``test_predictions.conll`` can be written back in it (``from_iob2``).

Tags are read as conlleval reads them (``seqeval``'s ``get_entities``, its conlleval-compatible
mode, with BILOU's ``L-``/``U-`` read as ``E-``/``S-``): an ``I-X`` after ``O`` starts an entity, an
``E-X`` ends one, ``S-X`` is one word. Entities are therefore the same whatever the scheme, and a
sequence that is ill-formed for its scheme (``B-X O`` in IOBES) is read as the official scorer
reads it; ``check_sentences`` counts such sequences so that they are reported, not silently fixed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from seqeval.metrics.sequence_labeling import get_entities

from llmner.data.schema import DataError, Sentence

log = logging.getLogger(__name__)

# The prefixes each scheme allows (besides the bare "O").
PREFIXES = {"iob1": "BI", "iob2": "BI", "iobes": "BIES", "bilou": "BILU"}
ALIASES = {"bioes": "iobes", "bilou": "bilou", "biluo": "bilou", "iob": "iob2", "bio": "iob2"}
SCHEMES = tuple(PREFIXES)


def normalize_scheme(name: str | None) -> str:
    """``"BIOES"`` -> ``"iobes"``; ``None`` or ``"auto"`` -> ``"auto"``. Raises ``DataError`` otherwise."""
    if name is None:
        return "auto"
    key = str(name).lower()
    key = ALIASES.get(key, key)
    if key != "auto" and key not in PREFIXES:
        raise DataError(f"data.corpus.scheme={name!r}: expected auto, iob1, iob2, iobes (bioes) or bilou")
    return key


def parse_tag(tag: str) -> tuple[str, str | None]:
    """``"E-PER" -> ("E", "PER")``, ``"O" -> ("O", None)``. Raises ``DataError`` on anything else."""
    if tag == "O":
        return "O", None
    prefix, sep, label = tag.partition("-")
    if sep and len(prefix) == 1 and prefix in "BIELSU" and label:
        return prefix, label
    raise DataError(f"tag {tag!r} is not O, B-<type> or I-<type> (IOB1, IOB2), nor E-/S- (IOBES) or L-/U- (BILOU)")


def check_tag(tag: str, scheme: str = "auto") -> None:
    """Raise ``DataError`` (the tag and what was expected) if ``tag`` does not belong to ``scheme``."""
    prefix, _ = parse_tag(tag)
    if prefix != "O" and scheme != "auto" and prefix not in PREFIXES[scheme]:
        allowed = ", ".join(f"{p}-<type>" for p in PREFIXES[scheme])
        raise DataError(f"tag {tag!r} is not in the {scheme.upper()} scheme (O, {allowed}); set data.corpus.scheme to the "
                        f"file's scheme or to auto")


def entities(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """Word spans ``(start, end_exclusive, label)`` of tags in any scheme, read as conlleval reads them."""
    mapped = [{"L": "E", "U": "S"}.get(t[0], t[0]) + t[1:] if t != "O" else t for t in tags]
    return [(start, end + 1, label) for label, start, end in get_entities(mapped)]


def from_spans(n: int, spans: Sequence[tuple[int, int, str]], scheme: str) -> list[str]:
    """``n`` tags in ``scheme`` for non-overlapping word spans ``(start, end_exclusive, label)``."""
    tags = ["O"] * n
    last_end: dict[int, str] = {}  # end -> label of the span ending there (IOB1's B- rule)
    for start, end, label in sorted(spans):
        if scheme in ("iobes", "bilou") and end - start == 1:
            tags[start] = ("S-" if scheme == "iobes" else "U-") + label
            continue
        if scheme == "iob1":  # B- only where the previous word ends an entity of the same type
            first = "B-" if last_end.get(start) == label else "I-"
        else:
            first = "B-"
        tags[start] = first + label
        for i in range(start + 1, end):
            tags[i] = "I-" + label
        if scheme in ("iobes", "bilou"):
            tags[end - 1] = ("E-" if scheme == "iobes" else "L-") + label
        last_end[end] = label
    return tags


def to_iob2(tags: Sequence[str]) -> list[str]:
    """IOB2 tags for tags in any scheme (the same entities, as conlleval reads them)."""
    return from_spans(len(tags), entities(tags), "iob2")


def from_iob2(tags: Sequence[str], scheme: str) -> list[str]:
    """IOB2 tags (well-formed or not) written in ``scheme``; IOB2 comes back unchanged."""
    if scheme in ("iob2", "auto"):
        return list(tags)
    return from_spans(len(tags), entities(tags), scheme)


def well_formed(tags: Sequence[str], scheme: str) -> bool:
    """Whether ``tags`` are exactly what ``scheme`` writes for their entities."""
    return list(tags) == from_spans(len(tags), entities(tags), scheme)


def detect_scheme(sequences: Sequence[Sequence[str]], sources: Sequence[str] | None = None) -> str:
    """The scheme of tag sequences: BILOU if any ``L-``/``U-``, IOBES if any ``E-``/``S-``, otherwise
    IOB1 or IOB2, whichever more sequences are well-formed in (IOB2 on a tie, e.g. no entities).

    Raises:
        DataError: if both ``E-``/``S-`` and ``L-``/``U-`` tags occur (two schemes mixed), naming the
            first sequence with each (``sources``: where each sequence comes from).
    """
    prefixes = {t[0] for seq in sequences for t in seq if t != "O"}
    if prefixes & set("LU") and prefixes & set("ES"):
        where = sources or [f"sequence {i}" for i in range(len(sequences))]
        first = [next(src for seq, src in zip(sequences, where) if any(t[0] in group and t != "O" for t in seq))
                 for group in ("ES", "LU")]
        raise DataError(f"the tags mix IOBES (E-, S-; first at {first[0]}) and BILOU (L-, U-; first at {first[1]}) "
                        "prefixes; set data.corpus.scheme")
    if prefixes & set("LU"):
        return "bilou"
    if prefixes & set("ES"):
        return "iobes"
    iob1 = iob2 = 0
    for seq in sequences:
        if any(t != "O" for t in seq):
            iob1 += well_formed(seq, "iob1")
            iob2 += well_formed(seq, "iob2")
    return "iob1" if iob1 > iob2 else "iob2"


def check_sentences(sequences: Sequence[Sequence[str]], sources: Sequence[str], scheme: str, what: str) -> None:
    """Log how many sequences are ill-formed for ``scheme`` (and where the first is); they are read as
    conlleval reads them, which ``to_iob2`` does. ``what`` names the data for the message."""
    bad = [src for seq, src in zip(sequences, sources) if not well_formed(seq, scheme)]
    if bad:
        log.warning("%s: %d of %d sentences are not well-formed %s (first: %s); read as conlleval reads them",
                    what, len(bad), len(sequences), scheme.upper(), bad[0])


def resolve_scheme(sequences: Sequence[Sequence[str]], sources: Sequence[str], scheme: str | None, what: str) -> str:
    """The scheme to read ``sequences`` with: ``scheme`` if given, else detected (and logged)."""
    scheme = normalize_scheme(scheme)
    if scheme == "auto":
        scheme = detect_scheme(sequences, sources)
        log.info("%s: tag scheme %s (detected; set data.corpus.scheme to choose)", what, scheme.upper())
    return scheme


def sentences_to_iob2(sentences: list[Sentence], scheme: str | None, what: str) -> tuple[list[Sentence], str]:
    """Sentences whose tags are in ``scheme`` (``auto``/``None``: detected over all of them) with IOB2
    tags instead, and the scheme they were in. Ill-formed sequences are reported (``check_sentences``)."""
    sequences = [s.tags for s in sentences]
    sources = [s.source for s in sentences]
    scheme = resolve_scheme(sequences, sources, scheme, what)
    check_sentences(sequences, sources, scheme, what)
    return [Sentence(s.tokens, to_iob2(s.tags), s.source, s.meta) for s in sentences], scheme


def splits_to_iob2(splits: dict[str, list[Sentence]], scheme: str | None, what: str) -> tuple[dict[str, list[Sentence]], str]:
    """``sentences_to_iob2`` over every split at once (one scheme, detected on all the data)."""
    names = list(splits)
    converted, scheme = sentences_to_iob2([s for name in names for s in splits[name]], scheme, what)
    out, i = {}, 0
    for name in names:
        out[name] = converted[i:i + len(splits[name])]
        i += len(splits[name])
    return out, scheme
