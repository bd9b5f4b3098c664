#!/usr/bin/env bash
# The crime recipe's remedies (experiments/crime_transfer_cpu.md): one system, one seed, with OMP_NUM_THREADS=1 (or THREADS).
# Usage: [STEPS=N] [THREADS=N] [TAG=name EXTRA="overrides"] bash experiments/scripts/run_crime_transfer_cpu.sh SYSTEM SEED [OUT_ROOT]
#   SYSTEM: old_default | varied | right | varied_right | varied_transfer | transfer | varied_right16 | varied_transfer16
#           | written (crime_crf_cpu as it is: data=crime_mix, the developer-written reports beside the generated ones)
#   (the *transfer ones need STAGE1=<stage 1 checkpoint>, see conf/experiment/crime_from_conll_cpu.yaml;
#   the *16 ones keep 16 layers and adapt the top 8, the backbone settings of experiment=conll_crf_cpu, so that
#   varied_transfer16 starts from a conll_crf_cpu checkpoint, e.g. one of experiments/scripts/run_equal_time_conll_cpu.sh)
# Every system trains 80 steps (or STEPS) of batch 4 on 800 generated reports (its generator: classic or varied) and is
# validated on the same 200 generated reports: the classic and the varied generators' validation splits
# together (the selection set), and tested on the classic generator's 100 test reports (make train's test set);
# then its last checkpoint (= the one validation's) is scored on the 22 hand-written reports, which are test-only
# (entity F1 with the importer's gold spans, once per convention, and field F1: the tagged words read as values).
# Run from the repository root with the venv active (or PY=.venv/bin/python). Metrics land in
# experiments/figures/crime_transfer_cpu/SYSTEM_sSEED_{train,hand}.json.
set -euo pipefail
SYSTEM=${1:?system}; SEED=${2:?seed}; ROOT=${3:-logs/crime_transfer_cpu}
PY=${PY:-python}
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=${THREADS:-1}   # THREADS=2: make train's setting on an idle 2-core machine
FIG=${FIG:-experiments/figures/crime_transfer_cpu}
read -r -a EXTRA <<< "${EXTRA:-}"   # more overrides, e.g. EXTRA="backbone=tiny_random trainer.max_steps=2" (a smoke run)
# TAG names a variant set by EXTRA, e.g. TAG=l12a6 EXTRA="backbone.layer=12 backbone.lora_layers=6" -> varied_right_l12a6_320
mkdir -p "$ROOT" "$FIG"
# the two corpora: generated once (seconds), same seeds as data=crime_bio generates on the fly
for V in classic varied; do
  if [ ! -f "$ROOT/data_$V/test.txt" ]; then
    $PY -m llmner.data.crime generate --num-reports 1000 --seed 0 --variety $V --out "$ROOT/gen_$V" > /dev/null
  fi
done
for V in classic varied; do
  if [ ! -f "$ROOT/data_$V/test.txt" ]; then
    mkdir -p "$ROOT/data_$V"
    cp "$ROOT/gen_$V/train.txt" "$ROOT/data_$V/train.txt"
    cat "$ROOT/gen_classic/validation.txt" "$ROOT/gen_varied/validation.txt" > "$ROOT/data_$V/validation.txt"
    cp "$ROOT/gen_classic/test.txt" "$ROOT/data_$V/test.txt"
  fi
done
# the old default, spelled out so that the script means the same before and after the recipe changes
# (crime_crf_cpu cut at 8 until the 12-layer recipe: TAG=l12a6 EXTRA="backbone.layer=12 backbone.lora_layers=6" varied_right)
OLD=(data=crime_varied backbone.layer=8 backbone.lora_layers=-1 backbone.cache=false backbone.attention=null
     backbone.unmask_layers=all model.lr_backbone=5e-4)
RIGHT=(backbone.lora_layers=4 backbone.cache=true backbone.attention=bidirectional backbone.unmask_layers=top
       model.lr_backbone=1e-3)
TRANSFER=("init_from=${STAGE1:-}")   # crime_from_conll_cpu cuts at layer 16; OLD pins the 80-step transfer systems to 8
WIDE=(backbone.layer=16 backbone.lora_layers=8)   # conll_crf_cpu's cut and adapters
EXP=experiment=crime_crf_cpu
case $SYSTEM in *transfer*) EXP=experiment=crime_from_conll_cpu ;; esac
case $SYSTEM in
  old_default)     ARGS=("${OLD[@]}" data.path=$ROOT/data_classic) ;;
  varied)          ARGS=("${OLD[@]}" data.path=$ROOT/data_varied) ;;
  right)           ARGS=("${OLD[@]}" "${RIGHT[@]}" data.path=$ROOT/data_classic) ;;
  varied_right)    ARGS=("${OLD[@]}" "${RIGHT[@]}" data.path=$ROOT/data_varied) ;;
  transfer)        ARGS=("${OLD[@]}" "${TRANSFER[@]}" data.path=$ROOT/data_classic) ;;
  varied_transfer) ARGS=("${OLD[@]}" "${TRANSFER[@]}" data.path=$ROOT/data_varied) ;;
  varied_right16)  ARGS=("${OLD[@]}" "${RIGHT[@]}" "${WIDE[@]}" data.path=$ROOT/data_varied) ;;
  varied_transfer16) ARGS=("${OLD[@]}" "${RIGHT[@]}" "${WIDE[@]}" "${TRANSFER[@]}" data.path=$ROOT/data_varied) ;;
  written)         ARGS=(data=crime_mix data.corpora.generated.data.path=$ROOT/data_varied) ;;   # same generated reports
  *) echo "unknown system $SYSTEM" >&2; exit 2 ;;
esac
NAME=$SYSTEM${TAG:+_$TAG}${STEPS:+_$STEPS}   # STEPS=N: a budget of N steps instead of 80 (validated once, at the end)
ARGS+=(trainer.max_steps=${STEPS:-80} trainer.val_check_interval=${STEPS:-80})
RUN=$ROOT/${NAME}_s$SEED
start=$(date +%s)
$PY -m llmner.train $EXP "${ARGS[@]}" seed=$SEED "${EXTRA[@]}" hydra.run.dir=$RUN > "$RUN.log" 2>&1
mid=$(date +%s)
$PY -m llmner.evaluate ckpt_path=$RUN/checkpoints/last.ckpt data=crime_conversations \
  data.path=tests/fixtures/crime_handwritten.jsonl hydra.run.dir=${RUN}_hand > "${RUN}_hand.log" 2>&1
# the same predictions against the "every mention" gold convention (data.corpus.mentions=every)
$PY -m llmner.evaluate ckpt_path=$RUN/checkpoints/last.ckpt data=crime_conversations data.corpus.mentions=every \
  data.path=tests/fixtures/crime_handwritten.jsonl hydra.run.dir=${RUN}_hand_every > "${RUN}_hand_every.log" 2>&1
end=$(date +%s)
cp "$RUN/metrics.json" "$FIG/${NAME}_s${SEED}_train.json"
cp "${RUN}_hand/metrics.json" "$FIG/${NAME}_s${SEED}_hand.json"
cp "${RUN}_hand_every/metrics.json" "$FIG/${NAME}_s${SEED}_hand_every.json"
echo "$NAME seed $SEED: train job $((mid - start)) s, hand-written evaluation $((end - mid)) s" | tee -a "$FIG/wall_times.txt"
