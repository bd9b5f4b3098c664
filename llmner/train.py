"""Train a tagger: ``python -m llmner.train [experiment=...] [key=value ...]``."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf, open_dict

from llmner import cli, tracking
from llmner.builders import build_datamodule, build_model, count_parameters, instantiate_dict
from llmner.callbacks import RunOutputs
from llmner.checkpoint import read_checkpoint
from llmner.distributed import hydra_job
from llmner.errors import ConfigError
from llmner.guards import check_selection
from llmner.transfer import InitSource, check_compatible, initialise

log = logging.getLogger(__name__)


def apply_budget(trainer_cfg: DictConfig) -> None:
    """Make the budget and the validation schedule mean what the trainer config says.

    - A step budget decides alone: ``max_steps > 0`` lifts the epoch limit (``max_epochs=-1``).
    - An integer ``val_check_interval`` counts training batches across epochs
      (``check_val_every_n_epoch=None``), so an interval longer than a small corpus's epoch still
      validates every that many batches instead of being refused by Lightning.
    """
    with open_dict(trainer_cfg):
        if (trainer_cfg.get("max_steps") or -1) > 0 and trainer_cfg.get("max_epochs") not in (None, -1):
            log.info("trainer.max_steps=%d is the budget; trainer.max_epochs=%s is lifted", trainer_cfg.max_steps, trainer_cfg.max_epochs)
            trainer_cfg.max_epochs = -1
        interval = trainer_cfg.get("val_check_interval")
        if isinstance(interval, int) and not isinstance(interval, bool) and trainer_cfg.get("check_val_every_n_epoch") is not None:
            trainer_cfg.check_val_every_n_epoch = None


def best_checkpoint(trainer: L.Trainer) -> str | None:
    """The best-``val/f1`` checkpoint the run saved (``None`` when none was, e.g. ``fast_dev_run``)."""
    for cb in trainer.checkpoint_callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.monitor and cb.best_model_path:
            return cb.best_model_path
    return None


def scored_by_last_validation(trainer: L.Trainer, outputs: RunOutputs, ckpt: str | None) -> bool:
    """Whether this process validated at the last step and ``ckpt`` was saved at that step.

    Then ``ckpt`` holds the weights that validation scored, its ``val/*`` figures are already in
    ``outputs``, and validating it again would repeat a full pass for the same figures. A run resumed
    at its budget's end has not validated, and a DeepSpeed folder is not read: both ``False``.
    """
    if not ckpt or not Path(ckpt).is_file() or outputs.validated_at != trainer.global_step:
        return False
    return read_checkpoint(ckpt).get("global_step") == trainer.global_step


def init_source(cfg: DictConfig, resume: str | None) -> InitSource | None:
    """The checkpoint of ``init_from``, checked against this run's model and backbone (``llmner.transfer``).

    ``None`` without ``init_from``, and when resuming (``ckpt_path``): the resumed weights replace it.
    """
    if cfg.get("init_map") and not cfg.get("init_from"):
        raise ConfigError("init_map maps a checkpoint's types onto this run's: it needs init_from=CKPT")
    if not cfg.get("init_from"):
        return None
    if resume:
        log.info("resuming from %s: its weights replace init_from=%s", resume, cfg.init_from)
        return None
    source = InitSource(cfg.init_from)
    check_compatible(source, cfg)
    return source


def train(cfg: DictConfig) -> tuple[dict[str, float], dict]:
    """Fit on train, select the best ``val/f1`` checkpoint, score it on validation and test.

    Returns:
        The final metrics (also written to ``metrics.json``) and the built objects.
    """
    check_selection(cfg, "train")
    apply_budget(cfg.trainer)
    resume = cfg.get("ckpt_path")
    if resume and Path(resume).is_dir():  # DeepSpeed writes a folder of shards; its strategy reads it
        if not (Path(resume) / "latest").is_file() and not (Path(resume) / "checkpoint").is_dir():
            raise ConfigError(f"ckpt_path={resume}: a directory, not a checkpoint (expected a .ckpt file, or the "
                              "folder a trainer=deepspeed_* run wrote)")
        log.info("resuming from the DeepSpeed checkpoint %s", resume)
    elif resume:  # a clear error now for a missing or foreign file, not Lightning's traceback later
        step = read_checkpoint(resume).get("global_step", 0)
        log.info("%s %s at step %d", "resuming from" if cfg.train else "testing", resume, step)
    source = init_source(cfg, resume)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build_datamodule(cfg)  # completes cfg.model from the data (splitter, single_types: auto)
    outputs = RunOutputs(cfg.paths.output_dir)
    loggers = tracking.build_loggers(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=[*instantiate_dict(cfg.get("callbacks")), outputs],
                                     logger=loggers or False)
    # built for this process's device (a DDP rank's own GPU; a CPU run on a GPU machine keeps float32)
    model = build_model(cfg, datamodule.tags, trainer.strategy.root_device)
    if source is not None:  # after the seeded build: tags without a source keep the rows a plain run gets
        initialise(model, source, OmegaConf.to_container(cfg.init_map, resolve=True) if cfg.get("init_map") else None)
    datamodule.encoder = model.encoder
    n_train, n_all = count_parameters(model)
    log.info("trainable parameters: %s of %s (%.2f%%)", f"{n_train:,}", f"{n_all:,}", 100 * n_train / n_all)
    tracking.start_run(loggers, OmegaConf.to_container(cfg, resolve=True))

    test = cfg.test
    if test and "test" not in datamodule.sentences:  # e.g. data=crime_written: train and validation (already loaded)
        log.warning("the corpus has no 'test' split (it has %s): this run trains and validates, and tests nothing "
                    "(test=false says so; score a test file with python -m llmner.evaluate)", sorted(datamodule.sentences))
        test = False
    best = None
    if cfg.train:
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume, weights_only=True)
        best = best_checkpoint(trainer)
        if scored_by_last_validation(trainer, outputs, best):  # the last validation scored these weights: its val/* stand
            log.info("best checkpoint: %s (the last validation's, at step %d)", best, trainer.global_step)
        else:
            log.info("best checkpoint: %s; validating it again for its val/* figures", best)
            trainer.validate(model, datamodule=datamodule, ckpt_path=best, weights_only=True, verbose=False)
    if test:
        ckpt = best if cfg.train else resume
        trainer.test(model, datamodule=datamodule, ckpt_path=ckpt, weights_only=True, verbose=False)
    outputs.report()
    tracking.end_run(loggers, outputs.unlogged(), trainer.global_step)  # metrics.json's figures to every tracker
    metric = cfg.get("optimized_metric")
    if metric and cfg.train and metric not in outputs.metrics:
        log.warning("optimized_metric=%s is not among this run's figures (e.g. %s)", metric,
                    ", ".join(sorted(k for k in outputs.metrics if k.startswith("val/"))[:6]))
    return outputs.metrics, {"model": model, "datamodule": datamodule, "trainer": trainer, "best_ckpt": best}


@hydra.main(version_base="1.3", config_path="../conf", config_name="train.yaml")
def main(cfg: DictConfig) -> float | None:
    with hydra_job("llmner.train"):  # several processes (trainer=ddp...): every rank in this job's folder
        metrics, _ = cli.run("train", lambda: train(cfg))
    return metrics.get(cfg.get("optimized_metric") or "")  # for sweepers


if __name__ == "__main__":
    main()
