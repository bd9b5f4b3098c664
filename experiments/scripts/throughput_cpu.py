"""Throughput of the SmolLM2 tagger on CPU: train step time per configuration, framework overhead
against a bare PyTorch + peft loop, prediction words/s against transformers' pipeline, peak memory.

    python experiments/scripts/throughput_cpu.py --data ../shared/data/conll2003 --steps 40

Every measurement runs in its own subprocess, so that each peak RSS is its own. Printed: one JSON
line per measurement, then a markdown table with ratios (experiments/throughput_cpu.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

WARMUP = 5  # steps excluded from every step-time mean (first allocations, lazy init)
CONFIGS = {  # name -> train overrides on top of the protocol; TOP: --top, the adapted layers
    "lora_all": [],
    "lora_top": ["backbone.lora_layers=TOP"],
    "lora_top_cache": ["backbone.lora_layers=TOP", "backbone.cache=true"],
    "repeat2": ["model.encoder.repeat=2"],
    "bidirectional": ["backbone.attention=bidirectional"],
    "lora_all_checkpointing": ["backbone.gradient_checkpointing=true"],
    "lora_all_no_checkpointing": ["backbone.gradient_checkpointing=false"],
    "before": ["backbone.gradient_checkpointing=false"],  # and glibc's adaptive malloc (ENV): llmner before the fix
    # with --experiment conll_crf_cpu (the recipe: 8 adapted layers over a cached trunk, read once)
    "recipe": [],
    "recipe_checkpoint_512": ["backbone.gradient_checkpointing=512"],
}
ENV = {"before": {"LLMNER_MALLOC": "default"}}  # per configuration, for its subprocess


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def compose(args, extra: list[str]):
    import tempfile

    from omegaconf import open_dict

    from llmner.benchmark import compose_run

    extra = [o.replace("TOP", str(args.top)) for o in extra]
    cfg = compose_run([
        f"experiment={args.experiment}", f"backbone={args.backbone}", f"data.path={args.data}", "trainer.accelerator=cpu",
        f"data.max_train_samples={args.steps * 8}", "data.max_eval_samples=8", "data.max_test_samples=8",
        "data.batch_size=8", "trainer.max_steps=-1", "+trainer.limit_val_batches=0", "trainer.num_sanity_val_steps=0",
        "+trainer.enable_checkpointing=false", "~callbacks", "~logger", "+trainer.enable_progress_bar=false",
        f"seed={args.seed}", "model.encoder.repeat=1", *extra])  # conll_crf repeats; rows that do say so
    with open_dict(cfg):  # no Hydra run here to name a folder
        cfg.paths.output_dir = cfg.paths.log_dir = tempfile.mkdtemp(prefix="llmner-throughput-")
    return cfg


def built(cfg):
    import lightning as L
    from hydra.utils import instantiate

    from llmner.builders import build_model
    from llmner.memory import return_freed_memory

    return_freed_memory()  # as every llmner entry point does (unless LLMNER_MALLOC=default)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = instantiate(cfg.data)
    model = build_model(cfg, dm.tags)
    dm.encoder = model.encoder
    dm.setup("fit")
    return model, dm


def measure_framework(args, name: str) -> dict:
    """Lightning's fit over one or two epochs of ``steps`` batches; seconds per step per epoch."""
    import lightning as L
    from hydra.utils import instantiate

    epochs = 2 if "cache" in name else 1  # a second epoch differs only with the cache
    cfg = compose(args, CONFIGS[name] + [f"trainer.max_epochs={epochs}"])
    model, dm = built(cfg)
    stamps: dict[int, list[float]] = {e: [] for e in range(epochs)}  # epoch -> batch starts, then the epoch's end

    class Clock(L.Callback):
        def on_train_batch_start(self, trainer, *a):
            stamps[trainer.current_epoch].append(time.perf_counter())

        def on_train_epoch_end(self, trainer, *a):
            stamps[trainer.current_epoch].append(time.perf_counter())

    trainer = instantiate(cfg.trainer, callbacks=[Clock()], logger=False)
    trainer.fit(model, datamodule=dm)
    out = {"measure": f"train:{name}", "peak_rss_mb": peak_rss_mb()}
    for epoch, t in stamps.items():  # start to start: data, forward, backward, optimizer, logging
        steps = [b - a for a, b in zip(t, t[1:])][WARMUP if epoch == 0 else 1:]
        out[f"epoch{epoch + 1}_s_per_step"] = sum(steps) / len(steps)
    if model.backbone.trunk is not None:
        out["cache_hits"], out["cache_misses"] = model.backbone.trunk.hits, model.backbone.trunk.misses
    return out


