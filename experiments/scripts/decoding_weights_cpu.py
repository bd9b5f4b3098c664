"""llmner's decoding speed with merged adapters (``head.merge_adapters``) and in bfloat16 (``head.dtype``),
against decoding through the adapters (llmner 0.3), on the same batches of the same checkpoint.

    python experiments/scripts/decoding_weights_cpu.py --ckpt CKPT --out DIR

The hand-written test reports (``tests/fixtures/crime_handwritten.jsonl``) in batches of ``--batch``,
single question, each batch decoded by every variant in turn (interleaved, so that the shared
machine's load drifts alike for all), as ``GenerativeModule.answer`` decodes: constrained greedy,
``generate`` stopping when every row's answer is closed. Prints and writes
``DIR/decoding_weights.json``: seconds a report, decoding steps (the longest row's new tokens) and ms
a step, parse rate, field F1, and whether each variant's answers equal the first one's.
``DIR/llmner.json`` gets the default variant's raw answers (merged, float32), which
``gguf_llamacpp_cpu.py llamacpp`` compares llama.cpp's with. ``--free`` adds llmner's unconstrained
decoding (merged, float32) as a variant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # gguf_llamacpp_cpu: build() and scores()

VARIANTS = {  # name: (merge_adapters, dtype, constrained)
    "adapters_f32": (False, None, True),
    "merged_f32": (True, None, True),
    "merged_bf16": (True, "bfloat16", True),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--reports", type=int, default=22)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"a comma list of {list(VARIANTS)}")
    p.add_argument("--free", action="store_true", help="also llmner's unconstrained decoding (merged, float32)")
    args = p.parse_args()
    import torch
    from gguf_llamacpp_cpu import build, scores

    from llmner.data.chat import sentence_to_example

    torch.manual_seed(0)
    model, dm = build(args)
    model.eval()
    variants = {v: VARIANTS[v] for v in args.variants.split(",")} | ({"merged_f32_free": (True, None, False)} if args.free else {})
    examples = [sentence_to_example(s, i) for i, s in enumerate(dm.sentences["test"])][: args.reports]
    texts, gold = [e.text for e in examples], [e.answers for e in examples]
    _ = model.head.trie  # built once per tokenizer, outside the clock

    steps: list[int] = []
    generate = model.backbone.model.generate

    def counted(*a, **k):  # the decoding steps of each generate call
        out = generate(*a, **k)
        steps.append(out.shape[1] - k["input_ids"].shape[1])
        return out

    raws: list[str] = []
    raw_generate = model._generate

    def recorded(*a, **k):  # the raw answer strings, as decoded
        out = raw_generate(*a, **k)
        raws.extend(out)
        return out

    from llmner.decoding import JsonConstraint

    clock = [0.0]
    constraint_call = JsonConstraint.__call__

    def timed(self, input_ids, scores):  # the constraint's own time, inside the decoding
        t = time.perf_counter()
        out = constraint_call(self, input_ids, scores)
        clock[0] += time.perf_counter() - t
        return out

    JsonConstraint.__call__ = timed
    model.backbone.model.generate, model._generate = counted, recorded
    rows = {v: {"seconds": 0.0, "constraint_s": 0.0, "steps": [], "answers": [], "raws": []} for v in variants}
    load = [os.getloadavg()]
    for i in range(0, len(texts), args.batch):
        chunk = texts[i : i + args.batch]
        for name, (merge, dtype, constrained) in variants.items():
            model.head.merge_adapters, model.head.dtype = merge, dtype
            steps.clear()
            raws.clear()
            clock[0] = 0.0
            t = time.perf_counter()
            out = model.answer(chunk, constrained=constrained)
            seconds = time.perf_counter() - t
            r = rows[name]
            r["seconds"] += seconds
            r["constraint_s"] += clock[0]
            r["steps"] += steps
            r["answers"] += out["answers"]
            r["raws"] += raws
            print(f"batch {i // args.batch}: {name} {seconds:.1f} s, {steps} steps, load {os.getloadavg()[0]:.1f}", flush=True)
    load.append(os.getloadavg())
    first = next(iter(variants))
    summary = {"threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
               "loadavg_start_end": load, "reports": len(texts), "batch": args.batch, "variants": {}}
    for name, r in rows.items():
        s = scores(model, gold, r["raws"])
        n_steps = sum(r["steps"])
        summary["variants"][name] = {
            "s_per_report": r["seconds"] / len(texts), "seconds": r["seconds"], "steps": r["steps"],
            "ms_per_step": 1000 * r["seconds"] / n_steps, "constraint_share": r["constraint_s"] / r["seconds"], **s,
            "same_answers_as_" + first: sum(a == b for a, b in zip(r["raws"], rows[first]["raws"])) / len(texts),
            "speedup_vs_" + first: rows[first]["seconds"] / r["seconds"], "raws": r["raws"]}
        print(json.dumps({k: v for k, v in summary["variants"][name].items() if k != "raws"} | {"variant": name}), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "decoding_weights.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    if "merged_f32" in rows:
        v = summary["variants"]["merged_f32"]
        (out / "llmner.json").write_text(json.dumps({
            "system": f"llmner constrained, transformers, merged float32, batch {args.batch}", "seconds": v["seconds"],
            "s_per_report": v["s_per_report"], **{k: v[k] for k in ("parse_rate", "schema_rate", "field_f1")},
            "answers": v["raws"]}, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
