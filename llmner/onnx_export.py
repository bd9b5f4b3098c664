"""ONNX export of a tag-head checkpoint: ``python -m llmner.export ckpt_path=... out=DIR format=onnx [quantize=int8]``.

``DIR`` gets:

- ``model.onnx``: the merged backbone (LoRA folded in) and the head's linear layer as one graph,
  inputs ``input_ids``, ``attention_mask`` (B, T) and ``first``, ``last`` (B, W: each word's first
  and last subword position, as ``WindowEncoder.collate`` gives them), output ``emissions``
  (B, W, K), all axes dynamic. The reading is the trained one: the bidirectional layers of
  ``backbone.attention`` (the attention schedule's hooks are traced into the masks), the
  positions counted over real tokens, the subword pooling (``model.subword``) and, through the
  encoder settings below, repetition (the window is given ``repeat`` times in ``input_ids`` and
  ``first``/``last`` point into the last copy). Per-subword emissions: pass ``first = last =
  arange(T)`` (every pooling but ``first_last`` is then the identity);
- ``model.int8.onnx`` with ``quantize=int8``: the same graph with dynamically quantized int8
  weights of its matrix products but a gated MLP's outputs (activations quantized on the fly; no
  calibration data);
- ``llmner_onnx.json``: the tag set, the head (``linear`` or ``crf``), the CRF's start, end and
  transition scores (``transitions[from][to]``, as trained: the IOB2 constraints are applied
  when decoding), the encoder settings (window length, overlap, word splitter, repetition,
  special tokens) and the files;
- the tokenizer (``save_pretrained``).

``llmner.load(DIR)`` (or ``load(DIR/"model.int8.onnx")``) reads it back (``llmner.onnx_model``).
A trunk cache (``backbone.cache``) is not part of the graph: it runs every layer in float32, where
the checkpoint's ``predict`` reads the cached layers' float16 states, so a cached checkpoint's
scores can differ in their last digits (and a near tie's tag with them).

Tools, and why: ``torch.onnx.export`` with ``dynamo=True`` (the default and recommended exporter
of torch 2.13; the TorchScript one is deprecated and its ``dynamic_axes`` are replaced by
``dynamic_shapes``). It captures the model through ``torch.export``, so Python-side logic such
as the attention schedule's pre-hooks and transformers' mask builders is traced as the model runs
it, and it needs ``onnxscript``. optimum's exporters were not used: they export a stock
architecture from its config and would drop llmner's hooks, pooling and head. Quantization is
onnxruntime's ``quantize_dynamic``, the maintained tool for a CPU int8 graph: int8 weights per
output channel in the ``MatMul``/``Gemm`` nodes (``MatMulInteger``; activations quantized on the fly,
one scale per tensor), except a gated MLP's output projections (``float_nodes``), whose inputs carry
a decoder's largest activations; the embedding lookup and the norms stay float32. On the taggers of
``experiments/inference_cpu.md`` (CoNLL-2003, ``predict``'s batching): MiniLM quantized whole scored
0.0007 test F1 above torch at 1.6-1.8x its speed; SmolLM2 lost 0.049 quantized whole, 0.0023 with the
MLP outputs in float32 (2.0-2.2x).
Tried there and not used: onnxruntime's transformer optimizer (``optimize=true``: no faster than
the session's own fusions on either graph), weight-only ``MatMulNBits`` (8 and 4 bits, blocks of
32, int8 compute: slower than fp32 on this CPU, and SmolLM2 lost 0.006 F1 at 8 bits).
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from llmner.backbone.layers import AttentionSchedule
from llmner.errors import ConfigError

log = logging.getLogger(__name__)

SPEC = "llmner_onnx.json"
INPUTS = ("input_ids", "attention_mask", "first", "last")
QUANTIZE = (None, "int8")
FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}


class EmissionGraph(nn.Module):
    """The tagger's forward as a function of tensors (what ``torch.onnx.export`` traces)."""

    def __init__(self, tagger: nn.Module) -> None:
        super().__init__()
        self.tagger = tagger

    def forward(self, input_ids, attention_mask, first, last) -> torch.Tensor:
        """(B, T), (B, T), (B, W), (B, W) -> emissions (B, W, K)."""
        return self.tagger({"input_ids": input_ids, "attention_mask": attention_mask, "first": first, "last": last})


def crf_scores(head: nn.Module) -> dict | None:
    """The CRF's trained scores as lists (``None`` for the linear head)."""
    crf = getattr(head, "crf", None)
    if crf is None:
        return None
    raw = {n: p.detach().float() for n, p in crf.named_parameters()}  # unconstrained: the decoder masks them
    return {"start": raw["start_transitions"].tolist(), "end": raw["end_transitions"].tolist(),
            "transitions": raw["transitions"].tolist()}


def encoder_settings(encoder) -> dict:
    """What rebuilds the ``WindowEncoder`` beside the graph (special tokens included, as resolved)."""
    return {"max_length": encoder.max_length, "context_words": encoder.context_words, "splitter": encoder.splitter,
            "repeat": encoder.repeat, "prefix": list(encoder.prefix), "suffix": list(encoder.suffix)}


