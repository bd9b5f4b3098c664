"""The tag heads' encoder: words -> subword ids -> overlapping windows -> padded batches.

Every word gets exactly one prediction: each word is *owned* by exactly one window, and the
windows around it only lend context. ``WindowEncoder`` is the one path from sentences (training
and evaluation) or raw text (prediction) to model inputs. Nothing here knows about models beyond a
tokenizer's ``__call__`` and its special tokens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from llmner.data.encoding import Encoder, pad
from llmner.data.schema import Sentence
from llmner.data.text import Offsets, split_words

log = logging.getLogger(__name__)


def special_affixes(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a text (``[BOS]`` for Llama, ``[CLS]``/``[SEP]`` for BERT)."""
    probe = "hello"
    bare = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe)["input_ids"]
    for i in range(len(full) - len(bare) + 1):
        if full[i : i + len(bare)] == bare:
            return full[:i], full[i + len(bare) :]
    raise ValueError(f"cannot locate the text among the special tokens of {type(tokenizer).__name__}")


def encode_words(tokenizer, words: list[str], sentence_initial: list[bool] | None = None) -> list[list[int]]:
    """Subword ids of each word, encoded as it reads inside running text.

    Decoder tokenizers see a word after a space as a different token than at a text's start
    (``"ĠParis"`` vs ``"Paris"``), so every word but a sentence-initial one is encoded with a
    leading space. Encoding word by word guarantees each word at least one subword, which
    offset-mapping alignment over a joined string does not (merges across words, dropped chars).

    Args:
        tokenizer: a Hugging Face tokenizer.
        words: the words, possibly of many sentences.
        sentence_initial: per word, whether it starts a sentence (default: only ``words[0]``).
    """
    if sentence_initial is None:
        sentence_initial = [i == 0 for i in range(len(words))]
    texts = [w if first else f" {w}" for w, first in zip(words, sentence_initial)]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    fallback = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else tokenizer.eos_token_id
    # A word that encodes to nothing (e.g. a lone control character) still needs a position.
    return [x if x else [fallback] for x in ids]


@dataclass(frozen=True)
class Window:
    """Words ``[start, end)`` go into one backbone pass; words ``[own_start, own_end)`` are predicted there."""

    start: int
    end: int
    own_start: int
    own_end: int


def plan_windows(word_lengths: list[int], budget: int, context: int) -> list[Window]:
    """Cover a sentence with windows of at most ``budget`` subwords, each word owned exactly once.

    A window that does not reach the end of the sentence leaves its last ``context`` words to the
    next window, which starts ``context`` words before them, so that owned words near a seam
    keep context on both sides. A single word longer than ``budget`` gets a window of its own
    (its subwords are truncated by the caller; the word keeps its prediction).

    Args:
        word_lengths: subwords per word.
        budget: subwords per window (the backbone's maximum length minus special tokens).
        context: words of overlap between consecutive windows.
    """
    if budget < 1:
        raise ValueError(f"window budget must be >= 1 subword, got {budget}")
    n = len(word_lengths)
    windows: list[Window] = []
    own_start = 0
    while own_start < n:
        start = max(0, own_start - context) if windows else 0
        # Give up left context before giving up the first owned word.
        while start < own_start and sum(word_lengths[start : own_start + 1]) > budget:
            start += 1
        end, total = start, 0
        while end < n and total + word_lengths[end] <= budget:
            total += word_lengths[end]
            end += 1
        end = max(end, own_start + 1)
        own_end = n if end == n else max(own_start + 1, end - context)
        windows.append(Window(start, end, own_start, own_end))
        own_start = own_end
    return windows


@dataclass
class EncodedWindow:
    """One backbone input: subword ids and, per owned word, its first/last subword position and label."""

    input_ids: list[int]
    first: list[int]  # position of each owned word's first subword in input_ids
    last: list[int]  # position of each owned word's last subword
    labels: list[int]  # tag id per owned word
    sentence: int  # index of the sentence in its split
    offset: int  # index of the first owned word in the sentence


def encode_sentence(
    word_ids: list[list[int]],
    labels: list[int],
    sentence: int,
    prefix: list[int],
    suffix: list[int],
    max_length: int,
    context: int,
    repeat: int = 1,
) -> list[EncodedWindow]:
    """Windows of one sentence, ready to batch. ``word_ids`` come from ``encode_words``.

    With ``repeat`` k > 1 each window's words are given k times in a row and the owned words'
    positions point into the last copy, whose subwords have seen the whole window in the copies
    before it (a causal decoder's right context, Kukić et al. 2025). The window budget is divided
    by k, so that the repeated window still fits ``max_length``; no word is dropped.
    """
    if repeat < 1:
        raise ValueError(f"model.encoder.repeat must be >= 1, got {repeat}")
    budget = (max_length - len(prefix) - len(suffix)) // repeat
    out = []
    for w in plan_windows([len(x) for x in word_ids], budget, context):
        pieces = [word_ids[i][:budget] for i in range(w.start, w.end)]
        ids = list(prefix) + [t for _ in range(repeat - 1) for p in pieces for t in p]
        first, last = [], []
        for i, p in zip(range(w.start, w.end), pieces):
            if w.own_start <= i < w.own_end:
                first.append(len(ids))
                last.append(len(ids) + len(p) - 1)
            ids += p
        ids += suffix
        out.append(EncodedWindow(ids, first, last, labels[w.own_start : w.own_end], sentence, w.own_start))
    return out


