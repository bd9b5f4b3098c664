"""Words/s and test F1 of one tagger run several ways: torch (the checkpoint), ONNX Runtime graphs (fp32,
int8, optimized; any ``--graph``), and with --pipeline transformers' pipeline over the custom-code export
and the checkpoint's own raw-text ``predict``, which the pipeline reproduces.

Usage (from the repository root; exports the checkpoint to ONNX first unless --onnx names an export):
    OMP_NUM_THREADS=1 python experiments/scripts/inference_cpu.py --ckpt CKPT [--onnx DIR] \
        [--graph NAME=FILE.onnx ...] [--data ../shared/data/conll2003] [--sentences 1000] \
        [--speed-sentences 200] [--rounds 3] [--batch-size 32] [--pipeline]

Each backend tags the test sentences with the checkpoint's own windows, batching (longest first, at
most 25% padding: ``predict``'s ``length_batches``) and decoding (CRF Viterbi or argmax); only the network differs. First every backend tags the first
--sentences sentences once (test F1, "agree": the share of words tagged as the torch checkpoint tags
them, and that pass's words/s); then the backends take turns --rounds times on the first
--speed-sentences sentences, and each one's median words/s and median ratio to torch's time in the
same round are reported (the machine may be shared: a round's ratios share its load). F1 is
entity-level micro F1 (``llmner.metrics.entity_scores``, conlleval's reading). A trunk cache is
switched off: every backend runs every layer in float32. The pipeline reads each sentence as raw text
(its tokens joined by spaces, split again by the corpus's splitter) and returns entities with
offsets, which are mapped back onto the tokens: it runs one text at a time, as a pipeline call with a
list does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import llmner  # noqa: E402
from llmner.data.conll import find_split_file, read_conll  # noqa: E402
from llmner.heads.spans import length_batches  # noqa: E402
from llmner.metrics import entity_scores  # noqa: E402


def tag(model, sentences, batch_size: int) -> list[list[str]]:
    """IOB2 tags of every word of ``sentences``, as ``TaggerModule.predict`` computes them."""
    windows = model.encoder.encode(sentences, model.tags)
    parts: dict[int, list[tuple[int, list[int]]]] = {}
    with torch.no_grad():
        for chunk in length_batches(windows, batch_size):  # predict's batches
            batch = model.encoder.collate(chunk)
            for w, p in zip(chunk, model.head.decode(model(batch), batch["word_mask"])):
                parts.setdefault(w.sentence, []).append((w.offset, p))
    return [[model.tags[t] for _, p in sorted(parts[k]) for t in p] for k in range(len(sentences))]


def joined(sentences) -> tuple[list[str], list[list[int]]]:
    """Each sentence's tokens joined by spaces, and where each token starts."""
    texts, starts = [], []
    for s in sentences:
        pos, begin = 0, []
        for w in s.tokens:
            begin.append(pos)
            pos += len(w) + 1
        texts.append(" ".join(s.tokens))
        starts.append(begin)
    return texts, starts


def span_tags(sentences, starts, found, key: str) -> list[list[str]]:
    """Entities with character offsets (type under ``key``) as IOB2 tags of the corpus tokens they cover."""
    out = []
    for s, begin, entities in zip(sentences, starts, found):
        tags = ["O"] * len(s.tokens)
        for e in entities:
            inside = [i for i, b in enumerate(begin) if e["start"] <= b < e["end"]]
            for j, i in enumerate(inside):
                tags[i] = f"{'B' if j == 0 else 'I'}-{e[key]}"
        out.append(tags)
    return out


class PipelineBackend:
    """transformers' pipeline on the custom-code export (``llmner.hf_custom``), tags per corpus token."""

    def __init__(self, ckpt: str, directory: Path) -> None:
        from transformers import pipeline

        if not (directory / "modeling_llmner.py").is_file():
            from llmner.export import export

            export(ckpt, directory)
        self.pipe = pipeline("token-classification", model=str(directory), trust_remote_code=True, device="cpu")

    def tag(self, sentences) -> list[list[str]]:
        texts, starts = joined(sentences)
        return span_tags(sentences, starts, self.pipe(texts), "entity_group")


