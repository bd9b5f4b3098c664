"""Several corpora in one run (``data=mix``): training batches drawn by weight, scores per corpus.

Each corpus of a mix is a data config of its own (``conf/data/*.yaml``: its corpus, path, subsets and
test corpus), built as a ``CorpusDataModule`` and read through its ``sentences``. The mix:

- names each corpus's types (``types``): ``keep`` them (a type of the same name in two corpora is one
  type), ``prefix`` them with the corpus name (``conll.PER``: tag sets kept apart), or map them
  (``{PER: Victim_Name, MISC: O}``: renamed onto another corpus's types; ``O`` or null drops a type);
- concatenates each split in corpus order and remembers which sentences came from which corpus
  (``ranges``), so that validation and test are scored overall and per corpus (``val/<name>/f1``);
- batches training windows of one corpus at a time, the corpus of each batch drawn with probability
  proportional to its weight (``MixBatchSampler``). A corpus with no ``train`` split (e.g. a test-only
  file) is scored but not trained on.

A caveat of mixing: a corpus annotates only its own types, so a text of one corpus that mentions
another corpus's type teaches the model that it is ``O``; ``prefix`` keeps such tag sets apart.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, Sampler, SequentialSampler

from llmner.data.datamodule import BucketBatchSampler, CorpusDataModule, ItemDataset
from llmner.data.schema import DataError, Sentence, split_tag

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
RESERVED = ("corpus_mean",)  # a metric group of the mix itself (``val/corpus_mean/f1``)


def rename_tag(tag: str, name: str, how: str | Mapping[str, str]) -> str:
    """A corpus's tag in the mix's tag set (``how``: ``keep``, ``prefix`` or a type -> type mapping)."""
    prefix, label = split_tag(tag)
    if label is None or how == "keep":
        return tag
    if how == "prefix":
        return f"{prefix}-{name}.{label}"
    new = how.get(label, label)
    return "O" if new == "O" else f"{prefix}-{new}"


class MixCorpus:
    """The splits of several datamodules' sentences, renamed and concatenated in corpus order.

    Args:
        corpora: name -> a ``CorpusDataModule`` (its ``sentences``, with its own subsets, are read).
        types: name -> ``keep`` (default), ``prefix`` or a mapping of its types.
    """

    def __init__(self, corpora: Mapping[str, Any], types: Mapping[str, Any] | None = None) -> None:
        self.corpora = dict(corpora)
        types = dict(types or {})
        self.types: dict[str, str | dict[str, str]] = {}
        for name in self.corpora:
            how = types.get(name) or "keep"
            if not isinstance(how, str | Mapping) or (isinstance(how, str) and how not in ("keep", "prefix")):
                raise DataError(f"data.corpora.{name}.types={how!r}: expected keep, prefix or a mapping of its types "
                                "({PER: Victim_Name, MISC: O})")
            self.types[name] = how if isinstance(how, str) else {str(k): "O" if v is None else str(v) for k, v in how.items()}
        self.ranges: dict[str, dict[str, tuple[int, int]]] = {}  # split -> corpus -> [start, end) of its sentences

    @property
    def splitter(self) -> str:
        """The first corpus's word splitter (raw text at prediction time is split this way)."""
        splitters = {name: dm.splitter for name, dm in self.corpora.items()}
        first = next(iter(splitters.values()), "punct")
        if len(set(splitters.values())) > 1:
            log.info("the mix's corpora split words differently (%s); raw text is split as %s's (%s); "
                     "model.encoder.splitter chooses", splitters, next(iter(splitters)), first)
        return first

    def load(self) -> dict[str, list[Sentence]]:
        out: dict[str, list[Sentence]] = {}
        for name, dm in self.corpora.items():
            how = self.types[name]
            if isinstance(how, Mapping):
                types = {split_tag(t)[1] for sents in dm.sentences.values() for s in sents for t in s.tags} - {None}
                missing = sorted(set(how) - types)
                if missing:
                    raise DataError(f"data.corpora.{name}.types: {missing} are not types of corpus {name} (its types: "
                                    f"{', '.join(sorted(types))})")
            for split, sents in dm.sentences.items():
                mine = out.setdefault(split, [])
                start = len(mine)
                mine += [Sentence(s.tokens, [rename_tag(t, name, how) for t in s.tags], s.source or f"{name}:{split}", s.meta)
                         for s in sents]
                self.ranges.setdefault(split, {})[name] = (start, len(mine))
        return out


