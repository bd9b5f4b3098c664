"""GGUF export of a merged causal LM (llama.cpp, Ollama), and an Ollama ``Modelfile`` beside it.

Why by hand (house rule 8): llama.cpp's ``convert_hf_to_gguf.py`` is a script of the llama.cpp
repository, not a package; the ``gguf`` package it is built on gives the writer, the key names and
the tensor-name map (``gguf.get_tensor_name_map``), which are used here. What remains is the part
that script adds for Llama models, written from the GGUF conventions that transformers' GGUF
loader reads back (``transformers.modeling_gguf_pytorch_utils``):

- ``attn_q`` / ``attn_k`` rows are permuted from transformers' rotary layout (two halves) to
  llama.cpp's (interleaved pairs); transformers' loader undoes it;
- a tied LM head is left out (``output.weight`` absent means "use the embeddings");
- ``llama3`` rope scaling is written as the ``rope_freqs`` tensor (per-frequency divisors), which
  llama.cpp reads; transformers' GGUF loader ignores it, so only llama.cpp sees the scaling;
- a byte-level BPE tokenizer is written as ``tokenizer.ggml.model = "gpt2"`` (tokens by id, their
  types, merges, special ids, the chat template) with llama.cpp's name for its pre-tokenizer
  (``llmner.gguf_pretokenizer``: the converter's probe hash, else the split). Other kinds are refused.

The ``Modelfile`` gets ``FROM`` the GGUF, a ``TEMPLATE`` in Ollama's Go-template syntax derived
from the tokenizer's chat template by the one prober, ``llmner.data.template.chat_affixes`` (so it matches the template
the model was fine-tuned with, turn by turn), the prompt format's system line, the end-of-turn
stop and greedy decoding. ``tests/test_predict_export.py`` round-trips both.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import torch

from llmner.data.template import chat_affixes
from llmner.gguf_pretokenizer import pre_tokenizer_name

log = logging.getLogger(__name__)

DTYPES = ("f32", "f16")


def _permute_rotary(w: np.ndarray, n_head: int) -> np.ndarray:
    """(n_head * head_dim, in) rows from transformers' half-split rotary order to llama.cpp's pairs."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def rope_factors(config) -> np.ndarray | None:
    """llama.cpp's ``rope_freqs`` for ``llama3`` rope scaling: each inverse frequency is divided by
    its factor (1 for high frequencies, ``factor`` for low ones, smooth in between); ``None`` for
    unscaled rope. Other scaling types are refused (llama.cpp reads them from other keys)."""
    rope = dict(getattr(config, "rope_parameters", None) or {})
    kind = rope.get("rope_type", "default")
    if kind == "default":
        return None
    if kind != "llama3":
        raise ValueError(f"GGUF export handles default and llama3 rope, not rope_type={kind!r}")
    dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    inv_freq = 1.0 / (rope["rope_theta"] ** (np.arange(0, dim, 2, dtype=np.float64) / dim))  # (dim/2,)
    old, lo, hi, factor = (rope["original_max_position_embeddings"], rope["low_freq_factor"],
                           rope["high_freq_factor"], rope["factor"])
    wavelen = 2 * math.pi / inv_freq
    smooth = np.clip((old / wavelen - lo) / (hi - lo), 0.0, 1.0)
    out = np.where(wavelen < old / hi, 1.0, np.where(wavelen > old / lo, factor, 1.0 / ((1 - smooth) / factor + smooth)))
    return out.astype(np.float32)


def _bpe_vocab(tokenizer) -> tuple[list[str], list[int], list[str]]:
    """Tokens by id, their GGUF types and the merges of a byte-level BPE fast tokenizer."""
    import gguf

    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    model = backend.get("model", {})
    if model.get("type") != "BPE" or "ByteLevel" not in json.dumps(backend.get("pre_tokenizer")):
        raise ValueError("GGUF export handles byte-level BPE tokenizers (GPT-2, Llama 3, SmolLM style); this one is "
                         f"{model.get('type')!r} with pre-tokenizer {(backend.get('pre_tokenizer') or {}).get('type')!r}")
    vocab = tokenizer.get_vocab()
    n = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(n)]
    types = [gguf.TokenType.UNUSED] * n
    for tok, i in vocab.items():
        tokens[i], types[i] = tok, gguf.TokenType.NORMAL
    for added in backend.get("added_tokens", []):
        types[added["id"]] = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return tokens, [int(t) for t in types], merges


