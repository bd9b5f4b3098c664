"""Failure analysis of a tagger's test predictions: ``python -m llmner.analyze RUN [OTHER] [options]``.

The command line only; what it writes and how is ``llmner.evaluation.analyze`` (its docstring
lists the files).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from llmner import cli
from llmner.evaluation.analyze.write import analyze


def main(argv: list[str] | None = None) -> Path:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(prog="python -m llmner.analyze",
                                     description="Failure analysis of a tagger's test predictions: what it gets wrong, "
                                                 "why, and how two runs differ.")
    parser.add_argument("run", help="a run folder (with test_predictions.conll) or a `token gold predicted` file")
    parser.add_argument("other", nargs="?", help="a second run on the same test set, to compare with the first")
    parser.add_argument("--out", help="output folder (default: analysis/ in the first run's folder)")
    parser.add_argument("--train", help="CoNLL file of the training split, for seen/unseen (default: the run's config)")
    parser.add_argument("--names", nargs=2, metavar=("A", "B"), help="names of the runs in the tables")
    parser.add_argument("--top", type=int, default=20, help="error patterns listed")
    parser.add_argument("--examples", type=int, default=3, help="example sentences per pattern")
    parser.add_argument("--samples", type=int, default=1000, help="paired bootstrap samples")
    parser.add_argument("--seed", type=int, default=0, help="paired bootstrap seed")
    args = parser.parse_args(argv)
    names = tuple(args.names) if args.names else None
    return cli.run("analyze", lambda: analyze(args.run, args.other, args.out, args.train, names,
                                              args.top, args.examples, args.samples, args.seed))


if __name__ == "__main__":
    main()
