"""The one LightningDataModule: any corpus, served through the model's encoder, tokenized once in ``setup``.

The datamodule owns the data (splits, subsets, the tag set, batching order); the model owns how
data becomes tensors (its encoder: word windows for the tag heads, chat conversations for the
generative head). ``setup`` encodes each split once, so a training step only sees tensors.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from typing import Any, Protocol

import lightning as L
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler, SequentialSampler

from llmner.data.schema import DataError, Sentence, labels_of, split_tag, tag_set

log = logging.getLogger(__name__)


class Corpus(Protocol):
    """Anything that loads named splits of tagged sentences (``ConllCorpus``, ``CrimeCorpus``, ...).

    ``splitter`` names the word splitter that matches how its words were cut
    (``llmner.data.text.split_words``), so that raw text is split the same way at prediction time.
    """

    splitter: str

    def load(self) -> dict[str, list[Sentence]]: ...


class Encoder(Protocol):
    """What a model's encoder offers the datamodule (``WindowEncoder``, ``ChatEncoder``)."""

    def encode(self, sentences: list[Sentence], tags: list[str]) -> list[Any]: ...

    def length(self, item: Any) -> int: ...

    def collate(self, items: list[Any]) -> dict: ...


class ItemDataset(Dataset):
    def __init__(self, items: list) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


class EpochIndices(SequentialSampler):
    """All dataset indices in order, remembering the epoch Lightning gives it (``set_epoch``).

    Lightning calls ``set_epoch`` on a batch sampler's ``sampler`` (not on the batch sampler) at the
    start of every epoch, a resumed one included; ``DistributedSampler`` keeps it the same way.
    """

    epoch: int | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


class BucketBatchSampler(BatchSampler):
    """Random batches of similar-length windows: shuffle, sort within pools of ``pool`` batches, shuffle batches.

    Padding is wasted compute; on CoNLL-2003 (1 to 124 words a sentence) random batches are
    about half padding. Seeded per epoch, so runs repeat.

    It follows PyTorch's ``BatchSampler`` API (a ``sampler`` of indices) so that Lightning can put its
    ``DistributedSampler`` under it on several processes: each process then batches its own shard,
    and every process gets the same number of batches (a process with one batch more would wait
    forever for the others at the gradient all-reduce). Lightning shards unshuffled (the default
    sampler is sequential), so each process keeps the same items across epochs and shuffles them
    itself; the global batch is still a random draw from the whole training set.

    Resuming: the epoch's order is seeded by the epoch Lightning sets on ``sampler`` (``EpochIndices``
    or ``DistributedSampler``), so a run resumed in epoch 3 draws epoch 3's order, not epoch 0's; a
    sampler without one counts its own passes. ``resume(epoch, batches)`` skips the batches of that
    epoch a checkpoint had already trained on (``ResumableLoader``).

    Args:
        lengths: the length of each item of the dataset.
        batch_size: items per batch.
        pool: batches per sorting pool (larger: less padding, less randomness).
        seed: seed of the order (plus the epoch).
        sampler: the dataset indices to batch (default: all, in order; Lightning passes its shard).
    """

    def __init__(self, lengths: list[int], batch_size: int, pool: int = 50, seed: int = 0,
                 sampler: Sampler[int] | None = None) -> None:
        super().__init__(sampler if sampler is not None else EpochIndices(range(len(lengths))), batch_size, drop_last=False)
        self.lengths, self.pool, self.seed = lengths, pool, seed
        self.epoch = 0  # the epoch of the next pass where the sampler has none
        self.current: int | None = None  # the epoch of the pass in progress
        self.yielded = 0  # batches of that pass handed out
        self._skip: tuple[int, int] | None = None  # (epoch, batches) to skip, from a checkpoint

    def resume(self, epoch: int, batches: int) -> None:
        """Skip the first ``batches`` batches of ``epoch``'s pass (a checkpoint taken inside that epoch)."""
        self._skip = (epoch, batches)

    def __iter__(self):
        epoch = getattr(self.sampler, "epoch", None)
        if epoch is None:
            epoch = self.epoch
        self.epoch = epoch + 1
        g = torch.Generator().manual_seed(self.seed + epoch)
        indices = list(self.sampler)
        order = [indices[j] for j in torch.randperm(len(indices), generator=g).tolist()]
        size = self.batch_size * self.pool
        batches = []
        for i in range(0, len(order), size):
            chunk = sorted(order[i : i + size], key=lambda j: self.lengths[j])
            batches += [chunk[k : k + self.batch_size] for k in range(0, len(chunk), self.batch_size)]
        skip = self._skip[1] if self._skip is not None and self._skip[0] == epoch else 0
        self._skip = None
        self.current, self.yielded = epoch, skip
        for i in torch.randperm(len(batches), generator=g).tolist()[skip:]:
            self.yielded += 1
            yield batches[i]

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)


class ResumableLoader(DataLoader):
    """A training DataLoader that Lightning saves in checkpoints and restores (its ``_Stateful`` protocol).

    Its state is the pass in progress of its ``BucketBatchSampler``: the epoch and the batches handed
    out. A run resumed from a checkpoint taken inside an epoch then trains on that epoch's remaining
    batches, as the uninterrupted run would, instead of restarting the epoch's order (Lightning's
    "dataloader is not resumable" warning). The count is exact with ``num_workers=0`` (the default);
    workers fetch batches ahead, so with them the state also counts the batches they prefetched.

    Unbucketed loaders (``data.bucket=false``) are of this class too, with no state, so that a checkpoint
    resumes under either setting (Lightning refuses a checkpoint whose count of stateful loaders differs).
    """

    def state_dict(self) -> dict[str, int | None]:
        sampler = self.batch_sampler
        if not isinstance(sampler, BucketBatchSampler):
            return {"epoch": None, "batches": 0}
        return {"epoch": sampler.current, "batches": sampler.yielded}

    def load_state_dict(self, state: dict[str, int | None]) -> None:
        if state.get("epoch") is not None and isinstance(self.batch_sampler, BucketBatchSampler):
            self.batch_sampler.resume(state["epoch"], state["batches"])


