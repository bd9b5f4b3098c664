"""Gradient checkpointing (recomputing each layer's activations in the backward) for large batches only."""

from __future__ import annotations

import torch
import torch.distributed as dist
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
        self.model = model
        self.above = above
        self.layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
        self._handle = model.register_forward_pre_hook(self._choose, with_kwargs=True)

    def restore(self) -> None:
        """Register again the hooks a strategy removed (DeepSpeed clears all module hooks before evaluating)."""
        if self._handle.id not in self.model._forward_pre_hooks:
            self._handle = self.model.register_forward_pre_hook(self._choose, with_kwargs=True)
        grads = getattr(self.model, "_require_grads_hook", None)
        embeddings = self.model.get_input_embeddings()
        if grads is not None and grads.id not in embeddings._forward_hooks:
            self.model.enable_input_require_grads()

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
        if torch.is_grad_enabled() and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # one decision for all ranks (the longest batch's): under FSDP or ZeRO-3 a recomputed layer gathers
            # its weights again in the backward, and ranks that disagree would wait on each other's gathers
            flag = torch.tensor([int(recompute)], device=x.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            recompute = bool(flag.item())
        for layer in self.layers:
            layer.gradient_checkpointing = recompute
            if recompute:
                layer.training = True