def measure_bare(args, name: str) -> dict:
    """The same model and batches in a hand-written loop: forward, loss, backward, clip, AdamW step."""
    import torch

    cfg = compose(args, CONFIGS[name])
    model, dm = built(cfg)
    model.train()
    groups = model.param_groups()
    opt = torch.optim.AdamW(groups, weight_decay=cfg.model.optimizer.weight_decay)
    params = [p for g in groups for p in g["params"]]
    stamps = [time.perf_counter()]
    for batch in dm.train_dataloader():  # start to start, as for Lightning: data loading included
        loss = model.loss(model(batch), batch["labels"], batch["word_mask"], model.head)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.trainer.gradient_clip_val)
        opt.step()
        opt.zero_grad(set_to_none=True)
        stamps.append(time.perf_counter())
    steps = [b - a for a, b in zip(stamps, stamps[1:])][WARMUP:]
    return {"measure": f"bare:{name}", "epoch1_s_per_step": sum(steps) / len(steps), "peak_rss_mb": peak_rss_mb()}


def test_texts(args) -> list[str]:
    from llmner.data.conll import ConllCorpus

    sentences = ConllCorpus(path=args.data).load()["test"][: args.predict_sentences]
    return [" ".join(s.tokens) for s in sentences]


def measure_predict(args, how: str) -> dict:
    """Words per second of ``TaggerModule.predict`` or of a token-classification pipeline on the same weights."""
    import torch

    cfg = compose(args, ["head=linear"])
    model, _ = built(cfg)
    model.eval()
    texts = test_texts(args)
    words = sum(len(t.split()) for t in texts)
    torch.set_grad_enabled(False)
    if how == "llmner":
        model.predict(texts[:32])  # warm-up
        t0 = time.perf_counter()
        model.predict(texts, batch_size=32)
    else:
        from transformers import pipeline

        from llmner.export import token_classifier

        tc = token_classifier(model.backbone.model.merge_and_unload(), model.head, model.tags)
        tagger = pipeline("token-classification", model=tc, tokenizer=model.backbone.tokenizer, device="cpu")
        if tagger.tokenizer.pad_token is None:
            tagger.tokenizer.pad_token = tagger.tokenizer.eos_token
        tagger(texts[:32], batch_size=32)
        t0 = time.perf_counter()
        tagger(texts, batch_size=32)
    seconds = time.perf_counter() - t0
    return {"measure": f"predict:{how}", "words": words, "seconds": seconds, "words_per_s": words / seconds,
            "peak_rss_mb": peak_rss_mb()}


