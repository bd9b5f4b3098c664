"""Tables, plots and paired significance tests for benchmarks and sweeps (plain Python, no Hydra).

``python -m llmner.report sweep <multirun dir>``      one row per trial -> ``<dir>/trials.csv``
``python -m llmner.report benchmark <benchmark dir>`` redo ``summary.*``, plots and tests from the
                                                       run folders that ``llmner.benchmark`` left
``python -m llmner.report curves <dir> [<dir> ...]``  every validation of every run below the folders,
                                                       from TensorBoard -> ``curves.csv``, ``curves.png``

The command line only: the work is ``llmner.evaluation`` (``tables``, ``runs``, ``plots``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from llmner.data.schema import DataError
from llmner.evaluation.plots import plot_curves
from llmner.evaluation.runs import read_curves
from llmner.evaluation.tables import sweep_table, write_report


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(prog="python -m llmner.report", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sweep", help="trials.csv from a multirun folder (one row per job, best val/f1 first)")
    p.add_argument("dir")
    p = sub.add_parser("benchmark", help="summary, tests and plots again from a benchmark's results.csv")
    p.add_argument("dir")
    p.add_argument("--samples", type=int, default=1000, help="bootstrap samples")
    p = sub.add_parser("curves", help="every validation of every run below the folders -> curves.csv, curves.png")
    p.add_argument("dirs", nargs="+")
    p.add_argument("--metric", default="val/f1", help="a logged scalar, e.g. val/f1 or train/loss")
    p.add_argument("--out", default=".", help="where curves.csv and curves.png go")
    args = parser.parse_args(argv)
    try:
        _run(args)
    except (FileNotFoundError, DataError) as e:  # a folder without the runs asked for, a bad file: one line
        parser.exit(2, f"error: {e}\n")


def _run(args: argparse.Namespace) -> None:
    """The subcommand ``args.command``."""
    if args.command == "curves":
        curves = read_curves(args.dirs, args.metric)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        curves.to_csv(out / "curves.csv", index=False)
        plot_curves(curves, out / "curves.png", args.metric)
        print(curves.to_string(index=False))
        print(f"\nwrote {out / 'curves.csv'}, {out / 'curves.png'}")
    elif args.command == "sweep":
        df = sweep_table(args.dir)
        shown = ["system"] + [c for c in df.columns if c.startswith("param:")] + [c for c in ("val/f1", "test/f1") if c in df]
        print(df[shown].head(20).to_string(index=False))
        print(f"\nwrote {Path(args.dir) / 'trials.csv'}")
    else:
        results = pd.read_csv(Path(args.dir) / "results.csv")
        print(write_report(results, args.dir, args.samples).to_string(index=False))


if __name__ == "__main__":
    main()
