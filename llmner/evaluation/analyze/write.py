"""``analyze``: every table, plot and ``report.md`` of one run, or two compared, written to a folder."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

from llmner.data.conll import read_conll
from llmner.evaluation.analyze.analysis import analyze_run, check_same_test_set, compare_runs
from llmner.evaluation.analyze.markdown import report_markdown
from llmner.evaluation.analyze.plots import plot_buckets, plot_categories, plot_confusion
from llmner.evaluation.analyze.training import find_train, train_surfaces
from llmner.evaluation.predictions import read_predictions

log = logging.getLogger(__name__)


def slug(name: str) -> str:
    """``name`` with anything but letters, digits and ``_.-`` replaced by ``_``: a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def analyze(run: str | Path, other: str | Path | None = None, out: str | Path | None = None,
            train: str | Path | None = None, names: tuple[str, str] | None = None, top: int = 20,
            examples: int = 3, samples: int = 1000, seed: int = 0) -> Path:
    """Write the analysis of ``run`` (and its comparison with ``other``); the path of ``report.md``.

    Args:
        run: a run folder (holding ``test_predictions.conll``) or a ``token gold predicted`` file.
        other: a second run on the same test set, compared with the first.
        out: where to write (default ``analysis/`` next to the first run's predictions).
        train: a CoNLL file of the training split (default: the one the run's config names).
        names: the two runs' names in tables and file names (default: their folders).
        top: how many error patterns; examples: example sentences per pattern and comparison.
        samples, seed: the paired bootstrap's.

    Raises:
        DataError: unreadable or malformed predictions (``file:line``), two different test sets,
            or an unreadable ``train`` file.
    """
    runs = [read_predictions(run, names[0] if names else None)]
    if other is not None:
        runs.append(read_predictions(other, names[1] if names else None))
        if runs[0].name == runs[1].name:
            runs[0].name, runs[1].name = f"{runs[0].name}_a", f"{runs[1].name}_b"
        check_same_test_set(*runs)  # before any work
    out = Path(out) if out is not None else runs[0].path.parent / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    if train is not None:
        sentences = read_conll(train)
        note = f"training split: {train} ({len(sentences)} sentences)"
    else:
        sentences, note = find_train(run)
    seen = train_surfaces(sentences) if sentences is not None else None
    if seen is None:
        log.warning("seen/unseen table skipped: %s", note)
    results = [analyze_run(p, seen, top) for p in runs]

    def long(attr: str, key: str | None = None) -> pd.DataFrame:
        frames = [(getattr(r, attr)[key] if key else getattr(r, attr)).assign(run=r.predictions.name) for r in results]
        df = pd.concat(frames, ignore_index=True)
        return df[["run", *[c for c in df.columns if c != "run"]]]

    long("categories").to_csv(out / "categories.csv", index=False)
    long("scores").to_csv(out / "scores.csv", index=False)
    long("errors").to_csv(out / "errors.csv", index=False)
    long("patterns").to_csv(out / "patterns.csv", index=False)
    for key in results[0].buckets:
        long("buckets", key).to_csv(out / f"{key}.csv", index=False)
    pngs = {}
    for r in results:
        name = slug(r.predictions.name)
        r.confusion.to_csv(out / f"confusion_{name}.csv")
        pngs[r.predictions.name] = f"confusion_{name}.png"
        plot_confusion(r.confusion, f"type confusion: {r.predictions.name}", out / pngs[r.predictions.name])
    plot_buckets({r.predictions.name: r.buckets for r in results}, out / "f1_by_bucket.png")
    plot_categories({r.predictions.name: r.categories for r in results}, out / "error_categories.png")

    cmp = compare_runs(*results, samples=samples, seed=seed) if len(results) == 2 else None
    if cmp is not None:
        cmp["categories"].to_csv(out / "comparison_categories.csv", index=False)
        cmp["sentences"].to_csv(out / "comparison_sentences.csv", index=False)
        pd.DataFrame([cmp["counts"] | {f"bootstrap_{k}": v for k, v in cmp["bootstrap"].items()}
                      | {"samples": samples}]).to_csv(out / "comparison_summary.csv", index=False)
    text = report_markdown(results, cmp, pngs, note, samples, examples)
    (out / "report.md").write_text(text, encoding="utf-8")
    log.info("wrote %s", out / "report.md")
    return out / "report.md"