class RawTextBackend:
    """``model.predict`` on the joined texts (the raw-text path the pipeline copies), tags per corpus token."""

    def __init__(self, model, batch_size: int) -> None:
        self.model, self.batch_size = model, batch_size

    def tag(self, sentences) -> list[list[str]]:
        texts, starts = joined(sentences)
        return span_tags(sentences, starts, self.model.predict(texts, batch_size=self.batch_size), "type")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--onnx", help="an ONNX export of --ckpt (default: export to <ckpt>.onnx/)")
    ap.add_argument("--graph", action="append", default=[], help="NAME=PATH: another ONNX graph of the export")
    ap.add_argument("--data", default="../shared/data/conll2003")
    ap.add_argument("--sentences", type=int, default=1000)
    ap.add_argument("--speed-sentences", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pipeline", action="store_true", help="also the transformers pipeline (custom-code export)")
    args = ap.parse_args()
    sentences = read_conll(find_split_file(Path(args.data), "test"))[: args.sentences]
    words = sum(len(s.tokens) for s in sentences)
    gold = [list(s.tags) for s in sentences]
    onnx_dir = Path(args.onnx or f"{args.ckpt}.onnx")
    if not (onnx_dir / "model.int8.onnx").is_file():
        from llmner.export import export

        start = time.perf_counter()
        export(args.ckpt, onnx_dir, format="onnx", quantize="int8")
        print(f"export (fp32 + int8): {time.perf_counter() - start:.0f} s", flush=True)
    model = llmner.load(args.ckpt)
    model.backbone.trunk = None
    backends = {"torch": model, "onnx fp32": llmner.load(onnx_dir / "model.onnx"),
                "onnx int8": llmner.load(onnx_dir / "model.int8.onnx")}
    for item in args.graph:
        name, path = item.split("=", 1)
        backends[name] = llmner.load(path)
    if args.pipeline:
        backends["torch predict (raw text)"] = RawTextBackend(model, args.batch_size)
        backends["pipeline"] = PipelineBackend(args.ckpt, Path(f"{args.ckpt}.hf"))

    def run(m, part) -> list[list[str]]:
        return m.tag(part) if hasattr(m, "tag") else tag(m, part, args.batch_size)

    tags, first = {}, {}
    for name, m in backends.items():  # the F1 pass
        start = time.perf_counter()
        tags[name] = run(m, sentences)
        first[name] = time.perf_counter() - start
        print(f"{name}: {words / first[name]:,.0f} words/s over {len(sentences)} sentences", flush=True)
    part = sentences[: args.speed_sentences]
    part_words = sum(len(s.tokens) for s in part)
    times: dict[str, list[float]] = {n: [] for n in backends}
    for _ in range(args.rounds):
        for name, m in backends.items():
            start = time.perf_counter()
            run(m, part)
            times[name].append(time.perf_counter() - start)
    print(f"F1 pass: {len(sentences)} sentences, {words} words; speed: {args.rounds} rounds of {len(part)} sentences "
          f"({part_words} words); batch {args.batch_size}; torch threads {torch.get_num_threads()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; load average {os.getloadavg()[0]:.1f} at the end")
    print("| backend | words/s (median) | x torch (median of rounds) | words/s (F1 pass) | test F1 | words tagged as torch |")
    print("|---|---|---|---|---|---|")
    for name in backends:
        f1 = entity_scores(gold, tags[name], "test")["test/f1"]
        agree = sum(a == b for x, y in zip(tags[name], tags["torch"]) for a, b in zip(x, y)) / words
        ratio = statistics.median(t / b for t, b in zip(times["torch"], times[name]))
        print(f"| {name} | {part_words / statistics.median(times[name]):,.0f} | {ratio:.2f} | {words / first[name]:,.0f} | "
              f"{f1:.4f} | {agree:.4f} |", flush=True)


if __name__ == "__main__":
    main()
