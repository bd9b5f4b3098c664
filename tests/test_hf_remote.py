"""The transformers export of a tagger with a non-stock reading (repetition, bidirectional layers, pooling,
CRF) as custom code: ``pipeline("token-classification", model=DIR, trust_remote_code=True)`` finds the
entities ``llmner.predict`` finds; a stock reading stays a code-free export."""

import json
import random

import pytest
import torch

import llmner
from llmner.data.alignment import plan_windows
from llmner.data.text import spans_to_answers, split_words
from llmner.export import export
from llmner.hf_remote import pipeline_llmner
from llmner.train import train
from tests.conftest import PEOPLE, PLACES, TINY, compose_config

SETTINGS = {
    "repeat_crf_mean": ["head=crf", "model.encoder.repeat=2", "model.subword=mean"],
    "bidirectional_crf_last": ["head=crf", "backbone.attention=bidirectional", "backbone.unmask_layers=[1,2]",
                               "model.subword=last"],
    "stock_linear": ["head=linear"],
}


def _run(name, tiny_conll, out):
    cfg = compose_config(TINY + SETTINGS[name] + [
        f"data.path={tiny_conll}", "model.lr_backbone=5e-3", "model.lr_head=5e-2", "data.batch_size=16",
        "trainer.max_epochs=1", "data.max_test_samples=40", "model.encoder.max_length=48"], out)
    _, objects = train(cfg)
    return out / "checkpoints" / "last.ckpt", objects


@pytest.fixture(scope="module", params=["repeat_crf_mean", "bidirectional_crf_last"])
def exported(request, tiny_conll, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param)
    ckpt, objects = _run(request.param, tiny_conll, out)
    export(ckpt, out / "hf")
    texts = [" ".join(s.tokens) for s in objects["datamodule"].sentences["test"]]
    rng = random.Random(0)  # long texts: several overlapping windows (max_length=48)
    texts += [" ".join(f"{rng.choice(PEOPLE)} met {rng.choice(PLACES)} officials ," for _ in range(12)) + " ."]
    texts += ["John Smith visited Paris.", "  the Red Cross (in New York) said:\tAnna Berg's team won't lead it!", ""]
    return ckpt, out / "hf", texts


def _answers(model, text: str, entities: list[dict]) -> dict:
    """The pipeline's entities as llmner's ``{type: [values]}``: spans -> word tags -> ``spans_to_answers``."""
    offsets = split_words(text, model.encoder.splitter)
    tags = ["O"] * len(offsets)
    for e in entities:
        assert text[e["start"] : e["end"]] == e["word"] and 0 < e["score"] <= 1
        inside = [i for i, (s, t) in enumerate(offsets) if e["start"] <= s and t <= e["end"]]
        assert inside and offsets[inside[0]][0] == e["start"] and offsets[inside[-1]][1] == e["end"]
        tags[inside[0]] = f"B-{e['entity_group']}"
        for i in inside[1:]:
            tags[i] = f"I-{e['entity_group']}"
    return spans_to_answers(text, offsets, tags, sorted({t[2:] for t in model.tags if t != "O"}))


def test_the_pipeline_finds_the_entities_predict_finds(exported):
    from transformers import pipeline

    ckpt, directory, texts = exported
    model = llmner.load(ckpt)
    config = json.loads((directory / "config.json").read_text())
    assert "auto_map" in config and (directory / "modeling_llmner.py").is_file()
    tagger = pipeline("token-classification", model=str(directory), trust_remote_code=True, device="cpu")
    got = tagger(texts)
    want = model.predict(texts, grouped=True)
    assert [_answers(model, t, g) for t, g in zip(texts, got)] == want
    assert sum(len(v) for w in want for v in w.values()) > 20, "few entities found: a weak test"
    assert max(len(model.encoder.encode_texts([t])[0]) for t in texts) > 1  # some text spans several windows


def test_the_custom_model_gives_llmners_emissions_and_the_bare_backbone_stays_loadable(exported):
    from transformers import AutoModel, AutoModelForTokenClassification

    ckpt, directory, texts = exported
    model = llmner.load(ckpt)
    custom = AutoModelForTokenClassification.from_pretrained(directory, trust_remote_code=True).eval()
    batch = model.encoder.collate(model.encoder.encode_texts(texts[:8])[0])
    with torch.no_grad():
        want = model(batch)
        got = custom(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], first=batch["first"],
                     last=batch["last"]).logits
        assert (got - want).abs().max() < 1e-4
        for row, mask in zip(range(len(want)), batch["word_mask"]):
            assert custom.decode(got[row][mask]) == model.head.decode(want[row : row + 1], mask[None])[0]
    bare = AutoModel.from_pretrained(directory)  # the merged backbone's weights, as before custom code
    merged = model.backbone.model.merge_and_unload()
    state = merged.state_dict()
    assert set(bare.state_dict()) == set(state)
    assert all(torch.allclose(v, state[k]) for k, v in bare.state_dict().items())


def test_a_stock_reading_stays_a_code_free_export(tiny_conll, tmp_path):
    ckpt, _ = _run("stock_linear", tiny_conll, tmp_path)
    export(ckpt, tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert "auto_map" not in config and not (tmp_path / "hf" / "modeling_llmner.py").exists()
    assert config["architectures"] is None or "Llmner" not in str(config["architectures"])


def test_the_shipped_copies_agree_with_llmner():
    """``pipeline_llmner`` must run without llmner, so it carries copies of the splitters and the planner."""
    rng = random.Random(1)
    alphabet = list("abcXYZ019 .,;:!?'\"()[]{}-_#$%&\t\n") + ["é", "🇫🇷", "e\u0301", "U.S.", "Mr.", "'s", "  "]
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        for splitter in ("punct", "conll", "whitespace"):
            assert pipeline_llmner.split_words(text, splitter) == split_words(text, splitter), (text, splitter)
    for _ in range(300):
        lengths = [rng.randint(1, 9) for _ in range(rng.randint(0, 40))]
        budget, context = rng.randint(1, 30), rng.randint(0, 6)
        want = [(w.start, w.end, w.own_start, w.own_end) for w in plan_windows(lengths, budget, context)]
        assert pipeline_llmner.plan_windows(lengths, budget, context) == want
