"""Tag heads' predictions on raw text as entities with character offsets and scores.

The one path from emissions to entities, shared by ``TaggerModule.predict`` and any other runtime
that produces the same emissions (an exported model): nothing here needs a LightningModule.

- ``score_windows``: a batch of windows' emissions (B, W, K) -> each window's tags and what scores
  its spans (``ScoredWindow``): the CRF's forward-backward lattice, or the linear head's softmax.
- ``text_entities``: one text's windows (in word order) + its word offsets -> entities
  ``{"type", "text", "start", "end", "score"}`` in text order, ``text[start:end] == entity text``.
- ``predict_entities``: texts -> windows -> batches -> entities, given the encoder and a forward function.

Scores: with a CRF, the marginal probability of exactly this span (B-X at its first word, I-X on
the others, and no I-X after it) under the window's CRF, by forward-backward
(``llmner.heads.marginals``); with the linear head, the mean over the span's words of the softmax
probability of the tag each word got.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from llmner.data.schema import tags_to_spans
from llmner.data.text import Offsets, trim_value
from llmner.heads.marginals import CRFLattice, crf_lattices

Entity = dict  # {"type": str, "text": str, "start": int, "end": int, "score": float | None}


@dataclass
class ScoredWindow:
    """The words one window owns: where they start in the text, their tag ids, and a scorer.

    Attributes:
        offset: the text's word index of the window's first owned word.
        tags: a tag id per owned word.
        probs: the linear head's softmax probability of each word's tag (None with a CRF).
        lattice: the CRF's forward-backward tables over the owned words (None for the linear head).
    """

    offset: int
    tags: list[int]
    probs: list[float] | None = None
    lattice: CRFLattice | None = None


def score_windows(head, emissions: torch.Tensor, mask: torch.Tensor, offsets: list[int]) -> list[ScoredWindow]:
    """Decode a batch of windows and keep what scores their spans.

    Args:
        head: a ``LinearHead`` or ``CRFHead`` (a head with a ``crf`` is scored by its CRF).
        emissions: (B, W, K) the head's emissions for the owned words; mask: (B, W) real words.
        offsets: per row, the text's word index of its first owned word.
    """
    tags = head.decode(emissions, mask)
    crf = getattr(head, "crf", None)
    if crf is not None:
        lattices = crf_lattices(emissions, mask, crf.start_transitions, crf.end_transitions, crf.transitions)
        return [ScoredWindow(o, t, lattice=lat) for o, t, lat in zip(offsets, tags, lattices)]
    probs = emissions.float().softmax(-1)  # (B, W, K)
    out = []
    for o, t, p in zip(offsets, tags, probs):
        chosen = p[: len(t)].gather(1, torch.tensor(t, dtype=torch.long, device=p.device).unsqueeze(1))  # (n, 1)
        out.append(ScoredWindow(o, t, probs=chosen.squeeze(1).tolist()))
    return out


def _span_score(windows: list[ScoredWindow], start: int, end: int, label: str, tag_id: dict[str, int]) -> float:
    """The score of the entity over text words [start, end) (see the module docstring)."""
    if all(w.lattice is None for w in windows):
        probs = [p for w in windows for p in (w.probs or [])]
        return sum(probs[start:end]) / (end - start)
    # CRF: the product over the windows the span lies in (one, unless the linear head's reading of a
    # window that starts with I-X joined it to the previous window's entity); each part keeps its tags
    log_p = 0.0
    inside = tag_id.get(f"I-{label}")
    for w in windows:
        lo, hi = max(start, w.offset), min(end, w.offset + len(w.tags))
        if lo < hi:
            closes = hi == end
            log_p += w.lattice.segment_log_prob(lo - w.offset, w.tags[lo - w.offset : hi - w.offset],
                                                inside if closes else None)
    return min(1.0, math.exp(log_p))  # float64 rounding never makes a probability of 1 + 1e-16


def window_span_scores(window: ScoredWindow, tags: list[str], labels: set[str]) -> dict[int, float]:
    """The score of each span of ``labels`` in one window's tags, keyed by its first word in the window (as
    ``text_entities`` scores it); what an evaluation keeps of a window to rank spans later (``llmner.heads.single``)."""
    names = [tags[t] for t in window.tags]
    tag_id = {t: i for i, t in enumerate(tags)}
    local = ScoredWindow(0, window.tags, window.probs, window.lattice)
    return {start: _span_score([local], start, end, label, tag_id)
            for start, end, label in tags_to_spans([""] * len(names), names) if label in labels}


def text_entities(text: str, offsets: Offsets, windows: list[ScoredWindow], tags: list[str]) -> list[Entity]:
    """Entities of one text from its scored windows (any order; each word owned by one window).

    Spans are read from the whole text's tags as ``tags_to_spans`` reads them (IOB1 or IOB2), then
    lose the sentence's punctuation at their edges (``trim_value``: the offsets are those of the
    trimmed text); a span of punctuation alone is dropped. Every entity is kept, repeated values too.

    Args:
        text: the input text; offsets: ``(start, end)`` of each of its words.
        windows: the windows that own the text's words; tags: the tag list (index = tag id).
    """
    windows = sorted(windows, key=lambda w: w.offset)
    names = [tags[t] for w in windows for t in w.tags]
    if len(names) != len(offsets):
        raise ValueError(f"{len(names)} tags for {len(offsets)} words")
    tag_id = {t: i for i, t in enumerate(tags)}
    out = []
    for start, end, label in tags_to_spans([""] * len(names), names):
        first, last = trim_value(text, offsets[start][0], offsets[end - 1][1])
        if first < last:
            score = _span_score(windows, start, end, label, tag_id)
            out.append({"type": label, "text": text[first:last], "start": first, "end": last, "score": score})
    return out


def length_batches(windows: list, batch_size: int, padding: float = 0.25) -> list[list]:
    """``windows`` longest first, in batches of at most ``batch_size`` whose padding adds at most
    ``padding`` of their real tokens (a new batch starts where it would add more).

    A corpus sorted by length pads little in any batch of neighbours; a few texts of very different
    lengths (the requests a server merges) would otherwise all be padded to the longest.
    """
    out: list[list] = []
    real = 0
    for w in sorted(windows, key=lambda w: -len(w.input_ids)):
        n = len(w.input_ids)
        if out and len(out[-1]) < batch_size and len(out[-1][0].input_ids) * (len(out[-1]) + 1) <= (1 + padding) * (real + n):
            out[-1].append(w)
            real += n
        else:
            out.append([w])
            real = n
    return out


def predict_entities(texts: list[str], encoder, forward: Callable[[dict], torch.Tensor], head,
                     batch_size: int = 32, device: torch.device | str = "cpu") -> list[list[Entity]]:
    """Entities of each text, in text order.

    Texts are split into words by ``encoder`` (a ``WindowEncoder``: its splitter, then windows as in
    training); windows of all texts are batched together, longest first (``length_batches``), and
    every word gets one tag.

    Args:
        forward: a collated batch (on ``device``) -> emissions (B, W, K) of its owned words.
        head: scores and decodes the emissions (``score_windows``).
    """
    windows, offsets = encoder.encode_texts(list(texts))
    scored: dict[int, list[ScoredWindow]] = {}
    for chunk in length_batches(windows, batch_size):
        batch = {k: v.to(device) for k, v in encoder.collate(chunk).items()}
        for w, s in zip(chunk, score_windows(head, forward(batch), batch["word_mask"], [w.offset for w in chunk])):
            scored.setdefault(w.sentence, []).append(s)
    return [text_entities(text, offsets[k], scored.get(k, []), head.tags) for k, text in enumerate(texts)]
