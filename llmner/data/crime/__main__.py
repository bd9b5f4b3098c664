"""Write crime corpora in three forms: BIO (CoNLL), JSON answers with spans, and conversations.

    python -m llmner.data.crime generate --num-reports 1000 --out data/crime [--seed 0]
        [--validation-fraction 0.1] [--test-fraction 0.1] [--variety classic|varied]
    python -m llmner.data.crime import reports.jsonl --out data/mine [--split test]
        [--validation-fraction F --test-fraction F --seed S]

Each split gets ``DIR/{split}.txt``, ``DIR/{split}.jsonl`` (``{"text", "answers", "spans"}`` per
line) and ``DIR/{split}.conversations.jsonl``. ``generate --seed S`` with sizes (a, b, c) writes
exactly the reports that ``CrimeCorpus(num_train=a, num_validation=b, num_test=c, seed=S)`` draws
(``--variety V``: ``CrimeCorpus(..., variety=V)``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from llmner.data.crime import ENTITY_TYPES
from llmner.data.crime.corpus import generate_splits, split_by_fractions, write_conll
from llmner.data.crime.generator import Report
from llmner.data.crime.importer import import_conversations
from llmner.data.crime.styles import VARIETIES
from llmner.data.crime.views import report_to_conversation, report_to_json, report_to_sentence
from llmner.data.schema import DataError


def write_forms(out: Path, split: str, reports: list[Report], sources: list[str] | None = None) -> None:
    """Write one split of reports as ``{split}.txt``, ``{split}.jsonl`` and ``{split}.conversations.jsonl``."""
    out.mkdir(parents=True, exist_ok=True)
    sources = sources or [f"{split}:{i}" for i in range(len(reports))]
    write_conll(out / f"{split}.txt", [report_to_sentence(r, source=s) for r, s in zip(reports, sources)])
    with open(out / f"{split}.jsonl", "w", encoding="utf-8") as f:
        for report in reports:
            spans = [{"start": s.start, "end": s.end, "label": s.label} for s in report.spans]
            record = {"text": report.text, "answers": report_to_json(report), "spans": spans}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    with open(out / f"{split}.conversations.jsonl", "w", encoding="utf-8") as f:
        for report in reports:
            f.write(json.dumps({"conversation": report_to_conversation(report)}) + "\n")


def _sizes(n: int, validation: float, test: float) -> dict[str, int]:
    n_val, n_test = round(n * validation), round(n * test)
    if n_val + n_test > n:
        raise SystemExit(f"--validation-fraction {validation} and --test-fraction {test} exceed 1")
    return {"train": n - n_val - n_test, "validation": n_val, "test": n_test}


def _print_counts(splits: dict[str, list[Report]], out: Path) -> None:
    for split, reports in splits.items():
        labels = Counter(s.label for r in reports for s in r.spans)
        print(f"{out}/{split}.*: {len(reports)} reports, {sum(labels.values())} spans")
        print("  " + ", ".join(f"{label}={labels[label]}" for label in ENTITY_TYPES))


def _generate(args: argparse.Namespace) -> int:
    splits = generate_splits(_sizes(args.num_reports, args.validation_fraction, args.test_fraction), args.seed,
                             args.variety)
    for split, reports in splits.items():
        write_forms(args.out, split, reports)
    _print_counts(splits, args.out)
    return 0


def _import(args: argparse.Namespace) -> int:
    result = import_conversations(args.file)
    pairs = list(zip(result.reports, [s.source for s in result.sentences]))
    if args.validation_fraction is None and args.test_fraction is None:
        parts = {args.split: pairs}
    else:
        v, t = args.validation_fraction or 0.0, args.test_fraction or 0.0
        parts = split_by_fractions(pairs, {"train": 1.0 - v - t, "validation": v, "test": t}, args.seed)
    for split, items in parts.items():
        write_forms(args.out, split, [r for r, _ in items], [s for _, s in items])
    _print_counts({split: [r for r, _ in items] for split, items in parts.items()}, args.out)
    print(f"{len(result.unlocated)} answer values not found in their report; "
          f"{result.overlaps} spans left out of the BIO view (overlaps)")
    for u in result.unlocated:
        print(f"  {u.source}: {u.label} = {u.value!r}")
    if result.ignored_types:
        print(f"ignored entity types: {dict(result.ignored_types)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m llmner.data.crime", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="write a synthetic corpus")
    gen.add_argument("--num-reports", type=int, required=True, help="reports over all splits")
    gen.add_argument("--out", type=Path, required=True)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--validation-fraction", type=float, default=0.1)
    gen.add_argument("--test-fraction", type=float, default=0.1)
    gen.add_argument("--variety", choices=VARIETIES, default="classic",
                     help="classic: three styles; varied: nine styles and more phrasings (styles.py)")
    gen.set_defaults(run=_generate)
    imp = commands.add_parser("import", help="convert a conversation JSONL file")
    imp.add_argument("file", type=Path)
    imp.add_argument("--out", type=Path, required=True)
    imp.add_argument("--split", default="test", choices=("train", "validation", "test"),
                     help="the split that gets every report (unless fractions are given)")
    imp.add_argument("--validation-fraction", type=float, default=None)
    imp.add_argument("--test-fraction", type=float, default=None)
    imp.add_argument("--seed", type=int, default=0)
    imp.set_defaults(run=_import)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
