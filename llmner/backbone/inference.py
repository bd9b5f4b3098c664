"""Weights for decoding: each LoRA adapter merged into its base layer (optionally cast), restored exactly after.

A step of greedy decoding is the model's matrix products (``experiments/generative_crime_cpu.md``).
An unmerged LoRA layer adds two thin products per token (and the prompt's forward pays them over
every prompt token); merged, the layer is one product. peft's ``merge_adapter``/``unmerge_adapter``
would do the merging, but its unmerge subtracts the delta again, which leaves rounding residues in
the frozen base weights: an evaluation in the middle of training would perturb the model it
returns to. ``decoding_weights`` instead swaps each weight's storage for a merged copy and puts the
original tensor back afterwards (bit-exact), at the cost of one copy of the adapted weights while
decoding. ``dtype`` also swaps every floating parameter for a cast copy (``bfloat16``: half the
memory traffic and, on CPUs with AMX or AVX512-BF16, several times faster products), again
restored exactly; it changes the arithmetic, hence possibly the answers (``head.dtype``, off by default).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def _mergeable(layer) -> list[str]:
    """The active plain-LoRA adapters of a peft LoRA layer over an ``nn.Linear`` (none: leave it alone)."""
    if layer.merged or layer.disable_adapters or type(layer.get_base_layer()) is not nn.Linear:
        return []  # already merged, switched off, or a quantized base (merging would requantize the sum)
    active = [a for a in layer.active_adapters if a in layer.lora_A]
    if any(a in getattr(layer, "lora_variant", {}) for a in active):
        return []  # DoRA and other variants merge differently: their own forward stays
    return active


@contextmanager
def decoding_weights(model: nn.Module, merge: bool = True, dtype: torch.dtype | None = None) -> Iterator[int]:
    """Within the block, ``model``'s LoRA layers compute with merged weights (``merge``) and its floating
    parameters are ``dtype`` copies (``dtype``); every tensor is the original again afterwards.

    Yields the number of merged layers. Layers that cannot be merged (a quantized base, DoRA) keep
    their LoRA path; ``dtype`` is then refused, since their adapters would see a cast input.
    """
    from peft.tuners.lora import LoraLayer

    originals: list[tuple[nn.Parameter, torch.Tensor]] = []
    marked = []
    try:
        with torch.no_grad():
            lora = [m for m in model.modules() if isinstance(m, LoraLayer)] if merge or dtype is not None else []
            for layer in lora if merge else []:
                active = _mergeable(layer)
                if not active:
                    continue
                w = layer.get_base_layer().weight
                merged = w.data.clone()
                for a in active:
                    merged += layer.get_delta_weight(a).to(w.dtype)  # as peft's merge adds it
                originals.append((w, w.data))
                w.data = merged
                layer.merged_adapters = list(active)  # peft's forward then calls the base layer alone
                marked.append(layer)
            if dtype is not None:
                if len(marked) < sum(bool(m.active_adapters) and not m.disable_adapters for m in lora):
                    raise ValueError(f"decoding in {dtype} needs every LoRA layer merged (merge_adapters=true, "
                                     "no 4-bit base, no DoRA)")
                for p in model.parameters():
                    if p.is_floating_point() and p.dtype != dtype:
                        originals.append((p, p.data))
                        p.data = p.data.to(dtype)
        yield len(marked)
    finally:
        for p, data in reversed(originals):  # a weight both merged and cast ends as its first original
            p.data = data
        for layer in marked:
            layer.merged_adapters = []
