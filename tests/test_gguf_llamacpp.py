"""The GGUF export in llama.cpp (llama-cpp-python, the ``gguf`` extra): its grammar engine reads the
exported ``answer.gbnf`` as llmner's constraint does, and the exported model, asked through the
exported chat template with that grammar, greedy, answers as ``llmner.predict`` does.

Skipped with the reason where llama-cpp-python is not installed (``pip install -e '.[gguf]'``
compiles llama.cpp: several minutes). The model of the answer test is the tiny random Llama,
fully fine-tuned until it has learnt its six test sentences by heart: large logit margins, so float
differences between transformers and llama.cpp cannot flip a token, and answers copied from the
text, so the static grammar and llmner's text-bound constraint choose alike. The comparison is
exact (the same JSON string), not the "parse rate and field F1 within 0.02" fallback.
"""

from __future__ import annotations

import ctypes
import json
import math

import pytest

import llmner
from llmner.data.template import render
from llmner.decoding.portable import answer_gbnf
from llmner.export import export
from llmner.train import train
from tests.conftest import TINY, compose_config, make_sentences, write_conll
from tests.test_portable_grammar import INTS, KEYS, accepted_and_rejected

pytestmark = pytest.mark.gguf
llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: pip install -e '.[gguf]'")

FIXTURE = "tests/fixtures/v0_1/generative.ckpt"  # a tiny generative checkpoint: its vocabulary suffices


def _load(path, n_ctx: int = 512):
    return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=1, n_batch=n_ctx, verbose=False, seed=0)


def grammar_verdicts(llm, grammar: str, strings: list[str]) -> list[bool]:
    """llama.cpp's grammar engine on each string: every token of it allowed in turn, then the end of
    generation (allowed only once the grammar is complete)."""
    vocab = llm._model.vocab
    eos = llm.token_eos()
    cell = (llama_cpp.llama_token_data * 1)()
    out = []
    for s in strings:
        smpl = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        assert smpl, "llama.cpp could not parse the grammar"
        ok = True
        for t in llm.tokenize(s.encode(), add_bos=False, special=False) + [eos]:
            cell[0].id, cell[0].logit, cell[0].p = t, 0.0, 0.0
            arr = llama_cpp.llama_token_data_array(data=cell, size=1, selected=-1, sorted=False)
            llama_cpp.llama_sampler_apply(smpl, ctypes.byref(arr))
            if math.isinf(cell[0].logit):
                ok = False
                break
            if t != eos:
                llama_cpp.llama_sampler_accept(smpl, t)
        llama_cpp.llama_sampler_free(smpl)
        out.append(ok)
    return out


@pytest.fixture(scope="module")
def fixture_export(tmp_path_factory):
    return export(FIXTURE, tmp_path_factory.mktemp("gguf_fixture"), format="gguf", gguf_dtype="f32")


def test_llamacpp_grammar_engine_agrees_with_llmners_constraint(fixture_export):
    llm = _load(fixture_export / "model.gguf")
    strict, loose, rejected = accepted_and_rejected(n_walks=30)
    grammar = answer_gbnf([KEYS], INTS)
    assert all(grammar_verdicts(llm, grammar, strict + loose))
    verdicts = grammar_verdicts(llm, grammar, rejected)
    assert not any(verdicts), [s for s, v in zip(rejected, verdicts) if v][:5]
    # the exported file itself parses and holds the checkpoint's answer
    exported = (fixture_export / "answer.gbnf").read_text()
    keys = llmner.load(FIXTURE).keys
    assert grammar_verdicts(llm, exported, [json.dumps({k: [] for k in keys}), json.dumps({k: ["x"] for k in keys})]) \
        == [True, True]


