"""Defects of the GPU paths (issue 27), each checked on the CPU where the code path runs there: FSDP over
2 gloo processes, DeepSpeed's hook removal, 4-bit export, device-aware dtypes and 4-bit placement, the
collective recompute decision over 2 gloo processes, synced decoding, the trunk cache under sharding,
DeepSpeed's offloaded optimizer and memory figures. What needs a GPU is in tests/test_gpu.py.
"""

from __future__ import annotations

import sys
import types
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy

import llmner
from llmner.backbone import Backbone
from llmner.backbone.model import resolve_dtype
from llmner.backbone.testing import TINY_RANDOM
from llmner.builders import build_model
from llmner.errors import ConfigError
from llmner.heads import CRFHead
from llmner.modules.base import cpu_adam, offloads_optimizer
from llmner.train import train
from tests.conftest import TINY, compose_config, write_corpus
from tests.two_processes import gpu_path_checks, on_two_processes

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


@pytest.fixture(scope="module")
def two_ranks() -> list[dict]:
    """The two-process checks (tests/two_processes.py), run once: each rank's results."""
    return on_two_processes(gpu_path_checks)


def test_crf_head_runs_under_fsdp_on_two_processes(two_ranks):
    """Before: FSDP's setattr of the flat parameter's views hit the read-only ``transitions`` property,
    and ``decode`` read the CRF's shards outside its forward."""
    for result in (r["crf_under_fsdp"] for r in two_ranks):
        assert not isinstance(result, str), result  # a traceback
        nll, tags, got_nll, got_tags = result
        assert got_nll == pytest.approx(nll, abs=1e-6) and got_tags == tags


def test_crf_properties_take_a_strategys_views_and_give_the_parameters_back():
    from torch.distributed.fsdp._flat_param import _safe_setattr_tensor_or_param as swap

    crf = CRFHead(4, TAGS).crf
    param = crf._parameters["transitions"]
    view = torch.zeros(len(TAGS), len(TAGS))
    swap(crf, "transitions", view)  # what FSDP does before a unit's forward
    assert "transitions" not in crf._parameters and crf.transitions[0, 2] == -10000.0  # O -> I-PER still masked
    swap(crf, "transitions", param)  # and after it
    assert crf._parameters["transitions"] is param and "transitions" not in crf.__dict__
    assert set(crf.state_dict()) == {"start_transitions", "end_transitions", "transitions"}


# --- DeepSpeed removes module hooks before validate/test -------------------------------------------
def test_bidirectional_attention_survives_deepspeeds_hook_removal():
    from lightning.pytorch.strategies.deepspeed import remove_module_hooks

    ids = torch.randint(10, 400, (2, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    kw = dict(lora=False, dtype="float32", gradient_checkpointing=4)
    causal = Backbone(TINY_RANDOM, attention="causal", **kw).eval()
    bidir = Backbone(TINY_RANDOM, attention="bidirectional", **kw).eval()
    with torch.no_grad():
        expected, plain = bidir(ids, mask), causal(ids, mask)
        assert not torch.allclose(expected, plain, atol=1e-4)  # the check below can tell the two apart
        remove_module_hooks(bidir)  # what Lightning's DeepSpeed strategy runs before validate and test
        assert torch.allclose(bidir(ids, mask), expected, atol=1e-6)  # still bidirectional
    assert bidir.recompute._handle.id in bidir.recompute.model._forward_pre_hooks  # the recompute hook is back too


# --- DeepSpeed precision, and its offloaded optimizer ---------------------------------------------
@pytest.mark.parametrize("name", ["deepspeed_zero2", "deepspeed_zero3"])
def test_deepspeed_configs_use_bf16_mixed(name):
    assert compose_config([f"trainer={name}"], Path("unused")).trainer.precision == "bf16-mixed"


def _deepspeed(config: dict) -> DeepSpeedStrategy:
    strategy = DeepSpeedStrategy.__new__(DeepSpeedStrategy)  # its __init__ needs DeepSpeed installed
    strategy.config = config
    return strategy


def test_offloaded_optimizer_becomes_deepspeeds_cpu_adam_with_the_same_settings(monkeypatch):
    class DeepSpeedCPUAdam:
        def __init__(self, params, **kw):
            self.params, self.kw = params, kw

    adam = types.ModuleType("deepspeed.ops.adam")
    adam.DeepSpeedCPUAdam = DeepSpeedCPUAdam
    for name, module in {"deepspeed": types.ModuleType("deepspeed"), "deepspeed.ops": types.ModuleType("deepspeed.ops"),
                         "deepspeed.ops.adam": adam}.items():
        monkeypatch.setitem(sys.modules, name, module)
    offload = {"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu"}}}
    assert offloads_optimizer(_deepspeed(offload))
    assert not offloads_optimizer(_deepspeed({"zero_optimization": {"stage": 2}})) and not offloads_optimizer(None)
    opt = cpu_adam(partial(torch.optim.AdamW, weight_decay=0.01))([{"params": [], "lr": 1e-3}])
    assert isinstance(opt, DeepSpeedCPUAdam) and opt.kw == {"adamw_mode": True, "weight_decay": 0.01}
    with pytest.raises(ConfigError, match="offload_optimizer"):
        cpu_adam(partial(torch.optim.SGD, momentum=0.9))


