"""Entities of raw text from any checkpoint: ``python -m llmner.predict ckpt_path=... text=...``.

Reads ``text=``, or ``file=`` (one text per line), or else standard input line by line (typed lines
are answered as they come). Prints one JSON line per text to stdout: its entities
``[{"type", "text", "start", "end", "score"}, ...]`` with character offsets into the text, or with
``grouped=true`` the grouped view ``{type: [values]}``. ``out=FILE`` also writes each text and its
entities as spaCy/Prodigy-style JSONL, ``{"text": ..., "spans": [{"start", "end", "label", "text",
"score"}]}``, which annotation tools import as pre-annotations.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Iterator
from contextlib import ExitStack

import hydra
from omegaconf import DictConfig

from llmner import cli
from llmner.builders import load

log = logging.getLogger(__name__)


def _batches(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for line in lines:
        batch.append(line.rstrip("\n"))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def span_record(text: str, entities: list[dict]) -> dict:
    """One text and its entities in the spaCy/Prodigy span shape (``label`` for the type)."""
    return {"text": text, "spans": [{"start": e["start"], "end": e["end"], "label": e["type"], "text": e["text"],
                                     "score": e["score"]} for e in entities]}


def predict(cfg: DictConfig, out=sys.stdout) -> list:
    """Print (and return) the entities of ``cfg.text``, of each line of ``cfg.file``, or of stdin."""
    file = None
    if cfg.get("text") is None and cfg.get("file"):  # checked before the model loads
        file = cli.input_file("file", cfg.file, "a UTF-8 text file, one text per line")
    spans_path = cli.output_file("out", cfg.out, "a JSONL file to write") if cfg.get("out") else None
    model = load(cfg.ckpt_path)
    if cfg.get("text") is not None:
        batches: Iterable[list[str]] = [[str(cfg.text)]]
    elif file is not None:
        with open(file, encoding="utf-8") as f:
            batches = list(_batches(f, cfg.batch_size))
    else:
        interactive = sys.stdin.isatty()
        if interactive:
            print("one text per line; Ctrl-D ends", file=sys.stderr)
        batches = _batches(sys.stdin, 1 if interactive else cfg.batch_size)
    grouped = bool(cfg.get("grouped"))
    results = []
    with ExitStack() as stack:
        spans_file = stack.enter_context(open(spans_path, "w", encoding="utf-8")) if spans_path else None
        for texts in batches:
            entities, groups = model.predict_both(texts)
            views = groups if grouped else entities
            for text, e, view in zip(texts, entities, views):
                print(json.dumps(view, ensure_ascii=False), file=out, flush=True)
                if spans_file is not None:
                    print(json.dumps(span_record(text, e), ensure_ascii=False), file=spans_file, flush=True)
                results.append(view)
    if spans_path is not None:
        log.info("wrote %d texts with their spans to %s", len(results), spans_path)
    return results


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict.yaml")
def main(cfg: DictConfig) -> None:
    cli.run("predict", lambda: predict(cfg))


if __name__ == "__main__":
    main()
