"""Hugging Face ``datasets`` corpora: a folder written by ``save_to_disk``, local parquet/JSON/arrow
files, or (for users with the Hub) a Hub id; rows with a token list and a tag list.

Tags may be ClassLabel ids (their names become the tags), strings, or plain ids with
``tag_names`` given; any scheme of ``llmner.data.schemes``. The ``datasets`` library does the
reading (formats, memory mapping, the Hub); this module only maps rows onto sentences.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from llmner.data.schema import DataError, Sentence
from llmner.data.schemes import check_tag, normalize_scheme, splits_to_iob2
from llmner.data.splits import SPLITS, split_by_fractions

log = logging.getLogger(__name__)

# Split names a dataset may use, per llmner split.
SPLIT_ALIASES = {"train": ("train",), "validation": ("validation", "valid", "dev"), "test": ("test",)}
# File suffix -> the ``datasets`` builder that reads it.
BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".arrow": "arrow", ".csv": "csv"}


def load_hub_dataset(hub_id: str, name: str | None = None, revision: str | None = None):
    """``datasets.load_dataset`` of a Hub id, with one clear error when the Hub cannot be reached.

    Raises:
        DataError: offline (``HF_HUB_OFFLINE=1``) or no network, naming the id and the local alternative.
    """
    import datasets

    try:
        return datasets.load_dataset(hub_id, name, revision=revision)
    except ConnectionError as e:  # datasets' offline and network failures are ConnectionErrors
        raise DataError(f"{hub_id}: the corpus comes from the Hugging Face Hub, which cannot be reached ({e}); "
                        "give local files with data.path=DIR") from None


def sentences_from_hf(
    dataset,
    source: str = "hub",
    tokens_field: str = "tokens",
    tags_field: str = "ner_tags",
    tag_names: Sequence[str] | None = None,
    scheme: str | None = "auto",
) -> list[Sentence]:
    """Sentences (tags as written, each checked against ``scheme``) from a ``datasets.Dataset``.

    Args:
        dataset: rows with ``tokens_field`` (a list of strings) and ``tags_field`` (a list of
            ClassLabel ids, strings, or ids into ``tag_names``).
        source: names the dataset in messages (``source[row]``).
        tag_names: the tag of each id when the column has no ClassLabel names.

    Raises:
        DataError: naming the row for a missing column, an id without a name, a token/tag count
            mismatch, a tag outside the scheme, or a dataset without sentences.
    """
    missing = [f for f in (tokens_field, tags_field) if f not in dataset.column_names]
    if missing:
        raise DataError(f"{source}: no column {missing[0]!r} (columns: {', '.join(dataset.column_names)}); "
                        "set data.corpus.tokens_field / data.corpus.tags_field")
    feature = getattr(dataset.features[tags_field], "feature", None)
    names = list(tag_names) if tag_names else getattr(feature, "names", None)
    scheme = normalize_scheme(scheme)
    out, empty = [], 0
    for i, (tokens, tags) in enumerate(zip(dataset[tokens_field], dataset[tags_field])):
        where = f"{source}[{i}]"
        if not tokens:
            empty += 1
            continue
        try:
            if tags and not isinstance(tags[0], str):
                if names is None:
                    raise DataError(f"tags are ids ({tags[0]!r}) but the column has no ClassLabel names; "
                                    "set data.corpus.tag_names=[O,B-PER,...]")
                tags = [names[t] for t in tags]
            for tag in tags:
                check_tag(tag, scheme)
        except IndexError:
            raise DataError(f"{where}: a tag id is outside the {len(names)} tag names") from None
        except DataError as err:
            raise DataError(f"{where}: {err}") from None
        out.append(Sentence(list(tokens), list(tags), source=where))
    if empty:
        log.info("%s: skipped %d rows without tokens", source, empty)
    if not out:
        raise DataError(f"{source}: no sentences (an empty split)")
    return out


def _split_files(directory: Path) -> dict[str, Path]:
    """``{split: file}`` of data files named after the splits in ``directory`` (one suffix for all)."""
    found = {}
    for split, names in SPLIT_ALIASES.items():
        for name in names:
            hits = [directory / f"{name}{suffix}" for suffix in BUILDERS if (directory / f"{name}{suffix}").is_file()]
            if hits:
                found[split] = hits[0]
                break
    if len({BUILDERS[f.suffix] for f in found.values()}) > 1:
        raise DataError(f"{directory}: split files of different formats ({', '.join(f.name for f in found.values())})")
    return found


class HFCorpus:
    """A token-classification dataset read by the ``datasets`` library.

    Args:
        path: a folder written by ``Dataset.save_to_disk``/``DatasetDict.save_to_disk``; a folder of
            split files (``train.parquet``, ``validation.parquet``, ``test.parquet``, or ``.jsonl``,
            ``.json``, ``.arrow``, ``.csv``); one such file; or, when no such path exists, a Hub id.
        name: the Hub dataset's configuration name (Hub ids only).
        revision: the Hub dataset's revision (Hub ids only).
        tokens_field: the column of word lists.
        tags_field: the column of tag lists.
        tag_names: the tag of each id, for id columns without ClassLabel names.
        scheme: the tag scheme, ``auto`` to detect it (``llmner.data.schemes``).
        split: fractions that cut a dataset with a single split (``{train: 0.8, validation: 0.1,
            test: 0.1}``), seeded by ``seed``; a dataset with named splits keeps them.
        splitter: how raw text is split into words at prediction time (as the dataset's words were).
    """

    scheme = "iob2"  # the scheme of the data once loaded (``load`` sets it)

    def __init__(self, path: str, name: str | None = None, revision: str | None = None, tokens_field: str = "tokens",
                 tags_field: str = "ner_tags", tag_names: Sequence[str] | None = None, scheme: str | None = "auto",
                 split: Mapping[str, float] | None = None, seed: int = 0, splitter: str = "conll") -> None:
        if not path:
            raise DataError("data=hf needs data.path: a save_to_disk folder, a folder of split files, a file or a Hub id")
        self.path, self.name, self.revision = str(path), name, revision
        self.fields = dict(tokens_field=tokens_field, tags_field=tags_field,
                           tag_names=list(tag_names) if tag_names else None)
        self.requested_scheme = normalize_scheme(scheme)
        self.fractions = {str(k): float(v) for k, v in (split or {"train": 0.8, "validation": 0.1, "test": 0.1}).items()}
        self.seed = seed
        self.splitter = splitter

    def _datasets(self) -> dict:
        """``{dataset split name: datasets.Dataset}`` as the library reads ``path``."""
        import datasets  # imported here: other corpora should not pay for it

        local = Path(self.path).expanduser()
        if local.is_dir() and any((local / f).is_file() for f in ("dataset_dict.json", "state.json")):
            loaded = datasets.load_from_disk(str(local))
        elif local.is_dir():
            files = _split_files(local)
            if not files:
                raise DataError(f"{local}: neither a save_to_disk folder nor split files "
                                f"(train/validation/test with one of {', '.join(BUILDERS)})")
            builder = BUILDERS[next(iter(files.values())).suffix]
            loaded = datasets.load_dataset(builder, data_files={k: str(v) for k, v in files.items()})
        elif local.is_file():
            if local.suffix not in BUILDERS:
                raise DataError(f"{local}: expected a {', '.join(BUILDERS)} file")
            loaded = datasets.load_dataset(BUILDERS[local.suffix], data_files={"train": str(local)})
        elif self.path.startswith((".", "/", "~")) or local.suffix in BUILDERS:
            raise DataError(f"{local}: no such file or directory")
        else:  # a Hub id (needs the Hub: never offline)
            loaded = load_hub_dataset(self.path, self.name, revision=self.revision)
        return dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}

    def load(self) -> dict[str, list[Sentence]]:
        """Split name -> sentences (IOB2)."""
        loaded = self._datasets()
        named = {split: next(n for n in SPLIT_ALIASES[split] if n in loaded) for split in SPLITS
                 if any(n in loaded for n in SPLIT_ALIASES[split])}
        if len(loaded) == 1:  # one split: cut it by the seeded fractions
            (only, dataset), = loaded.items()
            sentences = sentences_from_hf(dataset, f"{self.path}:{only}", **self.fields, scheme=self.requested_scheme)
            out = split_by_fractions(sentences, self.fractions, self.seed)
        elif named:
            out = {split: sentences_from_hf(loaded[n], f"{self.path}:{n}", **self.fields, scheme=self.requested_scheme)
                   for split, n in named.items()}
        else:
            raise DataError(f"{self.path}: splits {sorted(loaded)}, none named train, validation (valid, dev) or test")
        for split, sents in out.items():
            log.info("%s: %d sentences in %s", self.path, len(sents), split)
        out, self.scheme = splits_to_iob2(out, self.requested_scheme, self.path)
        return out
