#!/usr/bin/env bash
# The runs and analyses of experiments/failure_analysis_conll_cpu.md: SmolLM2-135M with a CRF and a
# linear head and MiniLM-L6 with a CRF head, one seed, 300 steps of batch 8 each, validation capped
# at 300 sentences, the full CoNLL-2003 test set; then llmner.analyze on the pairs.
#   bash experiments/scripts/run_failure_analysis_cpu.sh [extra benchmark overrides]
# One process, one thread (a 2-core machine shared with other work). Rerunning resumes: finished
# runs are kept, and the tables and analyses are written again.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUN_DIR=${RUN_DIR:-logs/benchmark/failure_analysis_cpu}
mkdir -p "$(dirname "$RUN_DIR")"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1
# the benchmark ends with llmner.analyze.analyze_benchmark: its best system (mean val_f1) against
# each other one, in $RUN_DIR/analysis/<best>_vs_<other>/
.venv/bin/python -m llmner.benchmark \
  data_path=../shared/data/conll2003 max_steps=300 'seeds=[1]' \
  'systems=[{name:minilm_crf,overrides:["backbone=minilm_l6","head=crf"]},{name:smollm2_crf,overrides:["backbone=smollm2_135m","head=crf"]},{name:smollm2_linear,overrides:["backbone=smollm2_135m","head=linear"]}]' \
  'extra_overrides=["data.max_eval_samples=300","trainer.accelerator=cpu"]' \
  hydra.run.dir="$RUN_DIR" "$@" 2>&1 | tee -a "$RUN_DIR.log"
# the head comparison on one backbone is not among the best-vs-other pairs: analyze it directly
.venv/bin/python -m llmner.analyze "$RUN_DIR/smollm2_crf/seed1" "$RUN_DIR/smollm2_linear/seed1" \
  --out "$RUN_DIR/analysis/smollm2_crf_vs_smollm2_linear" --names smollm2_crf smollm2_linear
