"""The GGUF export of a generative model in llama.cpp (llama-cpp-python) against llmner's own decoding.

    python experiments/scripts/gguf_llamacpp_cpu.py llmner  --out exported/   # llmner's decoding; writes exported/
    python experiments/scripts/gguf_llamacpp_cpu.py llamacpp --out exported/  # llama.cpp, with and without the grammar
    ... llamacpp --out exported/ --grammar bounded.gbnf --extra-only --max-new-tokens 512   # another grammar only
    ... llamacpp --out exported/ --quant Q8_0 --skip-f16 --no-repack   # llama.cpp's Q8_0 copy, no AMX buffers

The model is the base SmolLM2-135M-Instruct of the crime_json recipe (``--ckpt``: a fine-tuned
checkpoint instead), asked the single question of ``model.prompt.style=single`` about the 22
hand-written reports (``tests/fixtures/crime_handwritten.jsonl``), greedy, 256 new tokens at most.
Phase ``llmner`` exports the model (``format=gguf``, f16: the files of ``llmner.export``), decodes
with llmner's constraint in batches of ``--batch`` and writes ``llmner.json``; phase ``llamacpp``
runs each report through llama-cpp-python with the exported chat template, with ``answer.gbnf``
and without, and writes ``llamacpp.json``. Both print parse rate, schema rate, field F1 and time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def build(args):
    import tempfile

    from hydra.utils import instantiate
    from omegaconf import open_dict

    import llmner
    from llmner.benchmark import compose_run
    from llmner.builders import build_model

    cfg = compose_run(["experiment=crime_json", "backbone=smollm2_135m", "backbone.load_in_4bit=false",
                       "model.prompt.style=single", f"head.max_new_tokens={args.max_new_tokens}",
                       "data.corpus.num_train=8", "data.corpus.num_validation=2", "trainer.accelerator=cpu",
                       f"data.test_path={ROOT / 'tests/fixtures/crime_handwritten.jsonl'}"])
    with open_dict(cfg):
        cfg.paths.output_dir = cfg.paths.log_dir = tempfile.mkdtemp(prefix="llmner-gguf-")
    dm = instantiate(cfg.data)
    model = llmner.load(args.ckpt) if args.ckpt else build_model(cfg, dm.tags)
    dm.encoder = model.encoder
    dm.setup("test")
    return model, dm


def scores(model, gold: list[dict], raws: list[str]) -> dict:
    from llmner.decoding import parse_answer
    from llmner.metrics import field_scores

    keys, ints = model.keys, set(model.prompt.integer_types)
    parsed = [parse_answer(r, keys, ints) for r in raws]
    preds = [{k: (obj or {}).get(k, []) for k in keys} for obj, _ in parsed]
    f = field_scores(gold, preds, "test", keys)
    return {"parse_rate": sum(o is not None for o, _ in parsed) / len(raws),
            "schema_rate": sum(fits for _, fits in parsed) / len(raws),
            "field_f1": f["test/field_f1"], "field_precision": f["test/field_precision"],
            "field_recall": f["test/field_recall"]}


def run_llmner(args, model, texts, gold) -> dict:
    import torch

    from llmner.export import _export_gguf

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    _export_gguf(model, out, "f16")
    export_s = time.perf_counter() - t
    model.eval()
    ((question, keys),) = model.prompt.questions(model.keys)
    raws, t = [], time.perf_counter()
    with torch.no_grad(), model.decoding_weights():
        for i in range(0, len(texts), args.batch):
            chunk = texts[i : i + args.batch]
            convs = [model.prompt.opening(x, model.keys) + [{"role": "user", "content": question}] for x in chunk]
            raws += model._generate(convs, keys, chunk, constrained=True)
            print(f"llmner: {len(raws)}/{len(texts)} reports, {time.perf_counter() - t:.1f} s", flush=True)
    seconds = time.perf_counter() - t
    tokens = sum(len(model.tokenizer(r, add_special_tokens=False)["input_ids"]) + 1 for r in raws)  # + end of turn
    return {"system": f"llmner constrained, transformers, batch {args.batch}", "export_s": export_s,
            "seconds": seconds, "s_per_report": seconds / len(texts), "answer_tokens": tokens,
            "torch_threads": torch.get_num_threads(), **scores(model, gold, raws), "answers": raws}


def no_extra_buffers() -> None:
    """llama-cpp-python's ``Llama`` with ``use_extra_bufts = False`` (llama.cpp's ``--no-repack``): no
    AMX / repacked weight buffers. On this machine's CPU (AMX) quantized GGUFs segfault without it."""
    import llama_cpp
    import llama_cpp.llama

    default = llama_cpp.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = False
        return p

    llama_cpp.llama_model_default_params = llama_cpp.llama.llama_cpp.llama_model_default_params = params


