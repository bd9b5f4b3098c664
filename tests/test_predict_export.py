"""Both head families end to end on the tiny random Llama: train -> save -> load -> predict (API and CLI)
-> export -> reload with plain transformers."""

import json
import subprocess
import sys

import pytest
import torch

import llmner
from llmner.data.text import spans_to_answers
from llmner.export import export
from llmner.train import train
from tests.conftest import TINY, compose_config

TAG = ["head=linear", "model.lr_backbone=5e-3", "model.lr_head=5e-2", "data.batch_size=16", "trainer.max_epochs=1"]
GEN = ["model=generative", "data.batch_size=4", "data.eval_batch_size=4", "trainer.max_steps=4",
       "trainer.val_check_interval=4", "data.max_train_samples=16", "data.max_eval_samples=4",
       "data.max_test_samples=4", "head.max_new_tokens=48", "model.lr=1e-3"]


@pytest.fixture(scope="module", params=["tagger", "generative"])
def run(request, tiny_conll, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param)
    extra = TAG if request.param == "tagger" else GEN
    cfg = compose_config(TINY + extra + [f"data.path={tiny_conll}"], out)
    metrics, objects = train(cfg)
    return request.param, out, metrics, objects


def test_metrics_and_outputs(run):
    kind, out, metrics, objects = run
    assert (out / "metrics.json").is_file() and (out / "test_predictions.conll").is_file()
    assert "test/f1" in metrics and "test/f1" in json.loads((out / "metrics.json").read_text())
    if kind == "generative":
        assert metrics["test/parse_rate"] == 1.0 and metrics["test/schema_rate"] == 1.0  # constrained
        assert {"test/field_f1", "test/field_f1_PER", "test/unconstrained_parse_rate", "val/f1"} <= set(metrics)
        model = objects["model"]
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        assert trainable and all("lora_" in n for n in trainable)  # only the adapters train


def test_loaded_checkpoint_predicts_what_the_run_predicted(run):
    kind, out, metrics, objects = run
    ckpt = objects["best_ckpt"] or str(out / "checkpoints" / "last.ckpt")
    model = llmner.load(ckpt)
    dm = objects["datamodule"]
    sentences = dm.sentences["test"]
    if kind == "tagger":
        texts = [" ".join(s.tokens) for s in sentences[:5]]
        got = model.predict(texts)
        keys = sorted({t[2:] for t in model.tags if t != "O"})
        for i, (text, entities) in enumerate(zip(texts, got)):
            words = sentences[i].tokens
            offsets, pos = [], 0
            for w in words:
                offsets.append((pos, pos + len(w)))
                pos += len(w) + 1
            assert entities == spans_to_answers(text, offsets, objects["model"].predictions["test"][i], keys)
    else:
        # the same batch as the test loop (longest text first), so the same padding
        examples = [it.example for it in sorted(dm.items["test"], key=lambda it: -dm.encoder.length(it))]
        got = model.predict([e.text for e in examples])
        assert got == [objects["model"].answers["test"][e.index] for e in examples]
        assert all(list(g) == model.keys for g in got)
    assert model.predict([]) == []


