"""Lightning callbacks: a run's output files, validation at the end of any budget, the latest checkpoint.

- ``RunOutputs`` is added by every entry point that fits, validates or tests (train, evaluate), so a
  run folder always holds the same files whichever command made it.
- ``ValidateAtBudgetEnd``: Lightning validates on its schedule (every n batches or epochs) and not
  when a step budget ends between two checks, so a run cut by ``max_steps`` would end with no
  fresh ``val/f1``: no checkpoint of its last steps, and callbacks that need the metric
  (early stopping) fail. This callback asks for one validation at the budget's last step.
- ``LatestCheckpoint``: Lightning's ``save_last`` writes ``last.ckpt`` only when its callback saves a
  top-k checkpoint, so after a crash ``last.ckpt`` may be far behind. This one writes it every n
  steps or minutes and at the end, atomically (a kill during the write leaves the previous file).

On several processes, only the global-zero process writes files; checkpoints are written by the
strategy (one file from rank 0, or under DeepSpeed a folder that every rank writes its shard to).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from datetime import timedelta
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from llmner.data.schemes import from_iob2
from llmner.evaluation.predictions import ANSWERS, PREDICTIONS, write_answers, write_predictions
from llmner.evaluation.runs import write_metrics
from llmner.memory import peak_memory_mb, peak_rss_mb

log = logging.getLogger(__name__)


def test_was_partial(trainer: L.Trainer) -> bool:
    """Whether the user limited the test loop (``fast_dev_run``, ``limit_test_batches``)."""
    return bool(trainer.fast_dev_run) or trainer.limit_test_batches not in (1.0, None)


class RunOutputs(L.Callback):
    """Collects a run's final figures and writes ``metrics.json`` and ``test_predictions.conll``.

    ``metrics`` holds ``train/seconds`` and ``train/steps`` after fitting, the ``val/*`` figures of
    the last validation (the entry point validates the selected checkpoint last, unless that
    validation chose it: ``validated_at`` is its step), and ``test/*``
    with ``test/seconds`` after testing. ``metrics.json`` is rewritten after each of these;
    ``test_predictions.conll`` (``token gold predicted``, conlleval's input) after testing, and for
    the generative head ``test_answers.jsonl`` (each test example's decoded JSON). Only the
    global-zero process writes.

    Args:
        output_dir: the run folder.
    """

    def __init__(self, output_dir: str | Path) -> None:
        self.output_dir = Path(output_dir)
        self.metrics: dict[str, float] = {}
        self._start: dict[str, float] = {}
        self._global_zero = True  # set in setup(): whether this process is the one that writes
        self.validated_at: int | None = None  # the global step of the last validation collected
        self.logged: set[str] = set()  # the keys taken from what the module logged (Lightning's loggers have them)

    def _collect(self, trainer: L.Trainer, prefix: str) -> None:
        found = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(prefix)}
        self.metrics |= found
        self.logged |= set(found)

    def unlogged(self) -> dict[str, float]:
        """The figures of ``metrics.json`` that no logger has seen: those measured here (time, steps, memory,
        the trunk cache's fill), not the ``val/*`` and ``test/*`` that the module logged through Lightning."""
        return {k: v for k, v in self.metrics.items() if k not in self.logged}

    def _write_metrics(self, trainer: L.Trainer) -> None:
        """Every process calls this (the peaks are gathered from all of them); rank 0 writes."""
        module = trainer.lightning_module
        self.metrics |= getattr(module, "run_metrics", {})  # e.g. the trunk cache's fill time
        # so far: the peaks of the run when it ends; the largest over the processes
        peaks = torch.tensor([peak_memory_mb(module.device), peak_rss_mb()], dtype=torch.float64, device=module.device)
        peaks = trainer.strategy.all_gather(peaks).reshape(-1, 2).amax(0).tolist()
        self.metrics["memory/peak_mb"], self.metrics["memory/peak_rss_mb"] = peaks
        if trainer.is_global_zero:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            write_metrics(self.output_dir / "metrics.json", self.metrics)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start["train"] = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.metrics["train/seconds"] = time.perf_counter() - self._start.get("train", time.perf_counter())
        self.metrics["train/steps"] = trainer.global_step
        self._write_metrics(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._collect(trainer, "val/")
            self.validated_at = trainer.global_step

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start["test"] = time.perf_counter()

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.metrics["test/seconds"] = time.perf_counter() - self._start["test"]  # the whole test pass: throughput
        self._collect(trainer, "test/")
        if trainer.is_global_zero:
            self.write_predictions(trainer.datamodule.sentences["test"], pl_module, test_was_partial(trainer),
                                   getattr(trainer.datamodule, "scheme", "iob2"))
        self._write_metrics(trainer)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._global_zero = trainer.is_global_zero

    def report(self) -> None:
        """Log the headline figures and where the outputs are (the full set is in ``metrics.json``).

        Only the global-zero process reports: the other processes hold the same figures.
        """
        if not self._global_zero:
            return
        lines = []
        for split in ("val", "test"):
            if f"{split}/f1" in self.metrics:
                m = self.metrics
                types = sorted(k.split("_", 1)[1] for k in m if k.startswith(f"{split}/f1_"))
                per_type = "  ".join(f"{t} {m[f'{split}/f1_{t}']:.3f}" for t in types)
                lines.append(f"{split}/f1 {m[f'{split}/f1']:.4f} (precision {m.get(f'{split}/precision', float('nan')):.4f}, "
                             f"recall {m.get(f'{split}/recall', float('nan')):.4f})  {per_type}")
                corpora = sorted((k.split("/")[1] for k in m if k.count("/") == 2 and k.startswith(f"{split}/") and k.endswith("/f1")),
                                 key=lambda c: (c == "corpus_mean", c))  # the mean of the corpora last
                if corpora:  # data=mix: each corpus's F1
                    lines.append(f"{split} per corpus: " + "  ".join(f"{c} {m[f'{split}/{c}/f1']:.4f}" for c in corpora))
                if f"{split}/field_f1" in m:  # span-annotated reports: the predictions read as values
                    lines.append(f"{split}/field_f1 {m[f'{split}/field_f1']:.4f} (precision "
                                 f"{m[f'{split}/field_precision']:.4f}, recall {m[f'{split}/field_recall']:.4f})")
        if "train/steps" in self.metrics:
            lines.append(f"trained {int(self.metrics['train/steps'])} steps in {self.metrics['train/seconds']:.0f} s")
        lines.append(f"outputs: {self.output_dir} (metrics.json, test_predictions.conll, checkpoints/)")
        log.info("\n  ".join(["results:", *lines]))

    def write_predictions(self, sentences: list, model: L.LightningModule, partial: bool = False,
                          scheme: str = "iob2") -> None:
        """``test_predictions.conll`` of the model's test predictions.

        Args:
            partial: the test loop was limited on purpose; write the sentences that were predicted.
            scheme: the tag scheme the test data came in; gold and predicted tags are written in it
                (the same entities: ``llmner.data.schemes``).

        Raises:
            RuntimeError: if a test word lacks a prediction in a full test (it would be silent data loss).
        """
        pred, gold = model.predictions.get("test", {}), model.gold.get("test", {})
        bad = [i for i, s in enumerate(sentences) if len(pred.get(i, [])) != len(s.tokens)]
        if bad and not partial:
            raise RuntimeError(f"{len(bad)} test sentences lack a prediction for some word (first: #{bad[0]})")
        if bad:
            log.warning("the test loop was limited: %d of %d sentences predicted", len(sentences) - len(bad), len(sentences))
        keep = sorted(set(range(len(sentences))) - set(bad))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        write_predictions(self.output_dir / PREDICTIONS,
                          [sentences[i].tokens for i in keep], [from_iob2(gold[i], scheme) for i in keep],
                          [from_iob2(pred[i], scheme) for i in keep])
        answers = getattr(model, "answers", {}).get("test")
        if answers:  # the generative head: its decoded JSON, one line per test example
            write_answers(self.output_dir / ANSWERS, answers)
        log.info("wrote %s and %s", self.output_dir / "metrics.json", self.output_dir / PREDICTIONS)


class ValidateAtBudgetEnd(L.Callback):
    """Validate once more when ``max_steps`` is reached, unless Lightning's schedule does so anyway.

    Setting ``trainer.should_stop`` at the last step makes Lightning's loop validate right after
    that batch (it validates when asked to stop early) and then end training, as the budget would.
    """

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
            trainer.should_stop = True


class LatestCheckpoint(ModelCheckpoint):
    """``last.ckpt``: the latest training state, every ``every_n_train_steps`` steps or ``every_n_minutes``,
    and when training ends, whatever the best-``val/f1`` checkpoint does.

    Args:
        dirpath: the checkpoint folder.
        every_n_train_steps: steps between saves (0: only by time and at the end).
        every_n_minutes: minutes between saves (``None``: only by steps and at the end).
    """

    def __init__(self, dirpath: str | Path, every_n_train_steps: int = 100, every_n_minutes: float | None = None) -> None:
        if every_n_train_steps < 0 or (every_n_minutes is not None and every_n_minutes <= 0):
            raise ValueError(f"LatestCheckpoint: every_n_train_steps must be >= 0 and every_n_minutes > 0 or null, "
                             f"got {every_n_train_steps} and {every_n_minutes}")
        interval = timedelta(minutes=every_n_minutes) if every_n_minutes is not None else None
        super().__init__(dirpath=dirpath, monitor=None, save_top_k=0, save_last=True,
                         every_n_train_steps=None if interval else every_n_train_steps,
                         train_time_interval=interval, save_on_train_epoch_end=False, enable_version_counter=False)
        self._every_n_train_steps = every_n_train_steps  # Lightning forbids steps and time together; both work here

    @property
    def state_key(self) -> str:
        return "LatestCheckpoint"

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.fast_dev_run and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        tmp = f"{filepath}.tmp"
        super()._save_checkpoint(trainer, tmp)  # every rank has written its part when this returns (a barrier)
        if trainer.is_global_zero:
            replace(tmp, filepath)
        self._last_checkpoint_saved = filepath


def replace(src: str | Path, dst: str | Path) -> None:
    """Move ``src`` onto ``dst``: atomic for a file (a reader sees the old file or the new one, never half).

    A DeepSpeed checkpoint is a folder, which ``os.replace`` cannot move onto a non-empty one: the
    old folder is moved aside first, so a kill in between leaves ``dst.old`` and ``src`` complete.
    """
    src, dst = Path(src), Path(dst)
    if src.is_dir() and dst.exists():
        old = dst.with_name(dst.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)