def test_llamacpp_reads_the_bounded_grammar_as_the_regex_oracle(fixture_export):
    """``gguf_max_items`` / ``gguf_max_chars``: llama.cpp's engine ends lists and values at the bounds,
    as the GBNF-to-regex oracle of test_portable_grammar does; the export writes the bounded files."""
    from tests.test_portable_grammar import gbnf_regex

    llm = _load(fixture_export / "model.gguf")
    strings = [json.dumps({"PER": [c * m for c in "ABCD"[:n]], "Victim_Age": list(range(n)), "LOC": []})
               for n in range(0, 5) for m in (1, 5, 6)]
    grammar = answer_gbnf([KEYS], INTS, max_items=3, max_chars=5)
    expected = [bool(gbnf_regex(grammar).fullmatch(s)) for s in strings]
    assert 0 < sum(expected) < len(strings)
    assert grammar_verdicts(llm, grammar, strings) == expected
    out = export(FIXTURE, fixture_export.parent / "bounded", format="gguf", gguf_dtype="f32", gguf_max_items=3,
                 gguf_max_chars=5)
    keys = llmner.load(FIXTURE).keys
    assert (out / "answer.gbnf").read_text() == answer_gbnf([keys], max_items=3, max_chars=5)


@pytest.fixture(scope="module")
def memorized(tmp_path_factory):
    """A tiny generative checkpoint trained on 6 sentences until it answers them by heart, exported (f32)."""
    d = tmp_path_factory.mktemp("memorized")
    sentences = make_sentences(6, 5)
    for split in ("train", "validation", "test"):
        write_conll(d / f"{split}.txt", sentences)
    # all weights train (LoRA alone cannot make a random 2-layer model learn anything by heart); room for
    # every answer to close by itself (a closure forced by the budget is llmner's alone)
    cfg = compose_config(TINY + ["model=generative", f"data.path={d}", "data.batch_size=6", "data.eval_batch_size=6",
                                 "backbone.freeze=false", "trainer.max_steps=150", "trainer.val_check_interval=150",
                                 "trainer.num_sanity_val_steps=0", "head.max_new_tokens=96", "model.lr=5e-3",
                                 "model.warmup_steps=5", "head.check_unconstrained=false"], d / "run")
    metrics, _ = train(cfg)
    assert metrics["test/field_f1"] > 0.9, metrics  # learnt by heart: what makes the comparison exact
    ckpt = d / "run" / "checkpoints" / "last.ckpt"
    return ckpt, export(ckpt, d / "gguf", format="gguf", gguf_dtype="f32"), [" ".join(w for w, _ in s) for s in sentences]


@pytest.mark.slow  # the fine-tuning of the fixture: 150 steps, about a minute and a half on a loaded 2-core CPU
def test_llamacpp_with_the_grammar_answers_as_llmner_predict(memorized):
    ckpt, out, texts = memorized
    model = llmner.load(str(ckpt))
    ours = model.predict(texts, grouped=True)
    llm = _load(out / "model.gguf")
    grammar = llama_cpp.LlamaGrammar.from_file(str(out / "answer.gbnf"))
    ((question, keys),) = model.prompt.questions(model.keys)
    theirs, raw = [], []
    for text in texts:
        messages = model.prompt.opening(text, model.keys) + [{"role": "user", "content": question}]
        # what llama.cpp reads: the exported template renders llmner's prompt, its tokenizer the same ids
        formatter = llama_cpp.llama_chat_format.Jinja2ChatFormatter(
            llm.metadata["tokenizer.chat_template"], eos_token=model.tokenizer.eos_token, bos_token=model.tokenizer.bos_token)
        prompt = render(model.tokenizer, messages, add_generation_prompt=True)
        assert formatter(messages=messages).prompt == prompt
        assert llm.tokenize(prompt.encode(), add_bos=False, special=True) == \
            model.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        reply = llm.create_chat_completion(messages, grammar=grammar, temperature=0.0, repeat_penalty=1.0,
                                           max_tokens=model.head.max_new_tokens)
        raw.append(reply["choices"][0]["message"]["content"])
        theirs.append(json.loads(raw[-1]))
    assert theirs == ours
    assert sum(bool(v) for a in ours for v in a.values()) >= len(texts)  # answers with values, not empty lists
    # the raw strings too: llmner's constrained decode writes exactly what llama.cpp wrote
    convs = [model.prompt.opening(t, model.keys) + [{"role": "user", "content": question}] for t in texts]
    assert model._generate(convs, keys, texts, constrained=True) == raw
