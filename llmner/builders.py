"""Build models from a run config, reload them from checkpoints, and write a run's outputs.

Shared by the entry points (train, evaluate) and the Python API (``llmner.load``). Configs arrive
here already composed; ``hydra.utils.instantiate`` turns their ``_target_`` nodes into objects.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from llmner.metrics import write_conll, write_metrics
from llmner.module import TaggerModule

log = logging.getLogger(__name__)


class SelectionError(ValueError):
    """A config asks to select models (or rank a sweep) on the test set."""


def check_selection(cfg: DictConfig, where: str) -> None:
    """Refuse model selection on test: ``optimized_metric`` and every callback ``monitor`` must not be ``test/...``.

    Raises:
        SelectionError: naming the key, its value and what is expected.
    """
    keys = {"optimized_metric": cfg.get("optimized_metric")}
    for name, cb in (cfg.get("callbacks") or {}).items():
        if cb is not None and "monitor" in cb:
            keys[f"callbacks.{name}.monitor"] = cb.monitor
    for key, value in keys.items():
        if value is not None and str(value).startswith("test/"):
            raise SelectionError(
                f"{where}: {key}={value} selects on the test set; model selection and sweeps must use "
                f"validation metrics (e.g. val/f1). The test set is scored once, after selection."
            )


def build_model(cfg: DictConfig, tags: list[str]) -> TaggerModule:
    """Backbone + head (sized for ``tags``) + loss + optimizer settings, from ``cfg``.

    A causal-LM backbone (``backbone.causal_lm: true``) gets the generative head (``head=generative``,
    built with the tokenizer) and ``model=generative`` (``llmner.generative.GenerativeModule``).
    """
    backbone = instantiate(cfg.backbone)
    if cfg.backbone.get("causal_lm"):  # the generative head decodes with the LM head and the tokenizer
        head = instantiate(cfg.head)(tokenizer=backbone.tokenizer, tags=tags)
    else:
        head = instantiate(cfg.head)(hidden_size=backbone.hidden_size, tags=tags)
    model = instantiate(cfg.model, backbone=backbone, head=head)
    # Set after instantiate: passed as an argument, its _target_ nodes would be instantiated too.
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in model.parameters())
    log.info("trainable parameters: %s of %s (%.2f%%)", f"{n_train:,}", f"{n_all:,}", 100 * n_train / n_all)
    return model


def load(ckpt_path: str | Path, map_location: str = "cpu") -> TaggerModule:
    """Rebuild a trained model from an llmner checkpoint (config + trained weights).

    The frozen backbone is loaded from the source named in the stored config; the checkpoint
    supplies the adapters, head and CRF.
    """
    checkpoint = torch.load(ckpt_path, map_location=map_location, weights_only=False)
    if "llmner" not in checkpoint:
        raise ValueError(f"{ckpt_path}: not an llmner checkpoint (no 'llmner' entry)")
    cfg = OmegaConf.create(checkpoint["llmner"]["config"])
    model = build_model(cfg, checkpoint["llmner"]["tags"])
    model.on_load_checkpoint(checkpoint)
    model.load_state_dict(checkpoint["state_dict"], strict=False)
    return model.eval()


def instantiate_dict(cfg: DictConfig | None) -> list:
    """Instantiate each ``_target_`` entry of a name -> config mapping (callbacks, loggers)."""
    if not cfg:
        return []
    return [instantiate(c) for c in cfg.values() if c is not None and "_target_" in c]


def test_was_partial(trainer) -> bool:
    """Whether the user limited the test loop (``fast_dev_run``, ``limit_test_batches``)."""
    return bool(trainer.fast_dev_run) or trainer.limit_test_batches not in (1.0, None)


def write_test_outputs(
    output_dir: str | Path, model: TaggerModule, sentences: list, metrics: dict, partial: bool = False
) -> None:
    """``metrics.json`` and ``test_predictions.conll`` in ``output_dir``.

    Args:
        partial: the test loop was limited on purpose; write the sentences that were predicted.

    Raises:
        RuntimeError: if a test word lacks a prediction in a full test (it would be silent data loss).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    pred, gold = model.predictions.get("test", {}), model.gold.get("test", {})
    bad = [i for i, s in enumerate(sentences) if len(pred.get(i, [])) != len(s.tokens)]
    if bad and not partial:
        raise RuntimeError(f"{len(bad)} test sentences lack a prediction for some word (first: #{bad[0]})")
    if bad:
        log.warning("the test loop was limited: %d of %d sentences predicted", len(sentences) - len(bad), len(sentences))
    keep = [i for i in range(len(sentences)) if i not in set(bad)]
    write_conll(
        output_dir / "test_predictions.conll",
        [sentences[i].tokens for i in keep], [gold[i] for i in keep], [pred[i] for i in keep],
    )
    write_metrics(output_dir / "metrics.json", metrics)
    log.info("wrote %s and %s", output_dir / "metrics.json", output_dir / "test_predictions.conll")
