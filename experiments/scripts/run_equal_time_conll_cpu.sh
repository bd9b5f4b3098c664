#!/usr/bin/env bash
# Equal wall clock (experiments/equal_time_conll_cpu.md, issue 23): SmolLM2-135M with the CPU recipe
# (experiment=conll_crf_cpu: cached trunk filled up front, bidirectional adapted top layers) against
# MiniLM-L6 (conll_crf, read once), side by side with one thread each on a 2-core machine and nothing
# else running, the same seed and the same trainer.max_time budget. The budget starts when training
# starts: it covers the trunk cache's fill and every validation; the model loading before it is in
# each run's log and its wall time. Both train on the full train set, validate on 500 sentences every
# VAL_EVERY steps and are tested on the full test set with their best-validation checkpoint.
# The budget is the stopping rule: early stopping is off for both (the time schedule decays the learning
# rate to 0 where the budget ends; with patience 5 on 500 noisy validation sentences, both runs of the first
# 60-minute pair stopped after about 30 minutes). EARLY_STOP=1 keeps each recipe's early stopping.
# Usage (from the repository root, venv active or PY=.venv/bin/python):
#   experiments/scripts/run_equal_time_conll_cpu.sh OUT_DIR BUDGET SEED [extra overrides for SmolLM2...]
#   e.g. experiments/scripts/run_equal_time_conll_cpu.sh logs/equal_time 00:00:15:00 1
set -euo pipefail
OUT=${1:?output dir}; BUDGET=${2:?budget DD:HH:MM:SS}; SEED=${3:?seed}; shift 3
PY=${PY:-python}; DATA=${DATA:-../shared/data/conll2003}; VAL_EVERY=${VAL_EVERY:-400}
COMMON=(data.path=$DATA trainer.max_time=$BUDGET trainer.val_check_interval=$VAL_EVERY
        trainer.check_val_every_n_epoch=null trainer.num_sanity_val_steps=0 data.max_eval_samples=500
        trainer.accelerator=cpu seed=$SEED)
[ "${EARLY_STOP:-0}" = 1 ] || COMMON+=("~callbacks.early_stopping")
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
RUN="$OUT/$BUDGET-seed$SEED"; RUN=${RUN//:/}
mkdir -p "$RUN"
/usr/bin/time -v $PY -m llmner.train experiment=conll_crf_cpu "${COMMON[@]}" trainer.max_epochs=100 "$@" \
  hydra.run.dir="$RUN/smollm2" > "$RUN/smollm2.log" 2>&1 &
/usr/bin/time -v $PY -m llmner.train experiment=conll_crf backbone=minilm_l6 model.lr_backbone=2e-4 "${COMMON[@]}" \
  hydra.run.dir="$RUN/minilm" > "$RUN/minilm.log" 2>&1 &
wait
grep -h '"test/f1"' "$RUN"/*/metrics.json || true
