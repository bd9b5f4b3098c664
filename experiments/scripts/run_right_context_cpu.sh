#!/usr/bin/env bash
# Right context for a decoder tagger on CoNLL-2003 (experiments/right_context_conll_cpu.md).
# Usage: experiments/scripts/run_right_context_cpu.sh OUT_DIR [SEEDS]
#   Run from the repository root with the venv active (or PY=.venv/bin/python); DATA defaults to ../shared/data/conll2003
# Two benchmark processes side by side, one thread each (2-core machine); each compares two
# attention settings of SmolLM2-135M + LoRA + CRF at 300 steps on the full test set.
set -euo pipefail
OUT=${1:?output dir}; SEEDS=${2:-[1]}
PY=${PY:-python}
COMMON=(data_path=${DATA:-../shared/data/conll2003} max_steps=300 "seeds=$SEEDS"
        'extra_overrides=["data.max_eval_samples=300","trainer.accelerator=cpu"]')
S='backbone=smollm2_135m","head=crf'
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
$PY -m llmner.benchmark "${COMMON[@]}" hydra.run.dir="$OUT/p1" \
  "systems=[{name:causal,overrides:[\"$S\"]},{name:bidirectional_all,overrides:[\"$S\",\"backbone.attention=bidirectional\"]}]" \
  > "$OUT/p1.log" 2>&1 &
$PY -m llmner.benchmark "${COMMON[@]}" hydra.run.dir="$OUT/p2" \
  "systems=[{name:repeat2,overrides:[\"$S\",\"model.encoder.repeat=2\"]},{name:bidirectional_middle,overrides:[\"$S\",\"backbone.attention=bidirectional\",\"backbone.unmask_layers=middle\"]}]" \
  > "$OUT/p2.log" 2>&1 &
wait