def _example(model) -> tuple[torch.Tensor, ...]:
    """A padded batch of two texts of different lengths: the traced graph must not assume either."""
    windows, _ = model.encoder.encode_texts(["John Smith visited Paris on Monday .",
                                             "the Red Cross said Anna Berg will lead it in New York ."])
    batch = model.encoder.collate(windows)
    return tuple(batch[k] for k in INPUTS)


def write_onnx(model, merged: nn.Module, out: Path, quantize: str | None = None, optimize: bool = False,
               check: bool = True) -> Path:
    """Write ``out/model.onnx`` (and ``model.int8.onnx``), the tokenizer and ``llmner_onnx.json``.

    Args:
        model: a loaded ``TaggerModule``.
        merged: its backbone's transformers model with the adapter merged in (``export._merged``).
        quantize: ``None`` or ``int8`` (also writes the quantized graph).
        optimize: pass the graph through onnxruntime's transformer optimizer first (``optimize_graph``).
        check: run onnxruntime on the example batch and compare with torch (logs the largest difference).
    """
    if quantize not in QUANTIZE:
        raise ConfigError(f"quantize must be null or int8, got {quantize!r}")
    if not hasattr(model.head, "proj"):
        raise ConfigError("format=onnx exports a tag head (linear or crf); a generative checkpoint exports "
                          "with format=hf or format=gguf")
    if any(p.dtype in (torch.uint8, torch.int8) for p in merged.parameters()):
        raise ConfigError("format=onnx needs float weights: this 4-bit backbone did not merge into a float model")
    backbone = model.backbone
    if backbone.schedule is not None:
        # a 4-bit backbone merges into a float32 twin (export._unquantized) whose layers carry its own
        # schedule's hooks: Backbone.forward must feed the padding to the schedule of the layers it runs
        owners = [h.__self__ for m in merged.modules() for h in m._forward_pre_hooks.values()
                  if isinstance(getattr(h, "__self__", None), AttentionSchedule)]
        backbone.schedule = owners[0] if owners else backbone.schedule
    backbone.model = merged.float()  # an ONNX graph in float32 whatever the training dtype
    model.head.float()
    if backbone.trunk is not None:  # the cache is a training device: the graph runs every layer
        backbone.trunk = None
    out.mkdir(parents=True, exist_ok=True)
    graph = EmissionGraph(model).eval()
    args = _example(model)
    batch, tokens, words = torch.export.Dim("batch"), torch.export.Dim("tokens"), torch.export.Dim("words")
    shapes = ({0: batch, 1: tokens}, {0: batch, 1: tokens}, {0: batch, 1: words}, {0: batch, 1: words})
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*axis name.*will not be used")  # each input repeats the names
        program = torch.onnx.export(graph, args, input_names=list(INPUTS), output_names=["emissions"],
                                    dynamic_shapes=shapes, dynamo=True, verbose=False)
    path = out / FILES["fp32"]
    program.save(str(path))
    if optimize:
        config = merged.config
        optimize_graph(path, path, getattr(config, "num_attention_heads", 0), getattr(config, "hidden_size", 0))
    files = {"fp32": FILES["fp32"]}
    if quantize == "int8":
        quantize_graph(path, out / FILES["int8"], "dynamic", exclude=float_nodes(merged, path))
        files["int8"] = FILES["int8"]
    backbone.tokenizer.save_pretrained(out)
    spec = {"format": 1, "tags": model.tags, "head": "crf" if hasattr(model.head, "crf") else "linear",
            "crf": crf_scores(model.head), "encoder": encoder_settings(model.encoder), "subword": model.subword,
            "single_types": list(getattr(model, "single_types", [])),
            "attention": {k: model.run_config.get("backbone", {}).get(k) for k in ("attention", "unmask_layers")},
            "inputs": list(INPUTS), "outputs": ["emissions"], "files": files, "optimized": optimize}
    (out / SPEC).write_text(json.dumps(spec, indent=1) + "\n")
    if check:
        for variant, name in files.items():
            log.info("%s: largest emission difference to torch on an example batch %.2e", name,
                     _difference(out / name, graph, args))
    log.info("exported ONNX graph(s) %s to %s", ", ".join(files.values()), out)
    return out


def float_nodes(merged: nn.Module, path: Path) -> list[str]:
    """The ``MatMul`` nodes that ``quantize=int8`` keeps in float32: a gated MLP's output projections.

    A gated (GLU) MLP, ``down_proj(act(gate_proj(x)) * up_proj(x))`` as in Llama-family decoders,
    multiplies two projections, and the inputs of ``down_proj`` carry outliers (measured on the
    SmolLM2 tagger: 6-37% relative error of their per-tensor int8 rounding, against about 4% for the
    other projections' inputs); BERT's MLP has no such product and is quantized whole.
    """
    gated = any(name.endswith("gate_proj") for name, _ in merged.named_modules())
    return mlp_outputs(path, getattr(merged.config, "intermediate_size", None)) if gated else []


