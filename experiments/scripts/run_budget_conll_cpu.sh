#!/usr/bin/env bash
# The 60-minute budget run (experiments/budget_conll_cpu.md): SmolLM2-135M with right context
# (repeat 2), LoRA in the top layers and the trunk cache, against MiniLM-L6, each given 60 minutes
# of training (trainer.max_time) on the full CoNLL-2003 train set, side by side with one thread
# each (2-core machine), validated every 400 steps on 500 validation sentences, scored on the full
# test set with the best-validation checkpoint.
# Usage: experiments/scripts/run_budget_conll_cpu.sh OUT_DIR [LORA_LAYERS]
#   Run from the repository root with the venv active (or PY=.venv/bin/python); DATA defaults to ../shared/data/conll2003
set -euo pipefail
OUT=${1:?output dir}; K=${2:-6}
PY=${PY:-python}; DATA=${DATA:-../shared/data/conll2003}
COMMON=(experiment=conll_crf data.path=$DATA model.lr_backbone=2e-4 trainer.max_time=00:01:00:00
        trainer.max_steps=-1 trainer.max_epochs=-1 trainer.val_check_interval=400
        trainer.check_val_every_n_epoch=null trainer.num_sanity_val_steps=0 data.max_eval_samples=500
        trainer.accelerator=cpu seed=1)
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
mkdir -p "$OUT"
$PY -m llmner.train "${COMMON[@]}" backbone=smollm2_135m backbone.lora_layers=$K backbone.cache=true \
  hydra.run.dir="$OUT/smollm2" > "$OUT/smollm2.log" 2>&1 &
$PY -m llmner.train "${COMMON[@]}" backbone=minilm_l6 hydra.run.dir="$OUT/minilm" > "$OUT/minilm.log" 2>&1 &
wait
