"""Speed of the generative head on CPU: constrained vs unconstrained greedy decoding per token step,
seconds per report, where decoding time goes, and the training step with and without encoding in it.

    python experiments/scripts/generative_speed_cpu.py --ckpt logs/.../checkpoints/last.ckpt   # a fine-tuned model
    python experiments/scripts/generative_speed_cpu.py                                        # the base SmolLM2

Decoding: the crime_json test reports (22 hand-written) in batches of ``--batch``, the single-question
prompt. Each batch is decoded with the constraint (as ``GenerativeModule.answer`` does), then
without it for exactly as many steps (``min_new_tokens`` = ``max_new_tokens`` = the constrained
run's steps), so both runs have the same batch, prompt, KV-cache lengths and step count. The
constraint's own time (``JsonConstraint.__call__``) is clocked inside the constrained run.

Training: one conversation per step (the recipe's batch 1), for both prompt styles. "Before" is
the old step: it rendered and tokenized the conversation inside ``training_step``, rendering every
prefix (``_target_spans_slow``: 2 renders per answer), and computed logits at every position.
"After" is today's step: the datamodule encoded the batch once, and logits are computed only
where an answer token is predicted. Each part is timed separately, on the same examples (the
losses are equal, as ``tests/test_predict_export.py`` checks).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def build(args):
    import tempfile

    from hydra.utils import instantiate
    from omegaconf import open_dict

    import llmner
    from llmner.benchmark import compose_run
    from llmner.builders import build_model

    cfg = compose_run(["experiment=crime_json", "backbone=smollm2_135m", "backbone.load_in_4bit=false",
                       f"model.prompt.style={args.style}", f"head.max_new_tokens={args.max_new_tokens}",
                       "data.corpus.num_train=8", "data.corpus.num_validation=2", "trainer.accelerator=cpu",
                       f"data.test_path={ROOT / 'tests/fixtures/crime_handwritten.jsonl'}"])
    with open_dict(cfg):
        cfg.paths.output_dir = cfg.paths.log_dir = tempfile.mkdtemp(prefix="llmner-genspeed-")
    dm = instantiate(cfg.data)
    model = llmner.load(args.ckpt) if args.ckpt else build_model(cfg, dm.tags)
    dm.encoder = model.encoder
    dm.setup("test")
    return model, dm


def decode(model, texts: list[str]) -> dict:
    import torch

    from llmner.decoding import JsonConstraint

    clock = {"s": 0.0}
    original = JsonConstraint.__call__

    def timed(self, input_ids, scores):
        t = time.perf_counter()
        out = original(self, input_ids, scores)
        clock["s"] += time.perf_counter() - t
        return out

    model.eval()
    conversations = [model.prompt.opening(t, model.keys) for t in texts]
    question, keys = model.prompt.questions(model.keys)[0]
    for c in conversations:
        c.append({"role": "user", "content": question})
    batch = model.encoder.prompts(conversations)
    T = batch["input_ids"].shape[1]
    kw = dict(do_sample=False, eos_token_id=model.eos_id, pad_token_id=model.encoder.pad_id)
    _ = model.head.trie  # built once per tokenizer, not per answer
    with torch.no_grad():
        processor = model.head.processor(keys, set(model.prompt.integer_types), texts, T, model.eos_id)
        JsonConstraint.__call__ = timed
        try:
            t0 = time.perf_counter()
            out = model.backbone.model.generate(**batch, max_new_tokens=model.head.max_new_tokens,
                                                logits_processor=[processor], **kw)
            constrained = time.perf_counter() - t0
        finally:
            JsonConstraint.__call__ = original
        steps = out.shape[1] - T
        t0 = time.perf_counter()
        free = model.backbone.model.generate(**batch, max_new_tokens=steps, min_new_tokens=steps, **kw)
        unconstrained = time.perf_counter() - t0
    assert free.shape[1] - T == steps
    answers = [model.head.text_of(row, model.eos_id) for row in out[:, T:].tolist()]
    return {"rows": len(texts), "prompt_tokens": T, "steps": steps, "constrained_s": constrained,
            "unconstrained_s": unconstrained, "constraint_s": clock["s"], "answers": answers}


def train_steps(model, dm, n: int, style: str) -> dict:
    import torch

    from llmner.data.chat import _target_spans_slow, encode_chat, render, sentence_to_example

    model.train()
    examples = [sentence_to_example(s, i) for i, s in enumerate(dm.sentences["test"][:n])]
    enc_old, enc_new, fwd_bwd, fwd_bwd_full = [], [], [], []
    for e in examples:
        messages, targets = model.prompt.conversation(e.text, e.answers, model.keys)
        t0 = time.perf_counter()  # the old in-step encoding: every prefix rendered
        full = render(model.tokenizer, messages)
        spans = _target_spans_slow(model.tokenizer, messages, targets, full)
        ids = model.tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        labels = [t if any(s <= a < b for s, b in spans) else -100 for t, (a, _) in zip(ids["input_ids"], ids["offset_mapping"])]
        enc_old.append(time.perf_counter() - t0)
        t0 = time.perf_counter()  # today's encoding, done once per example in the datamodule
        new_ids, new_labels = encode_chat(model.tokenizer, messages, targets)
        enc_new.append(time.perf_counter() - t0)
        assert new_ids == list(ids["input_ids"]) and new_labels == labels  # the same tensors either way
        batch = {"input_ids": torch.tensor([new_ids]), "attention_mask": torch.ones(1, len(new_ids), dtype=torch.long),
                 "labels": torch.tensor([new_labels])}
        t0 = time.perf_counter()  # the old loss: logits at every position of the conversation
        logits = model.backbone.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        target = batch["labels"][:, 1:]
        full = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), target.reshape(-1),
                                                 ignore_index=-100)
        full.backward()
        model.zero_grad(set_to_none=True)
        fwd_bwd_full.append(time.perf_counter() - t0)
        del logits
        t0 = time.perf_counter()  # today's loss: logits only where an answer token is predicted
        loss, _, _ = model.loss(batch)
        loss.backward()
        model.zero_grad(set_to_none=True)
        fwd_bwd.append(time.perf_counter() - t0)
        # (the two losses differ here by LoRA dropout only; tests/test_predict_export.py checks them equal in eval mode)
    tokens = statistics.mean(len(model.prompt.conversation(e.text, e.answers, model.keys)[0]) for e in examples)  # messages
    return {"style": style, "steps": n, "messages_per_conversation": tokens,
            "encode_in_step_s": statistics.mean(enc_old), "encode_once_s": statistics.mean(enc_new),
            "forward_backward_full_logits_s": statistics.mean(fwd_bwd_full[1:] or fwd_bwd_full),
            "forward_backward_answer_logits_s": statistics.mean(fwd_bwd[1:] or fwd_bwd),
            "tokens_per_conversation": statistics.mean(len(model.encoder.encode_example(e, model.keys).input_ids) for e in examples)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", help="a generative checkpoint (default: the base SmolLM2, no adapter)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--reports", type=int, default=22)
    p.add_argument("--style", default="single", choices=["single", "per_type"])
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--train-steps", type=int, default=4, help="training steps timed per style (0: none)")
    args = p.parse_args()
    import torch

    torch.manual_seed(0)
    model, dm = build(args)
    from llmner.data.chat import sentence_to_example

    texts = [sentence_to_example(s, i).text for i, s in enumerate(dm.sentences["test"])][: args.reports]
    rows = []
    if not texts:  # --reports 0: the training part only
        for style in ("single", "per_type"):
            object.__setattr__(model.prompt, "style", style)
            print(json.dumps(train_steps(model, dm, args.train_steps, style)), flush=True)
        return
    for i in range(0, len(texts), args.batch):
        r = decode(model, texts[i : i + args.batch])
        rows.append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "answers"}), flush=True)
    steps = sum(r["steps"] for r in rows)
    con, free, own = (sum(r[k] for r in rows) for k in ("constrained_s", "unconstrained_s", "constraint_s"))
    dupes = 0
    for r in rows:
        for a in r["answers"]:
            obj = json.loads(a)
            dupes += sum(len(v) - len({json.dumps(x) for x in v}) for v in obj.values())
    print(f"\ndecoding, batches of {args.batch}, {len(texts)} reports, {steps} token steps:")
    print(f"  constrained   {1000 * con / steps:.1f} ms/step, {con / len(texts):.2f} s/report")
    print(f"  unconstrained {1000 * free / steps:.1f} ms/step (same steps)")
    print(f"  ratio constrained/unconstrained per step: {con / free:.3f}x; the constraint's own share {own / con:.1%}")
    print(f"  tokens/s per row: constrained {steps * args.batch / con:.1f}, unconstrained {steps * args.batch / free:.1f}"
          f" (rows that ended early still count)")
    print(f"  repeated values in constrained lists: {dupes}")
    if args.train_steps:
        for style in ("single", "per_type"):
            object.__setattr__(model.prompt, "style", style)
            print(json.dumps(train_steps(model, dm, args.train_steps, style)), flush=True)


if __name__ == "__main__":
    main()
