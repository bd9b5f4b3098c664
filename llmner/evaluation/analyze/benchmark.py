"""The failure analysis of a benchmark: its best system against each other one."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from llmner.evaluation.analyze.write import analyze, slug
from llmner.evaluation.predictions import PREDICTIONS

log = logging.getLogger(__name__)


def analyze_benchmark(out_dir: str | Path, summary: pd.DataFrame, seed: int | None = None,
                      samples: int = 1000) -> list[Path]:
    """The benchmark's best system (by mean ``val_f1``) against each other one, on one seed's runs.

    Writes ``<out_dir>/analysis/<best>_vs_<other>/`` (or ``<best>/`` alone with one system) from
    ``<out_dir>/<system>/seed<k>/test_predictions.conll``; ``seed`` defaults to the smallest found.
    A system whose run of that seed has no predictions (a partial benchmark) is skipped.

    Returns:
        The paths of the ``report.md`` files written.
    """
    out_dir = Path(out_dir)
    if "val_f1" not in summary or summary["val_f1"].isna().all():
        log.warning("analysis skipped: no val_f1 in the summary to pick the best system by")
        return []
    best = str(summary.loc[summary["val_f1"].idxmax(), "system"])
    if seed is None:
        found = sorted(int(p.name[4:]) for p in (out_dir / best).glob("seed*") if p.name[4:].isdigit())
        if not found:
            log.warning("analysis skipped: no seed folder under %s", out_dir / best)
            return []
        seed = found[0]

    def predictions(system: str) -> Path | None:
        path = out_dir / system / f"seed{seed}" / PREDICTIONS
        if not path.is_file():
            log.warning("analysis: %s missing, %s skipped", path, system)
            return None
        return path

    a = predictions(best)
    if a is None:
        return []
    others = [str(s) for s in summary["system"] if str(s) != best]
    written = []
    if not others:
        written.append(analyze(a, out=out_dir / "analysis" / slug(best), names=(best, best), samples=samples))
    for other in others:
        b = predictions(other)
        if b is not None:
            written.append(analyze(a, b, out=out_dir / "analysis" / f"{slug(best)}_vs_{slug(other)}",
                                   names=(best, other), samples=samples))
    return written
