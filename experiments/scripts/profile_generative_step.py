"""Where a decoding step of the generative head goes (torch profiler), and what merging the adapters saves.

    python experiments/scripts/profile_generative_step.py [--ckpt CKPT] [--steps 24] [--batch 8]

The base SmolLM2-135M of the crime_json recipe with its (untrained, so identity) LoRA adapters, or
``--ckpt``; the single-question prompt of the first ``--batch`` hand-written reports. Each variant
decodes exactly ``--steps`` new tokens (``min_new_tokens``) greedily, after one warm-up run:
``llmner`` (the constraint, adapters unmerged: as ``GenerativeModule.answer`` decodes),
``merged`` (the same with the LoRA weights merged into the base layers, ``merge_adapter``) and
``plain`` (merged, no constraint). Then one profiled run of the first variant prints the top
operators by self CPU time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments" / "scripts"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt")
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=256)
    args = p.parse_args()
    import torch
    from gguf_llamacpp_cpu import build
    from torch.profiler import ProfilerActivity, profile

    from llmner.data.chat import sentence_to_example

    torch.manual_seed(0)
    model, dm = build(args)
    model.eval()
    texts = [sentence_to_example(s, i).text for i, s in enumerate(dm.sentences["test"])][: args.batch]
    ((question, keys),) = model.prompt.questions(model.keys)
    convs = [model.prompt.opening(x, model.keys) + [{"role": "user", "content": question}] for x in texts]
    batch = model.encoder.prompts(convs)
    T = batch["input_ids"].shape[1]
    lm = model.backbone.model
    kw = dict(do_sample=False, eos_token_id=model.eos_id, pad_token_id=model.encoder.pad_id,
              max_new_tokens=args.steps, min_new_tokens=args.steps)
    _ = model.head.trie

    def run(constrained: bool) -> float:
        extra = {}
        if constrained:  # planning for --max-new-tokens; the first --steps of them are made
            extra["logits_processor"] = [model.head.processor(keys, set(model.prompt.integer_types), texts, T, model.eos_id)]
        times = []
        for steps in (1, args.steps):  # the prompt's forward (prefill) + 1 step, then + the other steps
            t = time.perf_counter()
            with torch.no_grad():
                out = lm.generate(**batch, **dict(kw, max_new_tokens=steps, min_new_tokens=steps), **extra)
            times.append(time.perf_counter() - t)
            if constrained:
                extra["logits_processor"] = [model.head.processor(keys, set(model.prompt.integer_types), texts, T,
                                                                  model.eos_id)]
        n = out.shape[1] - T
        return (times[1] - times[0]) / (n - 1), times[0]

    print(f"batch {len(texts)}, prompt {T} tokens, threads {torch.get_num_threads()}", flush=True)
    model.head.max_new_tokens = args.max_new_tokens
    run(False)  # warm-up
    variants = {}
    variants["llmner (constraint, adapters unmerged)"] = run(True)
    lm.merge_adapter()
    variants["merged adapters, constraint"] = run(True)
    variants["merged adapters, no constraint"] = run(False)
    lm.unmerge_adapter()
    variants["unmerged adapters, no constraint"] = run(False)
    for name, (s, prefill) in variants.items():
        print(f"{name:40s} {1000 * s:7.1f} ms/step (steps 2-{args.steps}), prefill + step 1 {prefill:.2f} s", flush=True)
    with profile(activities=[ProfilerActivity.CPU]) as prof:  # both runs: the prefill shows as large mm calls
        run(True)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18, max_name_column_width=48))


if __name__ == "__main__":
    main()
