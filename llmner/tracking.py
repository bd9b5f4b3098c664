"""Experiment trackers: what a run sends to its Lightning loggers (``conf/logger/``), beyond Lightning's own logging.

Lightning sends every metric a module logs (losses, learning rates, ``val/*`` at each validation,
``test/*``) to every logger of the trainer. Around that, each run:

- ``build_loggers``: builds the loggers of ``conf/logger/``;
- ``start_run``: sends its resolved config as hyperparameters (MLflow params, W&B config, TensorBoard
  and CSV ``hparams.yaml``);
- ``end_run``: sends the figures of ``metrics.json`` that Lightning did not (time, steps, memory: the
  ``val/*`` and ``test/*`` went through it, the selected checkpoint's last, so a tracker's latest
  ``val/f1`` is the one ``metrics.json`` holds, and a curve gets no extra point), then closes the run.
  W&B keeps one run per process until told to finish: without that, the next run of a multirun or a
  benchmark in the same process would continue this one.

An MLflow database in a local SQLite file is created by MLflow's schema migrations on first use;
two jobs that start together (a sweep on ``hydra/launcher=local``) race through them and one fails,
so building such a logger holds a lock file beside the database (``filelock``, as the Hugging
Face libraries use it; exclusive only on one machine: several machines want a tracking server).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from filelock import FileLock
from hydra.utils import get_class, instantiate
from lightning.pytorch.loggers import Logger, MLFlowLogger, WandbLogger
from omegaconf import DictConfig

SQLITE = "sqlite:///"


def sqlite_path(uri: str | None) -> str | None:
    """The file of a ``sqlite:///<path>`` URI (relative to the working directory, or absolute), else ``None``."""
    if not uri or not uri.startswith(SQLITE):
        return None
    return uri[len(SQLITE):] or None


def build_loggers(cfg: DictConfig | None) -> list[Logger]:
    """The loggers of ``cfg`` (``logger`` of a run config: name -> config with ``_target_``).

    An MLflow logger with a SQLite URI is built, and its run opened, under a lock file beside the database.
    """
    loggers = []
    for node in (cfg or {}).values():
        if node is None or "_target_" not in node:
            continue
        mlflow = issubclass(get_class(node._target_), MLFlowLogger)
        db = sqlite_path(node.get("tracking_uri")) if mlflow else None
        if db:
            Path(db).parent.mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not its folder
        with FileLock(f"{db}.lock") if db else nullcontext():
            logger = instantiate(node)  # MLflow's client creates the tables here
            if db:
                _ = logger.experiment  # and the experiment and the run here (rank 0; a no-op object elsewhere)
        loggers.append(logger)
    return loggers


def start_run(loggers: Sequence[Logger], config: dict[str, Any]) -> None:
    """Send ``config`` to each logger as hyperparameters (every process; loggers act on rank 0 only)."""
    for logger in loggers:
        logger.log_hyperparams(config)


def end_run(loggers: Sequence[Logger], metrics: dict[str, float], step: int) -> None:
    """Send ``metrics`` (``metrics.json``'s figures that no logger has) at ``step``, then close each logger's run."""
    for logger in loggers:
        if metrics:
            logger.log_metrics(dict(metrics), step=step)
        logger.finalize("success")  # again after Lightning's: flushes what came since (CSV) and marks the run done
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()  # a no-op object on ranks other than 0
