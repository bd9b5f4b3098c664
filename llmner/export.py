"""Export a checkpoint as a standard transformers model: ``python -m llmner.export ckpt_path=... out=DIR``.

``format=onnx`` (tag heads): ``DIR/model.onnx`` (emissions), with ``quantize=int8`` also
``DIR/model.int8.onnx``, the tag set and CRF scores in ``DIR/llmner_onnx.json`` (``llmner.onnx_export``).

``format=gguf`` (generative head): ``DIR/model.gguf``, the merged model for llama.cpp and Ollama
(``gguf_dtype``: f16 or f32), an Ollama ``DIR/Modelfile``, ``DIR/llmner_prompt.json``
(``llmner.gguf_export``), the answer's grammar ``DIR/answer.gbnf`` and JSON Schema
``DIR/answer.schema.json`` (``llmner.decoding.portable``) and ``DIR/README.md`` (how to ask).

The LoRA adapter is merged into the backbone (``merge_and_unload``) and ``DIR`` gets
``save_pretrained`` of the model and its tokenizer, which load without llmner; ``DIR/adapter``
holds the adapter alone in peft's format (``PeftModel.from_pretrained(base, DIR/"adapter")``):

- generative head: ``AutoModelForCausalLM.from_pretrained(DIR)``; ``DIR/llmner_prompt.json`` holds
  the prompt format (style, keys, integer types) to ask it the same way;
- tag heads: ``DIR`` is a ``*ForTokenClassification`` model whose classifier is the head's linear
  emission layer and whose ``id2label`` is the tag set, so ``pipeline("token-classification",
  model=DIR)`` tags text without llmner (argmax per subword: the linear head's decision; a CRF's
  transitions are in ``DIR/crf_transitions.json`` for a Viterbi of your own).
  ``AutoModel.from_pretrained(DIR)``'s ``last_hidden_state`` is what the head reads (a
  backbone cut to ``backbone.layer`` layers is saved with just those), and ``DIR/llmner_head.pt``
  holds ``{"state_dict": head weights (linear layer, CRF transitions), "tags": [...],
  "head": head config, "subword": "first"|"last"|"mean"|"first_last", "attention": backbone
  attention settings, "repeat": input repetition}``
  (``torch.load(DIR/"llmner_head.pt")``; the head classes are ``llmner.heads``).
  A model whose reading is not the stock one (bidirectional layers, repeated windows, a pooling
  other than the first subword, or a CRF) is written as custom code instead (``llmner.hf_custom``):
  ``pipeline("token-classification", model=DIR, trust_remote_code=True)`` then splits words,
  windows, reads and decodes (CRF Viterbi) as ``llmner.predict`` does and returns entities with
  offsets; ``AutoModel.from_pretrained(DIR)`` still gives the bare merged backbone.

A 4-bit (QLoRA) checkpoint is exported in float32: its 4-bit weights dequantized, then the adapter merged.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from llmner import cli
from llmner.backbone.sources import gguf_pre_tokenizer
from llmner.builders import load
from llmner.errors import ConfigError
from llmner.gguf_export import DTYPES

log = logging.getLogger(__name__)


FORMATS = ("hf", "gguf", "onnx")


def export(ckpt_path: str | Path, out: str | Path, format: str = "hf", gguf_dtype: str = "f16",
           quantize: str | None = None, optimize: bool = False, gguf_pre: str | None = None,
           gguf_max_items: int | None = None, gguf_max_chars: int | None = None) -> Path:
    """Write the merged model, its tokenizer and the head (tag heads) or prompt (generative) to ``out``.

    ``format="gguf"``: the merged causal LM as ``out/model.gguf`` plus an Ollama ``Modelfile``
    (generative checkpoints only: llama.cpp has no token-classification head); ``gguf_pre`` names
    llama.cpp's pre-tokenizer (default: the source GGUF's, else found as llama.cpp's converter
    finds it, ``llmner.gguf_pretokenizer``); ``gguf_max_items`` / ``gguf_max_chars`` bound the exported
    grammar's lists / strings (``llmner.decoding.portable.answer_gbnf``). ``format="onnx"``:
    ``out/model.onnx`` (``quantize="int8"``: and ``out/model.int8.onnx``; ``optimize``: through
    onnxruntime's transformer optimizer), tag heads only.
    """
    if format not in FORMATS:
        raise ConfigError(f"export format must be one of {FORMATS}, got {format!r}")
    if quantize is not None and (format != "onnx" or quantize != "int8"):
        raise ConfigError(f"quantize={quantize} is for format=onnx, and must be int8 or null")
    if optimize and format != "onnx":
        raise ConfigError("optimize=true is for format=onnx (onnxruntime's transformer optimizer)")
    if format == "gguf" and gguf_dtype not in DTYPES:
        raise ConfigError(f"gguf_dtype must be one of {DTYPES}, got {gguf_dtype!r}")
    if gguf_pre is not None and (format != "gguf" or not isinstance(gguf_pre, str) or not gguf_pre.strip()):
        raise ConfigError(f"gguf_pre={gguf_pre!r} names llama.cpp's pre-tokenizer (e.g. llama-bpe) for format=gguf")
    for name, v in (("gguf_max_items", gguf_max_items), ("gguf_max_chars", gguf_max_chars)):
        if v is not None and (format != "gguf" or not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ConfigError(f"{name}={v!r} must be a positive integer (format=gguf), or null")
    model = load(ckpt_path)
    backbone = model.backbone
    if format == "gguf" and not getattr(backbone, "causal_lm", False):
        raise ConfigError("format=gguf exports a generative (model=generative) checkpoint: llama.cpp and Ollama "
                          "run causal LMs, not token classifiers; use format=hf for a tag head")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if format == "gguf":
        return _export_gguf(model, out, gguf_dtype, gguf_pre, {"max_items": gguf_max_items, "max_chars": gguf_max_chars})
    if format == "onnx":
        from llmner.onnx_export import write_onnx

        return write_onnx(model, _merged(model), out, quantize, optimize)
    if hasattr(backbone.model, "peft_config"):
        backbone.model.save_pretrained(out / "adapter")
    merged = _merged(model)
    backbone.tokenizer.save_pretrained(out)
    if getattr(backbone, "causal_lm", False):
        merged.save_pretrained(out)
        (out / "llmner_prompt.json").write_text(_prompt_json(model))
    else:
        from llmner.hf_custom import needs_custom_code, write_custom

        if needs_custom_code(model):  # bidirectional layers, repetition, pooling or a CRF: llmner's reading as code
            write_custom(model, merged, out)
            log.info("%s reads text as llmner does with custom code: pipeline('token-classification', model=%r, "
                     "trust_remote_code=True)", out, str(out))
        else:
            token_classifier(merged, model.head, model.tags).save_pretrained(out)
        if hasattr(model.head, "crf"):
            crf = model.head.crf
            (out / "crf_transitions.json").write_text(json.dumps({
                "tags": model.tags, "start": crf.start_transitions.tolist(), "end": crf.end_transitions.tolist(),
                "transitions": crf.transitions.tolist(),  # [from][to]
            }) + "\n")
        bcfg = model.run_config.get("backbone", {})
        attention = {"attention": bcfg.get("attention"), "unmask_layers": bcfg.get("unmask_layers", "all")}
        repeat = model.encoder.repeat
        torch.save({"state_dict": model.head.state_dict(), "tags": model.tags, "head": model.run_config.get("head"),
                    "subword": model.subword, **attention, "repeat": repeat,
                    "single_types": list(getattr(model, "single_types", []))}, out / "llmner_head.pt")
        if getattr(model, "single_types", None):
            log.warning("model.single_types=%s: llmner keeps one span per text of these types; the transformers "
                        "pipeline of this export keeps every span (the list is in llmner_head.pt; the checkpoint "
                        "itself and its ONNX export apply it)", model.single_types)
    log.info("exported %s to %s", ckpt_path, out)
    return out


def _merged(model):
    """The backbone's transformers model with the LoRA adapter merged in (as is without one).

    A 4-bit backbone is first rebuilt unquantized in float32 (``_unquantized``): peft would merge
    into the 4-bit weights and quantize the sum again (the adapter's delta rounded away), and the
    result would hold bitsandbytes' packed weights and ``weight.absmax`` entries, which neither the
    token-classification model nor the GGUF writer can take.
    """
    backbone = model.backbone
    if getattr(backbone.model, "is_loaded_in_4bit", False) or getattr(backbone.config, "quantization_config", None):
        backbone = _unquantized(model)
    return backbone.model.merge_and_unload() if hasattr(backbone.model, "merge_and_unload") else backbone.model


def _unquantized(model):
    """A float32 twin of ``model``'s 4-bit backbone holding the same function: each 4-bit weight
    dequantized (the weights that were trained against and evaluated, not the source's originals),
    every other tensor (adapter, norms, embeddings) copied."""
    import bitsandbytes as bnb
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    source = model.backbone
    bcfg = OmegaConf.create(model.run_config["backbone"])
    bcfg.merge_with({"load_in_4bit": False, "dtype": "float32", "cache": False, "cache_dir": None,
                     "gradient_checkpointing": False})
    twin = instantiate(bcfg, causal_lm=getattr(source, "causal_lm", False), device="cpu")
    target = twin.model.state_dict()
    weights = {f"{name}.weight": bnb.functional.dequantize_4bit(m.weight.data, m.weight.quant_state)
               for name, m in source.model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    weights |= {k: v for k, v in source.model.state_dict().items()
                if k in target and k not in weights and v.is_floating_point() and v.shape == target[k].shape}
    missing = sorted(k for k in target if k not in weights and k.endswith(".weight"))
    if missing:
        raise RuntimeError(f"export: no dequantized value for {len(missing)} weights, e.g. {missing[:3]}")
    twin.model.load_state_dict({k: v.float().cpu() for k, v in weights.items()}, strict=False)
    log.info("export: the 4-bit backbone dequantized to float32 before merging the adapter")
    return twin


def _prompt_json(model) -> str:
    return json.dumps(dataclasses.asdict(model.prompt) | {"keys": model.keys, "tags": model.tags}, indent=2) + "\n"


def _export_gguf(model, out: Path, dtype: str, pre: str | None = None, bounds: dict | None = None) -> Path:
    """``out/model.gguf`` (adapters merged), ``out/Modelfile``, ``out/llmner_prompt.json``; ``pre``:
    ``tokenizer.ggml.pre`` (default: the source GGUF's, else detected by ``write_gguf``)."""
    from llmner.gguf_export import modelfile, write_gguf

    backbone = model.backbone
    merged = _merged(model)
    bcfg = model.run_config.get("backbone", {})
    pre = pre or _source_pre(bcfg)
    write_gguf(merged, backbone.tokenizer, out / "model.gguf", dtype=dtype,
               name=str(model.run_config.get("task_name", "llmner")), pre=pre)
    (out / "Modelfile").write_text(modelfile("model.gguf", backbone.tokenizer, model.prompt.system,
                                             int(merged.config.max_position_embeddings)))
    (out / "llmner_prompt.json").write_text(_prompt_json(model))
    _write_grammars(model, out, bounds or {})
    log.info("exported %s as GGUF (%s) with an Ollama Modelfile, answer.gbnf and answer.schema.json (README.md)",
             out / "model.gguf", dtype)
    return out


def _write_grammars(model, out: Path, bounds: dict) -> None:
    """``out/answer.gbnf``, ``out/answer.schema.json`` (``answers/`` per question) and ``out/README.md``."""
    from llmner.decoding.portable import grammar_files, usage_readme

    questions = model.prompt.questions(model.keys)
    files = grammar_files([q for _, q in questions], set(model.prompt.integer_types), **bounds)
    files["README.md"] = usage_readme(str(model.run_config.get("task_name", "llmner")), model.prompt.opening("<report>", model.keys),
                                      questions, int(model.head.max_new_tokens))
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)


def _source_pre(bcfg: dict) -> str | None:
    """The backbone's own ``tokenizer.ggml.pre`` when it was loaded from a GGUF file: what llama.cpp's
    converter wrote for the source model (``None`` otherwise: then detected, ``llmner.gguf_pretokenizer``)."""
    try:
        return gguf_pre_tokenizer(bcfg.get("name_or_path"), bcfg.get("gguf_file"), bcfg.get("package"))
    except Exception as err:  # noqa: BLE001 - the name is a hint for llama.cpp; the export does not depend on it
        log.warning("could not read tokenizer.ggml.pre from the source GGUF (%s); detecting it", err)
        return None


def token_classifier(base, head, tags: list[str]):
    """A ``*ForTokenClassification`` model of ``base``'s weights with ``head.proj`` as its classifier."""
    from transformers import AutoModelForTokenClassification

    config = copy.deepcopy(base.config)
    config.num_labels = len(tags)
    config.id2label = dict(enumerate(tags))
    config.label2id = {t: i for i, t in enumerate(tags)}
    config.architectures = None
    proj = head.proj
    if proj.in_features != config.hidden_size:
        raise ValueError(f"the head reads {proj.in_features} features per word (subword=first_last?), the "
                         f"backbone gives {config.hidden_size}: no token-classification model can hold it")
    model = AutoModelForTokenClassification.from_config(config, dtype=base.dtype)
    prefix = model.base_model_prefix
    getattr(model, prefix).load_state_dict(base.state_dict(), strict=True)
    classifier = next(m for n, m in model.named_children() if n != prefix and isinstance(m, torch.nn.Linear))
    with torch.no_grad():
        classifier.weight.copy_(proj.weight)
        classifier.bias.copy_(proj.bias)
    return model.eval()


@hydra.main(version_base="1.3", config_path="../conf", config_name="export.yaml")
def main(cfg: DictConfig) -> None:
    cli.run("export", lambda: export(cfg.ckpt_path, cli.output_dir("out", cfg.out), cfg.format, cfg.gguf_dtype,
                                     cfg.get("quantize"), cfg.get("optimize", False), cfg.get("gguf_pre"),
                                     cfg.get("gguf_max_items"), cfg.get("gguf_max_chars")))


if __name__ == "__main__":
    main()