class MixBatchSampler(BatchSampler):
    """Batches of one corpus at a time; each batch's corpus drawn with probability proportional to its weight.

    Each corpus's items are batched as ``BucketBatchSampler`` does (shuffled, similar lengths together)
    in passes that continue across epochs: a corpus repeats an item only after a whole pass. An epoch
    is as many batches as all the items make together (``ceil(n / batch_size)``); step budgets
    (``trainer.max_steps``) are the natural unit of a mix. It takes Lightning's ``sampler`` (the
    shard of this process) like ``BucketBatchSampler``; every process draws the same corpora.

    Args:
        sources: the corpus index of each item of the dataset.
        lengths: the length of each item.
        weights: the sampling weight of each corpus (>= 0; a corpus without items is never drawn).
        batch_size: items per batch.
        pool: batches per sorting pool (1: no length grouping).
        seed: seed of the draws and of each corpus's order.
        sampler: the dataset indices to batch (default: all; Lightning passes its shard).
    """

    def __init__(self, sources: list[int], lengths: list[int], weights: list[float], batch_size: int, pool: int = 50,
                 seed: int = 0, sampler: Sampler[int] | None = None) -> None:
        super().__init__(sampler if sampler is not None else SequentialSampler(range(len(sources))), batch_size, drop_last=False)
        if len(sources) != len(lengths) or any(w < 0 for w in weights) or not all(0 <= s < len(weights) for s in sources):
            raise ValueError("MixBatchSampler: one source and length per item, sources index weights, weights >= 0")
        self.sources, self.lengths, self.weights = sources, lengths, list(weights)
        self.pool, self.seed = pool, seed
        self.epoch = 0
        self._streams: list[Iterator[list[int]]] | None = None
        self._live: torch.Tensor | None = None  # (C,) the weights of corpora that have items in this shard

    def _stream(self, c: int, indices: list[int]) -> Iterator[list[int]]:
        """Endless batches of corpus ``c``: pass after pass, each reshuffled (``BucketBatchSampler``'s epochs)."""
        bucket = BucketBatchSampler(self.lengths, self.batch_size, self.pool, seed=self.seed + 7919 * (c + 1), sampler=indices)
        while True:
            yield from bucket

    def __iter__(self) -> Iterator[list[int]]:
        if self._streams is None:  # built once: each corpus's passes continue across epochs
            mine: list[list[int]] = [[] for _ in self.weights]
            for i in self.sampler:
                mine[self.sources[i]].append(i)
            self._streams = [self._stream(c, idx) for c, idx in enumerate(mine)]
            self._live = torch.tensor([w if idx else 0.0 for w, idx in zip(self.weights, mine)], dtype=torch.double)
            if float(self._live.sum()) <= 0:
                raise DataError("data=mix: no corpus with training items has a weight above 0")
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        for c in torch.multinomial(self._live, len(self), replacement=True, generator=g).tolist():
            yield next(self._streams[c])

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)


