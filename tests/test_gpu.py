"""What only a GPU can check (``pytest -m gpu``; skipped without CUDA): ZeRO-3 with every weight
partitioned, 4-bit under DDP, the generative head, bidirectional attention with the trunk cache, resume,
and the dtype ``auto`` picks. Run by ``experiments/gpu_check.sh``; their CPU counterparts are in
tests/test_gpu_paths.py and tests/test_bf16_cpu.py.

The tiny model's weights are all below ZeRO-3's persistence threshold (100k parameters by default),
so ZeRO-3 would keep them whole and test nothing: the ZeRO-3 run sets the thresholds to 0.
"""

from __future__ import annotations

import json

import pytest
import torch

from llmner.builders import build_model
from llmner.evaluate import evaluate
from tests.conftest import compose_config, write_corpus
from tests.test_distributed import STEPS, run

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]

ZERO3_ALL_PARTITIONED = ("+trainer.strategy.config={zero_optimization:{stage:3,stage3_param_persistence_threshold:0,"
                         "stage3_model_persistence_threshold:0},zero_allow_untested_optimizer:true}")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("gpu_conll"), 120, 21, 27)


@pytest.fixture(scope="module")
def common(corpus) -> list[str]:  # as tests/test_distributed.py's runs
    return ["experiment=conll_crf", "backbone=tiny_random", f"data.path={corpus}", "model.lr_backbone=5e-3",
            "model.lr_head=5e-2", "data.batch_size=8", "data.eval_batch_size=4", "model.encoder.max_length=16",
            "model.encoder.context_words=2", "model.encoder.repeat=1", "trainer.log_every_n_steps=1"]


def devices() -> int:
    return min(2, torch.cuda.device_count())


def train_run(args: list[str], out) -> dict:
    run(["llmner.train", *args, f"hydra.run.dir={out}"], timeout=600)
    return json.loads((out / "metrics.json").read_text())


def test_zero3_with_every_weight_partitioned_trains_bidirectional_and_scores_as_one_gpu(common, tmp_path):
    pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (pip install 'llmner[deepspeed]')")
    out = tmp_path / "run"
    metrics = train_run([*common, "trainer=deepspeed_zero3", f"trainer.devices={devices()}", ZERO3_ALL_PARTITIONED,
                         "backbone.attention=bidirectional", f"trainer.max_steps={STEPS}"], out)
    assert metrics["train/steps"] == STEPS and metrics["test/f1"] > 0.3
    from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict

    best = next((out / "checkpoints").glob("epoch*.ckpt"))
    convert_zero_checkpoint_to_fp32_state_dict(best, tmp_path / "best.ckpt")
    one, _ = evaluate(compose_config([f"ckpt_path={tmp_path / 'best.ckpt'}", "trainer.devices=1"], tmp_path / "one", "eval"))
    # validated and tested with the bidirectional hooks that DeepSpeed removed (restored per pass): as on one GPU
    assert one["test/f1"] == pytest.approx(metrics["test/f1"], abs=0.02)


def test_qlora_under_ddp_trains_each_rank_on_its_own_gpu(common, tmp_path):
    metrics = train_run([*common, "trainer=ddp", f"trainer.devices={devices()}", "backbone.load_in_4bit=true",
                         f"trainer.max_steps={STEPS}"], tmp_path / "run")
    assert metrics["train/steps"] == STEPS and metrics["test/f1"] > 0.3
    assert 0 < metrics["memory/peak_mb"] < 4000  # the GPU's reserved peak, not the CPU's RSS


@pytest.mark.parametrize("trainer", ["default", "deepspeed_zero3"])
def test_generative_head_trains_and_decodes(trainer, corpus, tmp_path):
    if trainer.startswith("deepspeed"):
        pytest.importorskip("deepspeed", reason="DeepSpeed is not installed")
    extra = [] if trainer == "default" else [f"trainer.devices={devices()}", ZERO3_ALL_PARTITIONED]
    metrics = train_run(["backbone=tiny_random", "data=conll2003", f"data.path={corpus}", "model=generative",
                         f"trainer={trainer}", *extra, "trainer.max_steps=8", "trainer.val_check_interval=8",
                         "data.batch_size=4", "data.eval_batch_size=4", "data.max_train_samples=32",
                         "data.max_eval_samples=6", "data.max_test_samples=7", "head.max_new_tokens=48",
                         "model.lr=1e-3"], tmp_path / "run")
    # 7 test examples over 2 ranks: answers end at different steps; synced decoding keeps the gathers matched
    assert metrics["test/parse_rate"] == 1.0 and "test/field_f1" in metrics


def test_bidirectional_top_layers_over_a_cached_trunk(common, tmp_path):
    metrics = train_run([*common, "backbone.attention=bidirectional", "backbone.unmask_layers=top",
                         "backbone.lora_layers=1", "backbone.cache=true", f"trainer.max_steps={STEPS}"], tmp_path / "run")
    assert metrics["test/f1"] > 0.3 and metrics["cache/train_computed"] > 0


def test_resume_on_gpu_continues_from_the_checkpoint(common, tmp_path):
    train_run([*common, f"trainer.max_steps={STEPS}"], tmp_path / "a")
    metrics = train_run([*common, f"trainer.max_steps={STEPS + 6}",
                         f"ckpt_path={tmp_path / 'a' / 'checkpoints' / 'last.ckpt'}"], tmp_path / "b")
    assert metrics["train/steps"] == STEPS + 6


def test_auto_dtype_on_a_gpu(tmp_path):
    frozen = build_model(compose_config(["backbone=tiny_random"], tmp_path), ["O", "B-PER", "I-PER"], device="cuda:0")
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float32
    assert next(frozen.backbone.model.parameters()).dtype == expected
    full = build_model(compose_config(["backbone=tiny_random", "backbone.freeze=false"], tmp_path), ["O"], device="cuda:0")
    assert {p.dtype for p in full.backbone.parameters()} == {torch.float32}  # trained weights stay float32