class WindowEncoder(Encoder):
    """Sentences or raw text -> ``EncodedWindow`` items -> padded batches, for the tag heads.

    Built by the model with its backbone's tokenizer and stored in its checkpoint config, so that
    training, evaluation and prediction on raw text encode the same way.

    Args:
        tokenizer: the backbone's tokenizer.
        max_length: subwords per window, special tokens included. Longer sentences are split
            into overlapping windows; no word is dropped.
        context_words: words of overlap between windows of one long sentence.
        splitter: how raw text is split into words for prediction (``llmner.data.text.split_words``);
            the training corpus's own splitter when the run did not set one.
        bos: put the tokenizer's BOS token before each window when the tokenizer adds no special
            token of its own there (SmolLM2's does not). Without it a decoder's first word sits at
            position 0, the one position that sees nothing and that attention uses as its sink.
        repeat: give each window's words this many times; the head reads the last copy, which
            has seen the whole window (right context for a causal decoder, at ~``repeat`` x the
            cost per step). Windows hold ``1 / repeat`` as many subwords.
    """

    def __init__(self, tokenizer, max_length: int = 256, context_words: int = 16, splitter: str | None = None,
                 bos: bool = False, repeat: int = 1) -> None:
        if repeat < 1:
            raise ValueError(f"model.encoder.repeat must be >= 1, got {repeat}")
        super().__init__(tokenizer, max_length, splitter)
        self.repeat = repeat
        self.context_words = context_words
        self.prefix, self.suffix = special_affixes(tokenizer)
        if bos and not self.prefix and tokenizer.bos_token_id is not None:
            self.prefix = [tokenizer.bos_token_id]

    def _windows(self, words: list[list[str]], labels: list[list[int]]) -> list[EncodedWindow]:
        """Windows of many word sequences (tokenized in one call: fast tokenizers batch)."""
        flat = [w for ws in words for w in ws]
        initial = [i == 0 for ws in words for i in range(len(ws))]
        ids = encode_words(self.tokenizer, flat, initial)
        out, pos, long = [], 0, 0
        for k, (ws, labs) in enumerate(zip(words, labels)):
            enc = encode_sentence(ids[pos : pos + len(ws)], labs, k, self.prefix, self.suffix,
                                  self.max_length, self.context_words, self.repeat)
            long += len(enc) > 1
            out += enc
            pos += len(ws)
        if long:
            log.info("%d of %d sentences exceed max_length=%d subwords and were split into overlapping "
                     "windows (no word dropped)", long, len(words), self.max_length)
        return out

    def encode(self, sentences: list[Sentence], tags: list[str]) -> list[EncodedWindow]:
        """Windows of tagged sentences; ``EncodedWindow.sentence`` is the index in ``sentences``."""
        tag_id = {t: i for i, t in enumerate(tags)}
        return self._windows([s.tokens for s in sentences], [[tag_id[t] for t in s.tags] for s in sentences])

    def encode_texts(self, texts: list[str]) -> tuple[list[EncodedWindow], list[Offsets]]:
        """Windows of raw texts (split into words by ``splitter``) and each text's word offsets."""
        offsets = [split_words(t, self.splitter) for t in texts]
        words = [[t[s:e] for s, e in o] for t, o in zip(texts, offsets)]
        return self._windows(words, [[0] * len(w) for w in words]), offsets

    @staticmethod
    def length(item: EncodedWindow) -> int:
        """Subwords of a window (batches group similar lengths)."""
        return len(item.input_ids)

    def collate(self, windows: list[EncodedWindow]) -> dict[str, torch.Tensor]:
        """Pad windows into a batch: B windows, T subwords, W owned words."""
        return {
            "input_ids": pad([w.input_ids for w in windows], self.pad_id),  # (B, T)
            "attention_mask": pad([[1] * len(w.input_ids) for w in windows], 0),  # (B, T)
            "first": pad([w.first for w in windows], 0),  # (B, W) position of each word's first subword
            "last": pad([w.last for w in windows], 0),  # (B, W) position of each word's last subword
            "labels": pad([w.labels for w in windows], 0),  # (B, W)
            "word_mask": pad([[1] * len(w.first) for w in windows], 0).bool(),  # (B, W)
            "sentence": torch.tensor([w.sentence for w in windows]),  # (B,)
            "offset": torch.tensor([w.offset for w in windows]),  # (B,)
        }
