"""Entities of raw text from any checkpoint: ``python -m llmner.predict ckpt_path=... text=...``.

Reads ``text=``, or ``file=`` (one text per line), or else standard input line by line (typed lines
are answered as they come). Prints one JSON object ``{type: [values]}`` per text to stdout.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Iterator

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


def predict(cfg: DictConfig, out=sys.stdout) -> list[dict]:
    """Print (and return) the entities of ``cfg.text``, of each line of ``cfg.file``, or of stdin."""
    file = None
    if cfg.get("text") is None and cfg.get("file"):  # checked before the model loads
        file = cli.input_file("file", cfg.file, "a UTF-8 text file, one text per line")
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
    results = []
    for texts in batches:
        for entities in model.predict(texts):
            print(json.dumps(entities, ensure_ascii=False), file=out, flush=True)
            results.append(entities)
    return results


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict.yaml")
def main(cfg: DictConfig) -> None:
    cli.run("predict", lambda: predict(cfg))


if __name__ == "__main__":
    main()
