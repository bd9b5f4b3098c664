"""Benchmark and sweep tables: one row per system, the pairwise tests, one row per sweep trial.

``write_report`` writes a benchmark's ``summary.csv``, ``summary.md``, ``comparisons.csv`` and its
two plots from its results table (``llmner.evaluation.runs``: one row per run).
"""

from __future__ import annotations

import logging
import math
from itertools import combinations
from pathlib import Path

import pandas as pd

from llmner.evaluation.markdown import summary_markdown
from llmner.evaluation.plots import plot_f1_vs_time, plot_per_type
from llmner.evaluation.predictions import PREDICTIONS, read_predictions
from llmner.evaluation.runs import ID_COLUMNS, read_run, write_results
from llmner.evaluation.statistics import paired_bootstrap, paired_ttest, sentence_counts

log = logging.getLogger(__name__)

# Summary columns: (name in summary, metric in results.csv, how it is aggregated over seeds)
SUMMARY_COLUMNS = [
    ("val_f1", "val/f1", "mean"),
    ("precision", "test/precision", "mean"),
    ("recall", "test/recall", "mean"),
    ("train_seconds", "train/seconds", "mean"),
    ("train_steps", "train/steps", "mean"),
    ("test_sentences_per_s", "test/sentences_per_second", "mean"),
    ("test_words_per_s", "test/words_per_second", "mean"),
    ("trainable_params", "params/trainable", "mean"),
    ("peak_memory_mb", "memory/peak_mb", "max"),
]


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """One row per system (in order of appearance): test F1 mean and sd over seeds, per-type F1 means, the rest."""
    systems = list(dict.fromkeys(results["system"]))
    types = sorted(c.removeprefix("test/f1_") for c in results.columns if c.startswith("test/f1_"))
    rows = []
    for name in systems:
        runs = results[results["system"] == name]
        f1 = runs["test/f1"].astype(float)
        row = {"system": name, "seeds": len(runs), "test_f1_mean": f1.mean(), "test_f1_sd": f1.std(ddof=1) if len(runs) > 1 else 0.0}
        row |= {f"f1_{t}": runs[f"test/f1_{t}"].mean() for t in types}
        for out, metric, how in SUMMARY_COLUMNS:
            if metric in runs:
                row[out] = getattr(runs[metric].astype(float), how)()
        rows.append(row)
    return pd.DataFrame(rows)


def compare(results: pd.DataFrame, samples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Every pair of systems: mean test F1 difference, paired t-test over seeds, paired bootstrap over sentences.

    The t-test pairs the runs of the two systems by seed (seeds both ran); the bootstrap reads
    each run's ``test_predictions.conll`` and pools seeds as ``paired_bootstrap`` says. A results
    table combined from runs whose folders are gone still gets its t-tests: the bootstrap then uses
    the seeds whose predictions both systems still have (``bootstrap_seeds``; none: ``nan``).
    """
    counts, missing = {}, []
    for r in results.itertuples():
        path = Path(r.output_dir) / PREDICTIONS
        if not path.is_file():
            missing.append(f"{r.system} seed {r.seed}")
            continue
        p = read_predictions(path)
        counts[(r.system, r.seed)] = sentence_counts(p.gold, p.pred)
    if missing:
        log.warning("no %s for %s: their seeds enter the t-tests, not the bootstrap", PREDICTIONS, ", ".join(missing))
    by_system = {s: runs.set_index("seed")["test/f1"] for s, runs in results.groupby("system", sort=False)}
    rows = []
    for x, y in combinations(list(dict.fromkeys(results["system"])), 2):
        seeds = sorted(set(by_system[x].index) & set(by_system[y].index))
        if not seeds:  # a partial benchmark: nothing to pair yet
            continue
        kept = [s for s in seeds if (x, s) in counts and (y, s) in counts]
        boot = (paired_bootstrap([counts[(x, s)] for s in kept], [counts[(y, s)] for s in kept], samples, seed)
                if kept else dict.fromkeys(("delta", "ci_low", "ci_high", "p"), math.nan))
        rows.append({
            "system_a": x, "system_b": y, "seeds": len(seeds),
            "delta_f1": by_system[x][seeds].mean() - by_system[y][seeds].mean(),
            "ttest_p": paired_ttest(by_system[x][seeds].tolist(), by_system[y][seeds].tolist()),
            "bootstrap_seeds": len(kept), "bootstrap_delta": boot["delta"], "bootstrap_ci_low": boot["ci_low"],
            "bootstrap_ci_high": boot["ci_high"], "bootstrap_p": boot["p"],
        })
    return pd.DataFrame(rows)


def write_report(results: pd.DataFrame, out_dir: str | Path, samples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """``summary.csv``, ``summary.md``, ``comparisons.csv``, ``f1_by_type.png`` and ``f1_vs_time.png`` in ``out_dir``.

    Returns:
        The per-system summary.
    """
    out_dir = Path(out_dir)
    summary = summarize(results)
    summary.to_csv(out_dir / "summary.csv", index=False)
    comparisons = compare(results, samples, seed) if results["system"].nunique() > 1 else pd.DataFrame()
    comparisons.to_csv(out_dir / "comparisons.csv", index=False)
    (out_dir / "summary.md").write_text(summary_markdown(summary, comparisons, samples))
    plot_per_type(summary, results, out_dir / "f1_by_type.png")
    plot_f1_vs_time(results, out_dir / "f1_vs_time.png")
    log.info("wrote %s", ", ".join(str(out_dir / f) for f in ("results.csv", "summary.md", "summary.csv", "comparisons.csv")))
    return summary


def sweep_table(multirun_dir: str | Path) -> pd.DataFrame:
    """One row per finished job of a Hydra multirun (Optuna trials included), sorted by ``val/f1``.

    ``system`` is the job number; ``overrides`` the job's own overrides (the sampled values). A job
    without ``metrics.json`` (failed or still running) is skipped with a warning. Written to
    ``<multirun_dir>/trials.csv``.

    Raises:
        FileNotFoundError: no job folder holds a ``metrics.json``.
    """
    multirun_dir = Path(multirun_dir)
    rows = []
    for job in sorted((p for p in multirun_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)):
        if not (job / "metrics.json").exists():
            log.warning("%s: no metrics.json (failed or unfinished); skipped", job)
            continue
        rows.append({"system": f"job{job.name}", "seed": None} | read_run(job))
    if not rows:
        raise FileNotFoundError(f"{multirun_dir}: no job folder (0/, 1/, ...) holds a metrics.json")
    # The swept values as columns: every override key whose value differs between jobs.
    parsed = [dict(o.split("=", 1) for o in r.get("overrides", "").split() if "=" in o) for r in rows]
    varying = [k for k in dict.fromkeys(k for p in parsed for k in p) if len({p.get(k) for p in parsed}) > 1]
    for r, p in zip(rows, parsed):
        r |= {f"param:{k}": p.get(k) for k in varying}
    df = write_results(rows, multirun_dir / "trials.csv")
    params = [c for c in df.columns if c.startswith("param:")]
    df = df[[c for c in df.columns if c in ID_COLUMNS] + params + [c for c in df.columns if c not in ID_COLUMNS + params]]
    if "val/f1" in df:
        df = df.sort_values("val/f1", ascending=False)
    df.to_csv(multirun_dir / "trials.csv", index=False)
    return df
