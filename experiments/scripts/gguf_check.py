"""Export a generative checkpoint as GGUF and compare transformers' reload with llmner.

    python experiments/scripts/gguf_check.py CKPT OUT f16|f32
"""

import os
import sys
import time
from pathlib import Path

import gguf
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository's llmner, run from anywhere
import llmner  # noqa: E402
from llmner.export import export  # noqa: E402

ckpt, out, dtype = sys.argv[1:4]
t = time.time()
export(ckpt, out, format="gguf", gguf_dtype=dtype)
print("export s", round(time.time() - t, 1))
model = llmner.load(ckpt)
prompt = "Text:\nOfficer Ann Lee (#4411) arrested John Doe on Elm St. at 9:15 p.m."
ids = model.tokenizer(prompt, return_tensors="pt")
with torch.no_grad():
    ours = model.backbone.model(**ids).logits
    plain = AutoModelForCausalLM.from_pretrained(out, gguf_file="model.gguf", dtype=torch.float32)
    theirs = plain(**ids).logits
tok = AutoTokenizer.from_pretrained(out, gguf_file="model.gguf")
print("max abs logit diff", (theirs - ours).abs().max().item(), "logit scale", ours.abs().max().item())
print("argmax agree", (theirs.argmax(-1) == ours.argmax(-1)).float().mean().item())
print("tokenizer ids equal", tok(prompt)["input_ids"] == model.tokenizer(prompt)["input_ids"])
r = gguf.GGUFReader(f"{out}/model.gguf")
print("pre", r.fields["tokenizer.ggml.pre"].contents(), "tensors", len(r.tensors))
print("size MB", os.path.getsize(f"{out}/model.gguf") / 2**20)
print(open(f"{out}/Modelfile").read())
