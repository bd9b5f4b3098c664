"""Score a checkpoint: ``python -m llmner.evaluate ckpt_path=... [data=... data.path=...]``.

Writes ``metrics.json`` and ``test_predictions.conll`` into the run folder, as training does.
"""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from llmner.builders import instantiate_dict, load, test_was_partial, write_test_outputs
from llmner.data.schema import DataError

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> tuple[dict[str, float], dict]:
    """Test the checkpoint ``cfg.ckpt_path`` on ``cfg.data`` (default: the data it was trained on)."""
    model = load(cfg.ckpt_path)
    data_cfg = cfg.get("data") or OmegaConf.create(model.run_config["data"])
    # The checkpoint decides how data is served (word windows or chat examples), the data config
    # which corpus: both datamodules take the same arguments.
    data_cfg._target_ = model.run_config["data"]["_target_"]
    datamodule = instantiate(data_cfg, tags=model.tags)  # the checkpoint's tag set, checked against the data
    datamodule.tokenizer = model.backbone.tokenizer
    loggers = instantiate_dict(cfg.get("logger"))
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=[])
    trainer.test(model, datamodule=datamodule)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    write_test_outputs(cfg.paths.output_dir, model, datamodule.sentences["test"], metrics, test_was_partial(trainer))
    return metrics, {"model": model, "datamodule": datamodule, "trainer": trainer}


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval.yaml")
def main(cfg: DictConfig) -> None:
    try:
        evaluate(cfg)
    except DataError as err:
        log.error("%s", err)
        sys.exit(f"llmner: data error: {err}")


if __name__ == "__main__":
    main()
