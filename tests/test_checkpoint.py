"""Checkpoints: read safely, refused clearly when foreign, and those of llmner 0.1 still load.

The oracle for "behaviour unchanged" is llmner 0.1 itself: ``fixtures/v0_1/make_golden.py`` ran at
commit 9744689 (the layout before the restructure) and left three checkpoints, their
``test_predictions.conll`` and their figures (``summary.json``), on the same tiny corpus as the
``tiny_conll`` fixture.
"""

import json
import pickle
from pathlib import Path

import pytest
import torch

import llmner
from llmner.checkpoint import read_checkpoint, upgrade_config
from llmner.errors import CheckpointError
from llmner.evaluate import evaluate
from llmner.train import train
from tests.conftest import TINY, compose_config

GOLDEN = Path(__file__).parent / "fixtures" / "v0_1"
SUMMARY = json.loads((GOLDEN / "summary.json").read_text())
# 0.1's keys -> today's: window settings moved from the data to the model's encoder.
RENAMED = {"data.max_length": "model.encoder.max_length", "data.context_words": "model.encoder.context_words"}


def current(overrides: list[str]) -> list[str]:
    """0.1's overrides in today's keys; 0.1 put no BOS token before a window (``model.encoder.bos``)."""
    out = ["model.encoder.bos=false"]
    for o in overrides:
        key, value = o.split("=", 1)
        out.append(f"{RENAMED.get(key, key)}={value}")
    return out


@pytest.mark.parametrize("name", ["tagger_crf", "tagger_linear_last", "generative"])
def test_v0_1_checkpoint_evaluates_to_its_recorded_predictions(name, tiny_conll, tmp_path):
    limits = [o for o in SUMMARY[name]["overrides"] if o.startswith("data.max_test_samples")]
    cfg = compose_config([f"ckpt_path={GOLDEN / f'{name}.ckpt'}", "trainer.accelerator=cpu", "data=conll2003",
                          f"data.path={tiny_conll}", *limits], tmp_path, config_name="eval")
    if name == "generative":  # the run's decoding settings are the checkpoint's; only the batch differs
        cfg.data.eval_batch_size = 4
    metrics, objects = evaluate(cfg)
    ours, theirs = (tmp_path / "test_predictions.conll").read_text(), (GOLDEN / f"{name}_test_predictions.conll").read_text()
    if name == "generative":
        # The decoded answers are 0.1's. Their values were placed on words by a rule of the chat view;
        # now gold and predictions share the importer's rule, which differs for values found only
        # inside words (the tiny model's answers are such letters), so compare the answers themselves.
        answers = json.loads((GOLDEN / "generative_test_answers.json").read_text())
        assert {str(k): v for k, v in objects["model"].answers["test"].items()} == answers
        assert [line.split()[:2] for line in ours.splitlines()] == [line.split()[:2] for line in theirs.splitlines()]
        assert metrics["test/field_f1"] == pytest.approx(SUMMARY[name]["test/field_f1"], abs=1e-6)
    else:
        assert ours == theirs
    assert metrics["test/f1"] == pytest.approx(SUMMARY[name]["test/f1"], abs=1e-6)
    stored = objects["model"].run_config
    assert stored["model"]["_target_"].startswith("llmner.modules.")  # upgraded on load


@pytest.mark.parametrize("name", ["tagger_crf", pytest.param("tagger_linear_last", marks=pytest.mark.slow)])
def test_same_command_same_test_f1_as_v0_1(name, tiny_conll, tmp_path):
    """Training anew with 0.1's command (its keys renamed) gives 0.1's predictions and figures.

    The golden commands use ``model.warmup_ratio=0``: the warm-up is now transformers' schedule,
    whose first step has learning rate 0 where 0.1's had ``lr / warmup`` (one step later, same shape).
    """
    cfg = compose_config(TINY + [f"data.path={tiny_conll}", *current(SUMMARY[name]["overrides"])], tmp_path)
    metrics, _ = train(cfg)
    assert metrics["train/steps"] == SUMMARY[name]["steps"]
    assert metrics["test/f1"] == pytest.approx(SUMMARY[name]["test/f1"], abs=1e-6)
    assert metrics["val/f1"] == pytest.approx(SUMMARY[name]["val/f1"], abs=1e-6)
    assert (tmp_path / "test_predictions.conll").read_text() == (GOLDEN / f"{name}_test_predictions.conll").read_text()


