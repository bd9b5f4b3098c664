"""What every llmner LightningModule shares: checkpoints, tags, evaluation records -> sentence tags ->
entity metrics, and the optimizer with its warm-up/decay schedule (``llmner.schedule``: over the steps or the time
budget, whichever ends first).

A head's module (``TaggerModule``, ``GenerativeModule``) adds only its training step, what an
evaluation step records (``_record``) and how records become word tags (``assemble``).

Evaluation records are plain Python tuples ``(sentence, offset, payload)``, keyed by the sentence's
index in its split and the first word they cover. At the end of an epoch they are gathered from
every process (``all_gather_object``), de-duplicated by key (a distributed sampler repeats items to
even out the shards), assembled into one tag sequence per sentence and scored once: every process
then holds the same predictions and metrics, whatever the number of processes.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy, Strategy
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

from llmner.checkpoint import FORMAT
from llmner.errors import ConfigError
from llmner.metrics import entity_scores, group_scores
from llmner.schedule import BudgetSchedule, budget_scheduler

log = logging.getLogger(__name__)


Record = tuple[int, int, Any]  # (sentence index, first word, what the head predicted there)

# FSDP and activation checkpointing wrap submodules in place; state dicts keep the original names.
WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.")


def plain_name(name: str) -> str:
    """A parameter's name without the wrappers of distributed strategies (as in its state dict)."""
    for prefix in WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name


def shards_weights(strategy: Strategy) -> bool:
    """Whether ``strategy`` splits the weights over its processes (FSDP, DeepSpeed ZeRO-3): a rank then
    holds whole weights only inside a wrapped module's forward, and every rank must run the same passes."""
    return isinstance(strategy, FSDPStrategy) or (isinstance(strategy, DeepSpeedStrategy) and strategy.zero_stage_3)


def offloads_optimizer(strategy: Strategy | None) -> bool:
    """Whether a DeepSpeed strategy keeps the optimizer in CPU memory (``offload_optimizer=true``)."""
    config = getattr(strategy, "config", None) if isinstance(strategy, DeepSpeedStrategy) else None
    offload = ((config or {}).get("zero_optimization") or {}).get("offload_optimizer") or {}
    return offload.get("device", "none") != "none"


def cpu_adam(factory: Callable) -> Callable:
    """The same optimizer as DeepSpeed's CPU Adam, which ZeRO-Offload requires (it refuses torch's AdamW).

    Raises:
        ConfigError: an optimizer other than Adam or AdamW, which DeepSpeedCPUAdam cannot stand for.
    """
    from deepspeed.ops.adam import DeepSpeedCPUAdam

    func = getattr(factory, "func", factory)
    if func not in (torch.optim.AdamW, torch.optim.Adam):
        raise ConfigError(f"trainer.strategy.offload_optimizer=true runs DeepSpeed's CPU Adam; model.optimizer is "
                          f"{getattr(func, '__name__', func)}: use torch.optim.AdamW or Adam, or offload_optimizer=false")
    kwargs = {k: v for k, v in getattr(factory, "keywords", {}).items() if k in ("lr", "betas", "eps", "weight_decay", "amsgrad")}
    return partial(DeepSpeedCPUAdam, adamw_mode=func is torch.optim.AdamW, **kwargs)


