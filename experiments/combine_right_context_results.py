"""The combined results.csv of experiments/right_context_conll_cpu.md: every run's benchmark results.csv
(300-step grid, 1,500 steps, MiniLM) in one file, one row per (system, seed), runs whose predictions
exist only. The run folders are those of the record's sessions (seed-1 runs copied from /tmp/rc).

Usage: python experiments/combine_right_context_results.py OUT_DIR; then python -m llmner.report benchmark OUT_DIR
"""
import glob, sys
import pandas as pd
from pathlib import Path

files = sorted(set(glob.glob("/work/runs/keep_rc/r1/p*/results.csv") + ["/work/runs/r1500/results.csv", "/work/runs/m1500/results.csv",
         "/work/runs/s2_causal/results.csv", "/work/runs/s2_bidirectional_middle/results.csv"] + glob.glob("/work/runs/s10/*/results.csv")))
rows = []
for f in files:
    df = pd.read_csv(f)
    df["output_dir"] = [d.replace("/tmp/rc/", "/work/runs/keep_rc/") for d in df["output_dir"]]
    df = df[df["output_dir"].map(lambda d: (Path(d) / "test_predictions.conll").exists())]
    rows.append(df)
res = pd.concat(rows, ignore_index=True)
res = res.drop_duplicates(["system", "seed"], keep="last")
order = ["causal", "bidirectional_all", "bidirectional_middle", "repeat2", "minilm_crf_same_wallclock",
         "causal_1500", "bidirectional_all_1500", "bidirectional_middle_1500", "repeat2_1500"]
res["_o"] = res["system"].map(order.index)
res = res.sort_values(["_o", "seed"]).drop(columns="_o")
out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
res.to_csv(out / "results.csv", index=False)
print(res[["system", "seed", "test/f1", "val/f1", "train/seconds", "test/seconds", "memory/peak_mb"]].to_string())
