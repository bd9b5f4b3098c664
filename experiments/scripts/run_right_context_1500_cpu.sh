#!/usr/bin/env bash
# The 1,500-step point of experiments/right_context_conll_cpu.md: repetition and the middle third
# bidirectional, SmolLM2-135M + LoRA + CRF, validated every 300 steps on 300 validation sentences
# (the curve; the best of those checkpoints is tested), the full test set at the end.
# Usage: experiments/scripts/run_right_context_1500_cpu.sh OUT_DIR [SEEDS]
#   Run from the repository root with the venv active (or PY=.venv/bin/python); DATA defaults to ../shared/data/conll2003
# Two processes side by side, one thread each (2-core machine).
set -euo pipefail
OUT=${1:?output dir}; SEEDS=${2:-[1]}
PY=${PY:-python}
COMMON=(data_path=${DATA:-../shared/data/conll2003} max_steps=1500 "seeds=$SEEDS"
        'extra_overrides=["data.max_eval_samples=300","trainer.accelerator=cpu","trainer.val_check_interval=300"]')
S='backbone=smollm2_135m","head=crf'
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
$PY -m llmner.benchmark "${COMMON[@]}" hydra.run.dir="$OUT/r1500" \
  "systems=[{name:repeat2_1500,overrides:[\"$S\",\"model.encoder.repeat=2\"]}]" > "$OUT/r1500.log" 2>&1 &
$PY -m llmner.benchmark "${COMMON[@]}" hydra.run.dir="$OUT/m1500" \
  "systems=[{name:bidirectional_middle_1500,overrides:[\"$S\",\"backbone.attention=bidirectional\",\"backbone.unmask_layers=middle\"]}]" \
  > "$OUT/m1500.log" 2>&1 &
wait