def test_predict_cli_text_file_and_stdin(run, tmp_path):
    kind, out, _, objects = run
    ckpt = str(out / "checkpoints" / "last.ckpt")
    texts = ["John Smith visited Paris on Monday .", "the Red Cross said Anna Berg will lead it ."]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    common = [sys.executable, "-m", "llmner.predict", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'h'}"]
    one = subprocess.run(common + [f"text='{texts[0]}'"], capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    many = subprocess.run(common + [f"file={tmp_path / 'in.txt'}"], capture_output=True, text=True, timeout=300)
    piped = subprocess.run(common, input="\n".join(texts) + "\n", capture_output=True, text=True, timeout=300)
    lines = [json.loads(l) for l in many.stdout.splitlines()]
    expected = llmner.load(ckpt).predict(texts)
    assert lines == expected and [json.loads(l) for l in piped.stdout.splitlines()] == expected
    if kind == "tagger":  # a single text is batched alone: the tag heads give the same answer
        assert json.loads(one.stdout) == expected[0]
    assert all(isinstance(v, list) for d in lines for v in d.values())


def test_export_loads_without_llmner(run, tmp_path):
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    kind, out, _, objects = run
    model = llmner.load(str(out / "checkpoints" / "last.ckpt"))
    export(out / "checkpoints" / "last.ckpt", tmp_path / "export")
    tok = AutoTokenizer.from_pretrained(tmp_path / "export")
    ids = tok("John Smith visited Paris", return_tensors="pt")
    with torch.no_grad():
        if kind == "generative":
            plain = AutoModelForCausalLM.from_pretrained(tmp_path / "export")
            ours = model.backbone.model(**ids).logits
            assert torch.allclose(plain(**ids).logits, ours, atol=1e-4)  # the adapter is merged in
            assert json.loads((tmp_path / "export" / "llmner_prompt.json").read_text())["keys"] == model.keys
        else:
            plain = AutoModel.from_pretrained(tmp_path / "export")
            head = torch.load(tmp_path / "export" / "llmner_head.pt", weights_only=False)
            assert head["tags"] == model.tags and set(head["state_dict"]) == set(model.head.state_dict())
            hidden = model.backbone(ids["input_ids"], ids["attention_mask"])
            assert torch.allclose(plain(**ids).last_hidden_state, hidden, atol=1e-4)


def test_exported_token_classifier_runs_in_the_pipeline_with_the_heads_tags(run, tmp_path):
    from peft import PeftConfig
    from transformers import pipeline

    kind, out, _, objects = run
    if kind != "tagger":
        pytest.skip("the token-classification export is for tag heads")
    model = llmner.load(str(out / "checkpoints" / "last.ckpt"))
    export(out / "checkpoints" / "last.ckpt", tmp_path / "export")
    assert PeftConfig.from_pretrained(tmp_path / "export" / "adapter").r == model.run_config["backbone"]["lora_r"]
    tagger = pipeline("token-classification", model=str(tmp_path / "export"), ignore_labels=[], device="cpu")
    sentences = objects["datamodule"].sentences["test"][:8]
    checked = 0
    for s in sentences:
        text = " ".join(s.tokens)
        # llmner's linear-head tags: argmax of the same emissions at each word's first subword
        batch = model.encoder.collate(model.encoder.encode_texts([text])[0])
        with torch.no_grad():
            ours = [model.tags[t] for t in model.head.decode(model(batch), batch["word_mask"])[0]]
        tokens = tagger(text)
        starts, pos = [], 0
        for w in s.tokens:
            starts.append(pos)
            pos += len(w) + 1
        for word, start, tag in zip(s.tokens, starts, ours):
            # the pipeline's first token of the word: byte-level BPE pieces match llmner's " word"
            # encoding, whose first piece may be the space alone (offsets (start - 1, start))
            first = next(t for t in tokens if t["end"] >= start and t["end"] > t["start"])
            assert first["entity"] == tag, (text, word, first, tag)
            checked += 1
    assert checked > 20 and len({t for s in sentences for t in s.tags}) > 1


def test_few_shot_prompting_and_the_shots_stay_with_the_checkpoint(tiny_conll, tmp_path):
    cfg = compose_config(TINY + GEN + [f"data.path={tiny_conll}", "model.prompt.shots=2", "trainer.max_steps=2",
                                       "trainer.val_check_interval=2"], tmp_path / "tuned")
    metrics, objects = train(cfg)
    model = objects["model"]
    train_texts = {" ".join(s.tokens) for s in objects["datamodule"].sentences["train"]}
    shots = [e["text"] for e in model.prompt.examples]
    assert len(shots) == 2 and set(shots) <= train_texts
    assert "test/field_f1" in metrics
    reloaded = llmner.load(objects["best_ckpt"] or str(tmp_path / "tuned" / "checkpoints" / "last.ckpt"))
    assert [e["text"] for e in reloaded.prompt.examples] == shots  # asked with the same shots
    # prompting only: no training, the same shots for the same seed
    cfg = compose_config(TINY + GEN + [f"data.path={tiny_conll}", "model.prompt.shots=2", "train=false"], tmp_path / "prompt")
    metrics, objects = train(cfg)
    assert [e["text"] for e in objects["model"].prompt.examples] == shots and "test/field_f1" in metrics