def test_upgrade_maps_v0_1_configs_and_keeps_current_ones():
    old = read_checkpoint(GOLDEN / "tagger_linear_last.ckpt")["llmner"]["config"]
    assert old["model"]["_target_"] == "llmner.module.TaggerModule" and old["data"]["max_length"] == 8
    new = upgrade_config(old)
    assert new["model"]["_target_"] == "llmner.modules.tagger.TaggerModule"
    assert new["data"]["_target_"] == "llmner.data.datamodule.CorpusDataModule"
    assert new["model"]["encoder"]["max_length"] == 8 and new["model"]["encoder"]["context_words"] == 2
    assert new["model"]["encoder"]["splitter"] == "conll"  # a CoNLL-trained model splits raw text the CoNLL way
    assert new["model"]["encoder"]["bos"] is False  # windows as 0.1 built them
    assert "max_length" not in new["data"] and "causal_lm" not in new["backbone"]
    assert upgrade_config(new) == new
    gen = upgrade_config(read_checkpoint(GOLDEN / "generative.ckpt")["llmner"]["config"])
    assert gen["model"]["encoder"]["_target_"] == "llmner.data.chat.ChatEncoder"


def _targets(node, path=""):
    """Every ``(key path, _target_)`` of a config, nested nodes and lists included."""
    if isinstance(node, dict):
        if "_target_" in node:
            yield path, node["_target_"]
        for k, v in node.items():
            yield from _targets(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _targets(v, f"{path}[{i}]")


@pytest.mark.parametrize("name", ["tagger_crf", "tagger_linear_last", "generative"])
def test_every_target_stored_in_a_v0_1_checkpoint_resolves_after_the_upgrade(name):
    """Classes moved since 0.1 (the modules, the datamodules, the JSON decoder out of ``heads``)
    are found through ``MOVED``: each stored ``_target_`` imports, and the table's own targets do."""
    from hydra.utils import get_object

    from llmner.checkpoint import MOVED

    stored = read_checkpoint(GOLDEN / f"{name}.ckpt")["llmner"]["config"]
    upgraded = dict(_targets(upgrade_config(stored)))
    assert len(upgraded) >= 5
    for key, target in upgraded.items():
        assert callable(get_object(target)), (key, target)
    if name == "generative":
        assert dict(_targets(stored))["head"] == "llmner.heads.generative.JsonDecoder"  # the path 0.1 wrote
        assert upgraded["head"] == "llmner.decoding.JsonDecoder"
    for new in MOVED.values():
        assert callable(get_object(new)), new


def test_v0_1_checkpoint_predicts_raw_text():
    model = llmner.load(GOLDEN / "tagger_crf.ckpt")
    text = "John Smith visited U.S. officials in Paris ."
    got = model.predict([text, "", text], grouped=True)
    assert got[0] == got[2] and set(got[0]) == {"LOC", "ORG", "PER"}
    assert got[1] == {"LOC": [], "ORG": [], "PER": []}  # an empty text has no entities, and no crash
    assert all(v in text for values in got[0].values() for v in values)
    entities = model.predict([text, ""])
    assert entities[1] == [] and all(text[e["start"]:e["end"]] == e["text"] for e in entities[0])


class Payload:
    def __reduce__(self):  # unpickling this would run print(); a safe loader never does
        return (print, ("pwned",))


def test_foreign_and_broken_files_are_refused_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        read_checkpoint(tmp_path / "missing.ckpt")
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes((GOLDEN / "tagger_crf.ckpt").read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        read_checkpoint(broken)
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        read_checkpoint(text)
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "llmner": {}, "x": Payload()}, evil)
    with pytest.raises(CheckpointError, match="could run code"):
        read_checkpoint(evil)
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, plain)
    with pytest.raises(CheckpointError, match="not an llmner checkpoint"):
        read_checkpoint(plain)
    pickled = tmp_path / "pickled.ckpt"
    pickled.write_bytes(pickle.dumps({"llmner": {}}))
    with pytest.raises(CheckpointError):
        read_checkpoint(pickled)
