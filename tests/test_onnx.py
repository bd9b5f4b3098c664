"""ONNX export (``format=onnx``) and ``llmner.load`` of it: the same emissions, tags and entities as
the checkpoint it came from, on the tiny random Llama trained with the reading settings that the
graph must keep (bidirectional layers, repetition, pooling, CRF or linear head)."""

import json
import subprocess
import sys

import pytest
import torch

import llmner
from llmner.errors import ConfigError
from llmner.export import export
from llmner.train import train
from tests.conftest import TINY, compose_config

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

SETTINGS = {
    # right context from the second copy, bidirectional top layer, mean of the subwords, CRF
    "crf_repeat_bidirectional_mean": ["head=crf", "model.encoder.repeat=2", "backbone.attention=bidirectional",
                                      "backbone.unmask_layers=[1,2]", "model.subword=mean"],
    # causal, first and last subword concatenated (a head twice as wide), argmax
    "linear_first_last": ["head=linear", "model.subword=first_last"],
}
# fp32 graph against eager torch: the same float32 operations, reordered by the exporter's fusions
EMISSION_TOLERANCE = 1e-4
SCORE_TOLERANCE = 1e-4  # entity scores (CRF marginals, softmax) from those emissions


def assert_same_entities(got: list[list[dict]], want: list[list[dict]], tol: float = SCORE_TOLERANCE) -> None:
    """The same entities (type, text, offsets) per text, scores within ``tol``."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert [{k: v for k, v in e.items() if k != "score"} for e in g] == [
            {k: v for k, v in e.items() if k != "score"} for e in w]
        assert all(abs(a["score"] - b["score"]) < tol for a, b in zip(g, w)), (g, w)


@pytest.fixture(scope="module", params=list(SETTINGS))
def exported(request, tiny_conll, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param)
    cfg = compose_config(TINY + SETTINGS[request.param] + [
        f"data.path={tiny_conll}", "model.lr_backbone=5e-3", "model.lr_head=5e-2", "data.batch_size=16",
        "trainer.max_epochs=1", "data.max_test_samples=40"], out)
    _, objects = train(cfg)
    ckpt = out / "checkpoints" / "last.ckpt"
    onnx_dir = out / "onnx"
    if request.param == "crf_repeat_bidirectional_mean":  # as a user runs it
        done = subprocess.run([sys.executable, "-m", "llmner.export", f"ckpt_path={ckpt}", f"out={onnx_dir}",
                               "format=onnx", "quantize=int8", "optimize=true", f"hydra.run.dir={out / 'h'}"],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    else:
        export(ckpt, onnx_dir, format="onnx", quantize="int8", optimize=False)
    texts = [" ".join(s.tokens[: 1 + i % len(s.tokens)]) for i, s in enumerate(objects["datamodule"].sentences["test"])]
    texts += ["John Smith visited Paris on Monday .", "x", "the  Red Cross said\tAnna Berg will lead it in New York ."]
    return request.param, ckpt, onnx_dir, texts


def _emissions_and_tags(model, texts):
    """Per window (in encoding order): emissions of the owned words and their decoded tag ids."""
    windows, _ = model.encoder.encode_texts(texts)
    out = []
    for i in range(0, len(windows), 16):
        batch = model.encoder.collate(windows[i : i + 16])
        with torch.no_grad():
            em = model(batch)
        for row, mask, tags in zip(em, batch["word_mask"], model.head.decode(em, batch["word_mask"])):
            out.append((row[mask], tags))
    return out


def test_the_export_holds_what_the_issue_lists(exported):
    name, ckpt, onnx_dir, _ = exported
    spec = json.loads((onnx_dir / "llmner_onnx.json").read_text())
    model = llmner.load(ckpt)
    assert spec["tags"] == model.tags and spec["files"] == {"fp32": "model.onnx", "int8": "model.int8.onnx"}
    assert spec["encoder"]["repeat"] == model.encoder.repeat == (2 if "repeat" in name else 1)
    assert (spec["crf"] is not None) == ("crf" in name) and spec["subword"] == model.subword
    if spec["crf"]:
        assert torch.equal(torch.tensor(spec["crf"]["transitions"]), model.head.crf._parameters["transitions"])
    import onnx

    graph = onnx.load(onnx_dir / "model.onnx").graph
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert set(dims) == {"input_ids", "attention_mask", "first", "last"}
    assert all(isinstance(d, str) for ds in dims.values() for d in ds), dims  # batch and length axes are dynamic
    # optimize=true (the run as a user runs it): onnxruntime's fused RMSNorm kernels replace the decomposed norms
    fused = {n.op_type for n in graph.node} & {"SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization"}
    assert spec["optimized"] == bool(fused) == ("repeat" in name), (spec["optimized"], fused)
    assert (onnx_dir / "model.int8.onnx").stat().st_size < (onnx_dir / "model.onnx").stat().st_size


def test_onnx_emissions_tags_and_entities_equal_the_checkpoints(exported):
    name, ckpt, onnx_dir, texts = exported
    torch_model, onnx_model = llmner.load(ckpt), llmner.load(onnx_dir)
    assert type(onnx_model).__name__ == "OnnxTagger" and onnx_model.encoder.repeat == torch_model.encoder.repeat
    want, got = _emissions_and_tags(torch_model, texts), _emissions_and_tags(onnx_model, texts)
    assert len(want) == len(got) >= len(texts)
    words = 0
    for (em_t, tags_t), (em_o, tags_o) in zip(want, got):
        assert em_t.shape == em_o.shape and (em_t - em_o).abs().max() < EMISSION_TOLERANCE
        assert tags_t == tags_o  # every word
        words += len(tags_t)
    assert words > 200
    found = torch_model.predict(texts)
    assert_same_entities(onnx_model.predict(texts), found)
    assert_same_entities(onnx_model.predict(texts, batch_size=1), found)
    assert onnx_model.predict(texts, grouped=True) == torch_model.predict(texts, grouped=True)
    assert sum(len(e) for e in found) > 10, "few entities found: a weak test"
    assert onnx_model.predict([]) == []


def test_int8_graph_predicts_close_to_fp32(exported):
    name, ckpt, onnx_dir, texts = exported
    fp32, int8 = llmner.load(onnx_dir / "model.onnx"), llmner.load(onnx_dir / "model.int8.onnx")
    a, b = _emissions_and_tags(fp32, texts), _emissions_and_tags(int8, texts)
    same = sum(x == y for (_, ta), (_, tb) in zip(a, b) for x, y in zip(ta, tb))
    total = sum(len(t) for _, t in a)
    assert 0 < max((ea - eb).abs().max() for (ea, _), (eb, _) in zip(a, b))  # really another graph
    assert same / total > 0.9, (same, total)  # a random tiny model: the tags mostly survive int8 weights


def test_bad_export_settings_are_one_line_errors(exported, tmp_path):
    _, ckpt, onnx_dir, _ = exported
    with pytest.raises(ConfigError, match="quantize=int4"):
        export(ckpt, tmp_path / "x", format="onnx", quantize="int4")
    with pytest.raises(ConfigError, match="quantize=int8 is for format=onnx"):
        export(ckpt, tmp_path / "x", format="hf", quantize="int8")
    from llmner.errors import CheckpointError

    with pytest.raises(CheckpointError, match="no such ONNX file"):
        llmner.load(onnx_dir / "model.int4.onnx")


def test_int8_keeps_only_a_gated_mlps_outputs_in_float(exported):
    """``quantize=int8``: every weighted ``MatMul`` is int8 but the tiny Llama's ``down_proj``s; a model
    without a gated MLP (BERT's) keeps none."""
    from types import SimpleNamespace

    import onnx

    from llmner.onnx_export import float_nodes

    _, ckpt, onnx_dir, _ = exported
    merged = llmner.load(ckpt).backbone.model
    downs = sum(name.endswith("down_proj") for name, _ in merged.named_modules())
    kept = float_nodes(merged, onnx_dir / "model.onnx")
    assert downs >= 2 and len(kept) == downs
    fp32, int8 = (onnx.load(onnx_dir / f, load_external_data=False).graph for f in ("model.onnx", "model.int8.onnx"))
    weights = {i.name for i in fp32.initializer}
    weighted = [n.name for n in fp32.node if n.op_type == "MatMul" and n.input[1] in weights]
    ops = {n.name: n.op_type for n in int8.node}
    assert all(ops[k] == "MatMul" for k in kept)
    assert sum(op == "MatMulInteger" for op in ops.values()) == len(weighted) - len(kept)
    plain = torch.nn.Linear(2, 2)
    plain.config = SimpleNamespace(intermediate_size=merged.config.intermediate_size)
    assert float_nodes(plain, onnx_dir / "model.onnx") == []