def write_gguf(model, tokenizer, path: str | Path, dtype: str = "f16", name: str = "llmner", pre: str | None = None) -> Path:
    """Write ``model`` (a transformers ``LlamaForCausalLM``, adapters merged) and ``tokenizer`` to ``path``.

    Args:
        dtype: ``f16`` (half the size) or ``f32`` (exact); norms and ``rope_freqs`` stay float32.
        name: ``general.name``.
        pre: ``tokenizer.ggml.pre``, llama.cpp's pre-tokenizer regex choice (e.g. ``llama-bpe``,
            ``smollm``); ``None``: found as llama.cpp's converter finds it (``llmner.gguf_pretokenizer``).
    """
    import gguf

    if dtype not in DTYPES:
        raise ValueError(f"gguf dtype must be one of {DTYPES}, got {dtype!r}")
    cfg = model.config
    if cfg.model_type != "llama":
        raise ValueError(f"GGUF export handles Llama-architecture models (llama.cpp's 'llama'), not {cfg.model_type!r}")
    n_layer, n_head = cfg.num_hidden_layers, cfg.num_attention_heads
    n_kv = cfg.num_key_value_heads or n_head
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_head
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(name)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    w.add_rope_dimension_count(head_dim)
    w.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(gguf.LlamaFileType.ALL_F32 if dtype == "f32" else gguf.LlamaFileType.MOSTLY_F16)

    tokens, types, merges = _bpe_vocab(tokenizer)
    if len(tokens) > cfg.vocab_size:
        raise ValueError(f"the tokenizer has {len(tokens)} tokens, the model's embeddings {cfg.vocab_size}")
    tokens += [f"[PAD{i}]" for i in range(len(tokens), cfg.vocab_size)]
    types += [int(gguf.TokenType.UNUSED)] * (cfg.vocab_size - len(types))
    if pre is None:
        pre, how = pre_tokenizer_name(tokenizer)
        log.info("GGUF: tokenizer.ggml.pre=%r (%s)", pre, how)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    for key, add in (("bos", w.add_bos_token_id), ("eos", w.add_eos_token_id), ("unk", w.add_unk_token_id),
                     ("pad", w.add_pad_token_id)):
        tid = getattr(tokenizer, f"{key}_token_id", None)
        if tid is not None:
            add(int(tid))
    w.add_add_bos_token(bool(getattr(tokenizer, "add_bos_token", False)))
    if getattr(tokenizer, "chat_template", None):
        w.add_chat_template(tokenizer.chat_template)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layer)
    state = model.state_dict()
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    factors = rope_factors(cfg)
    if factors is not None:
        w.add_tensor(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS], factors)
        log.warning("llama3 rope scaling is written as rope_freqs for llama.cpp; transformers' GGUF loader ignores it")
    for hf_name, tensor in state.items():
        if hf_name.endswith("rotary_emb.inv_freq") or (tied and hf_name == "lm_head.weight"):
            continue
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ValueError(f"no GGUF name for the tensor {hf_name!r} (not a plain Llama model?)")
        data = tensor.detach().to(torch.float32).cpu().numpy()
        if gguf_name.endswith("attn_q.weight"):
            data = _permute_rotary(data, n_head)
        elif gguf_name.endswith("attn_k.weight"):
            data = _permute_rotary(data, n_kv)
        if dtype == "f16" and data.ndim > 1:  # 1-D tensors (norms) stay float32, as llama.cpp writes them
            data = data.astype(np.float16)
        w.add_tensor(gguf_name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=True)
    w.close()
    log.info("wrote %s (%s, %d tensors)", path, dtype, len(state))
    return path


def _go_literal(text: str) -> str:
    if '"""' in text or "{{" in text:
        raise ValueError(f"cannot write {text!r} into a Modelfile template")
    return text


def modelfile(gguf_name: str, tokenizer, system: str, num_ctx: int) -> str:
    """An Ollama ``Modelfile`` for ``gguf_name`` (in the same folder): template, system line, stop, greedy."""
    try:
        a = chat_affixes(tokenizer)
    except ValueError as err:
        raise ValueError(f"{err}; write the Ollama TEMPLATE by hand") from None
    sp, ss = map(_go_literal, a.system)
    up, us = map(_go_literal, a.user)
    ap, lead, asf = map(_go_literal, (*a.assistant[:1], a.lead, a.assistant[1]))
    template = (f'{{{{ range .Messages }}}}{{{{ if eq .Role "system" }}}}{sp}{{{{ .Content }}}}{ss}'
                f'{{{{ else if eq .Role "user" }}}}{up}{{{{ .Content }}}}{us}'
                f'{{{{ else if eq .Role "assistant" }}}}{ap}{lead}{{{{ .Content }}}}{asf}{{{{ end }}}}{{{{ end }}}}{ap}')
    stop = asf.strip() or (tokenizer.eos_token or "")
    lines = [
        "# Ollama: ollama create llmner -f Modelfile && ollama run llmner",
        "# Ask as llmner does (llmner_prompt.json): the user turn 'Text:\\n<text>', the assistant turn",
        "# \"I've read this text.\", then the question; the answer is JSON (README.md beside this file).",
        "# Constrain it with answer.schema.json as the request's format, e.g. the API's",
        "#   curl localhost:11434/api/chat -d '{\"model\": \"llmner\", \"format\": <answer.schema.json>, \"messages\": [...]}'",
        "# (keys and value types; llmner's own decoder also keeps values from the text, without repeats).",
        f"FROM ./{gguf_name}",
        f'TEMPLATE """{template}"""',
        f'SYSTEM """{_go_literal(system)}"""',
        f'PARAMETER stop "{stop}"' if stop else "",
        "PARAMETER temperature 0",
        f"PARAMETER num_ctx {num_ctx}",
    ]
    return "\n".join(line for line in lines if line) + "\n"