def measure_memory(args, name: str) -> dict:
    """Peak RSS of ``--experiment`` as configured (``conll_crf``: input repeated) after building the model,
    then after one training step on a median-length batch of the full train set, on its longest batch, and after a no-grad pass over the longest eval batch."""
    import torch

    repeat = ["model.encoder.repeat=2"] if args.experiment == "conll_crf" else []  # conll_crf's default
    cfg = compose(args, repeat + CONFIGS[name] + ["data.max_train_samples=null"])
    model, dm = built(cfg)
    model.train()
    groups = model.param_groups()
    opt = torch.optim.AdamW(groups, weight_decay=cfg.model.optimizer.weight_decay)
    items = dm.items["train"]
    order = sorted(range(len(items)), key=lambda i: dm.encoder.length(items[i]))
    out = {"measure": f"memory:{name}", "rss_built_mb": peak_rss_mb()}
    threshold = model.backbone.checkpoint_above
    if threshold is not None:  # how many of an epoch's batches are long enough to be recomputed
        sampler = dm.train_dataloader().batch_sampler
        tokens = [len(b) * max(dm.encoder.length(items[i]) for i in b) for b in sampler]
        out["checkpoint_above_tokens"] = threshold
        out["batches_recomputed"] = sum(t > threshold for t in tokens) / len(tokens)
        out["tokens_recomputed"] = sum(t for t in tokens if t > threshold) / sum(tokens)
    picks = {"median": order[len(order) // 2 - 4 : len(order) // 2 + 4], "longest": order[-8:]}
    for label, idx in picks.items():
        batch = dm.encoder.collate([items[i] for i in idx])
        loss = model.loss(model(batch), batch["labels"], batch["word_mask"], model.head)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        out[f"{label}_subwords"] = int(batch["input_ids"].shape[1])
        out[f"rss_after_{label}_step_mb"] = peak_rss_mb()
    model.eval()
    with torch.no_grad():
        batch = dm.encoder.collate([items[i] for i in order[-cfg.data.eval_batch_size:]])
        model(batch)
    out["rss_after_eval_batch_mb"] = out["peak_rss_mb"] = peak_rss_mb()
    return out


def run_one(args) -> dict:
    kind, name = args.one.split(":")
    if kind == "train":
        return measure_framework(args, name)
    if kind == "bare":
        return measure_bare(args, name)
    if kind == "memory":
        return measure_memory(args, name)
    return measure_predict(args, name)


MEASURES = ["bare:lora_all", "train:lora_all", "train:before", "train:lora_top", "train:lora_top_cache", "train:repeat2",
            "train:bidirectional", "predict:llmner", "predict:pipeline", "memory:before", "memory:lora_all",
            "memory:lora_all_no_checkpointing", "memory:lora_top"]


def table(rows: dict[str, dict]) -> str:
    bare = rows.get("bare:lora_all", {}).get("epoch1_s_per_step")
    lines = ["| measurement | s/step epoch 1 | s/step epoch 2 | vs bare loop | epoch 1 / epoch 2 | words/s | peak RSS MB |",
             "|---|---|---|---|---|---|---|"]
    for m, r in rows.items():
        e1, e2 = r.get("epoch1_s_per_step"), r.get("epoch2_s_per_step")
        lines.append("| {} | {} | {} | {} | {} | {} | {:.0f} |".format(
            m, f"{e1:.3f}" if e1 else "", f"{e2:.3f}" if e2 else "",
            f"{e1 / bare:.3f}x" if e1 and bare else "", f"{e1 / e2:.2f}x" if e1 and e2 else "",
            f"{r['words_per_s']:.0f}" if "words_per_s" in r else "", r["peak_rss_mb"]))
    if {"predict:llmner", "predict:pipeline"} <= rows.keys():
        ratio = rows["predict:llmner"]["words_per_s"] / rows["predict:pipeline"]["words_per_s"]
        lines.append(f"\nllmner predict / pipeline: {ratio:.2f}x words/s")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="CoNLL-2003 folder (train.txt, validation.txt, test.txt)")
    p.add_argument("--steps", type=int, default=40, help="training steps per epoch measured")
    p.add_argument("--predict-sentences", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--top", type=int, default=6, help="lora_layers of the top-k configurations")
    p.add_argument("--backbone", default="smollm2_135m", help="backbone config (tiny_random: a smoke test)")
    p.add_argument("--experiment", default="conll_crf", help="the experiment measured (the recipe rows: conll_crf_cpu)")
    p.add_argument("--only", nargs="*", default=MEASURES, help=f"a subset of {MEASURES}")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_one(args)), flush=True)
        return
    rows = {}
    for m in args.only:
        cmd = [sys.executable, __file__, "--data", args.data, "--steps", str(args.steps), "--seed", str(args.seed), "--backbone", args.backbone, "--top", str(args.top),
               "--experiment", args.experiment,
               "--predict-sentences", str(args.predict_sentences), "--one", m]
        env = os.environ | {"HF_HUB_OFFLINE": "1"} | ENV.get(m.split(":")[1], {})
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        result = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode or not result:
            sys.exit(f"{m} failed:\n{done.stderr[-3000:]}")
        rows[m] = json.loads(result[0][7:])
        print(json.dumps(rows[m]), flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
