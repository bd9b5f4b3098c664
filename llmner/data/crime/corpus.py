"""Crime corpora for the training datamodule: each ``load()`` returns ``{split: [Sentence, ...]}``.

- ``CrimeCorpus``: synthetic reports, generated on the fly or read from a directory written by
  ``python -m llmner.data.crime generate``.
- ``ConversationCorpus``: a user's conversation JSONL, all as one split (default "test") or split
  by seeded fractions; with no path, the developer-written reports that ship with the package
  (``WRITTEN``, ``data=crime_written``: see ``written/README.md``).
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Mapping
from pathlib import Path

from llmner.data.conll import read_conll
from llmner.data.crime.generator import Report
from llmner.data.crime.importer import MENTIONS, import_conversations
from llmner.data.crime.styles import VARIETIES, generate
from llmner.data.crime.views import report_to_sentence
from llmner.data.schema import DataError, Sentence
from llmner.data.splits import split_by_fractions  # noqa: F401  (also imported from here)

SPLITS = ("train", "validation", "test")
WRITTEN = Path(__file__).parent / "written" / "reports.jsonl"  # developer-written reports (written/README.md)


def split_seed(seed: int, split: str) -> int:
    """The generator seed of one split, derived from the corpus seed (stable across runs)."""
    return zlib.crc32(f"{seed}/{split}".encode())


def generate_splits(sizes: Mapping[str, int], seed: int = 0, variety: str = "classic") -> dict[str, list[Report]]:
    """Synthetic reports per split, each split from its own derived seed, by the ``variety`` generator
    (``classic``: ``generator.py``; ``varied``: ``styles.py``, more styles and phrasings).

    A report whose text already occurred in an earlier split is drawn again, so splits never share
    a report.
    """
    seen: set[str] = set()
    out: dict[str, list[Report]] = {}
    for split in SPLITS:
        if split not in sizes:
            continue
        rng = random.Random(split_seed(seed, split))
        reports: list[Report] = []
        while len(reports) < sizes[split]:
            report = generate(rng, variety)
            if report.text not in seen:
                seen.add(report.text)
                reports.append(report)
        out[split] = reports
    return out


def write_conll(path: str | Path, sentences: list[Sentence]) -> None:
    """``token<TAB>tag`` lines, a blank line after each sentence."""
    with open(path, "w", encoding="utf-8") as f:
        for sentence in sentences:
            for token, tag in zip(sentence.tokens, sentence.tags):
                if not token or any(c.isspace() for c in token):
                    raise DataError(f"{sentence.source}: token {token!r} is empty or has whitespace")
                f.write(f"{token}\t{tag}\n")
            f.write("\n")


class CrimeCorpus:
    """Synthetic crime reports as BIO sentences.

    Args:
        path: ``None`` to generate on the fly; or a directory written by
            ``python -m llmner.data.crime generate`` whose ``{train,validation,test}.txt`` are read
            (the ``num_*`` sizes are then ignored: the directory decides).
        num_train: reports generated for "train".
        num_validation: reports generated for "validation".
        num_test: reports generated for "test".
        seed: the corpus seed; each split uses its own derived seed and no report is in two splits.
        variety: ``classic`` (three styles, ``generator.py``) or ``varied`` (nine styles and more
            phrasings of names, places, summaries and suspects, ``styles.py``); generated data only.
    """

    splitter = "punct"  # the BIO view's word rule (``llmner.data.text.split_words``)

    def __init__(self, path: str | None = None, num_train: int = 800, num_validation: int = 100,
                 num_test: int = 100, seed: int = 0, variety: str = "classic") -> None:
        if variety not in VARIETIES:
            raise DataError(f"data.corpus.variety must be one of {', '.join(VARIETIES)}, got {variety!r}")
        self.path = path
        self.sizes = {"train": num_train, "validation": num_validation, "test": num_test}
        self.seed = seed
        self.variety = variety

    def load(self) -> dict[str, list[Sentence]]:
        """Split name -> sentences."""
        if self.path is None:
            return {
                split: [report_to_sentence(r, source=f"generated:{split}:{i}") for i, r in enumerate(reports)]
                for split, reports in generate_splits(self.sizes, self.seed, self.variety).items()
            }
        if not Path(self.path).is_dir():
            raise DataError(f"{self.path}: not a directory (data.path must name a directory written by "
                            "`python -m llmner.data.crime generate --out DIR`, or be null to generate reports)")
        files = {split: Path(self.path) / f"{split}.txt" for split in SPLITS}
        found = {split: read_conll(p, separator="\t") for split, p in files.items() if p.exists()}
        if not found:
            raise DataError(f"{self.path}: expected train.txt, validation.txt or test.txt "
                            "(write them with `python -m llmner.data.crime generate --out DIR`)")
        return found


class ConversationCorpus:
    """A conversation JSONL file (``{"conversation": "..."}`` per line) as BIO sentences.

    Args:
        path: the JSONL file; ``None``: the developer-written reports of the package (``WRITTEN``).
        split: a split name that receives every report (default "test": score a trained model on
            your own file), or fractions such as ``{"train": 0.8, "validation": 0.1, "test": 0.1}``.
        seed: the seed of the fractional split.
        mentions: the gold span convention: ``"first"`` (a value listed once labels its first free
            mention) or ``"every"`` (every mention of it); see ``importer.py``.
    """

    splitter = "punct"

    def __init__(self, path: str | None = None, split: str | Mapping[str, float] = "test", seed: int = 0,
                 mentions: str = "first") -> None:
        self.path = str(WRITTEN) if path is None else path
        self.mentions = mentions
        self.split = split if isinstance(split, str) else {str(k): float(v) for k, v in split.items()}
        self.seed = seed
        if mentions not in MENTIONS:
            raise DataError(f"{path}: data.corpus.mentions must be one of {MENTIONS}, got {mentions!r}")
        if isinstance(self.split, str) and self.split not in SPLITS:
            raise DataError(f"{path}: split {self.split!r} is not one of {SPLITS}")

    def load(self) -> dict[str, list[Sentence]]:
        """Split name -> sentences (unlocated answer values are warned about by the importer)."""
        sentences = import_conversations(self.path, self.mentions).sentences
        if isinstance(self.split, str):
            return {self.split: sentences}
        return split_by_fractions(sentences, self.split, self.seed)
