"""Keep and summarise the equal-time pairs (experiments/equal_time_conll_cpu.md, issue 23).

``collect RUNS_DIR``: for each pair folder ``RUNS_DIR/<budget>-seed<N>/`` that
``run_equal_time_conll_cpu.sh`` left (``smollm2/`` and ``minilm/`` runs, their logs ending with
``/usr/bin/time -v``), write to ``experiments/figures/equal_time_conll_cpu/pair<minutes>_seed<N>/``
what the record needs and the run folders (not committed) lose with the machine:
``<system>_metrics.json``, ``<system>_sentence_counts.csv`` (per test sentence: correct, predicted
and gold entities, from which any bootstrap over seeds can be recomputed), ``<system>_resources.json``
(CPU seconds, wall clock, peak RSS), ``val_curves.csv`` (TensorBoard's val/f1 against time) and
``machine.txt`` (the CPU model and its widest vector unit: wall-clock budgets compare only on one kind
of machine, so run ``collect`` on the machine that ran the pair). A pair folder named
``<budget>-seed<N>-<variant>`` (rename it after the run: a lever's pair, SmolLM2 with other overrides) goes to
``pair<minutes>_seed<N>_<variant>/``, which ``summary`` leaves out. A convergence pair of
``run_convergence_conll_cpu.sh`` (``RUNS_DIR/converge-seed<N>/``) goes to ``converge_seed<N>/``, which
``summary`` leaves out (it has no budget).

``summary``: one row per budget and kind of machine over every kept pair (and, where a budget ran on
several kinds, one row over all of them): mean test F1 of each system, the difference,
the paired t-test over seeds and the paired bootstrap over test sentences (seeds pooled), with the
same functions as ``python -m llmner.report``. Printed as a markdown table.

Usage (repository root): ``python experiments/scripts/equal_time_summary.py collect logs/equal_time``
then ``python experiments/scripts/equal_time_summary.py summary``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from llmner.evaluation.predictions import read_predictions
from llmner.evaluation.runs import read_curves
from llmner.evaluation.statistics import paired_bootstrap, paired_ttest, sentence_counts

FIGURES = Path(__file__).resolve().parents[1] / "figures" / "equal_time_conll_cpu"
SYSTEMS = ("smollm2", "minilm")
TIME_FIELDS = {"Maximum resident set size (kbytes)": "peak_rss_mb", "User time (seconds)": "user_s",
               "System time (seconds)": "system_s", "Elapsed (wall clock) time (h:mm:ss or m:ss)": "wall"}


def resources(log: Path) -> dict:
    """What ``/usr/bin/time -v`` appended to a run's log."""
    out = {}
    for line in log.read_text(errors="replace").splitlines():
        key, _, value = line.strip().rpartition(": ")
        if key in TIME_FIELDS:
            out[TIME_FIELDS[key]] = value
    if "peak_rss_mb" in out:
        out["peak_rss_mb"] = round(int(out["peak_rss_mb"]) / 1024)
    for k in ("user_s", "system_s"):
        if k in out:
            out[k] = float(out[k])
    return out


