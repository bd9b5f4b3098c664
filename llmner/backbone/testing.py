"""A tiny random backbone for tests and smoke runs: no download, built once into the cache.

``TINY_RANDOM`` is a backbone name (``backbone=tiny_random``, ``Backbone(TINY_RANDOM)``) that
``llmner.backbone.sources.resolve_source`` turns into the directory ``tiny_random_dir`` builds: a
2-layer random Llama with a byte-level BPE tokenizer and a chat template.
"""

from __future__ import annotations

from pathlib import Path

import torch

from llmner.backbone.util import atomic_save, cache_dir

TINY_RANDOM = "llmner/tiny-random-llama"

# A little text to train the tiny tokenizer on, so that common words are single tokens as in a
# real BPE vocabulary, and everything else falls back to bytes.
_TINY_CORPUS = (
    "the of and to in a is was for on with by at from said that it as he his has have be an "
    "will after were are they who told police officer report victim suspect witness street "
    "Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April "
    "May June July August September October November December Mr Ms Dr John Mary Smith Paris "
    "London Berlin New York Washington Germany France Britain England European Union "
) * 4


def build_tiny_random(path: Path, seed: int = 0, vocab_size: int = 512) -> None:
    """Write a 2-layer random Llama and a byte-level BPE tokenizer to ``path`` (no download).

    Deterministic in ``seed``: rebuilding gives the same weights, so checkpoints that hold only
    the adapter and head reload onto the same frozen backbone.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator([_TINY_CORPUS], trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
    )
    tokenizer.chat_template = (
        "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
    )
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


def tiny_random_dir() -> Path:
    """The tiny random model's directory under the cache, built on first use."""
    return atomic_save(cache_dir() / "tiny-random-llama-v1", build_tiny_random)


def tiny_tokenizer():
    """The tiny random model's tokenizer."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_random_dir())