def run_llamacpp(args, model, texts, gold) -> list[dict]:
    import llama_cpp
    from llama_cpp import Llama, LlamaGrammar

    if args.no_repack:
        no_extra_buffers()
    out = Path(args.out)
    ((question, _),) = model.prompt.questions(model.keys)
    rows = []
    ggufs = ([] if args.skip_f16 else [out / "model.gguf"]) + ([out / f"model-{args.quant}.gguf"] if args.quant else [])
    grammars = ({} if args.extra_only else {"answer.gbnf": out / "answer.gbnf"}) | {Path(g).name: Path(g) for g in args.grammar or []}
    for gguf in ggufs:
        if gguf.name != "model.gguf" and not gguf.exists():
            import ctypes

            params = llama_cpp.llama_model_quantize_default_params()
            params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{args.quant}")
            rc = llama_cpp.llama_model_quantize(str(out / "model.gguf").encode(), str(gguf).encode(), ctypes.byref(params))
            assert rc == 0, f"quantization failed ({rc})"
        llm = Llama(model_path=str(gguf), n_ctx=2048, n_threads=args.threads, n_batch=512, verbose=False, seed=0)
        runs = [(n, LlamaGrammar.from_file(str(g), verbose=False)) for n, g in grammars.items()]
        for gname, grammar in runs + ([] if args.extra_only else [("", None)]):
            raws, tokens, t = [], 0, time.perf_counter()
            perf = {"prompt_ms": 0.0, "prompt_tokens": 0, "eval_ms": 0.0, "eval_tokens": 0}
            for x in texts:
                messages = model.prompt.opening(x, model.keys) + [{"role": "user", "content": question}]
                llama_cpp.llama_perf_context_reset(llm._ctx.ctx)
                r = llm.create_chat_completion(messages, grammar=grammar, temperature=0.0, repeat_penalty=1.0,
                                               max_tokens=args.max_new_tokens)
                raws.append(r["choices"][0]["message"]["content"])
                tokens += r["usage"]["completion_tokens"]
                d = llama_cpp.llama_perf_context(llm._ctx.ctx)  # llama.cpp's own clocks: prompt and decoding apart
                for k, v in (("prompt_ms", d.t_p_eval_ms), ("prompt_tokens", d.n_p_eval), ("eval_ms", d.t_eval_ms),
                             ("eval_tokens", d.n_eval)):
                    perf[k] += v
            seconds = time.perf_counter() - t
            row = {"system": f"llama.cpp {gguf.name}, {'with ' + gname if grammar else 'without a grammar'}, one report at a time",
                   "no_repack": args.no_repack,
                   "seconds": seconds, "s_per_report": seconds / len(texts), "answer_tokens": tokens,
                   "tokens_per_s": tokens / seconds, "threads": args.threads, **perf,
                   "decode_tokens_per_s": perf["eval_tokens"] / max(perf["eval_ms"], 1e-9) * 1000,
                   "prompt_tokens_per_s": perf["prompt_tokens"] / max(perf["prompt_ms"], 1e-9) * 1000, **scores(model, gold, raws), "answers": raws}
            print(json.dumps({k: v for k, v in row.items() if k != "answers"}), flush=True)
            rows.append(row)
            (out / "llamacpp.partial.json").write_text(json.dumps(rows, indent=1) + "\n")  # a run cut short keeps these
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("phase", choices=["llmner", "llamacpp"])
    p.add_argument("--out", required=True)
    p.add_argument("--ckpt")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--reports", type=int, default=22)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--threads", type=int, default=1, help="llama.cpp threads")
    p.add_argument("--quant", default="Q8_0", help="also a quantized copy (llama.cpp's quantizer), '' for none")
    p.add_argument("--skip-f16", action="store_true", help="run the quantized copy only")
    p.add_argument("--no-repack", action="store_true", help="llama.cpp without extra (AMX, repacked) weight buffers")
    p.add_argument("--grammar", action="append", help="another GBNF file to run besides answer.gbnf (repeatable)")
    p.add_argument("--extra-only", action="store_true", help="only the --grammar files (no answer.gbnf, no free run)")
    args = p.parse_args()
    import torch

    torch.manual_seed(0)
    model, dm = build(args)
    from llmner.data.chat import sentence_to_example

    examples = [sentence_to_example(s, i) for i, s in enumerate(dm.sentences["test"])][: args.reports]
    texts, gold = [e.text for e in examples], [e.answers for e in examples]
    if args.phase == "llmner":
        row = run_llmner(args, model, texts, gold)
        print(json.dumps({k: v for k, v in row.items() if k != "answers"}))
        (Path(args.out) / "llmner.json").write_text(json.dumps(row, indent=1) + "\n")
    else:
        rows = run_llamacpp(args, model, texts, gold)
        name = "llamacpp" + (f"-{args.quant}" if args.skip_f16 else "") + ("-extra" if args.extra_only else "")
        ours_file = Path(args.out) / "llmner.json"  # llmner's answers (the llmner phase, or decoding_weights_cpu.py)
        ours = json.loads(ours_file.read_text())["answers"] if ours_file.exists() else None
        for r in rows if ours else []:
            r["same_answer_as_llmner"] = sum(a == b for a, b in zip(r["answers"], ours)) / len(ours)
            print(r["system"], "same JSON string as llmner:", r["same_answer_as_llmner"])
        (Path(args.out) / f"{name}.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
