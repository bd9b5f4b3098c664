"""CoNLL-format corpora: local files (any column layout, token first, tag last) or the Hugging Face Hub.

A local directory holds one file per split. Tags may be IOB1, IOB2, IOBES (BIOES) or BILOU
(``llmner.data.schemes``), detected over all splits or set with ``data.corpus.scheme``; they come
out as IOB2, and the corpus remembers its scheme so that test predictions are written back in it.
"""

from __future__ import annotations

import codecs
import logging
from pathlib import Path

from llmner.data.hf import load_hub_dataset, sentences_from_hf
from llmner.data.schema import DataError, Sentence
from llmner.data.schemes import check_tag, normalize_scheme, sentences_to_iob2, splits_to_iob2

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
# File names tried for each split, in order, inside the corpus directory.
SPLIT_ALIASES = {
    "train": ("train",),
    "validation": ("validation", "valid", "dev", "testa"),
    "test": ("test", "testb"),
}
SUFFIXES = ("", ".txt", ".conll", ".tsv", ".iob", ".bio")


def read_conll(
    path: str | Path,
    token_column: int = 0,
    tag_column: int = -1,
    separator: str | None = None,
    scheme: str | None = "auto",
) -> list[Sentence]:
    """Read a CoNLL-format file into IOB2 sentences.

    Args:
        path: the file. One token per line, columns split by ``separator`` (``None``: any
            whitespace; ``"\\t"`` for tab-separated files whose tokens may hold spaces),
            blank lines between sentences, ``-DOCSTART-`` lines skipped.
        token_column: column of the token.
        tag_column: column of the tag (``-1``: the last one).
        separator: column separator.
        scheme: the tags' scheme (``iob1``, ``iob2``, ``iobes``, ``bilou``); ``auto`` detects it.

    Raises:
        DataError: naming ``path:line`` for a line with too few columns, a tag outside the scheme,
            or a file without sentences.
    """
    sentences, _ = sentences_to_iob2(read_conll_tags(path, token_column, tag_column, separator, scheme), scheme, str(path))
    return sentences


def read_conll_tags(
    path: str | Path,
    token_column: int = 0,
    tag_column: int = -1,
    separator: str | None = None,
    scheme: str | None = "auto",
) -> list[Sentence]:
    """Sentences of a CoNLL-format file with their tags as written (see ``read_conll``), each tag
    checked against ``scheme`` (any scheme's prefixes for ``auto``)."""
    scheme = normalize_scheme(scheme)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    first_line = 0
    need = max(token_column, tag_column) + 1 if tag_column >= 0 else max(token_column + 1, 2)

    def flush() -> None:
        if tokens:
            sentences.append(Sentence(tokens[:], tags[:], source=f"{path}:{first_line}"))
            tokens.clear()
            tags.clear()

    with path.open("rb") as f:
        for lineno, raw_bytes in enumerate(f, start=1):
            try:
                raw = raw_bytes.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise DataError(
                    f"{path}:{lineno}: not UTF-8 text (byte 0x{raw_bytes[err.start]:02x} at column {err.start + 1}); "
                    f"convert the file first, e.g. iconv -f latin1 -t utf-8"
                ) from None
            line = raw.rstrip("\r\n")
            if not line.strip():
                flush()
                continue
            cols = line.split(separator)
            if cols[0] == "-DOCSTART-":
                flush()
                continue
            if len(cols) < need:
                raise DataError(
                    f"{path}:{lineno}: expected at least {need} columns (token first, tag last), "
                    f"got {len(cols)}: {line!r}"
                )
            tag = cols[tag_column]
            try:
                check_tag(tag, scheme)
            except DataError as err:
                raise DataError(f"{path}:{lineno}: {err}") from None
            if not tokens:
                first_line = lineno
            tokens.append(cols[token_column])
            tags.append(tag)
    flush()
    if not sentences:
        raise DataError(f"{path}: no sentences found (an empty split)")
    return sentences


def find_split_file(directory: Path, split: str) -> Path | None:
    """The file holding ``split`` in ``directory`` (``train.txt``, ``dev.conll``, ...), or None."""
    for name in SPLIT_ALIASES[split]:
        for suffix in SUFFIXES:
            candidate = directory / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
    return None


class ConllCorpus:
    """CoNLL-2003 or any CoNLL-format corpus, from a local directory or the Hub.

    Args:
        path: directory with ``train``/``validation``/``test`` files (see ``SPLIT_ALIASES``,
            ``SUFFIXES``). ``None`` loads ``hub_id`` from the Hugging Face Hub instead.
        hub_id: dataset id on the Hub, used when ``path`` is None.
        hub_revision: optional revision (branch, tag or commit) of the Hub dataset.
        splits: the splits to load; a missing one is an error.
        token_column, tag_column, separator: the column layout (see ``read_conll``).
        scheme: the tag scheme (``iob1``, ``iob2``, ``iobes``/``bioes``, ``bilou``); ``auto``
            detects it over every split. After ``load()``, ``self.scheme`` is the one read.
    """

    splitter = "conll"  # raw text is split as CoNLL-2003 was tokenized (``llmner.data.text``)
    scheme = "iob2"     # the scheme of the data once loaded (``load`` sets it)

    def __init__(
        self,
        path: str | None = None,
        hub_id: str = "eriktks/conll2003",
        hub_revision: str | None = None,
        splits: tuple[str, ...] | list[str] = SPLITS,
        token_column: int = 0,
        tag_column: int = -1,
        separator: str | None = None,
        scheme: str | None = "auto",
    ) -> None:
        self.path = path
        self.requested_scheme = normalize_scheme(scheme)
        self.hub_id = hub_id
        self.hub_revision = hub_revision
        self.splits = tuple(splits)
        if separator is not None and "\\" in separator:  # "\t" as typed on a command line: a tab
            separator = codecs.decode(separator, "unicode_escape")
        if separator == "":
            raise DataError("data.corpus.separator must be null (any whitespace) or a non-empty string, got ''")
        self.columns = dict(token_column=token_column, tag_column=tag_column, separator=separator)

    def load(self) -> dict[str, list[Sentence]]:
        """Split name -> sentences."""
        if self.path is None:
            return self._load_hub()
        directory = Path(self.path).expanduser()
        if not directory.is_dir():
            raise DataError(f"{directory}: not a directory (data.path must name a directory of CoNLL files)")
        out = {}
        for split in self.splits:
            file = find_split_file(directory, split)
            if file is None:
                tried = ", ".join(f"{n}{{{','.join(SUFFIXES)}}}" for n in SPLIT_ALIASES[split])
                raise DataError(f"{directory}: no file for the {split!r} split (looked for {tried})")
            out[split] = read_conll_tags(file, **self.columns, scheme=self.requested_scheme)
            log.info("read %d sentences from %s", len(out[split]), file)
        out, self.scheme = splits_to_iob2(out, self.requested_scheme, str(directory))
        return out

    def _load_hub(self) -> dict[str, list[Sentence]]:
        ds = load_hub_dataset(self.hub_id, revision=self.hub_revision)  # datasets imported there, when needed
        out = {split: sentences_from_hf(ds[split], source=f"{self.hub_id}:{split}", scheme=self.requested_scheme)
               for split in self.splits}
        out, self.scheme = splits_to_iob2(out, self.requested_scheme, self.hub_id)
        return out

