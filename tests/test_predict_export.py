"""Both head families end to end on the tiny random Llama: train -> save -> load -> predict (API and CLI)
-> export -> reload with plain transformers."""

import json
import subprocess
import sys

import pytest
import torch

import llmner
from llmner.data.text import group_entities, spans_to_answers, values_to_entities
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
        lines = [json.loads(l) for l in (out / "test_answers.jsonl").read_text().splitlines()]
        answers = objects["model"].answers["test"]
        assert len(lines) == len(answers) == len(objects["datamodule"].sentences["test"])
        assert all(line["answers"] == answers[line["sentence"]] for line in lines)
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
        got = model.predict(texts, grouped=True)
        entities = model.predict(texts)
        keys = sorted({t[2:] for t in model.tags if t != "O"})
        for i, (text, answers) in enumerate(zip(texts, got)):
            words = sentences[i].tokens
            offsets, pos = [], 0
            for w in words:
                offsets.append((pos, pos + len(w)))
                pos += len(w) + 1
            # the grouped view is the old output: the test loop's tags read by the old rule
            assert answers == spans_to_answers(text, offsets, objects["model"].predictions["test"][i], keys)
            assert group_entities(entities[i], keys) == answers
            assert all(text[e["start"]:e["end"]] == e["text"] and 0 < e["score"] <= 1 for e in entities[i])
        assert any(entities), "no entity predicted: a weak test"
    else:
        # the same batch as the test loop (longest text first), so the same padding
        examples = [it.example for it in sorted(dm.items["test"], key=lambda it: -dm.encoder.length(it))]
        texts = [e.text for e in examples]
        got = model.predict(texts, grouped=True)
        assert got == [objects["model"].answers["test"][e.index] for e in examples]
        assert all(list(g) == model.keys for g in got)
        for text, answers, entities in zip(texts, got, model.predict(texts)):  # each value placed in the text
            assert entities == values_to_entities(text, answers, model.keys)[0]
            assert all(text[e["start"]:e["end"]] == e["text"] and e["score"] is None for e in entities)
    assert model.predict([]) == [] and model.predict([], grouped=True) == []


