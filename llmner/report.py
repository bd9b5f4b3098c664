"""Tables, plots and paired significance tests for benchmarks and sweeps (plain Python, no Hydra).

``python -m llmner.report sweep <multirun dir>``      one row per trial -> ``<dir>/trials.csv``
``python -m llmner.report benchmark <benchmark dir>`` redo ``summary.*``, plots and tests from the
                                                       run folders that ``llmner.benchmark`` left
``python -m llmner.report curves <dir> [<dir> ...]``  every validation of every run below the folders,
                                                       from TensorBoard -> ``curves.csv``, ``curves.png``

A run folder is what ``llmner.train`` writes: ``metrics.json``, ``test_predictions.conll`` and, under
Hydra, ``.hydra/overrides.yaml``. Every table here has one row per run, the columns ``system``,
``seed``, ``overrides``, ``output_dir``, then the metrics (``val/f1``, ``test/f1_PER``, ...).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from seqeval.metrics.sequence_labeling import get_entities

log = logging.getLogger(__name__)

ID_COLUMNS = ["system", "seed", "overrides", "output_dir"]
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


# --- reading runs ------------------------------------------------------------------------
def read_run(output_dir: str | Path) -> dict:
    """``metrics.json`` of a run folder, plus its Hydra overrides when it has them."""
    output_dir = Path(output_dir)
    row = {"output_dir": str(output_dir)}
    overrides = output_dir / ".hydra" / "overrides.yaml"
    if overrides.exists():
        import yaml  # Hydra's own dependency

        row["overrides"] = " ".join(yaml.safe_load(overrides.read_text()) or [])
    row |= json.loads((output_dir / "metrics.json").read_text())
    return row


def read_conll(path: str | Path) -> tuple[list[list[str]], list[list[str]]]:
    """Gold and predicted tags per sentence of a ``token gold predicted`` file (``test_predictions.conll``)."""
    gold, pred, g, p = [], [], [], []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if g:
                gold.append(g), pred.append(p)
                g, p = [], []
            continue
        cols = line.split()
        g.append(cols[-2]), p.append(cols[-1])
    if g:
        gold.append(g), pred.append(p)
    return gold, pred


# --- paired statistics -------------------------------------------------------------------
def sentence_counts(gold: list[list[str]], pred: list[list[str]]) -> np.ndarray:
    """(S, 3) per sentence: correct entities, predicted entities, gold entities.

    Summed over any set of sentences they give that set's micro entity F1 exactly as seqeval
    (and conlleval) compute it, since no entity crosses a sentence boundary.
    """
    out = np.zeros((len(gold), 3), dtype=np.int64)
    for i, (g, p) in enumerate(zip(gold, pred)):
        gs, ps = set(get_entities(g)), set(get_entities(p))
        out[i] = (len(gs & ps), len(ps), len(gs))
    return out


def f1_from_counts(counts: np.ndarray) -> np.ndarray:
    """Micro F1 from summed counts (..., 3) -> (...); 0 where nothing was predicted or expected."""
    tp, n_pred, n_gold = counts[..., 0], counts[..., 1], counts[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(n_pred + n_gold > 0, 2 * tp / (n_pred + n_gold), 0.0)
    return f1


def paired_bootstrap(a: list[np.ndarray], b: list[np.ndarray], samples: int = 1000, seed: int = 0) -> dict:
    """Paired bootstrap over test sentences for the entity F1 of systems A and B.

    Each system gives one (S, 3) count array per seed (``sentence_counts``), on the same S
    sentences. A bootstrap sample draws S sentences with replacement, the same ones for both
    systems and every seed; a system's score on it is its F1 averaged over its seeds (seeds
    pooled). The p-value is two-sided, from the bootstrap distribution of the difference shifted
    to mean 0 (Berg-Kirkpatrick et al., 2012): how often a difference as large as the one seen
    arises from resampling the test set alone. Seed-to-seed variation is the t-test's job.

    Returns:
        ``delta`` (F1 of A minus B on the full test set), ``ci_low``/``ci_high`` (95% percentile
        interval of the difference) and ``p``.
    """
    n = {len(c) for c in a + b}
    if len(n) != 1:
        raise ValueError(f"systems were scored on different test sets (sentence counts {sorted(n)})")
    S = n.pop()
    A, B = np.stack(a), np.stack(b)  # (seeds, S, 3)
    delta = float(f1_from_counts(A.sum(1)).mean() - f1_from_counts(B.sum(1)).mean())
    rng = np.random.default_rng(seed)
    deltas = np.empty(samples)
    for k in range(samples):
        idx = rng.integers(0, S, S)
        deltas[k] = f1_from_counts(A[:, idx].sum(1)).mean() - f1_from_counts(B[:, idx].sum(1)).mean()
    extreme = np.abs(deltas - deltas.mean()) >= abs(delta) - 1e-12
    return {
        "delta": delta,
        "ci_low": float(np.percentile(deltas, 2.5)),
        "ci_high": float(np.percentile(deltas, 97.5)),
        "p": float((extreme.sum() + 1) / (samples + 1)),
    }


def paired_ttest(a: list[float], b: list[float]) -> float:
    """Two-sided paired t-test over seeds (A's and B's test F1, paired by seed): the p-value.

    ``nan`` with fewer than 2 pairs; 1.0 when every pair is equal (no difference, zero variance).
    """
    from scipy.stats import ttest_rel

    d = np.asarray(a, float) - np.asarray(b, float)
    if len(d) < 2:
        return math.nan
    if np.allclose(d, d[0]):
        return 1.0 if abs(d[0]) < 1e-12 else 0.0  # a constant non-zero difference: t is infinite
    return float(ttest_rel(a, b).pvalue)


# --- tables ------------------------------------------------------------------------------
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
        path = Path(r.output_dir) / "test_predictions.conll"
        if not path.is_file():
            missing.append(f"{r.system} seed {r.seed}")
            continue
        gold, pred = read_conll(path)
        counts[(r.system, r.seed)] = sentence_counts(gold, pred)
    if missing:
        log.warning("no test_predictions.conll for %s: their seeds enter the t-tests, not the bootstrap", ", ".join(missing))
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


def markdown_table(df: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub markdown table (no ``tabulate`` dependency)."""
    def cell(v):
        if isinstance(v, float):
            return "nan" if math.isnan(v) else (f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.{digits}g}")
        return str(v)

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def summary_markdown(summary: pd.DataFrame, comparisons: pd.DataFrame, samples: int) -> str:
    """``summary.md``: the per-system table and the pairwise tests, with what each column means."""
    shown = summary.copy()
    shown.insert(2, "test_f1", [f"{m:.4f} ± {s:.4f}" for m, s in zip(shown.pop("test_f1_mean"), shown.pop("test_f1_sd"))])
    text = "# Benchmark summary\n\n"
    text += ("Test F1: entity micro F1 (conlleval), mean ± sd over seeds. Per-type columns: mean F1. "
             "Model selection on validation only. `test_sentences_per_s`: test sentences / seconds of the "
             "whole test pass (`test/seconds`); `test_words_per_s` likewise in words. `peak_memory_mb`: peak RSS of the process during the run "
             "(CPU), or peak CUDA memory allocated (GPU); max over seeds.\n\n")
    text += markdown_table(shown)
    if len(comparisons):
        text += (f"\n## Paired tests\n\n`ttest_p`: paired t-test over seeds on test F1. `bootstrap_*`: paired "
                 f"bootstrap over test sentences ({samples} samples, seeds pooled: each sample scores both "
                 "systems on the same resampled sentences, F1 averaged over seeds); 95% interval of F1(A) - F1(B) "
                 "and two-sided p.\n\n")
        text += markdown_table(comparisons)
    return text


