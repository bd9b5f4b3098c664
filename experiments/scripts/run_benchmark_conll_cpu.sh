#!/usr/bin/env bash
# The recorded CPU benchmark of experiments/benchmark_conll_cpu.md: MiniLM-L6 vs SmolLM2-135M, linear
# and CRF heads, 3 seeds, 100 steps of batch 8 each, validation capped at 300 sentences (validated
# once, at step 100), the full CoNLL-2003 test set (3453 sentences).
#   bash experiments/scripts/run_benchmark_conll_cpu.sh [extra benchmark overrides]
# Log: logs/benchmark/conll_cpu.log. Rerunning resumes: finished (system, seed) runs are kept.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUN_DIR=${RUN_DIR:-logs/benchmark/conll_cpu}
mkdir -p "$(dirname "$RUN_DIR")"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} .venv/bin/python -m llmner.benchmark \
  data_path=../shared/data/conll2003 \
  max_steps=100 'seeds=[1,2,3]' \
  'extra_overrides=["data.max_eval_samples=300","trainer.accelerator=cpu"]' \
  hydra.run.dir="$RUN_DIR" "$@" 2>&1 | tee -a "$RUN_DIR.log"
