"""Decoding with merged adapters (``head.merge_adapters``, on by default) answers as decoding through
the adapters did (llmner 0.3), computes as peft's own ``merge_and_unload`` model does, skips the
adapters' products, and gives every weight back bit for bit; ``head.dtype=bfloat16`` decodes in
bfloat16 and gives the float32 weights back too.

The model is the v0.1 generative fixture (a tiny Llama whose adapters were trained: merging changes
its weights). The oracle for "same outputs" is the same model decoding with the switch off.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

import llmner
from llmner.backbone.inference import decoding_weights

FIXTURE = Path(__file__).parent / "fixtures" / "v0_1" / "generative.ckpt"
TEXTS = ["John Smith lives in Paris .", "The police said Mary was in London on Monday .", "Germany and France .",
         "Officer Smith told the report to the European Union in Berlin on Friday .", "nothing here ."]


@pytest.fixture(scope="module")
def model():
    m = llmner.load(FIXTURE)
    m.eval()
    return m


def _snapshot(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _lora_calls(model) -> list[int]:
    calls = [0]
    for name, m in model.backbone.model.named_modules():
        if name.endswith("lora_A.default"):
            m.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_the_adapters_are_trained(model):
    deltas = [m.get_delta_weight("default").abs().max() for m in model.backbone.model.modules() if hasattr(m, "lora_A")
              and "default" in getattr(m, "lora_A", {})]
    assert deltas and max(deltas) > 1e-3  # else merging would change nothing and the tests below could not fail


def test_merged_decoding_answers_as_decoding_through_the_adapters(model):
    before = _snapshot(model)
    model.head.merge_adapters = False
    old = model.answer(TEXTS, also_free=True)
    model.head.merge_adapters = True
    new = model.answer(TEXTS, also_free=True)
    assert new == old  # constrained and free answers, and their parse flags
    assert all(any(v for v in a.values()) for a in old["answers"][:4])  # real answers, not all empty
    after = _snapshot(model)
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


def test_merged_weights_compute_as_peft_merge_and_skip_the_adapters(model):
    ids = model.tokenizer(TEXTS[1], return_tensors="pt")["input_ids"]
    reference = copy.deepcopy(model.backbone.model).merge_and_unload()
    calls = _lora_calls(model)
    with torch.no_grad():
        through = model.backbone.model(input_ids=ids).logits
        assert calls[0] > 0
        calls[0] = 0
        with decoding_weights(model.backbone.model) as n:
            merged = model.backbone.model(input_ids=ids).logits
        expected = reference(input_ids=ids).logits
    assert n > 0 and calls[0] == 0  # every adapted layer merged: no LoRA product ran
    assert torch.allclose(merged, expected, atol=1e-6, rtol=0)  # peft's merge, to float rounding
    assert torch.allclose(merged, through, atol=1e-4, rtol=0)
    assert not torch.equal(merged, through) or not torch.equal(expected, through)  # rounding differs somewhere


def test_bfloat16_decoding_restores_the_float32_weights(model):
    before = _snapshot(model)
    ids = model.tokenizer(TEXTS[0], return_tensors="pt")["input_ids"]
    with torch.no_grad(), decoding_weights(model.backbone.model, dtype=torch.bfloat16):
        logits = model.backbone.model(input_ids=ids).logits
    assert logits.dtype == torch.bfloat16
    model.head.dtype = "bfloat16"
    try:
        out = model.answer(TEXTS)
    finally:
        model.head.dtype = None
    assert all(p == (True, True) for turns in out["parsed"] for p in turns)
    after = _snapshot(model)
    assert all(after[k].dtype == before[k].dtype and torch.equal(after[k], before[k]) for k in before)


def test_a_cast_without_merging_is_refused_and_changes_nothing(model):
    before = _snapshot(model)
    with pytest.raises(ValueError, match="every LoRA layer merged"):
        with decoding_weights(model.backbone.model, merge=False, dtype=torch.bfloat16):
            pass
    after = _snapshot(model)
    assert all(torch.equal(after[k], before[k]) for k in before)