# --- plots -------------------------------------------------------------------------------
def save_figure(fig, path: str | Path) -> None:
    """Lay out, write (PNG, 120 dpi) and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_per_type(summary: pd.DataFrame, results: pd.DataFrame, path: str | Path) -> None:
    """Grouped bars: per-type test F1 (mean over seeds, sd as error bars) for each system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    types = [c.removeprefix("f1_") for c in summary.columns if c.startswith("f1_")] + ["all"]
    systems = summary["system"].tolist()
    width = 0.8 / len(systems)
    fig, ax = plt.subplots(figsize=(1.6 * len(types) + 2, 4))
    for k, name in enumerate(systems):
        runs = results[results["system"] == name]
        cols = [f"test/f1_{t}" if t != "all" else "test/f1" for t in types]
        means = [runs[c].mean() for c in cols]
        sds = [runs[c].std(ddof=1) if len(runs) > 1 else 0.0 for c in cols]
        ax.bar(np.arange(len(types)) + k * width - 0.4 + width / 2, means, width, yerr=sds, label=name, capsize=2)
    ax.set_xticks(np.arange(len(types)), types)
    ax.set_ylabel("test F1")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("Test F1 by entity type (mean ± sd over seeds)")
    save_figure(fig, path)


def plot_f1_vs_time(results: pd.DataFrame, path: str | Path) -> None:
    """Test F1 against training seconds: one dot per run, a cross at each system's means."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, runs in results.groupby("system", sort=False):
        dots = ax.scatter(runs["train/seconds"], runs["test/f1"], alpha=0.5, label=name)
        ax.scatter(runs["train/seconds"].mean(), runs["test/f1"].mean(), marker="x", s=80, color=dots.get_facecolor()[0])
    ax.set_xlabel("training seconds")
    ax.set_ylabel("test F1")
    ax.set_title("Test F1 against training time (x: mean over seeds)")
    ax.legend(fontsize=8)
    save_figure(fig, path)


# --- whole reports -----------------------------------------------------------------------
def write_results(rows: list[dict], path: str | Path) -> pd.DataFrame:
    """One row per run, identity columns first, then metrics sorted by name."""
    df = pd.DataFrame(rows)
    first = [c for c in ID_COLUMNS if c in df]
    df = df[first + sorted(c for c in df.columns if c not in first)]
    df.to_csv(path, index=False)
    return df


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


def read_curves(dirs: list[str | Path], metric: str = "val/f1") -> pd.DataFrame:
    """Every logged value of ``metric`` of every run below ``dirs``, read from TensorBoard event files.

    A run is a folder holding ``tensorboard/events.out.tfevents.*`` (what ``llmner.train`` writes); a
    resumed run's several event files are read together. Columns:
    - ``run``: the run folder relative to the folder given (after that folder's name when several
      are given), or the folder's own name;
    - ``step``; ``seconds`` since the run's first event (validation included, and a resumed run's
      pause too); ``metric``'s name: the value.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows = []
    for top in map(Path, dirs):
        if not top.is_dir():
            raise FileNotFoundError(f"{top}: no such folder")
        for board in sorted({f.parent for f in top.rglob("events.out.tfevents.*")}):
            run_dir = board.parent if board.name == "tensorboard" else board
            name = str(run_dir.relative_to(top)) if run_dir != top else top.name
            if len(dirs) > 1 and run_dir != top:
                name = f"{top.name}/{name}"  # runs of different folders stay apart
            events, starts = [], []
            for f in sorted(board.glob("events.out.tfevents.*")):
                acc = EventAccumulator(str(f), size_guidance={"scalars": 0})  # 0: keep every point
                acc.Reload()
                starts.append(acc.FirstEventTimestamp())
                if metric in acc.Tags()["scalars"]:
                    events += acc.Scalars(metric)
            rows += [{"run": name, "step": e.step, "seconds": e.wall_time - min(starts), metric: e.value} for e in events]
    if not rows:
        raise FileNotFoundError(f"no TensorBoard event file with {metric!r} below {', '.join(map(str, dirs))}")
    return pd.DataFrame(rows).sort_values(["run", "step"], kind="stable").reset_index(drop=True)


def plot_curves(curves: pd.DataFrame, path: str | Path, metric: str = "val/f1") -> None:
    """``metric`` against training step (left) and against seconds since the run began (right), a line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for name, runs in curves.groupby("run", sort=False):
        axes[0].plot(runs["step"], runs[metric], marker="o", label=name)
        axes[1].plot(runs["seconds"], runs[metric], marker="o", label=name)
    axes[0].set_xlabel("training step")
    axes[1].set_xlabel("seconds since the run began")
    axes[0].set_ylabel(metric)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{metric} at each validation")
    save_figure(fig, path)


def sweep_table(multirun_dir: str | Path) -> pd.DataFrame:
    """One row per finished job of a Hydra multirun (Optuna trials included), sorted by ``val/f1``.

    ``system`` is the job number; ``overrides`` the job's own overrides (the sampled values). A job
    without ``metrics.json`` (failed or still running) is skipped with a warning.
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
    except FileNotFoundError as e:  # a folder without the runs asked for: one line, no traceback
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
