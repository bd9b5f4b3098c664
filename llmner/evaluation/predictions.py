"""The one reader/writer of a run's test predictions.

``test_predictions.conll``: ``token gold predicted`` per word, a blank line between sentences
(conlleval's input). ``test_answers.jsonl`` (the generative head): one ``{"sentence": i,
"answers": {...}}`` object a line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from llmner.data.schema import DataError
from llmner.data.schemes import parse_tag, to_iob2

PREDICTIONS = "test_predictions.conll"
ANSWERS = "test_answers.jsonl"


@dataclass
class Predictions:
    """A ``token gold predicted`` file: one list of words and two of tags per sentence."""

    name: str
    path: Path
    tokens: list[list[str]]
    gold: list[list[str]]
    pred: list[list[str]]
    lines: list[int]  # the file's line number of each sentence's first word, for error messages


def predictions_path(run: str | Path) -> Path:
    """``run/test_predictions.conll`` for a run folder; ``run`` itself for a file."""
    run = Path(run)
    path = run / PREDICTIONS if run.is_dir() else run
    if not path.is_file():
        raise DataError(f"{path}: no such file (give a run folder holding {PREDICTIONS}, or a `token gold predicted` file)")
    return path


def run_name(run: str | Path) -> str:
    """A short name for a run: its folder, with the system for a benchmark's ``<system>/seed<k>``."""
    path = predictions_path(run)
    if path.name != PREDICTIONS:
        return path.stem
    folder = path.parent
    return f"{folder.parent.name}_{folder.name}" if re.fullmatch(r"seed\d+", folder.name) else folder.name


def read_predictions(run: str | Path, name: str | None = None) -> Predictions:
    """Read a run's ``test_predictions.conll`` (or the file ``run``), checking every line.

    Each non-blank line is ``token gold predicted`` (more columns are allowed: the last two are the
    tags, in any scheme of ``llmner.data.schemes``; IOBES and BILOU come back as IOB2); a blank line
    ends a sentence.

    Raises:
        DataError: naming ``file:line`` for a line with fewer than 3 columns or a tag that is not
            ``O`` or ``B-X``/``I-X``/``E-X``/``S-X``/``L-X``/``U-X``, or a file without sentences.
    """
    path = predictions_path(run)
    tokens, gold, pred, lines = [], [], [], []
    t, g, p = [], [], []
    with path.open(encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            cols = raw.split()
            if not cols:
                if t:
                    tokens.append(t), gold.append(g), pred.append(p)
                    t, g, p = [], [], []
                continue
            if len(cols) < 3:
                raise DataError(f"{path}:{lineno}: expected `token gold predicted` (3 columns), got {len(cols)}: {raw.rstrip()!r}")
            for tag, which in ((cols[-2], "gold"), (cols[-1], "predicted")):
                try:
                    parse_tag(tag)
                except DataError as err:
                    raise DataError(f"{path}:{lineno}: {which} {err}") from None
            if not t:
                lines.append(lineno)
            t.append(cols[0]), g.append(cols[-2]), p.append(cols[-1])
    if t:
        tokens.append(t), gold.append(g), pred.append(p)
    if not tokens:
        raise DataError(f"{path}: no sentences found")
    if any(t[0] not in "OBI" for tags in (*gold, *pred) for t in tags):  # IOBES or BILOU: read as IOB2
        gold, pred = [to_iob2(t) for t in gold], [to_iob2(t) for t in pred]
    return Predictions(name or run_name(run), path, tokens, gold, pred, lines)


def conll_word(word: str) -> str:
    """A word as the predictions file writes it: spaces become ``_`` (conlleval splits on spaces)."""
    return word.replace(" ", "_")


def write_predictions(path: str | Path, tokens: list[list[str]], gold: list[list[str]], pred: list[list[str]]) -> None:
    """``token gold predicted`` per word, a blank line after each sentence (conlleval's input)."""
    with Path(path).open("w", encoding="utf-8") as f:
        for toks, gs, ps in zip(tokens, gold, pred):
            for t, g, p in zip(toks, gs, ps):
                f.write(f"{conll_word(t)} {g} {p}\n")
            f.write("\n")


def write_answers(path: str | Path, answers: dict[int, dict[str, list]]) -> None:
    """One ``{"sentence": i, "answers": {...}}`` line per test example, by sentence index."""
    with Path(path).open("w", encoding="utf-8") as f:
        for i in sorted(answers):
            f.write(json.dumps({"sentence": i, "answers": answers[i]}, ensure_ascii=False) + "\n")


def read_answers(path: str | Path) -> dict[int, dict[str, list]]:
    """The answers ``write_answers`` wrote, by sentence index.

    Raises:
        DataError: naming ``file:line`` for a line that is not such a JSON object.
    """
    out: dict[int, dict[str, list]] = {}
    with Path(path).open(encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
                out[int(record["sentence"])] = record["answers"]
            except (ValueError, KeyError, TypeError) as err:
                raise DataError(f"{path}:{lineno}: expected {{\"sentence\": <int>, \"answers\": {{...}}}}: {err}") from None
    return out
