"""Graph variants of one ONNX export (onnxruntime's optimizer, int8/4-bit quantization recipes) against
its fp32 graph: words/s, test F1 and the share of words tagged as fp32 tags them.

Usage (from the repository root; DIR is an export, ``python -m llmner.export ... format=onnx``):
    OMP_NUM_THREADS=1 python experiments/scripts/onnx_variants_cpu.py --onnx DIR --work WORK \
        [--variants fp32,opt,dyn_nomlp,nbits8] [--heads 12 --hidden 384] [--data ../shared/data/conll2003] [--sentences 1000] [--rounds 3]

``NAME@basic`` (``extended``, ``all``) runs a variant at that onnxruntime graph optimization level
(the default is all). The variants are written once into WORK (beside links to DIR's tokenizer and ``llmner_onnx.json``, so
``llmner.load(WORK/model.NAME.onnx)`` reads them). The backends take turns ``--rounds`` times on the
first N test sentences (``inference_cpu.tag``: the checkpoint's windows, batches of 32, CRF Viterbi);
reported: the median words/s and its ratio to fp32's median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import onnx  # noqa: E402
from inference_cpu import tag  # noqa: E402

import llmner  # noqa: E402
from llmner.data.conll import find_split_file, read_conll  # noqa: E402
from llmner.metrics import entity_scores  # noqa: E402
from llmner.onnx_export import mlp_outputs, optimize_graph, quantize_graph  # noqa: E402


def _matmuls(path: Path) -> list[str]:
    """Names of the ``MatMul`` nodes with a weight initializer, in graph order."""
    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    return [n.name for n in graph.node if n.op_type == "MatMul" and len(n.input) > 1 and n.input[1] in weights]


def _width(path: Path) -> int:
    """The MLP's intermediate size: the widest input of a weighted ``MatMul``."""
    graph = onnx.load(str(path), load_external_data=False).graph
    dims = {i.name: list(i.dims) for i in graph.initializer}
    return max(dims[n.input[1]][0] for n in graph.node if n.op_type == "MatMul" and n.input[1] in dims)


def build(name: str, work: Path, heads: int = 0, hidden: int = 0) -> Path:
    """Write variant ``name`` (``fp32``: the export itself) and return its path."""
    fp32 = work / "model.onnx"
    out = work / f"model.{name}.onnx"
    if name == "fp32" or out.exists():
        return fp32 if name == "fp32" else out
    src = fp32
    base = name
    if name.startswith("opt"):  # the optimizer first, then the rest of the recipe on its graph
        src = work / "model.opt.onnx"
        if not src.exists():
            optimize_graph(fp32, src, heads, hidden)
        base = name[4:] if name != "opt" else ""
        if not base:
            return src
    mlp = mlp_outputs(src, _width(fp32))
    matmuls = _matmuls(src)
    head = matmuls[-1:]  # the emission projection
    start = time.perf_counter()
    if base == "dyn_all":
        quantize_graph(src, out, "dynamic")
    elif base == "dyn_tensor":
        quantize_graph(src, out, "dynamic", per_channel=False)
    elif base == "dyn_nomlp":  # what quantize=int8 wrote before this experiment
        quantize_graph(src, out, "dynamic", exclude=mlp)
    elif base == "dyn_nomlp_rr":  # 7-bit weights (reduce_range: for CPUs without VNNI)
        quantize_graph(src, out, "dynamic", exclude=mlp, reduce_range=True)
    elif base == "dyn_nohead_ends":  # the emission projection and the first and last layers' MLP outputs
        quantize_graph(src, out, "dynamic", exclude=head + mlp[:1] + mlp[-1:])
    elif base in ("nbits8", "nbits4"):
        quantize_graph(src, out, base, exclude=head)
    elif base in ("nbits8_all", "nbits4_all"):
        quantize_graph(src, out, base[:6])
    elif base == "nbits4_nomlp":
        quantize_graph(src, out, "nbits4", exclude=head + mlp)
    else:
        raise SystemExit(f"unknown variant {name}")
    print(f"built {out.name} in {time.perf_counter() - start:.0f} s", flush=True)
    return out


def _load(path: Path, level: str):
    """``llmner.load(path)``, its session rebuilt at graph optimization ``level`` (default: onnxruntime's, all)."""
    model = llmner.load(path)
    if level:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, f"ORT_ENABLE_{level.upper()}")
        model.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--variants", default="fp32,opt,dyn_nomlp,nbits8,nbits4")
    ap.add_argument("--heads", type=int, default=0, help="attention heads (the optimizer's attention fusion)")
    ap.add_argument("--hidden", type=int, default=0, help="hidden size (the optimizer's attention fusion)")
    ap.add_argument("--data", default="../shared/data/conll2003")
    ap.add_argument("--sentences", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--build-only", action="store_true")
    args = ap.parse_args()
    src, work = Path(args.onnx).resolve(), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():  # the export's files, linked (the variants are written beside them)
        if not f.name.startswith("model.") and not (work / f.name).exists():
            os.symlink(f, work / f.name)
    if not (work / "model.onnx").exists():
        os.symlink(src / "model.onnx", work / "model.onnx")
    names = args.variants.split(",")  # NAME or NAME@LEVEL: onnxruntime's graph optimization level basic/extended/all
    paths = {n: build(n.split("@")[0], work, args.heads, args.hidden) for n in names}
    if args.build_only:
        return
    sentences = read_conll(find_split_file(Path(args.data), "test"))[: args.sentences]
    words = sum(len(s.tokens) for s in sentences)
    gold = [list(s.tags) for s in sentences]
    models = {n: _load(p, n.partition("@")[2]) for n, p in paths.items()}
    times: dict[str, list[float]] = {n: [] for n in names}
    tags = {}
    for _ in range(args.rounds):
        for n, m in models.items():
            start = time.perf_counter()
            tags[n] = tag(m, sentences, 32)
            times[n].append(time.perf_counter() - start)
    print(f"{len(sentences)} sentences, {words} words, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"{args.rounds} rounds, load {os.getloadavg()[0]:.1f}")
    print("| variant | MB | words/s (median) | x fp32 | test F1 | words tagged as fp32 |")
    print("|---|---|---|---|---|---|")
    ref = names[0]
    for n in names:
        size = sum(f.stat().st_size for f in work.glob(paths[n].name + "*")) / 1e6
        med = statistics.median(times[n])
        f1 = entity_scores(gold, tags[n], "test")["test/f1"]
        agree = sum(a == b for x, y in zip(tags[n], tags[ref]) for a, b in zip(x, y)) / words
        print(f"| {n} | {size:,.0f} | {words / med:,.0f} | {statistics.median(times[ref]) / med:.2f} | {f1:.4f} | "
              f"{agree:.4f} |", flush=True)


if __name__ == "__main__":
    main()
