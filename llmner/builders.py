"""Build models from a run config, and rebuild them from checkpoints.

Shared by the entry points (train, evaluate, predict, export) and the Python API (``llmner.load``).
Configs arrive here already composed; ``hydra.utils.instantiate`` turns their ``_target_`` nodes
into objects.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from llmner.checkpoint import read_checkpoint, upgrade_config
from llmner.modules.base import LlmnerModule

log = logging.getLogger(__name__)


def build_datamodule(cfg: DictConfig):
    """The data module of ``cfg.data``, with ``cfg.model`` completed from it (in place).

    Raw text at prediction time is split as the training corpus was (``model.encoder.splitter``),
    and the model class fills what it reads from the data (``model.single_types: auto``).
    """
    datamodule = instantiate(cfg.data)
    with open_dict(cfg):
        cfg.model.encoder.splitter = cfg.model.encoder.get("splitter") or datamodule.splitter
        get_class(cfg.model._target_).configure(cfg.model, datamodule)
    return datamodule


def build_model(cfg: DictConfig, tags: list[str], device: str | torch.device | None = None) -> LlmnerModule:
    """Backbone + head (sized for ``tags``) + the model's encoder, loss and optimizer settings, from ``cfg``.

    The model class decides what the backbone keeps (its LM head for the generative model) and
    how the head is finished (hidden size, or tokenizer). ``device`` is where the model will run
    (the trainer's device): it decides ``backbone.dtype: auto`` and where 4-bit weights are loaded.
    """
    module_cls = get_class(cfg.model._target_)
    extra = {} if device is None else {"device": str(device)}
    backbone = instantiate(cfg.backbone, causal_lm=module_cls.needs_lm_head, **extra)
    head = module_cls.build_head(instantiate(cfg.head), backbone, tags, cfg.model)
    model = instantiate(cfg.model, backbone=backbone, head=head)
    # Set after instantiate: passed as an argument, its _target_ nodes would be instantiated too.
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    return model


def count_parameters(model: LlmnerModule) -> tuple[int, int]:
    """(trainable, all) parameter counts, as Lightning's model summary counts them (each tensor once)."""
    from lightning.pytorch.utilities.model_summary import ModelSummary

    summary = ModelSummary(model, max_depth=0)  # depth 0: totals only, no per-layer table
    return summary.trainable_parameters, summary.total_parameters


def load(ckpt_path: str | Path, map_location: str = "cpu", device: str | torch.device | None = None) -> LlmnerModule:
    """Rebuild a trained model from an llmner checkpoint (config + trained weights), in eval mode.

    An ONNX export (``python -m llmner.export ... format=onnx``: its directory, or one of its
    ``.onnx`` files such as ``model.int8.onnx``) loads as an ``llmner.onnx_model.OnnxTagger``,
    whose ``predict`` is the tagger's.

    The frozen backbone is loaded from the source named in the stored config; the checkpoint
    supplies the adapters, head and CRF. Checkpoints of earlier llmner versions are upgraded.
    ``device`` (default: ``map_location``) is where the model will run: ``backbone.dtype: auto``
    is float32 on a CPU even on a machine with a GPU, and 4-bit weights are loaded there, beside the head.

    Raises:
        llmner.errors.CheckpointError: a missing, unreadable or foreign file.
    """
    from llmner.onnx_model import OnnxTagger, is_onnx_export

    if is_onnx_export(ckpt_path):
        return OnnxTagger(ckpt_path)
    checkpoint = read_checkpoint(ckpt_path, map_location)
    cfg = OmegaConf.create(upgrade_config(checkpoint["llmner"]["config"]))
    model = build_model(cfg, checkpoint["llmner"]["tags"], device or map_location)
    model.on_load_checkpoint(checkpoint)
    model.load_state_dict(checkpoint["state_dict"], strict=False)
    return model.eval()


def instantiate_dict(cfg: DictConfig | None) -> list:
    """Instantiate each ``_target_`` entry of a name -> config mapping (callbacks, loggers)."""
    if not cfg:
        return []
    return [instantiate(c) for c in cfg.values() if c is not None and "_target_" in c]
