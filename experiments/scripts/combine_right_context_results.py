"""The combined results.csv of experiments/right_context_conll_cpu.md: benchmark results.csv files
(300-step grid, 1,500 steps, MiniLM) in one file, one row per (system, seed), later files winning.

Usage:
    python experiments/scripts/combine_right_context_results.py OUT_DIR experiments/figures/right_context_conll_cpu_results.csv RUN/results.csv ...
    python -m llmner.report benchmark OUT_DIR

Runs of earlier sessions keep their rows (metrics) in the figures CSV; their folders, with the test
predictions, are gone, so the report's bootstrap uses the seeds whose predictions are still on disk
and its t-tests use every seed (``llmner.report.compare``).
"""
import sys
from pathlib import Path

import pandas as pd

ORDER = ["causal", "bidirectional_all", "bidirectional_middle", "repeat2", "minilm_crf_same_wallclock", "minilm_crf_dropout", "minilm_crf_no_dropout",
         "causal_1500", "bidirectional_all_1500", "bidirectional_middle_1500", "repeat2_1500"]

out, files = Path(sys.argv[1]), sys.argv[2:]
res = pd.concat([pd.read_csv(f) for f in files], ignore_index=True).drop_duplicates(["system", "seed"], keep="last")
rank = res["system"].map({s: i for i, s in enumerate(ORDER)}).fillna(len(ORDER))  # unlisted systems last
res = res.assign(_rank=rank).sort_values(["_rank", "seed"]).drop(columns="_rank")
out.mkdir(parents=True, exist_ok=True)
res.to_csv(out / "results.csv", index=False)
print(res[["system", "seed", "test/f1", "val/f1", "train/seconds", "test/seconds", "memory/peak_mb"]].to_string())
