"""The LightningDataModule shared by every tag head: corpus -> windows -> padded batches."""

from __future__ import annotations

import logging
import math
import random
from functools import partial
from typing import Callable, Protocol

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from llmner.data.alignment import EncodedWindow, encode_sentence, encode_words, special_affixes
from llmner.data.schema import DataError, Sentence, labels_of, split_tag, tag_set

log = logging.getLogger(__name__)


class Corpus(Protocol):
    """Anything that loads named splits of tagged sentences (``ConllCorpus``, ``CrimeCorpus``, ...)."""

    def load(self) -> dict[str, list[Sentence]]: ...


class WindowDataset(Dataset):
    def __init__(self, windows: list[EncodedWindow]) -> None:
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> EncodedWindow:
        return self.windows[i]


def collate(windows: list[EncodedWindow], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad a list of windows into a batch. B windows, T subwords, W owned words."""
    B = len(windows)
    T = max(len(w.input_ids) for w in windows)
    W = max(len(w.first) for w in windows)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((B, T), dtype=torch.long)
    first = torch.zeros((B, W), dtype=torch.long)
    last = torch.zeros((B, W), dtype=torch.long)
    labels = torch.zeros((B, W), dtype=torch.long)
    word_mask = torch.zeros((B, W), dtype=torch.bool)
    for b, w in enumerate(windows):
        t, n = len(w.input_ids), len(w.first)
        input_ids[b, :t] = torch.tensor(w.input_ids)
        attention_mask[b, :t] = 1
        first[b, :n] = torch.tensor(w.first)
        last[b, :n] = torch.tensor(w.last)
        labels[b, :n] = torch.tensor(w.labels)
        word_mask[b, :n] = True
    return {
        "input_ids": input_ids,  # (B, T)
        "attention_mask": attention_mask,  # (B, T)
        "first": first,  # (B, W) position of each word's first subword
        "last": last,  # (B, W) position of each word's last subword
        "labels": labels,  # (B, W)
        "word_mask": word_mask,  # (B, W)
        "sentence": torch.tensor([w.sentence for w in windows]),  # (B,)
        "offset": torch.tensor([w.offset for w in windows]),  # (B,)
    }


class BucketBatchSampler(Sampler[list[int]]):
    """Random batches of similar-length windows: shuffle, sort within pools of ``pool`` batches, shuffle batches.

    Padding is wasted compute; on CoNLL-2003 (1 to 124 words a sentence) random batches are
    about half padding. Seeded per epoch, so runs repeat.
    """

    def __init__(self, lengths: list[int], batch_size: int, pool: int = 50, seed: int = 0) -> None:
        self.lengths, self.batch_size, self.pool, self.seed = lengths, batch_size, pool, seed
        self.epoch = 0

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        order = torch.randperm(len(self.lengths), generator=g).tolist()
        size = self.batch_size * self.pool
        batches = []
        for i in range(0, len(order), size):
            chunk = sorted(order[i : i + size], key=lambda j: self.lengths[j])
            batches += [chunk[k : k + self.batch_size] for k in range(0, len(chunk), self.batch_size)]
        for i in torch.randperm(len(batches), generator=g).tolist():
            yield batches[i]

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)


class TaggingDataModule(L.LightningDataModule):
    """Batches of word-aligned windows for the tag heads.

    Args:
        corpus: builds the corpus from ``path`` (a partial ``ConllCorpus``, ``CrimeCorpus``, ...);
            its ``load()`` gives the splits (``train``, ``validation``, ``test``; any may be absent).
        path: where the corpus lives (a directory or file); ``None`` lets the corpus choose
            (the Hub for CoNLL-2003, generation for crime reports).
        tokenizer: the backbone's tokenizer (given by the entry point, not by config).
        tags: the tag list; ``None`` derives it from the data (``O``, then ``B-``/``I-`` per type).
        batch_size: training windows per batch.
        eval_batch_size: evaluation windows per batch (default ``2 * batch_size``).
        max_length: subwords per window, special tokens included. Longer sentences are split
            into overlapping windows; no word is dropped.
        context_words: words of overlap between windows of one long sentence.
        max_train_samples, max_eval_samples, max_test_samples: keep a seeded random subset of the
            train, validation and test sentences (quick runs; reported figures want the full test).
        num_workers: DataLoader workers.
        bucket: batch training windows of similar length (less padding, faster steps).
        seed: seed of the training order.
    """

    def __init__(
        self,
        corpus: Callable[..., Corpus],
        path: str | None = None,
        tokenizer=None,
        tags: list[str] | None = None,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        max_length: int = 256,
        context_words: int = 16,
        max_train_samples: int | None = None,
        max_eval_samples: int | None = None,
        max_test_samples: int | None = None,
        num_workers: int = 0,
        bucket: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.corpus = corpus(path=path)
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or 2 * batch_size
        self.max_length = max_length
        self.context_words = context_words
        self.max_train_samples = max_train_samples
        self.max_eval_samples = max_eval_samples
        self.max_test_samples = max_test_samples
        self.num_workers = num_workers
        self.bucket = bucket
        self.seed = seed
        self._given_tags = list(tags) if tags is not None else None
        self._sentences: dict[str, list[Sentence]] | None = None
        self._windows: dict[str, list[EncodedWindow]] = {}

    # --- data, before any model exists -------------------------------------------------
    @property
    def sentences(self) -> dict[str, list[Sentence]]:
        """Split -> sentences after subsetting; loaded once."""
        if self._sentences is None:
            splits = self.corpus.load()
            limits = {"train": self.max_train_samples, "validation": self.max_eval_samples, "test": self.max_test_samples}
            for split, sents in splits.items():
                limit = limits.get(split)
                if limit is not None and limit < len(sents):
                    keep = sorted(random.Random(0).sample(range(len(sents)), limit))
                    splits[split] = [sents[i] for i in keep]
            self._sentences = splits
        return self._sentences

    @property
    def tags(self) -> list[str]:
        """The tag list: given, or derived from every split."""
        if self._given_tags is not None:
            return self._given_tags
        return tag_set(labels_of([s for sents in self.sentences.values() for s in sents]))

    def check_tags(self, tags: list[str]) -> None:
        """Raise ``DataError`` if the data holds a tag outside ``tags`` (e.g. a checkpoint's tag set)."""
        known = set(tags)
        for split, sents in self.sentences.items():
            for s in sents:
                unknown = sorted(set(s.tags) - known)
                if unknown:
                    raise DataError(
                        f"{s.source or split}: tags {unknown} are not in the model's tag set {tags}"
                    )
        for t in tags:
            split_tag(t)

    # --- Lightning hooks -------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.tokenizer is None:
            raise RuntimeError("TaggingDataModule needs the backbone's tokenizer before setup()")
        tags = self.tags
        self.check_tags(tags)
        tag_id = {t: i for i, t in enumerate(tags)}
        prefix, suffix = special_affixes(self.tokenizer)
        for split, sents in self.sentences.items():
            if split in self._windows:
                continue
            words = [w for s in sents for w in s.tokens]
            initial = [i == 0 for s in sents for i in range(len(s.tokens))]
            ids = encode_words(self.tokenizer, words, initial)
            windows, pos, long = [], 0, 0
            for k, s in enumerate(sents):
                n = len(s.tokens)
                enc = encode_sentence(
                    ids[pos : pos + n], [tag_id[t] for t in s.tags], k, prefix, suffix,
                    self.max_length, self.context_words,
                )
                long += len(enc) > 1
                windows += enc
                pos += n
            if long:
                log.info("%s: %d of %d sentences exceed max_length=%d subwords and were split into "
                         "overlapping windows (no word dropped)", split, long, len(sents), self.max_length)
            self._windows[split] = windows

    def _loader(self, split: str, train: bool) -> DataLoader:
        if split not in self._windows:
            raise DataError(f"the corpus has no {split!r} split (it has {sorted(self._windows)})")
        windows = self._windows[split]
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id or 0
        common = dict(num_workers=self.num_workers, collate_fn=partial(collate, pad_id=pad_id))
        if train and self.bucket:
            sampler = BucketBatchSampler([len(w.input_ids) for w in windows], self.batch_size, seed=self.seed)
            return DataLoader(WindowDataset(windows), batch_sampler=sampler, **common)
        if not train:
            # Longest first: padding stays small and an out-of-memory shows on the first batch.
            windows = sorted(windows, key=lambda w: -len(w.input_ids))
        batch_size = self.batch_size if train else self.eval_batch_size
        return DataLoader(WindowDataset(windows), batch_size=batch_size, shuffle=train, **common)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
