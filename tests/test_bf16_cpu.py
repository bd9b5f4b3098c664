"""The GPU's precision paths, run on the CPU where the code is the same: ``trainer.precision=bf16-mixed``
(autocast) and ``backbone.dtype=bfloat16`` (bf16 weights), for the linear, CRF and generative heads,
4-bit weights with bf16 compute, and the bidirectional hook and the trunk cache under bf16.

The oracle is the same short run in float32. bf16 keeps 8 bits of mantissa, so a training
trajectory drifts a little and a close call may flip: the tag heads must agree with float32 on at
least 95% of the test words and be within 0.05 test F1 (TOLERANCE below), after 100 steps, where
entity F1 has settled (at 40, 99.6% of the words equal moved the linear head's F1 by 0.06); the
generative head must decode the same answers for at least 5 of 6 test sentences, its loss within 5%;
every loss is finite; a checkpoint of each bf16 run is exported and the export loads with plain
transformers. Measured here: the CRF's predictions were identical to float32's in every bf16 setting.
"""

from __future__ import annotations

import math

import pytest
import torch

import llmner
from llmner.export import export
from llmner.train import train
from tests.conftest import TINY, compose_config, write_corpus

TOLERANCE = {"f1": 0.05, "agreement": 0.95}
TAG = ["model.lr_backbone=5e-3", "model.lr_head=5e-2", "data.batch_size=8", "trainer.max_steps=100",
       "trainer.val_check_interval=50", "callbacks.latest.every_n_train_steps=0"]
GEN = ["model=generative", "data.batch_size=4", "data.eval_batch_size=4", "trainer.max_steps=6",
       "trainer.val_check_interval=6", "data.max_train_samples=24", "data.max_eval_samples=4",
       "data.max_test_samples=6", "head.max_new_tokens=48", "model.lr=1e-3", "head.check_unconstrained=false"]
PRECISIONS = {
    "fp32": [],
    "bf16-mixed": ["trainer.precision=bf16-mixed"],
    "bf16-weights": ["backbone.dtype=bfloat16"],
    "bf16-both": ["backbone.dtype=bfloat16", "trainer.precision=bf16-mixed"],
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("bf16_conll"), 160, 30, 30)


@pytest.fixture(scope="module")
def runs(corpus, tmp_path_factory):
    """One short run per (head, precision), built on demand and kept for the module."""
    done: dict[tuple[str, str, tuple[str, ...]], tuple] = {}

    def get(head: str, precision: str, extra: tuple[str, ...] = ()):
        key = (head, precision, extra)
        if key not in done:
            out = tmp_path_factory.mktemp(f"{head}_{precision}")
            overrides = (GEN if head == "generative" else [f"head={head}", *TAG]) + PRECISIONS[precision] + list(extra)
            metrics, objects = train(compose_config(TINY + overrides + [f"data.path={corpus}"], out))
            done[key] = (out, metrics, objects)
        return done[key]

    return get


def predicted_tags(out) -> list[str]:
    return [line.split()[-1] for line in (out / "test_predictions.conll").read_text().splitlines() if line.strip()]


def agreement(a: list[str], b: list[str]) -> float:
    assert len(a) == len(b)  # every test word predicted in both runs
    return sum(x == y for x, y in zip(a, b)) / len(a)


def assert_finite(metrics: dict) -> None:
    losses = {k: v for k, v in metrics.items() if k.endswith("loss")}
    assert losses and all(math.isfinite(v) for v in losses.values()), losses


@pytest.mark.parametrize("head", ["linear", "crf"])
@pytest.mark.parametrize("precision", ["bf16-mixed", "bf16-weights", "bf16-both"])
def test_tag_heads_train_validate_and_test_in_bf16_as_in_fp32(runs, head, precision):
    ref_out, ref, _ = runs(head, "fp32")
    out, metrics, objects = runs(head, precision)
    assert_finite(metrics)
    dtype = next(objects["model"].backbone.model.parameters()).dtype
    assert dtype == (torch.bfloat16 if "weights" in precision or "both" in precision else torch.float32)
    assert ref["test/f1"] > 0.5  # the float32 run learned: the comparison is not of two chance levels
    assert abs(metrics["test/f1"] - ref["test/f1"]) <= TOLERANCE["f1"]
    assert abs(metrics["val/f1"] - ref["val/f1"]) <= TOLERANCE["f1"]
    assert agreement(predicted_tags(out), predicted_tags(ref_out)) >= TOLERANCE["agreement"]


