"""One span per text for the types that hold one value (a report's date, its summary): keep the best-scored one.

A tagger decodes each window on its own, and a linear-chain CRF cannot know that a report has one
Crime_Date: on prose it tags a second date (the filing date, a court date) as readily as the first.
Where the training texts (almost) never hold a type twice, the decoder can say so: of the spans one
text gets of such a type, the one with the highest score stays and the others become ``O``. The score
is the one predictions carry (``llmner.heads.spans``: the CRF's marginal probability of the span, or
the linear head's mean tag probability).

It is a step over the whole text after decoding, not a constraint inside Viterbi: a long text's windows
are decoded apart, and the constraint spans them. seqeval and nervaluate score spans but do not
decode them, and no tagging library offers this, hence the few lines here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from llmner.data.schema import Sentence, tags_to_spans

#: ``auto``: a type is single when at most this share of the training texts that hold it hold it twice
#: (a rare text with two values is an exception, not the rule)
TOLERANCE = 0.01


def single_types(sentences: Iterable[Sentence], tolerance: float = TOLERANCE) -> list[str]:
    """The types that at most ``tolerance`` of the texts holding them hold more than once, sorted.

    Args:
        sentences: training texts with gold tags (IOB1 or IOB2); a type none of them holds is not listed.
    """
    holding: Counter = Counter()
    repeated: Counter = Counter()
    for sentence in sentences:
        counts = Counter(label for _, _, label in tags_to_spans(sentence.tokens, sentence.tags))
        for label, n in counts.items():
            holding[label] += 1
            repeated[label] += n > 1
    return sorted(t for t in holding if repeated[t] <= tolerance * holding[t])


def outranked(spans: list[tuple[str, float]], types: Iterable[str]) -> set[int]:
    """Indices of the spans ``(type, score)`` of one text, in text order, that lose to another span of the
    same single type: of each of ``types`` the best-scored one stays (ties: the first)."""
    single = set(types)
    best: dict[str, int] = {}
    for i, (kind, score) in enumerate(spans):
        if kind in single and (kind not in best or score > spans[best[kind]][1]):
            best[kind] = i
    return {i for i, (kind, _) in enumerate(spans) if kind in best and best[kind] != i}


def keep_best_tags(tags: list[str], scores: Mapping[int, float], types: Iterable[str]) -> list[str]:
    """``tags`` with each of ``types`` down to its best-scored span; the other spans of it become ``O``.

    Args:
        tags: one text's word tags (IOB1 or IOB2).
        scores: the score of each predicted span, keyed by its first word (a span without one scores 0).
        types: the single types. Ties keep the first span in text order.
    """
    spans = tags_to_spans([""] * len(tags), tags)
    out = list(tags)
    for i in outranked([(label, scores.get(start, 0.0)) for start, _, label in spans], types):
        start, end, _ = spans[i]
        out[start:end] = ["O"] * (end - start)
    return out


def keep_best_entities(entities: list[dict], types: Iterable[str]) -> list[dict]:
    """``entities`` of one text (``{"type", "score", ...}``) without those of ``types`` that a
    higher-scored entity of the same type outranks (ties: the first in text order stays); order kept."""
    lost = outranked([(e["type"], e["score"] or 0.0) for e in entities], types)
    return [e for i, e in enumerate(entities) if i not in lost]