class CorpusDataModule(L.LightningDataModule):
    """Batches of any corpus, encoded by the model's encoder.

    Args:
        corpus: builds the corpus from ``path`` (a partial ``ConllCorpus``, ``CrimeCorpus``, ...);
            its ``load()`` gives the splits (``train``, ``validation``, ``test``; any may be absent).
        path: where the corpus lives (a directory or file); ``None`` lets the corpus choose
            (the Hub for CoNLL-2003, generation for crime reports).
        test_corpus: optional second corpus (built with ``test_path``) whose ``test`` split
            replaces the corpus's own, e.g. train on generated reports, test on a hand-written file.
        test_path: where ``test_corpus`` lives.
        encoder: the model's encoder (given by the entry point once the model exists, not by config).
        tags: the tag list; ``None`` derives it from the data (``O``, then ``B-``/``I-`` per type).
        batch_size: training items (windows, conversations) per batch.
        eval_batch_size: evaluation items per batch (default ``2 * batch_size``).
        max_train_samples, max_eval_samples, max_test_samples: keep a seeded random subset of the
            train, validation and test sentences (quick runs; reported figures want the full test).
        num_workers: DataLoader workers.
        bucket: batch training items of similar length (less padding, faster steps).
        seed: seed of the training order.
    """

    def __init__(
        self,
        corpus: Callable[..., Corpus],
        path: str | None = None,
        test_corpus: Callable[..., Corpus] | None = None,
        test_path: str | None = None,
        encoder: Encoder | None = None,
        tags: list[str] | None = None,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        max_train_samples: int | None = None,
        max_eval_samples: int | None = None,
        max_test_samples: int | None = None,
        num_workers: int = 0,
        bucket: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1 or (eval_batch_size is not None and eval_batch_size < 1):
            raise DataError(f"data.batch_size and data.eval_batch_size must be >= 1, got {batch_size} and {eval_batch_size}")
        self.corpus = corpus(path=path)
        self.test_corpus = test_corpus(path=test_path) if test_corpus is not None else None
        self.encoder = encoder
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or 2 * batch_size
        self.limits = {"train": max_train_samples, "validation": max_eval_samples, "test": max_test_samples}
        self.num_workers = num_workers
        self.bucket = bucket
        self.seed = seed
        self._tags = list(tags) if tags is not None else None
        self._sentences: dict[str, list[Sentence]] | None = None
        self.items: dict[str, list] = {}

    # --- data, before any model exists -------------------------------------------------
    @property
    def sentences(self) -> dict[str, list[Sentence]]:
        """Split -> sentences after subsetting; loaded once."""
        if self._sentences is None:
            splits = self.corpus.load()
            if self.test_corpus is not None:
                test = self.test_corpus.load()
                if "test" not in test:
                    raise DataError(f"test_corpus ({getattr(self.test_corpus, 'path', '?')}) has no 'test' split: {sorted(test)}")
                splits["test"] = test["test"]
            for split, sents in splits.items():
                limit = self.limits.get(split)
                if limit is not None and limit < len(sents):
                    keep = sorted(random.Random(0).sample(range(len(sents)), limit))
                    splits[split] = [sents[i] for i in keep]
            self._sentences = splits
        return self._sentences

    @property
    def splitter(self) -> str:
        """The word splitter that matches the training corpus (``punct`` if the corpus names none)."""
        return getattr(self.corpus, "splitter", "punct")

    @property
    def scheme(self) -> str:
        """The tag scheme the test data came in (``iob2`` unless the corpus read another one), in which
        ``test_predictions.conll`` is written back. Known once the data is loaded."""
        _ = self.sentences  # loading sets the corpus's scheme
        corpus = self.test_corpus if self.test_corpus is not None else self.corpus
        return getattr(corpus, "scheme", "iob2")

    @property
    def tags(self) -> list[str]:
        """The tag list: given, or derived from every split."""
        if self._tags is None:  # derived once: the splits do not change after loading
            self._tags = tag_set(labels_of([s for sents in self.sentences.values() for s in sents]))
        return self._tags

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
        """Encode every split once with the model's encoder (a no-op for splits already encoded)."""
        if self.encoder is None:
            raise RuntimeError("the datamodule needs the model's encoder before setup() (datamodule.encoder = model.encoder)")
        missing = [split for split in self.sentences if split not in self.items]
        if not missing:
            return
        tags = self.tags
        self.check_tags(tags)
        for split in missing:
            self.items[split] = self.encoder.encode(self.sentences[split], tags)

    def _loader(self, split: str, train: bool) -> DataLoader:
        if split not in self.items:
            raise DataError(f"the corpus has no {split!r} split (it has {sorted(self.items)})")
        items = self.items[split]
        common = dict(num_workers=self.num_workers, collate_fn=self.encoder.collate)
        if train and self.bucket:
            sampler = BucketBatchSampler([self.encoder.length(x) for x in items], self.batch_size, seed=self.seed)
            return ResumableLoader(ItemDataset(items), batch_sampler=sampler, **common)
        if train:
            return ResumableLoader(ItemDataset(items), batch_size=self.batch_size, shuffle=True,
                              generator=torch.Generator().manual_seed(self.seed), **common)
        # Longest first: padding stays small and an out-of-memory shows on the first batch.
        items = sorted(items, key=lambda x: -self.encoder.length(x))
        return DataLoader(ItemDataset(items), batch_size=self.eval_batch_size, **common)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