class MixDataModule(CorpusDataModule):
    """Several corpora in one run: batches by weight, validation and test scored per corpus.

    Args:
        corpora: name -> ``{data: <a CorpusDataModule>, weight: 1.0, types: keep}``: the corpus's own data
            config (its batch sizes, seed and ``tags`` are the mix's business and ignored), the sampling
            weight of its training batches (0: scored, not trained on), and how its types are named
            (``keep``, ``prefix`` or a mapping, see ``MixCorpus``). Names become metric names (``val/<name>/f1``).
        encoder, tags, batch_size, eval_batch_size, num_workers, bucket, seed: as ``CorpusDataModule``'s.
        max_train_samples, max_eval_samples, max_test_samples: a seeded subset of at most this many sentences of
            each corpus's split (``debug=fast``'s quick runs), on top of a corpus's own limits.
    """

    def __init__(self, corpora: Mapping[str, Mapping[str, Any]], encoder=None, tags: list[str] | None = None,
                 batch_size: int = 8, eval_batch_size: int | None = None, num_workers: int = 0, bucket: bool = True,
                 seed: int = 0, max_train_samples: int | None = None, max_eval_samples: int | None = None,
                 max_test_samples: int | None = None) -> None:
        if not corpora:
            raise DataError("data=mix: data.corpora is empty (expected name -> {data: <data config>, weight, types})")
        datamodules, types, self.weights = {}, {}, {}
        for name, entry in corpora.items():
            if name in RESERVED or "/" in name or "." in name:
                raise DataError(f"data.corpora.{name}: cannot name a corpus (no '/', '.', or {', '.join(RESERVED)})")
            unknown = sorted(set(entry or {}) - {"data", "weight", "types"})
            if unknown or not isinstance((entry or {}).get("data"), CorpusDataModule):
                raise DataError(f"data.corpora.{name}: expected {{data: <a data config>, weight, types}}, got keys "
                                f"{sorted(entry or {})} (add one with +data@data.corpora.{name}.data=<config>)")
            weight = float(entry.get("weight", 1.0))
            if not weight >= 0:
                raise DataError(f"data.corpora.{name}.weight={weight}: expected a number >= 0")
            datamodules[name], types[name], self.weights[name] = entry["data"], entry.get("types"), weight
        limits = {"train": max_train_samples, "validation": max_eval_samples, "test": max_test_samples}
        for dm in datamodules.values():  # each corpus keeps the smaller of its own limit and the mix's
            for split, limit in limits.items():
                if limit is not None:
                    own = dm.limits.get(split)
                    dm.limits[split] = limit if own is None else min(own, limit)
        self.mix = MixCorpus(datamodules, types)
        super().__init__(corpus=lambda path=None: self.mix, encoder=encoder, tags=tags, batch_size=batch_size,
                         eval_batch_size=eval_batch_size, num_workers=num_workers, bucket=bucket, seed=seed)

    @property
    def splitter(self) -> str:
        return self.mix.splitter

    def groups(self, split: str) -> dict[str, tuple[int, int]]:
        """Corpus name -> the ``[start, end)`` sentence indices of its part of ``split`` (``val`` = ``validation``)."""
        self.sentences  # noqa: B018 -- loads the corpora, which records the ranges
        return dict(self.mix.ranges.get("validation" if split == "val" else split, {}))

    def train_dataloader(self) -> DataLoader:
        if "train" not in self.items:
            raise DataError(f"no corpus of the mix has a 'train' split (they have {sorted(self.items)})")
        items = self.items["train"]
        names = list(self.mix.corpora)
        start_of = sorted((a, names.index(n)) for n, (a, b) in self.groups("train").items() if b > a)
        sources = []
        for w in items:  # a window's corpus: the last range that starts at or before its sentence
            sources.append(next(c for a, c in reversed(start_of) if a <= w.sentence))
        drawn = {n: self.weights[n] for n, (a, b) in self.groups("train").items() if b > a}
        log.info("data=mix: training batches drawn by weight %s; validation and test scored per corpus (%s)",
                 drawn, ", ".join(names))
        sampler = MixBatchSampler(sources, [self.encoder.length(x) for x in items], [self.weights[n] for n in names],
                                  self.batch_size, pool=50 if self.bucket else 1, seed=self.seed)
        return DataLoader(ItemDataset(items), batch_sampler=sampler, num_workers=self.num_workers,
                          collate_fn=self.encoder.collate)
