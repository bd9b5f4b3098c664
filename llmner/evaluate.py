"""Score a checkpoint: ``python -m llmner.evaluate ckpt_path=... [data=... data.path=...]``.

Writes ``metrics.json`` and ``test_predictions.conll`` into the run folder, as training does.
"""

from __future__ import annotations

import logging

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from llmner import cli, tracking
from llmner.builders import load
from llmner.callbacks import RunOutputs
from llmner.distributed import hydra_job
from llmner.errors import ConfigError

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> tuple[dict[str, float], dict]:
    """Test the checkpoint ``cfg.ckpt_path`` on ``cfg.data`` (default: the data it was trained on)."""
    outputs = RunOutputs(cfg.paths.output_dir)
    loggers = tracking.build_loggers(cfg.get("logger"))
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=[outputs])
    model = load(cfg.ckpt_path, device=trainer.strategy.root_device)  # dtype and 4-bit placement for that device
    if cfg.get("single_types") is not None:  # the same checkpoint with another one-span-per-text list
        if not hasattr(model, "use_single_types"):
            raise ConfigError("single_types applies to tag heads (model=tagger); this checkpoint is generative")
        model.use_single_types(list(cfg.single_types))
    data_cfg = cfg.get("data") or OmegaConf.create(model.run_config["data"])
    datamodule = instantiate(data_cfg, tags=model.tags)  # the checkpoint's tag set, checked against the data
    datamodule.encoder = model.encoder  # the model decides how data becomes tensors, the data config which corpus
    tracking.start_run(loggers, OmegaConf.to_container(cfg, resolve=True))
    trainer.test(model, datamodule=datamodule, verbose=False)
    outputs.report()
    tracking.end_run(loggers, outputs.unlogged(), trainer.global_step)
    return outputs.metrics, {"model": model, "datamodule": datamodule, "trainer": trainer}


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval.yaml")
def main(cfg: DictConfig) -> None:
    with hydra_job("llmner.evaluate"):  # several processes (trainer=ddp...): every rank in this job's folder
        cli.run("evaluate", lambda: evaluate(cfg))


if __name__ == "__main__":
    main()
