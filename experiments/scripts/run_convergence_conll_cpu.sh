#!/usr/bin/env bash
# Convergence runs (experiments/equal_time_conll_cpu.md, issue 23): where each system plateaus when time
# is not the limit. SmolLM2-135M with the CPU recipe (conll_crf_cpu) and MiniLM-L6 (conll_crf, read once),
# side by side with one thread each, the same seed, the same epoch budget (the learning-rate schedule
# spans it), validated every VAL_EVERY steps on the WHOLE validation set (3,250 sentences: 500 proved
# too noisy to pick a checkpoint in the first 60-minute pair) and stopped early when val F1 has not
# improved for PATIENCE validations. Tested on the full test set with the best-validation checkpoint.
# Resumable: run the same command again after an interruption and each run continues from its
# checkpoints/last.ckpt (written every 100 steps and every 10 minutes).
# Usage (from the repository root, venv active or PY=.venv/bin/python):
#   experiments/scripts/run_convergence_conll_cpu.sh OUT_DIR SEED [extra overrides for SmolLM2...]
#   e.g. experiments/scripts/run_convergence_conll_cpu.sh logs/convergence 1
set -euo pipefail
OUT=${1:?output dir}; SEED=${2:?seed}; shift 2
PY=${PY:-python}; DATA=${DATA:-../shared/data/conll2003}
EPOCHS=${EPOCHS:-8}; VAL_EVERY=${VAL_EVERY:-1000}; PATIENCE=${PATIENCE:-4}
COMMON=(data.path=$DATA trainer.max_epochs=$EPOCHS trainer.val_check_interval=$VAL_EVERY
        trainer.check_val_every_n_epoch=null trainer.num_sanity_val_steps=0
        callbacks.early_stopping.patience=$PATIENCE trainer.accelerator=cpu seed=$SEED)
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
RUN="$OUT/converge-seed$SEED"
mkdir -p "$RUN"
resume() {  # the run's latest checkpoint, if an earlier attempt left one
  local last="$RUN/$1/checkpoints/last.ckpt"
  if [ -f "$last" ]; then echo "ckpt_path=$last"; fi
}
/usr/bin/time -v $PY -m llmner.train experiment=conll_crf_cpu "${COMMON[@]}" $(resume smollm2) "$@" \
  hydra.run.dir="$RUN/smollm2" >> "$RUN/smollm2.log" 2>&1 &
/usr/bin/time -v $PY -m llmner.train experiment=conll_crf backbone=minilm_l6 model.lr_backbone=2e-4 "${COMMON[@]}" \
  $(resume minilm) hydra.run.dir="$RUN/minilm" >> "$RUN/minilm.log" 2>&1 &
wait
grep -h '"test/f1"' "$RUN"/*/metrics.json || true
