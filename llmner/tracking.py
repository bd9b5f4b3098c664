"""Experiment trackers: what a run sends to its Lightning loggers (``conf/logger/``), beyond Lightning's own logging.

Lightning sends every metric a module logs (losses, learning rates, ``val/*`` at each validation,
``test/*``) to every logger of the trainer. Around that, each run:

- ``start_run``: sends its resolved config as hyperparameters (MLflow params, W&B config, TensorBoard
  and CSV ``hparams.yaml``);
- ``end_run``: sends the figures of ``metrics.json`` (the selected checkpoint's ``val/*``, ``test/*``,
  time, steps, memory) at the last step, so a tracker's latest value of ``val/f1`` is the one
  ``metrics.json`` holds, then closes the run. W&B keeps one run per process until told to finish:
  without that, the next run of a multirun or a benchmark in the same process would continue this one.

An MLflow database in a local SQLite file is created by MLflow's schema migrations on first use;
two jobs that start together (a sweep on ``hydra/launcher=local``) race through them and one fails,
so the first contact with such a database holds a lock file beside it (``filelock``, as the Hugging
Face libraries use it; exclusive only on one machine: several machines want a tracking server).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock
from lightning.pytorch.loggers import Logger, MLFlowLogger, WandbLogger

SQLITE = "sqlite:///"


def sqlite_path(uri: str | None) -> str | None:
    """The file of a ``sqlite:///<path>`` URI (relative to the working directory, or absolute), else ``None``."""
    if not uri or not uri.startswith(SQLITE):
        return None
    return uri[len(SQLITE):] or None


def start_run(loggers: Sequence[Logger], config: dict[str, Any]) -> None:
    """Open each logger's run and send it ``config`` as hyperparameters (every process; loggers act on rank 0)."""
    for logger in loggers:
        # MLFlowLogger keeps its URI in a private attribute only; a missing one means no lock, not an error
        db = sqlite_path(getattr(logger, "_tracking_uri", None)) if isinstance(logger, MLFlowLogger) else None
        if db:
            Path(db).parent.mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not its folder
            with FileLock(f"{db}.lock"):
                _ = logger.experiment  # creates the tables, the experiment and the run, one process at a time
        logger.log_hyperparams(config)


def end_run(loggers: Sequence[Logger], metrics: dict[str, float], step: int) -> None:
    """Send ``metrics`` (those of ``metrics.json``) at ``step``, then close each logger's run."""
    for logger in loggers:
        if metrics:
            logger.log_metrics(dict(metrics), step=step)
        logger.finalize("success")  # again after Lightning's: flushes what came since (CSV) and marks the run done
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()  # a no-op object on ranks other than 0
