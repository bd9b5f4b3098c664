"""The backbone: a pretrained LM mapping subword ids to hidden states, with LoRA adapters.

``Backbone`` loads the model through transformers and peft (bitsandbytes comes in through them;
its notice about an optional kernel package is hidden, ``util.hide_library_notices``), then
truncates, freezes, adapts and hooks it. Its parts live beside it: ``sources`` (Hub, directory, GGUF), ``layers`` (layer surgery,
the attention schedule), ``recompute`` (gradient checkpointing for long batches), ``trunk`` (the
cache of the frozen layers) and ``util`` (``evaluating``, the cache directory).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from contextlib import contextmanager

import torch
from torch import nn

from llmner.backbone.layers import AttentionSchedule, is_decoder, layer_list, truncate_layers, unmasked_range
from llmner.backbone.recompute import SelectiveRecompute
from llmner.backbone.sources import gguf_cached, resolve_source
from llmner.backbone.trunk import TrunkCache
from llmner.backbone.util import DTYPES, evaluating, hide_library_notices

log = logging.getLogger(__name__)


def resolve_dtype(dtype: str, device: torch.device, freeze: bool = True) -> str:
    """The weights' dtype for ``backbone.dtype`` on ``device``.

    ``auto`` is bfloat16 only for frozen weights on a CUDA device with native bf16 (Ampere and
    later); float32 otherwise: on a CPU (slow bf16 kernels, exports rounded to bf16), on older
    GPUs (emulated bf16; float16 weights would overflow), and for weights that train
    (``freeze: false``), whose small AdamW updates would round away in bf16. bf16 compute over
    float32 weights is ``trainer.precision=bf16-mixed``.
    """
    if dtype not in (*DTYPES, "auto"):
        raise ValueError(f"backbone.dtype must be auto or one of {sorted(DTYPES)}, got {dtype!r}")
    if dtype == "auto":
        native = device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
        return "bfloat16" if native and freeze else "float32"
    if not freeze and dtype != "float32":
        log.warning("backbone.freeze=false with backbone.dtype=%s: AdamW's small updates round away in %s weights; "
                    "keep float32 weights and set trainer.precision=bf16-mixed", dtype, dtype)
    return dtype


class Backbone(nn.Module):
    """A pretrained LM that maps subword ids to hidden states, with LoRA adapters.

    Args:
        name_or_path: see ``llmner.backbone.sources.resolve_source``.
        gguf_file: GGUF file name inside ``name_or_path`` or ``package``.
        package: installed Python package shipping the weights.
        causal_lm: load with its LM head (the generative head); otherwise the bare encoder/decoder.
        layer: how many transformer layers feed the head (``-1``: all). The layers above are
            dropped, not just ignored: a feature extractor never needs them, and on a CPU the
            lower half of a decoder LM is half the cost (its middle layers are often the
            better features for tagging, too).
        dtype: ``float32``, ``bfloat16``, ``float16`` or ``auto``: bfloat16 for frozen weights on a CUDA
            ``device`` that supports it, else float32 (``resolve_dtype``).
        load_in_4bit: NF4 weights through bitsandbytes (QLoRA); heads stay in full precision. They are
            placed on ``device`` at load (bitsandbytes quantizes on the device that holds them).
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
            ``middle``, ``top`` (the ``lora_layers`` adapted ones) or ``[from, to)`` (see
            ``unmasked_range``); the others stay causal.
        attn_implementation: ``sdpa``, ``eager`` (or any transformers supports); ``None``: its default.
        cache: compute the frozen layers below the adapters once per window and reuse their
            output (``llmner.backbone.trunk``); needs ``lora_layers`` (or no LoRA) on a decoder.
        cache_dtype: precision of the cached states (``float16``: half the memory; ``auto``: bfloat16 beside
            a bfloat16 backbone, whose states may exceed float16's range, float16 otherwise).
        cache_dir: also keep the cached states on disk here, memory-mapped by later runs of the same
            trunk (seeds, sweep trials); ``None``: in this process only.
        cache_int8: compute the cached layers with int8 dynamically quantized linear layers (CPU):
            a cheaper fill, at an accuracy cost to measure.
        config_overrides: model config attributes set at load, e.g. ``{hidden_dropout_prob: 0.0}``
            (a name the model's config does not have is an error, not a silent no-op).
        device: where the model will run (``cpu``, ``cuda:1``; the entry points pass the trainer's
            device, so each DDP rank loads 4-bit weights onto its own GPU); ``None``: CUDA if present.
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
        cache_dtype: str = "auto",
        cache_dir: str | None = None,
        cache_int8: bool = False,
        config_overrides: dict | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__()
        hide_library_notices()  # before transformers and peft import bitsandbytes
        from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

        auto_cls = AutoModelForCausalLM if causal_lm else AutoModel
        source, gguf = resolve_source(name_or_path, gguf_file, package)
        if gguf and gguf_cache:
            source, gguf = gguf_cached(source, gguf, auto_cls), None
        device = torch.device(device if device is not None else "cuda" if torch.cuda.is_available() else "cpu")
        dtype = resolve_dtype(dtype, device, freeze)
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
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch_dtype,
                bnb_4bit_use_double_quant=True,
            )
            # without a device_map transformers puts 4-bit weights on cuda:0 whatever the rank or the run's device
            kwargs["device_map"] = {"": device if device.type != "cuda" or device.index is not None
                                    else torch.device("cuda", torch.cuda.current_device())}
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
        # checked once, before anything reads it (the attention schedule's "top", the adapters, the cache's cut)
        if lora and lora_layers != -1 and not 1 <= lora_layers <= model.config.num_hidden_layers:
            raise ValueError(f"backbone.lora_layers must be -1 (all) or 1..{model.config.num_hidden_layers} "
                             f"(the kept layers), got {lora_layers}")
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
            n = len(getattr(owner, name))
            self.schedule = AttentionSchedule(getattr(owner, name), unmasked_range(unmask_layers, n, lora_layers if lora else -1),
                                              model.config)
        if freeze:
            model.requires_grad_(False)
        else:
            # from_pretrained returns eval mode, and Lightning keeps each module's mode: a model
            # fine-tuned fully needs its own dropout on in training (frozen weights stay in eval)
            model.train()
        if not isinstance(gradient_checkpointing, bool) and (not isinstance(gradient_checkpointing, int) or gradient_checkpointing < 0):
            raise ValueError(f"backbone.gradient_checkpointing must be true, false or a token count >= 0, got {gradient_checkpointing!r}")
        self.recompute: SelectiveRecompute | None = None
        if gradient_checkpointing is not False:
            self.recompute = SelectiveRecompute(model, 0 if gradient_checkpointing is True else int(gradient_checkpointing))
        if lora:
            from peft import LoraConfig, TaskType, get_peft_model

            n_layers = model.config.num_hidden_layers
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
        if cache_int8 and not cache:
            raise ValueError("backbone.cache_int8 quantizes the cached trunk: it needs backbone.cache=true")
        if cache:
            if cache_dtype == "auto":  # bfloat16 states beside bfloat16 weights: float16 can overflow where bf16 does not
                cache_dtype = "bfloat16" if dtype == "bfloat16" else "float16"
            elif cache_dtype == "float16" and dtype == "bfloat16":
                log.warning("backbone.cache_dtype=float16 beside a bfloat16 backbone: states above 65504 become inf "
                            "(backbone.cache_dtype=auto keeps them in bfloat16)")
            self.trunk = self._trunk_cache(model, lora, lora_layers, freeze, cache_dtype, cache_dir, cache_int8,
                                           {"source": str(name_or_path), "gguf": str(gguf_file), "package": str(package),
                                            "dtype": dtype, "attn": str(model.config._attn_implementation),
                                            "bidirectional": attention == "bidirectional",
                                            "unmask": repr(unmask_layers), "config": model.config.to_json_string()})

    def _trunk_cache(self, model, lora: bool, lora_layers: int, freeze: bool, dtype: str, directory: str | None,
                     int8: bool, settings: dict) -> TrunkCache:
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
        return TrunkCache(model, owner, name, cut, settings | {"bidirectional_below_cut": below}, dtype, directory, int8)

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def checkpoint_above(self) -> int | None:
        """Tokens per batch above which the layers are recomputed (0: every batch; ``None``: never)."""
        return self.recompute.above if self.recompute is not None else None

    def restore_hooks(self) -> None:
        """Register again the forward hooks a strategy removed (bidirectional layers, selective recompute).

        Lightning's DeepSpeed strategy clears every module's hooks before validating or testing
        (``remove_module_hooks``): without this a bidirectional model would be scored causally.
        """
        if self.schedule is not None:
            self.schedule.restore()
        if self.recompute is not None:
            self.recompute.restore()

    def positions(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """Position ids counted over real tokens only: (B, T) -> (B, T)."""
        return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)

    def fill(self, windows: list[list[int]], max_tokens: int = 4096, desc: str = "trunk cache") -> int:
        """Compute the cached trunk's states of every window up front (``backbone.cache``).

        Args:
            windows: the token ids of each window (e.g. every window of the train and validation splits).
            max_tokens: padded tokens per batch (B x T); windows go longest first, so padding stays small.
            desc: the progress bar's label.

        Returns:
            How many windows were computed (the others were in the cache already).
        """
        from tqdm.auto import tqdm

        if self.trunk is None:
            return 0
        order = sorted(range(len(windows)), key=lambda i: -len(windows[i]))
        chunks, i = [], 0
        while i < len(order):  # the longest window of a chunk comes first: it sets the chunk's size
            size = max(1, max_tokens // max(1, len(windows[order[i]])))
            chunks.append(order[i : i + size])
            i += size
        device = next(self.model.parameters()).device
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

        def batch(chunk: list[int]):
            width = max(len(windows[j]) for j in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)  # (B, T)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)  # (B, T)
            for row, j in enumerate(chunk):
                ids[row, : len(windows[j])] = torch.tensor(windows[j])
                mask[row, : len(windows[j])] = 1
            return ids.to(device), mask.to(device)

        @contextmanager
        def padding(mask: torch.Tensor):  # bidirectional layers below the cut need the batch's padding
            if self.schedule is not None:
                self.schedule.begin(mask)
            try:
                yield
            finally:
                if self.schedule is not None:
                    self.schedule.end()

        def batches():
            # In a terminal a live bar; in a log file (nohup, SLURM) a line every 30 s, not none: a
            # full fill takes minutes and a silent log looks like a hung job.
            tty = sys.stderr.isatty()
            for chunk in tqdm(chunks, desc=desc, unit="batch", leave=not tty, mininterval=0.1 if tty else 30):
                ids, mask = batch(chunk)
                with padding(mask):
                    yield ids, mask, self.positions(mask)

        self.restore_hooks()
        with evaluating(self.model):
            self.trunk.store  # noqa: B018 -- maps what earlier runs kept on disk (checked when they wrote it)
            if windows and not self.trunk.checked:  # the split against the whole model, on a few short windows
                ids, mask = batch(order[-4:])
                with padding(mask):
                    self.trunk.check(ids, mask, self.positions(mask))
            return self.trunk.fill(batches())

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Hidden states of the last kept layer: (B, T) ids -> (B, T, H).

        Decoders get position ids counted over real tokens only, so a row reads the same with
        padding on either side (rotary attention is relative, but left padding would still shift
        positions and round differently).
        """
        if self.causal_lm:
            raise RuntimeError("a causal-LM backbone is used through .model (the generative head)")
        self.restore_hooks()
        if not self.decoder:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        positions = self.positions(attention_mask)  # (B, T)
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
