#!/usr/bin/env bash
# The runs of experiments/right_context_conll_cpu.md, sections "More seeds at 1,500 steps" and
# "MiniLM-L6 with its dropout on" (one thread per process; two ran side by side on 2 cores).
# Usage: experiments/scripts/run_right_context_seeds_1500_cpu.sh OUT_DIR NAME SEED
#   Run from the repository root with the venv active (or PY=.venv/bin/python); DATA defaults to ../shared/data/conll2003
#   NAME: causal_1500 | bidirectional_all_1500 | bidirectional_middle_1500 | repeat2_1500
#         | minilm_crf_dropout | minilm_crf_no_dropout
set -euo pipefail
OUT=${1:?output dir}; NAME=${2:?system}; SEED=${3:?seed}
PY=${PY:-python}; DATA=${DATA:-../shared/data/conll2003}
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
S='"backbone=smollm2_135m","head=crf"'
M='"backbone=minilm_l6","head=crf","+trainer.max_time=00:00:28:11"'
case $NAME in
  causal_1500) OV="[$S]" ;;
  bidirectional_all_1500) OV="[$S,\"backbone.attention=bidirectional\"]" ;;
  bidirectional_middle_1500) OV="[$S,\"backbone.attention=bidirectional\",\"backbone.unmask_layers=middle\"]" ;;
  repeat2_1500) OV="[$S,\"model.encoder.repeat=2\"]" ;;
  minilm_crf_dropout) OV="[$M]" ;;
  minilm_crf_no_dropout) OV="[$M,\"backbone.config_overrides={hidden_dropout_prob:0.0,attention_probs_dropout_prob:0.0}\"]" ;;
  *) echo "unknown system $NAME" >&2; exit 2 ;;
esac
if [[ $NAME == minilm* ]]; then
  COMMON=(max_steps=1600 'extra_overrides=["data.max_eval_samples=300","trainer.accelerator=cpu"]')
else
  COMMON=(max_steps=1500 'extra_overrides=["data.max_eval_samples=300","trainer.accelerator=cpu","trainer.val_check_interval=300","backbone.gradient_checkpointing=false"]')
fi
$PY -m llmner.benchmark data_path="$DATA" "${COMMON[@]}" "seeds=[$SEED]" "systems=[{name:$NAME,overrides:$OV}]" \
  hydra.run.dir="$OUT/${NAME}_s$SEED" > "$OUT/${NAME}_s$SEED.log" 2>&1