def test_predict_cli_text_file_and_stdin(run, tmp_path):
    kind, out, _, objects = run
    ckpt = str(out / "checkpoints" / "last.ckpt")
    texts = ["John Smith visited Paris on Monday .", "the Red Cross said Anna Berg will lead it ."]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    common = [sys.executable, "-m", "llmner.predict", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'h'}"]
    one = subprocess.run(common + [f"text='{texts[0]}'"], capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    many = subprocess.run(common + [f"file={tmp_path / 'in.txt'}", f"out={tmp_path / 'spans.jsonl'}"],
                          capture_output=True, text=True, timeout=300)
    assert many.returncode == 0, many.stderr
    piped = subprocess.run(common + ["grouped=true"], input="\n".join(texts) + "\n", capture_output=True, text=True, timeout=300)
    lines = [json.loads(l) for l in many.stdout.splitlines()]
    model = llmner.load(ckpt)
    expected, grouped = model.predict(texts), model.predict(texts, grouped=True)
    assert lines == expected and [json.loads(l) for l in piped.stdout.splitlines()] == grouped
    if kind == "tagger":  # a single text is batched alone: the tag heads give the same answer (scores up to padding's rounding)
        alone = json.loads(one.stdout)
        assert [{**e, "score": None} for e in alone] == [{**e, "score": None} for e in expected[0]]
        assert [e["score"] for e in alone] == pytest.approx([e["score"] for e in expected[0]], abs=1e-4)
    assert all(isinstance(d, dict) and isinstance(v, list) for d in grouped for v in d.values())
    # the spaCy/Prodigy span shape, one line per text, the same spans
    records = [json.loads(l) for l in (tmp_path / "spans.jsonl").read_text().splitlines()]
    assert [r["text"] for r in records] == texts
    assert [[(s["start"], s["end"], s["label"], s["text"], s["score"]) for s in r["spans"]] for r in records] == [
        [(e["start"], e["end"], e["type"], e["text"], e["score"]) for e in ents] for ents in expected]


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


def _template_roles(template: str) -> dict[str, tuple[str, str]]:
    """(prefix, suffix) per role of the Modelfile's Go template, read with a regex (an oracle apart
    from the code that wrote it)."""
    import re

    found = re.findall(r'eq \.Role "(\w+)" \}\}(.*?)\{\{ \.Content \}\}(.*?)\{\{ (?:else|end)', template, re.S)
    return {role: (pre, post) for role, pre, post in found}


def test_gguf_export_round_trips_through_transformers(run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmner.data.template import render
    from llmner.errors import ConfigError

    kind, out, _, objects = run
    ckpt = out / "checkpoints" / "last.ckpt"
    if kind == "tagger":
        with pytest.raises(ConfigError, match="format=gguf exports a generative"):
            export(ckpt, tmp_path / "gguf", format="gguf")
        return
    model = llmner.load(str(ckpt))
    prompt = "Text:\nJohn Smith visited Paris on Monday ."
    ids = model.tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        ours = model.backbone.model(**ids).logits  # (1, T, V) the adapter applied
    for dtype, atol in (("f32", 1e-4), ("f16", 2e-2)):
        d = export(ckpt, tmp_path / dtype, format="gguf", gguf_dtype=dtype)
        plain = AutoModelForCausalLM.from_pretrained(d, gguf_file="model.gguf", dtype=torch.float32)
        with torch.no_grad():
            theirs = plain(**ids).logits
        assert theirs.shape == ours.shape and (theirs - ours).abs().max() < atol, dtype
    tok = AutoTokenizer.from_pretrained(tmp_path / "f32", gguf_file="model.gguf")
    assert tok(prompt)["input_ids"] == model.tokenizer(prompt)["input_ids"]
    assert tok.eos_token_id == model.tokenizer.eos_token_id
    # the Modelfile: the system line, the end-of-turn stop, and a template that writes what the chat template writes
    text = (tmp_path / "f32" / "Modelfile").read_text()
    assert "FROM ./model.gguf" in text and f'SYSTEM """{model.prompt.system}"""' in text
    template = text.split('TEMPLATE """')[1].split('"""')[0]
    roles = _template_roles(template)
    assert set(roles) == {"system", "user", "assistant"}
    conversation = [{"role": "system", "content": "S"}, {"role": "user", "content": "U1"},
                    {"role": "assistant", "content": "A1"}, {"role": "user", "content": "U2"}]
    written = "".join(roles[m["role"]][0] + m["content"] + roles[m["role"]][1] for m in conversation)
    generation = template.rsplit("{{ end }}", 1)[1]  # after the loop: the assistant's opening
    assert written + generation == render(model.tokenizer, conversation, add_generation_prompt=True)
    stop = text.split('PARAMETER stop "')[1].split('"')[0]
    assert stop and stop in roles["assistant"][1]


def test_gguf_rope_factors_match_transformers_llama3_frequencies():
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    from llmner.gguf_export import rope_factors

    config = LlamaConfig(hidden_size=256, num_attention_heads=4, max_position_embeddings=65536, rope_scaling={
        "rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192})
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")  # (head_dim/2,)
    dim = config.head_dim
    plain = 1.0 / (config.rope_parameters["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    factors = torch.from_numpy(rope_factors(config)).double()
    assert {1.0, 32.0} <= set(factors.tolist())  # both ends of the spectrum and the smooth middle occur
    assert torch.allclose(plain / factors, scaled.double(), rtol=1e-5)  # llama.cpp divides by the factor
    assert rope_factors(LlamaConfig()) is None


def test_generative_loss_on_answer_positions_only_equals_the_full_logits_loss(run):
    import torch.nn.functional as F

    kind, out, _, objects = run
    if kind != "generative":
        pytest.skip("the answer-only loss is the generative head's")
    model, dm = objects["model"], objects["datamodule"]
    model.eval()
    batch = dm.encoder.collate(dm.items["test"][:3])  # right-padded rows of different lengths
    assert len({len(it.input_ids) for it in dm.items["test"][:3]}) > 1
    with torch.no_grad():
        loss, accuracy, n = model.loss(batch)
        logits = model.backbone.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        target = batch["labels"][:, 1:]
        full = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=-100)
        mask = target != -100
        acc = (logits[:, :-1].argmax(-1)[mask] == target[mask]).float().mean()
    assert n == int(mask.sum()) > 0
    assert torch.allclose(loss, full, atol=1e-5) and torch.allclose(accuracy, acc)
