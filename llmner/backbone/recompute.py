"""Gradient checkpointing (recomputing each layer's activations in the backward) for large batches only."""

from __future__ import annotations

import torch
from torch import nn


class SelectiveRecompute:
    """Turn on transformers' gradient checkpointing for the batches of more than ``above`` tokens.

    The few long batches set the peak memory; the many short ones keep their speed (a recomputed
    step is ~30% slower). ``above=0`` recomputes every batch that needs gradients.

    Args:
        model: the transformers model (before peft wraps it): every way in (tag features, the
            trunk cache, the generative head's ``.model``) calls it, so its pre-hook sees every batch.
        above: tokens per batch (B x T) above which the layers are recomputed.
    """

    def __init__(self, model: nn.Module, above: int) -> None:
        from transformers.modeling_layers import GradientCheckpointingLayer

        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()  # the new name in later transformers 5 releases; the old one warns and goes in v6
        model.enable_input_require_grads()
        self.above = above
        self.layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
        model.register_forward_pre_hook(self._choose, with_kwargs=True)

    def _choose(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        """Forward pre-hook: checkpoint the layers only for a batch of more than ``above`` tokens.

        transformers recomputes a layer only when the layer is in training mode, and a pretrained
        model comes in eval mode, where Lightning leaves it (it keeps each module's mode; llmner
        keeps frozen weights in eval mode on purpose). So for a batch that is recomputed, the hook
        sets the layer's own ``training`` flag, which gates nothing else in a decoder layer; its
        submodules (attention and MLP, their dropout) keep their mode, and the results do not change.
        """
        x = kwargs.get("input_ids", args[0] if args else None)
        if x is None:
            x = kwargs["inputs_embeds"][..., 0]
        recompute = torch.is_grad_enabled() and x.numel() > self.above
        for layer in self.layers:
            layer.gradient_checkpointing = recompute
            if recompute:
                layer.training = True