# --- 4-bit export ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("gpu_paths_conll"), 80, 12, 12)


@pytest.fixture(scope="module")
def run_4bit(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("crf_4bit")
    cfg = compose_config(TINY + ["head=crf", "backbone.load_in_4bit=true", "backbone.dtype=float32", "trainer.max_steps=8",
                                 "model.lr_backbone=2e-2", "model.lr_head=5e-2", "data.batch_size=8",
                                 f"data.path={corpus}"], out)
    train(cfg)
    return out / "checkpoints" / "last.ckpt"


def test_4bit_checkpoint_exports_the_function_it_was_evaluated_with(run_4bit, tmp_path):
    """Before: merge_and_unload re-quantized the merge and the strict load of the token classifier failed
    on bitsandbytes' packed weights. Now the export equals the 4-bit model (float32 compute) itself."""
    import bitsandbytes as bnb
    from safetensors.torch import load_file
    from transformers import AutoModelForTokenClassification

    from llmner.export import export

    model = llmner.load(run_4bit)
    assert any("lora_B" in n and p.abs().max() > 0 for n, p in model.named_parameters())  # the merge matters
    export(run_4bit, tmp_path / "export")
    stored = load_file(tmp_path / "export" / "model.safetensors")
    assert not any("absmax" in k or "quant" in k for k in stored) and all(v.dtype == torch.float32 for v in stored.values())
    # exact oracle: each exported weight is the dequantized 4-bit weight plus the adapter's scaled B @ A
    q = model.backbone.model.base_model.model.layers[0].self_attn.q_proj
    delta = (q.lora_B["default"].weight @ q.lora_A["default"].weight) * q.scaling["default"]
    dequantized = bnb.functional.dequantize_4bit(q.base_layer.weight.data, q.base_layer.weight.quant_state)
    assert torch.allclose(stored["model.layers.0.self_attn.q_proj.weight"], dequantized + delta, atol=1e-6)
    # a CRF head exports as custom code (llmner.hf_custom); without first/last every token is a word
    plain = AutoModelForTokenClassification.from_pretrained(tmp_path / "export", trust_remote_code=True).eval()
    ids = torch.tensor([[5, 17, 99, 230, 7, 8]])
    with torch.no_grad():
        ours = model.head.proj(model.backbone(ids, torch.ones_like(ids)))
        theirs = plain(input_ids=ids).logits
    # bitsandbytes' CPU kernel multiplies in bfloat16 whatever the compute dtype: agreement to bf16 rounding
    assert torch.allclose(theirs, ours, atol=1e-2 * max(1.0, ours.abs().max().item()))


# --- device-aware dtype and 4-bit placement ------------------------------------------------------
@pytest.fixture
def fake_cuda(monkeypatch):
    """A machine that has a bf16 GPU, as far as llmner's choices can tell."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


def test_auto_dtype_follows_the_device_and_what_trains(fake_cuda, monkeypatch):
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 1)
    assert resolve_dtype("auto", gpu) == "bfloat16"
    assert resolve_dtype("auto", cpu) == "float32"  # a CPU run on a GPU machine
    assert resolve_dtype("auto", gpu, freeze=False) == "float32"  # full fine-tuning: AdamW updates need float32
    assert resolve_dtype("bfloat16", cpu) == "bfloat16"  # an explicit choice stands
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert resolve_dtype("auto", gpu) == "float32"  # emulated bf16 (V100, T4)
    with pytest.raises(ValueError, match="backbone.dtype"):
        resolve_dtype("fp8", cpu)


@pytest.fixture(scope="module")
def run_auto(corpus, tmp_path_factory):
    """A 2-step run with the default ``backbone.dtype: auto``, and the device ``train`` built its model for."""
    import llmner.train as entry

    out, devices, original = tmp_path_factory.mktemp("auto"), [], entry.build_model
    with pytest.MonkeyPatch.context() as mp_:
        mp_.setattr(entry, "build_model", lambda cfg, tags, device=None: devices.append(device) or original(cfg, tags, device))
        train(compose_config(TINY + ["head=linear", "trainer.max_steps=2", f"data.path={corpus}"], out))
    return out / "checkpoints" / "last.ckpt", devices


def test_train_builds_the_model_for_the_trainers_device(run_auto):
    assert run_auto[1] == [torch.device("cpu")]


def test_loading_a_checkpoint_for_the_cpu_keeps_float32_on_a_gpu_machine(run_auto, fake_cuda):
    """Before: dtype auto gave bfloat16 whenever CUDA existed, though load() keeps the model on the CPU."""
    model = llmner.load(run_auto[0])
    assert model.run_config["backbone"]["dtype"] == "auto"
    assert {p.dtype for p in model.backbone.parameters()} == {torch.float32}


def test_4bit_weights_load_on_the_processs_own_device(monkeypatch):
    """Before: no device_map, so transformers put every DDP rank's 4-bit weights on cuda:0."""
    from transformers import AutoModel

    seen = {}
    original = AutoModel.from_pretrained

    def spy(*args, **kwargs):
        seen["device_map"] = kwargs.get("device_map")
        if kwargs.get("device_map") == {"": torch.device("cpu")}:
            return original(*args, **kwargs)
        raise RuntimeError("stop: no GPU here")

    monkeypatch.setattr(AutoModel, "from_pretrained", spy)
    with pytest.raises(RuntimeError, match="stop"):
        Backbone(TINY_RANDOM, load_in_4bit=True, device="cuda:1")
    assert seen["device_map"] == {"": torch.device("cuda", 1)}  # rank 1's GPU
    backbone = Backbone(TINY_RANDOM, load_in_4bit=True, device="cpu")
    assert seen["device_map"] == {"": torch.device("cpu")}
    assert {p.device.type for p in backbone.parameters()} == {"cpu"}


# --- selective recompute decided once for all ranks ----------------------------------------------
def test_threshold_recompute_is_one_decision_across_ranks(two_ranks):
    """Before: rank 0 (4 tokens) skipped recomputing while rank 1 (40) recomputed; under FSDP or ZeRO-3 the
    extra weight gathers of one rank's backward then wait for the other's forever."""
    assert [r["recompute"] for r in two_ranks] == [True, True]


# --- decoding under sharded weights --------------------------------------------------------------
def _trainer(strategy, world_size: int = 2):
    return SimpleNamespace(strategy=strategy, world_size=world_size)


@pytest.mark.parametrize("strategy,world,synced", [
    (_deepspeed({"zero_optimization": {"stage": 3}}), 2, True),
    (_deepspeed({"zero_optimization": {"stage": 2}}), 2, False),  # whole weights on each rank
    ("fsdp", 2, True),
    ("fsdp", 1, False),
])
def test_generate_is_synced_across_ranks_when_weights_are_sharded(strategy, world, synced, corpus, tmp_path, monkeypatch):
    """Before: no synced_gpus, and transformers cannot see Lightning's ZeRO-3: a rank whose answers ended
    first stopped gathering weights and the others hung."""
    if strategy == "fsdp":
        strategy = FSDPStrategy()
    cfg = compose_config(TINY + ["model=generative", "head.max_new_tokens=48", f"data.path={corpus}"], tmp_path)
    model = build_model(cfg, TAGS)
    model._trainer = _trainer(strategy, world)
    seen = {}
    monkeypatch.setattr(model.backbone.model, "generate", lambda **kw: seen.update(kw) or kw["input_ids"])
    model._generate([[{"role": "user", "content": "John visited Paris"}]], ["PER"], ["John visited Paris"], False)
    assert seen["synced_gpus"] is synced


# --- the trunk cache under sharded weights --------------------------------------------------------
def test_trunk_cache_is_refused_under_fsdp_and_zero3(corpus, tmp_path):
    cfg = compose_config(TINY + ["backbone.lora_layers=1", "backbone.cache=true", f"data.path={corpus}"], tmp_path)
    model = build_model(cfg, TAGS)
    for strategy in (FSDPStrategy(), _deepspeed({"zero_optimization": {"stage": 3}})):
        model._trainer = _trainer(strategy)
        with pytest.raises(ConfigError, match="backbone.cache=true needs the whole model"):
            model.setup("fit")
    model._trainer = _trainer(_deepspeed({"zero_optimization": {"stage": 2}}))
    model.setup("fit")  # ZeRO-2 keeps whole weights on every rank: allowed


# --- memory figures ---------------------------------------------------------------------------------
def test_memory_is_the_runs_devices_and_the_hosts_the_largest_over_ranks(fake_cuda, tmp_path, monkeypatch):
    from llmner import memory
    from llmner.callbacks import RunOutputs

    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a, **k: 0)  # an idle GPU beside a CPU run
    rss = memory.peak_rss_mb()
    assert rss > 50 and memory.peak_memory_mb("cpu") == pytest.approx(rss, rel=0.1)  # not the GPU's 0
    outputs = RunOutputs(tmp_path)
    other_rank = torch.tensor([7e3, 9e3], dtype=torch.float64)
    strategy = SimpleNamespace(all_gather=lambda t: torch.stack([t, other_rank]))
    module = SimpleNamespace(device=torch.device("cpu"), run_metrics={})
    outputs._write_metrics(SimpleNamespace(lightning_module=module, strategy=strategy, is_global_zero=True))
    assert outputs.metrics["memory/peak_mb"] == 7e3 and outputs.metrics["memory/peak_rss_mb"] == 9e3