def machine() -> str:
    """``<CPU model>, <cores> cores, <avx512|avx2|...>`` of this machine (Linux)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "unknown CPU")
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
    vector = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "no avx2"
    return f"{model}, {os.cpu_count()} cores, {vector}"


def collect(runs_dir: Path) -> None:
    for pair in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        m = re.fullmatch(r"(\d{2})(\d{2})(\d{2})(\d{2})-seed(\d+)(-[\w-]+)?", pair.name)  # DDHHMMSS-seedN[-variant]
        c = re.fullmatch(r"converge-seed(\d+)", pair.name)  # run_convergence_conll_cpu.sh
        if not (m or c) or not all((pair / s / "metrics.json").is_file() for s in SYSTEMS):
            print(f"skipped {pair} (not a finished pair)")
            continue
        if c:
            out = FIGURES / f"converge_seed{c.group(1)}"
        else:
            d, h, mi, _, seed = (int(x) for x in m.groups()[:5])
            variant = (m.group(6) or "").replace("-", "_")  # a lever's pair, e.g. ...-seed3-layer14: kept, not summarised
            out = FIGURES / f"pair{(d * 24 + h) * 60 + mi}_seed{seed}{variant}"
        out.mkdir(parents=True, exist_ok=True)
        for s in SYSTEMS:
            shutil.copyfile(pair / s / "metrics.json", out / f"{s}_metrics.json")
            p = read_predictions(pair / s)
            np.savetxt(out / f"{s}_sentence_counts.csv", sentence_counts(p.gold, p.pred), fmt="%d", delimiter=",",
                       header="correct,predicted,gold", comments="")
            (out / f"{s}_resources.json").write_text(json.dumps(resources(pair / f"{s}.log"), indent=2) + "\n")
        (out / "machine.txt").write_text(machine() + "\n")
        curves = read_curves([pair / s for s in SYSTEMS])
        curves.to_csv(out / "val_curves.csv", index=False)
        print(f"kept {pair} -> {out}")


def summary() -> None:
    rows = []
    for pair in sorted(FIGURES.glob("pair*_seed*")):
        recipe = re.fullmatch(r"pair(\d+)_seed(\d+)", pair.name)
        if not recipe:  # a variant's pair (pair30_seed3_layer14): the record compares it by hand
            continue
        minutes, seed = (int(x) for x in recipe.groups())
        where = pair / "machine.txt"
        machine = re.sub(r"\s*\(.*?\)", "", where.read_text().strip()) if where.is_file() else "unknown"  # a note by hand aside
        row = {"minutes": minutes, "seed": seed, "machine": machine}
        for s in SYSTEMS:
            row[s] = json.loads((pair / f"{s}_metrics.json").read_text())["test/f1"]
            counts = pair / f"{s}_sentence_counts.csv"
            row[f"{s}_counts"] = np.loadtxt(counts, delimiter=",", skiprows=1, dtype=np.int64) if counts.is_file() else None
        rows.append(row)
    df = pd.DataFrame(rows)
    print("| budget | machine | seeds | SmolLM2 test F1 | MiniLM-L6 test F1 | SmolLM2 − MiniLM | t-test p | bootstrap 95% CI (seeds) |")
    print("|---|---|---|---|---|---|---|---|")
    for minutes, by_budget in df.groupby("minutes"):
        for where, g in by_budget.groupby("machine"):
            print(_row(minutes, where, g))
        kinds = by_budget["machine"].nunique()
        if kinds > 1:  # each pair is paired on its own machine; pooled, the seeds mix the kinds
            print(_row(minutes, f"all {kinds} kinds", by_budget.sort_values("seed")))


def _row(minutes: int, where: str, g: pd.DataFrame) -> str:
    """One summary line: mean test F1 of each system over the pairs ``g``, the t-test and the bootstrap."""
    a, b = g["smollm2"].tolist(), g["minilm"].tolist()
    kept = g.dropna(subset=["smollm2_counts", "minilm_counts"])
    if len(kept):
        boot = paired_bootstrap(list(kept["smollm2_counts"]), list(kept["minilm_counts"]), 1000, 0)
        ci = f"[{boot['ci_low']:+.3f}, {boot['ci_high']:+.3f}] ({len(kept)})"
    else:
        ci = "no predictions kept"
    sd = (lambda x: f" ± {np.std(x, ddof=1):.3f}" if len(x) > 1 else "")
    return (f"| {minutes} min | {where} | {', '.join(map(str, g['seed']))} | {np.mean(a):.3f}{sd(a)} | {np.mean(b):.3f}{sd(b)} "
            f"| {np.mean(a) - np.mean(b):+.3f} | {paired_ttest(a, b):.3f} | {ci} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("collect").add_argument("runs_dir", type=Path)
    sub.add_parser("summary")
    args = parser.parse_args()
    collect(args.runs_dir) if args.command == "collect" else summary()


if __name__ == "__main__":
    main()
