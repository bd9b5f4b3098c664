#!/usr/bin/env bash
# The fine-tuned SmolLM2 crime model through llama.cpp, and llmner's decoding speed (experiments/gguf_llamacpp_cpu.md):
# train (generative_crime_cpu.md's "fine-tuned" command, bf16-mixed), export format=gguf f16, llama.cpp with and
# without answer.gbnf and with a bounded grammar, llmner's decoding (through the adapters / merged / bfloat16),
# the bounded grammar at 512 tokens in f16 and in llama.cpp's Q8_0 copy (--no-repack).
# Usage: experiments/scripts/run_gguf_llamacpp_cpu.sh OUT_DIR   (repository root; PY=.venv/bin/python; one thread)
set -euo pipefail
OUT=${1:?output dir}
PY=${PY:-python}
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
mkdir -p "$OUT"
COMMON=(experiment=crime_json backbone=smollm2_135m backbone.load_in_4bit=false model.prompt.style=single
        head.max_new_tokens=256 data.corpus.num_train=120 data.corpus.num_validation=4 data.eval_batch_size=8
        trainer.accelerator=cpu)
CKPT="$OUT/train/checkpoints/last.ckpt"
if [ ! -f "$CKPT" ]; then
  SECONDS=0
  $PY -m llmner.train "${COMMON[@]}" trainer.max_steps=120 trainer.accumulate_grad_batches=1 \
    trainer.val_check_interval=120 trainer.num_sanity_val_steps=0 trainer.precision=bf16-mixed test=false \
    hydra.run.dir="$OUT/train" > "$OUT/train.log" 2>&1
  echo "train: $SECONDS s, load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/times.txt"
fi
SECONDS=0
$PY -m llmner.export ckpt_path="$CKPT" out="$OUT/export" format=gguf gguf_dtype=f16 hydra.run.dir="$OUT/export_run" \
  > "$OUT/export.log" 2>&1
echo "export: $SECONDS s" | tee -a "$OUT/times.txt"
SECONDS=0
$PY experiments/scripts/gguf_llamacpp_cpu.py llamacpp --ckpt "$CKPT" --out "$OUT/export" --quant '' \
  > "$OUT/llamacpp.log" 2>&1
echo "llama.cpp f16: $SECONDS s, load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/times.txt"
# where the model loops even with the grammar (parse rate < 1): the grammar bounded by the training answers'
# longest list and value (answer_bounds.py), as llmner.export ... gguf_max_items=N gguf_max_chars=M writes it
if $PY -c "import json,sys; r=json.load(open('$OUT/export/llamacpp.json'))[0]; sys.exit(r['parse_rate'] >= 1)"; then
  read -r N M < <($PY experiments/scripts/answer_bounds.py | head -1)
  $PY -c "import llmner, sys; from llmner.decoding.portable import answer_gbnf; m = llmner.load('$CKPT'); \
(q, keys), = m.prompt.questions(m.keys); sys.stdout.write(answer_gbnf([keys], set(m.prompt.integer_types), $N, $M))" \
    > "$OUT/export/bounded.gbnf"
  SECONDS=0
  $PY experiments/scripts/gguf_llamacpp_cpu.py llamacpp --ckpt "$CKPT" --out "$OUT/export" --quant '' \
    --grammar "$OUT/export/bounded.gbnf" --extra-only > "$OUT/llamacpp_bounded.log" 2>&1
  echo "llama.cpp f16, bounded grammar ($N values, $M chars): $SECONDS s" | tee -a "$OUT/times.txt"
fi
SECONDS=0
$PY experiments/scripts/decoding_weights_cpu.py --ckpt "$CKPT" --out "$OUT/export" > "$OUT/decoding.log" 2>&1
echo "llmner decoding variants: $SECONDS s, load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/times.txt"
# the bounded grammar with room to close (512 tokens), f16 then llama.cpp's Q8_0 copy without AMX buffers
# (--no-repack: with them, the Q8_0 file segfaults on this CPU); in a folder of its own, beside llmner.json
[ -f "$OUT/export/bounded.gbnf" ] || exit 0
mkdir -p "$OUT/b512"
cp "$OUT/export/model.gguf" "$OUT/export/answer.gbnf" "$OUT/export/bounded.gbnf" "$OUT/export/llmner.json" "$OUT/b512/"
$PY experiments/scripts/gguf_llamacpp_cpu.py llamacpp --ckpt "$CKPT" --out "$OUT/b512" --quant '' --max-new-tokens 512 \
  --grammar "$OUT/b512/bounded.gbnf" --extra-only > "$OUT/llamacpp_b512.log" 2>&1
$PY experiments/scripts/gguf_llamacpp_cpu.py llamacpp --ckpt "$CKPT" --out "$OUT/b512" --quant Q8_0 --skip-f16 --no-repack \
  --max-new-tokens 512 --grammar "$OUT/b512/bounded.gbnf" --extra-only > "$OUT/llamacpp_q8_b512.log" 2>&1
