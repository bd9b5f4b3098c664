#!/usr/bin/env bash
# Quality per step of a conll_crf_cpu setting (experiments/equal_time_conll_cpu.md, "Calibration"):
# the setting of issue 23's calibration, 2,400 train sentences, 600 steps of batch 8, validated every
# 200 steps on 500 sentences, tested on 1,000, seed 1, one thread. Runs sharing a trunk (the same
# lora_layers, layer and cache_int8) reuse its states from STORE instead of filling again.
# Usage (from the repository root, venv active or PY=.venv/bin/python):
#   experiments/scripts/run_equal_time_calibration_cpu.sh OUT_DIR NAME [overrides...]
#   e.g. experiments/scripts/run_equal_time_calibration_cpu.sh logs/calibration k8_lr1e-3 model.lr_backbone=1e-3
set -euo pipefail
OUT=${1:?output dir}; NAME=${2:?run name}; shift 2
PY=${PY:-python}; DATA=${DATA:-../shared/data/conll2003}; STORE=${STORE:-$OUT/trunk_store}
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"
$PY -m llmner.train experiment=conll_crf_cpu data.path=$DATA data.max_train_samples=2400 data.max_eval_samples=500 \
  data.max_test_samples=1000 trainer.max_steps=600 trainer.val_check_interval=200 trainer.check_val_every_n_epoch=null \
  seed=1 backbone.cache_dir="$STORE" "$@" hydra.run.dir="$OUT/$NAME" > "$OUT/$NAME.log" 2>&1
grep -E '"(val|test)/f1"|fill_seconds|train/seconds' "$OUT/$NAME/metrics.json"