@pytest.mark.parametrize("head", ["linear", "crf"])
def test_a_bf16_checkpoint_predicts_and_exports(runs, head, tmp_path):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    out, _, objects = runs(head, "bf16-both")
    ckpt = out / "checkpoints" / "last.ckpt"
    model = llmner.load(ckpt)
    assert next(model.backbone.model.parameters()).dtype == torch.bfloat16  # the run's dtype, from its config
    sentences = objects["datamodule"].sentences["test"][:10]
    run_tags = objects["model"].predictions["test"]
    ours = [model.tags[t] for s in sentences for t in model.head.decode(*emissions(model, " ".join(s.tokens)))[0]]
    theirs = [t for i in range(len(sentences)) for t in run_tags[i]]
    assert agreement(ours, theirs) >= TOLERANCE["agreement"]  # autocast in the run, bf16 weights alone here
    export(ckpt, tmp_path / "export")
    # a CRF checkpoint exports with its decoding as custom code (llmner/hf_custom.py)
    plain = AutoModelForTokenClassification.from_pretrained(tmp_path / "export", trust_remote_code=head == "crf").eval()
    assert plain.dtype == torch.bfloat16
    ids = AutoTokenizer.from_pretrained(tmp_path / "export")("John Smith visited Paris", return_tensors="pt")
    with torch.no_grad():
        logits = plain(**ids).logits  # (1, T, K)
        hidden = model.backbone(ids["input_ids"], ids["attention_mask"])
        ours = model.head.proj(hidden.to(model.head.proj.weight.dtype))
    assert torch.isfinite(logits).all()
    assert torch.allclose(logits.float(), ours.float(), atol=0.05 * max(1.0, ours.abs().max().item()))


def emissions(model, text: str):
    batch = model.encoder.collate(model.encoder.encode_texts([text])[0])
    with torch.no_grad():
        return model(batch), batch["word_mask"]


@pytest.mark.parametrize("precision", ["bf16-mixed", "bf16-both"])
def test_generative_head_trains_and_decodes_in_bf16(runs, precision, tmp_path):
    from transformers import AutoModelForCausalLM

    ref_out, ref, _ = runs("generative", "fp32")
    out, metrics, objects = runs("generative", precision)
    assert_finite(metrics)
    assert metrics["test/parse_rate"] == 1.0 and metrics["test/schema_rate"] == 1.0  # the constraint holds in bf16
    assert abs(metrics["test/loss"] - ref["test/loss"]) <= 0.05 * ref["test/loss"]
    # the decoded answers: greedy decoding of a 6-step tiny model may take another branch at a near tie in bf16
    ours, theirs = ((d / "test_answers.jsonl").read_text().splitlines() for d in (out, ref_out))
    assert len(ours) == len(theirs) == 6 and sum(a == b for a, b in zip(ours, theirs)) >= 5
    model = llmner.load(out / "checkpoints" / "last.ckpt")
    examples = [it.example for it in objects["datamodule"].items["test"]][:2]
    assert all(list(a) == model.keys for a in model.predict([e.text for e in examples], grouped=True))
    export(out / "checkpoints" / "last.ckpt", tmp_path / "export")
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "export")
    ids = model.tokenizer("John Smith visited Paris", return_tensors="pt")
    with torch.no_grad():
        assert torch.isfinite(plain(**ids).logits).all()


def test_4bit_with_bf16_compute_trains_and_exports(runs, tmp_path):
    import bitsandbytes as bnb
    from transformers import AutoModelForTokenClassification

    ref_out, ref, _ = runs("crf", "fp32")
    out, metrics, objects = runs("crf", "bf16-both", ("backbone.load_in_4bit=true",))
    backbone = objects["model"].backbone
    linear4 = [m for m in backbone.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert linear4 and all(m.compute_dtype == torch.bfloat16 for m in linear4)
    assert_finite(metrics)
    # NF4 rounds the weights themselves: a wider margin than bf16 alone
    assert abs(metrics["test/f1"] - ref["test/f1"]) <= 2 * TOLERANCE["f1"]
    assert agreement(predicted_tags(out), predicted_tags(ref_out)) >= 0.9
    export(out / "checkpoints" / "last.ckpt", tmp_path / "export")
    assert AutoModelForTokenClassification.from_pretrained(tmp_path / "export").dtype == torch.float32


def test_bidirectional_layers_and_the_trunk_cache_under_bf16(runs):
    top = ("backbone.attention=bidirectional", "backbone.unmask_layers=top", "backbone.lora_layers=1")
    plain_out, plain, _ = runs("crf", "bf16-both", top)
    out, metrics, objects = runs("crf", "bf16-both", (*top, "backbone.cache=true"))
    trunk = objects["model"].backbone.trunk
    assert trunk.dtype == torch.bfloat16  # cache_dtype auto: bf16 states beside bf16 weights, no float16 overflow
    assert trunk.hits > 0 and metrics["cache/train_computed"] > 0
    assert_finite(metrics)
    # the cached states are the bf16 states the trunk computes: the same run, served from the cache
    assert abs(metrics["test/f1"] - plain["test/f1"]) <= TOLERANCE["f1"]
    assert agreement(predicted_tags(out), predicted_tags(plain_out)) >= TOLERANCE["agreement"]