class LlmnerModule(L.LightningModule):
    """Base of the tagger and generative modules.

    Args:
        backbone: ``llmner.backbone.Backbone``.
        head: the head (``LinearHead``, ``CRFHead``, ``JsonDecoder``); its ``tags`` are the model's.
        encoder: turns sentences and raw text into this model's inputs (``WindowEncoder``,
            ``ChatEncoder``); built by the module, stored in the checkpoint config.
        optimizer: a partial optimizer taking parameter groups (e.g. ``torch.optim.AdamW``).
        run_config: the resolved run configuration, stored in checkpoints to rebuild the model.
    """

    #: whether the backbone must keep its LM head (``Backbone(causal_lm=...)``)
    needs_lm_head = False
    #: the head classes this model takes, checked in ``build_head``
    heads: tuple[type, ...] = ()

    def __init__(self, backbone: nn.Module, head: Any, encoder: Any, optimizer: Callable, run_config: dict | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.encoder = encoder
        self.optimizer_factory = optimizer
        self.run_config = run_config or {}
        # Checkpoints hold only trained weights; the frozen backbone comes from its source.
        self.strict_loading = False
        self._records: list[Record] = []
        self.predictions: dict[str, dict[int, list[str]]] = {}  # split -> sentence -> IOB2 tags
        self.gold: dict[str, dict[int, list[str]]] = {}
        self.run_metrics: dict[str, float] = {}  # figures of the run besides the logged ones (``metrics.json``)

    @property
    def tags(self) -> list[str]:
        return self.head.tags

    @staticmethod
    def configure(model_cfg, datamodule) -> None:
        """Finish the model config from the data before the model is built (e.g. few-shot examples)."""

    @classmethod
    def build_head(cls, head: Callable, backbone: nn.Module, tags: list[str], model_cfg=None) -> Any:
        """Check that this model takes the head (``heads``), then finish the partial head config
        with what the backbone and data tell (``finish_head``).

        Raises:
            ConfigError: a head this model does not take (``head=generative`` with ``model=tagger``).
        """
        head_cls = getattr(head, "func", head)
        if not (isinstance(head_cls, type) and issubclass(head_cls, cls.heads)):
            taken = " or ".join(h.__name__ for h in cls.heads)
            raise ConfigError(f"{cls.__name__} takes a {taken} head, got a {getattr(head_cls, '__name__', head_cls)} "
                              "(model=tagger: head=linear or head=crf; model=generative: head=generative)")
        return cls.finish_head(head, backbone, tags, model_cfg)

    @staticmethod
    def finish_head(head: Callable, backbone: nn.Module, tags: list[str], model_cfg=None) -> Any:
        """Build the partial head with the hidden size or tokenizer it needs, and the tags."""
        raise NotImplementedError

    # --- checkpoints: what was trained, and the config to rebuild the rest ------------------
    def trainable_names(self) -> set[str]:
        """State-dict names of the parameters that train (also when a strategy wrapped the layers)."""
        return {plain_name(n) for n, p in self.named_parameters() if p.requires_grad}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        trainable = self.trainable_names()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}
        checkpoint["llmner"] = {"config": self.run_config, "tags": self.tags, "format": FORMAT}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get("llmner", {})
        if saved.get("tags") and saved["tags"] != self.tags:
            raise ValueError(f"checkpoint tags {saved['tags']} differ from the model's {self.tags}")
        if "state_dict" not in checkpoint:  # DeepSpeed loads the weights itself and passes only the rest
            return
        missing = sorted(self.trainable_names() - set(checkpoint["state_dict"]))
        if missing:
            raise ValueError(f"checkpoint lacks {len(missing)} trained weights, e.g. {missing[:3]}")
        # The checkpoint holds only what trained; loading it non-strictly leaves the rest as built.
        # torch's int8 dynamic linear layers (backbone.cache_int8) refuse that: their loader reads
        # their scale and packed weights unconditionally, in the layout the state dict's version
        # metadata names. They are frozen: hand them their own state, with its metadata.
        quantized = [f"{n}." for n, m in self.named_modules() if isinstance(m, DynamicQuantizedLinear)]
        if quantized:
            own = self.state_dict()
            merged = OrderedDict((k, v) for k, v in own.items() if k.startswith(tuple(quantized)))
            merged.update(checkpoint["state_dict"])
            merged._metadata = own._metadata  # type: ignore[attr-defined]
            checkpoint["state_dict"] = merged

    # --- evaluation -------------------------------------------------------------------------
    @property
    def split(self) -> str:
        """``test`` inside ``trainer.test``, else ``val``."""
        return "test" if self._trainer is not None and self.trainer.testing else "val"

    def log(self, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        """``LightningModule.log``, with evaluation values (``val/loss``) averaged over every process.

        A value logged in an evaluation step is a mean over this process's batches; ``sync_dist``
        makes it the mean over all of them (weighted by ``batch_size``). The epoch-end metrics are
        computed from the gathered records, equal on every process, and pass ``sync_dist=False``.
        """
        if name.startswith(("val/", "test/")):
            kwargs.setdefault("sync_dist", True)
        super().log(name, value, *args, **kwargs)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._records += self._record(batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._records += self._record(batch)

    def _record(self, batch: dict) -> list[Record]:
        """Log the split's loss and return what the head predicted for each item of ``batch``."""
        raise NotImplementedError

    def assemble(self, split: str, records: list[Record]) -> tuple[dict[int, list[str]], dict[int, list[str]], dict[str, float]]:
        """Records (one per key, in key order) -> (predicted tags, gold tags) per sentence, and extra metrics."""
        raise NotImplementedError

    def _gather(self, records: list[Record]) -> list[Record]:
        """Every process's records, one per key, sorted by key."""
        if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
            shards: list[list[Record] | None] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(shards, records)
            records = [r for shard in shards for r in shard or []]
        unique = {(r[0], r[1]): r for r in reversed(records)}  # the first of duplicates wins
        return [unique[k] for k in sorted(unique)]

    def _eval_epoch_end(self, split: str) -> None:
        records, self._records = self._gather(self._records), []
        if not records:
            return
        pred, gold, extra = self.assemble(split, records)
        self.predictions[split], self.gold[split] = pred, gold
        order = sorted(pred)
        metrics = entity_scores([gold[s] for s in order], [pred[s] for s in order], split) | extra
        groups = getattr(self.trainer.datamodule, "groups", None)  # several corpora (data=mix): also each one's
        if groups is not None:
            metrics |= group_scores(gold, pred, groups(split), split)
        f1 = metrics.pop(f"{split}/f1")
        self.log_dict(metrics, sync_dist=False)  # already global: computed from every process's records
        self.log(f"{split}/f1", f1, prog_bar=True, sync_dist=False)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    # --- optimisation ---------------------------------------------------------------------
    def param_groups(self) -> list[dict]:
        """The optimizer's parameter groups (each with ``params``, ``lr`` and a ``name``)."""
        raise NotImplementedError

    def warmup_steps(self, total: int) -> int:
        raise NotImplementedError

    def configure_gradient_clipping(self, optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """Lightning's clipping (``trainer.gradient_clip_val``), and under FSDP clipping by norm as FSDP requires.

        Each FSDP process holds a shard of every gradient, so the norm must be computed over all of
        them; the root FSDP module does that (``clip_grad_norm_``), which Lightning leaves to the model.
        """
        if gradient_clip_val and gradient_clip_algorithm in (None, "norm") and isinstance(self.trainer.strategy, FSDPStrategy):
            self.trainer.strategy.model.clip_grad_norm_(gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        for config in self.trainer.lr_scheduler_configs:  # a time budget's schedule starts with the first batch
            for fn in getattr(config.scheduler, "lr_lambdas", []):
                if isinstance(fn, BudgetSchedule):
                    fn.start()

    def configure_optimizers(self):
        groups = [g for g in self.param_groups() if g["params"]]
        if not groups:
            raise ValueError("nothing to train: no parameter requires a gradient (backbone.lora: true?)")
        factory = self.optimizer_factory
        if offloads_optimizer(self.trainer.strategy):
            factory = cpu_adam(factory)
        optimizer = factory(groups)
        total = self.trainer.estimated_stepping_batches  # min of max_steps and max_epochs' steps; inf: neither
        timer = next((cb for cb in self.trainer.callbacks if isinstance(cb, Timer)), None)
        # the warm-up share of the budget; with no step count, as it would be for 1,000 steps
        span = int(total) if math.isfinite(total) and total > 0 else 1000
        scheduler = budget_scheduler(optimizer, total, self.warmup_steps(span) / span, timer)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