def mlp_outputs(path: Path, width: int | None) -> list[str]:
    """A gated MLP's output projections (``down_proj``): the ``MatMul`` nodes whose weight reads
    ``width`` (the intermediate size) features of a product with another projection's output
    (``act(gate) * up``); a head or a projection after a norm with that input width is not one."""
    import onnx

    if not width:
        return []
    graph = onnx.load(str(path), load_external_data=False).graph  # the weights' shapes, not their data
    dims = {i.name: list(i.dims) for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}

    def gated(tensor: str) -> bool:  # a product with a projection's output (up_proj) among its factors
        node = producer.get(tensor)
        return node is not None and node.op_type == "Mul" and any(
            getattr(producer.get(i), "op_type", None) == "MatMul" for i in node.input)

    return [n.name for n in graph.node
            if n.op_type == "MatMul" and len(n.input) > 1 and dims.get(n.input[1], [None])[0] == width
            and gated(n.input[0])]


def _large(path: Path) -> bool:
    """Whether a graph's weights need external data (protobuf's 2 GB limit on one file)."""
    return path.stat().st_size > 1.8e9 or any(p.suffix == ".data" for p in path.parent.glob(path.name + "*"))


class _quiet:
    """onnxruntime's quantizers log every node they skip at INFO, on the root logger or their own, and
    advise "pre-processing" (shape inference and its optimizer: no faster here) on every call."""

    @staticmethod
    def _advice(record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()

    def __enter__(self):
        self.levels = [(lg, lg.level) for lg in (logging.getLogger(), logging.getLogger("onnxruntime"))]
        for lg, level in self.levels:
            lg.setLevel(max(level, logging.WARNING))
        logging.getLogger().addFilter(self._advice)

    def __exit__(self, *exc):
        logging.getLogger().removeFilter(self._advice)
        for lg, level in self.levels:
            lg.setLevel(level)


def quantize_graph(src: Path, dst: Path, method: str = "dynamic", exclude: list[str] | tuple = (),
                   per_channel: bool = True, block: int = 32, reduce_range: bool = False) -> Path:
    """Write ``src`` with int8 (or 4-bit) weights of its ``MatMul`` nodes but ``exclude`` to ``dst``.

    Methods (both onnxruntime's, no calibration data):

    - ``dynamic``: ``quantize_dynamic``, ``MatMulInteger`` with int8 weights (per output channel
      or per tensor) and the activations quantized on the fly, one scale per tensor;
    - ``nbits8``, ``nbits4``: ``MatMulNBitsQuantizer``, weight-only blocks of ``block`` input
      features (one symmetric scale each) in ``MatMulNBits`` nodes; ``accuracy_level=4`` lets
      the CPU kernel quantize the activations to int8 per block as well and multiply in int8.
    """
    with _quiet():
        if method == "dynamic":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=per_channel,
                             op_types_to_quantize=["MatMul", "Gemm"], use_external_data_format=_large(src),
                             nodes_to_exclude=list(exclude), reduce_range=reduce_range)
        elif method in ("nbits8", "nbits4"):
            import onnx
            from onnxruntime.quantization.matmul_nbits_quantizer import (
                DefaultWeightOnlyQuantConfig,
                MatMulNBitsQuantizer,
            )

            config = DefaultWeightOnlyQuantConfig(block_size=block, is_symmetric=True, accuracy_level=4,
                                                  bits=int(method[-1]), op_types_to_quantize=("MatMul",))
            quantizer = MatMulNBitsQuantizer(onnx.load(str(src)), nodes_to_exclude=list(exclude), algo_config=config)
            quantizer.process()
            quantizer.model.save_model_to_file(str(dst), use_external_data_format=_large(src))
        else:
            raise ConfigError(f"unknown quantization method {method!r}: dynamic, nbits8 or nbits4")
    return dst


def optimize_graph(src: Path, dst: Path, num_heads: int = 0, hidden_size: int = 0) -> Path:
    """Write ``src`` through onnxruntime's transformer optimizer (``model_type="bert"``) to ``dst``.

    Its fusions replace subgraphs by onnxruntime's fused CPU kernels where their patterns match:
    (Skip)LayerNormalization, (Skip)SimplifiedLayerNormalization (RMSNorm), BiasGelu, Attention.
    """
    from onnxruntime.transformers.optimizer import optimize_model

    with _quiet():
        model = optimize_model(str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size)
        model.save_model_to_file(str(dst), use_external_data_format=_large(src))
    log.info("onnxruntime's optimizer fused %s", {k: v for k, v in model.get_fused_operator_statistics().items() if v})
    return dst


def _difference(path: Path, graph: nn.Module, args: tuple[torch.Tensor, ...]) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["emissions"], {k: v.numpy() for k, v in zip(INPUTS, args)})[0]
    with torch.no_grad():
        want = graph(*args).numpy()
    return float(abs(got - want).max())
