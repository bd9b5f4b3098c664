"""SmoothQuant on a gated MLP's output projections of an ONNX export, then int8 everywhere.

Usage (from the repository root; CKPT is the checkpoint the export DIR came from):
    OMP_NUM_THREADS=1 python experiments/scripts/smooth_mlp_cpu.py --ckpt CKPT --onnx DIR --work WORK \
        [--data ../shared/data/conll2003] [--alpha 0.5] [--calibration 200]

The inputs of ``down_proj`` (``act(gate) * up``) carry per-channel outliers that one int8 scale per
tensor rounds badly. SmoothQuant (Xiao et al., 2023) moves part of each input channel's range into
the weights: ``x_j / s_j`` and ``W_down[j, :] * s_j``, with ``s_j = max|x_j|^alpha / max|W_down[j, :]|^(1 - alpha)``;
here ``1 / s_j`` is folded into ``up_proj``'s output column ``j`` (the product is linear in ``up``),
so the float graph computes the same function. ``max|x_j|`` comes from the checkpoint in torch on the
first --calibration sentences of the validation split. Writes ``WORK/model.smooth.onnx`` (float32) and
``WORK/model.smooth_int8.onnx`` (``quantize_graph``: every ``MatMul`` int8, per channel); evaluate
them with ``onnx_variants_cpu.py --work WORK --variants fp32,smooth,smooth_int8``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import onnx  # noqa: E402
from onnx import numpy_helper  # noqa: E402

import llmner  # noqa: E402
from llmner.data.conll import find_split_file, read_conll  # noqa: E402
from llmner.onnx_export import mlp_outputs, quantize_graph  # noqa: E402


def input_ranges(ckpt: str, sentences) -> list[np.ndarray]:
    """Per layer, max |x_j| of each input channel of ``down_proj`` over the sentences' windows."""
    model = llmner.load(ckpt)
    model.backbone.trunk = None
    downs = [m for n, m in model.named_modules() if n.endswith("mlp.down_proj")]
    ranges: list[torch.Tensor | None] = [None] * len(downs)

    def hook(i):
        def record(module, args):
            x = args[0].detach().abs().flatten(0, -2).amax(0)  # (I,)
            ranges[i] = x if ranges[i] is None else torch.maximum(ranges[i], x)
        return record

    for i, m in enumerate(downs):
        m.register_forward_pre_hook(hook(i))
    windows = sorted(model.encoder.encode(sentences, model.tags), key=lambda w: -len(w.input_ids))
    with torch.no_grad():
        for i in range(0, len(windows), 32):
            model(model.encoder.collate(windows[i : i + 32]))
    return [r.float().numpy() for r in ranges]


def smooth(src: Path, dst: Path, ranges: list[np.ndarray], alpha: float) -> None:
    """Fold the scales into the graph's ``up_proj`` and ``down_proj`` weights (float32, same function)."""
    model = onnx.load(str(src))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    width = max(len(r) for r in ranges)
    downs = mlp_outputs(src, width)
    assert len(downs) == len(ranges), (len(downs), len(ranges))
    nodes = {n.name: n for n in graph.node}
    for name, x_max in zip(downs, ranges):
        down = nodes[name]
        product = producer[down.input[0]]  # Mul(act(gate), up)
        up = next(producer[i] for i in product.input
                  if producer[i].op_type == "MatMul" and producer[i].input[1] in inits)
        w_down = numpy_helper.to_array(inits[down.input[1]])  # (I, H)
        w_up = numpy_helper.to_array(inits[up.input[1]])  # (H, I)
        s = np.maximum(x_max, 1e-5) ** alpha / np.maximum(np.abs(w_down).max(1), 1e-5) ** (1 - alpha)  # (I,)
        inits[down.input[1]].CopyFrom(numpy_helper.from_array((w_down * s[:, None]).astype(np.float32), down.input[1]))
        inits[up.input[1]].CopyFrom(numpy_helper.from_array((w_up / s[None, :]).astype(np.float32), up.input[1]))
    onnx.save(model, str(dst))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--data", default="../shared/data/conll2003")
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--calibration", type=int, default=200)
    args = ap.parse_args()
    src, work = Path(args.onnx).resolve(), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if not (work / f.name).exists():
            os.symlink(f, work / f.name)
    sentences = read_conll(find_split_file(Path(args.data), "validation"))[: args.calibration]
    ranges = input_ranges(args.ckpt, sentences)
    smooth(src / "model.onnx", work / "model.smooth.onnx", ranges, args.alpha)
    quantize_graph(work / "model.smooth.onnx", work / "model.smooth_int8.onnx", "dynamic")
    print(f"wrote {work}/model.smooth.onnx and model.smooth_int8.onnx (alpha {args.alpha}, "
          f"{len(ranges)} MLPs, {len(sentences)} calibration sentences)")


if __name__ == "__main__":
    main()
