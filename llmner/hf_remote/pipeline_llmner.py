"""llmner's token-classification pipeline as transformers custom code; needs torch, transformers and regex only.

``pipeline("token-classification", model=DIR, trust_remote_code=True)`` on a directory written by
``llmner.export`` runs this class (``config.custom_pipelines``), which reads text as llmner does:
words by the training corpus's splitter, each word's subwords encoded as in running text, windows
of ``max_length`` subwords overlapping by ``context_words`` words (each word predicted in one
window only), each window given ``repeat`` times; the model (``modeling_llmner``) gives per-word
emissions and decodes them (CRF Viterbi or argmax). The output is the pipeline's aggregated form:
one ``{"entity_group", "score", "word", "start", "end"}`` per entity, ``text[start:end] == word``,
``score`` the mean softmax probability of its words' tags.

The splitters and the window planner are copies of ``llmner.data.text.split_words`` and
``llmner.data.alignment.plan_windows`` (a directory must run without llmner);
``tests/test_hf_remote.py`` checks that the copies agree with the originals.
"""

from __future__ import annotations

import re

import regex
import torch
from transformers import Pipeline

_PUNCT_WORD = regex.compile(r"[^\W_]+|(?=\S)\X")
_LEAD = "\"'([{`"
_TRAIL = "\"')]}.,;:!?`"
_ABBREVIATION = re.compile(r"^(?:[A-Za-z]\.)+[A-Za-z]?$|^(?:Mr|Mrs|Ms|Dr|Jr|Sr|St|Inc|Corp|Co|Ltd|Bros|Gen|Gov|Sen|Rep|"
                           r"Rev|Prof|Capt|Lt|Col|Sgt|No|vs|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)$")


def _conll_chunk(text: str, start: int, end: int):
    head = []
    while start < end - 1 and text[start] in _LEAD:
        head.append((start, start + 1))
        start += 1
    tail = []
    while end - 1 > start and text[end - 1] in _TRAIL:
        if text[end - 1] == "." and _ABBREVIATION.match(text[start:end - 1]):
            break
        tail.append((end - 1, end))
        end -= 1
    if end - start > 2 and text[end - 2:end].lower() == "'s":
        tail.append((end - 2, end))
        end -= 2
    yield from head
    yield (start, end)
    yield from reversed(tail)


def split_words(text: str, splitter: str = "punct") -> list[tuple[int, int]]:
    """``(start, end)`` of each word: ``punct``, ``conll`` or ``whitespace`` (llmner's splitters)."""
    if splitter == "punct":
        return [m.span() for m in _PUNCT_WORD.finditer(text)]
    chunks = [m.span() for m in re.finditer(r"\S+", text)]
    if splitter == "whitespace":
        return chunks
    return [span for s, e in chunks for span in _conll_chunk(text, s, e)]


def plan_windows(word_lengths: list[int], budget: int, context: int) -> list[tuple[int, int, int, int]]:
    """``(start, end, own_start, own_end)`` windows covering the words, each word owned once."""
    n, windows, own_start = len(word_lengths), [], 0
    while own_start < n:
        start = max(0, own_start - context) if windows else 0
        while start < own_start and sum(word_lengths[start : own_start + 1]) > budget:
            start += 1
        end, total = start, 0
        while end < n and total + word_lengths[end] <= budget:
            total += word_lengths[end]
            end += 1
        end = max(end, own_start + 1)
        own_end = n if end == n else max(own_start + 1, end - context)
        windows.append((start, end, own_start, own_end))
        own_start = own_end
    return windows


class LlmnerTokenClassificationPipeline(Pipeline):
    """Text -> entities with character offsets, read and decoded as ``llmner.predict`` does."""

    def _sanitize_parameters(self, **kwargs):
        return {}, {}, {}

    def preprocess(self, text: str) -> dict:
        spec = self.model.config.llmner
        offsets = split_words(text, spec["splitter"])
        words = [text[s:e] for s, e in offsets]
        tok = self.tokenizer
        ids = tok([w if i == 0 else f" {w}" for i, w in enumerate(words)], add_special_tokens=False)["input_ids"] if words else []
        fallback = tok.unk_token_id if tok.unk_token_id is not None else tok.eos_token_id
        ids = [x if x else [fallback] for x in ids]
        prefix, suffix, repeat = spec["prefix"], spec["suffix"], spec["repeat"]
        budget = (spec["max_length"] - len(prefix) - len(suffix)) // repeat
        rows, firsts, lasts = [], [], []
        for start, end, own_start, own_end in plan_windows([len(x) for x in ids], budget, spec["context_words"]):
            pieces = [ids[i][:budget] for i in range(start, end)]
            row = list(prefix) + [t for _ in range(repeat - 1) for p in pieces for t in p]
            first, last = [], []
            for i, p in zip(range(start, end), pieces):
                if own_start <= i < own_end:
                    first.append(len(row))
                    last.append(len(row) + len(p) - 1)
                row += p
            rows.append(row + list(suffix))
            firsts.append(first)
            lasts.append(last)
        pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)

        def padded(seqs, value):
            width = max((len(s) for s in seqs), default=0)
            return torch.tensor([s + [value] * (width - len(s)) for s in seqs], dtype=torch.long).reshape(len(seqs), width)

        return {"input_ids": padded(rows, pad), "attention_mask": padded([[1] * len(r) for r in rows], 0),
                "first": padded(firsts, 0), "last": padded(lasts, 0), "words": [len(f) for f in firsts],
                "text": text, "offsets": offsets}

    def _forward(self, inputs: dict) -> dict:
        meta = {k: inputs.pop(k) for k in ("words", "text", "offsets")}
        if not meta["words"]:
            return meta | {"emissions": []}
        emissions = self.model(**inputs).logits  # (windows, W, K)
        return meta | {"emissions": [e[:n] for e, n in zip(emissions, meta["words"])]}

    def postprocess(self, outputs: dict) -> list[dict]:
        labels = self.model.config.id2label
        tags, probs = [], []
        for em in outputs["emissions"]:  # windows in word order
            best = self.model.decode(em)
            tags += [labels[t] for t in best]
            probs += em.softmax(-1)[torch.arange(len(best)), torch.tensor(best)].tolist()
        text, offsets, out = outputs["text"], outputs["offsets"], []
        for i, tag in enumerate(tags):  # conlleval's reading: an I-X that continues no X starts one
            kind = tag[2:]
            if tag == "O":
                continue
            if tag.startswith("I-") and out and out[-1]["entity_group"] == kind and out[-1]["_last"] == i - 1:
                out[-1]["_last"], out[-1]["_probs"] = i, out[-1]["_probs"] + [probs[i]]
            else:
                out.append({"entity_group": kind, "_first": i, "_last": i, "_probs": [probs[i]]})
        for e in out:
            e["start"], e["end"] = offsets[e.pop("_first")][0], offsets[e.pop("_last")][1]
            e["word"], e["score"] = text[e["start"] : e["end"]], sum(p := e.pop("_probs")) / len(p)
        return out
