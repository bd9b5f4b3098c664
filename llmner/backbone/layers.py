"""Layer surgery and the attention schedule of a transformers model.

- ``layer_list``, ``truncate_layers``, ``is_decoder``: find the transformer layers of a Llama-like
  (``.layers``) or BERT-like (``.encoder.layer``) model, keep the lower ones, tell a decoder;
- ``unmasked_range`` and ``AttentionSchedule``: which layers of a decoder attend to the whole
  window (``backbone.attention=bidirectional``, ``backbone.unmask_layers``), through hooks.
"""

from __future__ import annotations

import torch
from torch import nn


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


def unmasked_range(spec, n_layers: int, top: int = -1) -> range:
    """Layers ``[from, to)`` that attend both ways, from ``backbone.unmask_layers``.

    ``all``: every kept layer; ``middle``: the middle third (``[n // 3, 2n // 3)``), the range that
    "Looking Right is Sometimes Right" and Kukić et al. (2025) found as good as all layers at 1-8B;
    ``top``: the ``top`` adapted layers (``backbone.lora_layers``), e.g. above a cached causal trunk;
    ``[from, to]``: explicit, 0-based, ``to`` excluded (negative counts from the top).
    """
    if not isinstance(spec, str) and hasattr(spec, "__len__"):
        spec = list(spec)  # a ListConfig from Hydra
    if spec == "all":
        return range(n_layers)
    if spec == "middle":
        return range(n_layers // 3, max(n_layers // 3 + 1, 2 * n_layers // 3))
    if spec == "top":
        if not 1 <= top <= n_layers:
            raise ValueError("backbone.unmask_layers=top needs backbone.lora_layers=k (the top k layers attend both ways)")
        return range(n_layers - top, n_layers)
    if isinstance(spec, (list, tuple)) and len(spec) == 2 and all(isinstance(x, int) for x in spec):
        lo, hi = (x + n_layers if x < 0 else x for x in spec)
        if 0 <= lo < hi <= n_layers:
            return range(lo, hi)
    raise ValueError(f"backbone.unmask_layers must be all, middle, top or [from, to) within 0..{n_layers}, got {spec!r}")


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
        self._hooked = [(layers[i], layers[i].register_forward_pre_hook(self._unmask, with_kwargs=True)) for i in unmasked]

    def restore(self) -> None:
        """Register again each hook a strategy removed (DeepSpeed clears all module hooks before evaluating)."""
        self._hooked = [(layer, handle if handle.id in layer._forward_pre_hooks
                         else layer.register_forward_pre_hook(self._unmask, with_kwargs=True))
                        for layer, handle in self._hooked]

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
