"""Train a tagger: ``python -m llmner.train [experiment=...] [key=value ...]``."""

from __future__ import annotations

import logging
import sys
import time

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from llmner.builders import SelectionError, build_model, check_selection, instantiate_dict, test_was_partial, write_test_outputs
from llmner.data.schema import DataError

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> tuple[dict[str, float], dict]:
    """Fit on train, select the best ``val/f1`` checkpoint, score it on validation and test.

    Returns:
        The final metrics (also written to ``metrics.json``) and the built objects.
    """
    check_selection(cfg, "train")
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    model = build_model(cfg, datamodule.tags)
    datamodule.tokenizer = model.backbone.tokenizer
    loggers = instantiate_dict(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=instantiate_dict(cfg.get("callbacks")), logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    metrics: dict[str, float] = {}
    best = None
    if cfg.train:
        start = time.perf_counter()
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        metrics["train/seconds"] = time.perf_counter() - start
        metrics["train/steps"] = trainer.global_step
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else None
        best = best or None  # "" when no checkpoint was saved (e.g. fast_dev_run)
        log.info("best checkpoint: %s", best)
        trainer.validate(model, datamodule=datamodule, ckpt_path=best)
        metrics |= {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    if cfg.test:
        ckpt = best if cfg.train else cfg.get("ckpt_path")
        start = time.perf_counter()
        trainer.test(model, datamodule=datamodule, ckpt_path=ckpt)
        metrics["test/seconds"] = time.perf_counter() - start  # the whole test pass: throughput
        metrics |= {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        write_test_outputs(cfg.paths.output_dir, model, datamodule.sentences["test"], metrics, test_was_partial(trainer))
    return metrics, {"model": model, "datamodule": datamodule, "trainer": trainer, "best_ckpt": best}


@hydra.main(version_base="1.3", config_path="../conf", config_name="train.yaml")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics, _ = train(cfg)
    except (DataError, SelectionError) as err:  # a user's mistake: the message says where; no traceback
        log.error("%s", err)
        sys.exit(f"llmner: {err}")
    value = metrics.get(cfg.get("optimized_metric") or "")
    return value  # for sweepers


if __name__ == "__main__":
    main()
