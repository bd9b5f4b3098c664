#!/usr/bin/env bash
# The ddp_sim record of experiments/distributed.md: the tiny random Llama on a slice of CoNLL-2003,
# trained on 2 CPU processes and on 1, then the 2-process run's best checkpoint evaluated on 1 and on
# 2 processes (same figures and the same test_predictions.conll expected). Wall times go to times.txt.
# Usage: bash experiments/scripts/run_distributed_cpu.sh [OUT]   (needs ../shared beside the repository)
#   OUT: relative to the repository root, default logs/distributed_cpu (the record ran with OUT=/tmp/rec)
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
R=${1:-logs/distributed_cpu}
mkdir -p "$R"
COMMON="experiment=conll_crf backbone=tiny_random data.path=../shared/data/conll2003 data.max_train_samples=2000
        data.max_eval_samples=301 trainer.max_steps=300 model.lr_backbone=5e-3 model.lr_head=5e-2"
t() { local s; s=$(date +%s.%N); "$@"; echo "WALL $(echo "$(date +%s.%N) - $s" | bc) s: $*" >> "$R/times.txt"; }
: > "$R/times.txt"
t .venv/bin/python -m llmner.train $COMMON trainer=ddp_sim hydra.run.dir="$R/train2" > "$R/train2.log" 2>&1
t .venv/bin/python -m llmner.train $COMMON trainer.accelerator=cpu hydra.run.dir="$R/train1" > "$R/train1.log" 2>&1
BEST=$(ls "$R"/train2/checkpoints/epoch*.ckpt)
t .venv/bin/python -m llmner.evaluate ckpt_path="$BEST" trainer.accelerator=cpu hydra.run.dir="$R/eval1" > "$R/eval1.log" 2>&1
t .venv/bin/python -m llmner.evaluate ckpt_path="$BEST" trainer=ddp_sim hydra.run.dir="$R/eval2" > "$R/eval2.log" 2>&1
cmp "$R/eval1/test_predictions.conll" "$R/eval2/test_predictions.conll" && echo "test_predictions.conll: identical on 1 and 2 processes"
