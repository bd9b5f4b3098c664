"""The LightningModule of the tag heads: backbone -> word features -> head -> loss / tags."""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from typing import Callable

import lightning as L
import torch
from torch import nn

from llmner.losses import CompoundLoss
from llmner.metrics import entity_scores

log = logging.getLogger(__name__)


def warmup_then_decay(optimizer: torch.optim.Optimizer, total: int, warmup: int) -> dict:
    """Lightning's optimizer config with a per-step linear warm-up over ``warmup`` steps, then linear decay to 0."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class TrainedWeightsCheckpoint:
    """Checkpoint hooks shared by llmner's LightningModules (which define ``tags`` and ``run_config``):
    a checkpoint keeps what was trained (adapters, head, CRF) plus the config to rebuild the rest."""

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        trainable = {n for n, p in self.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}
        checkpoint["llmner"] = {"config": self.run_config, "tags": self.tags}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get("llmner", {})
        if saved.get("tags") and saved["tags"] != self.tags:
            raise ValueError(f"checkpoint tags {saved['tags']} differ from the model's {self.tags}")
        missing = [n for n, p in self.named_parameters() if p.requires_grad and n not in checkpoint["state_dict"]]
        if missing:
            raise ValueError(f"checkpoint lacks {len(missing)} trained weights, e.g. {missing[:3]}")


class TaggerModule(TrainedWeightsCheckpoint, L.LightningModule):
    """Trains and evaluates a word tagger on top of a (LoRA-adapted) backbone.

    Args:
        backbone: ``llmner.backbone.Backbone`` (ids -> hidden states) with a ``tokenizer``.
        head: ``LinearHead`` or ``CRFHead`` (word features -> emissions -> tag ids).
        loss: the compound loss.
        optimizer: a partial optimizer taking parameter groups (e.g. ``torch.optim.AdamW``).
        lr_backbone: learning rate of the backbone's trainable weights (LoRA adapters).
        lr_head: learning rate of the head and CRF, which start from scratch.
        warmup_ratio: fraction of the steps with a linear warm-up; linear decay to 0 after it.
        subword: which subword of a word feeds the head: ``first`` (the classic choice) or
            ``last`` (for decoder LMs the last subword is the first position that has seen the
            whole word).
        run_config: the resolved run configuration, stored in checkpoints to rebuild the model.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        loss: CompoundLoss,
        optimizer: Callable,
        lr_backbone: float = 5e-5,
        lr_head: float = 1e-3,
        warmup_ratio: float = 0.1,
        subword: str = "first",
        run_config: dict | None = None,
    ) -> None:
        super().__init__()
        if subword not in ("first", "last"):
            raise ValueError(f"subword must be 'first' or 'last', got {subword!r}")
        self.backbone = backbone
        self.head = head
        self.loss = loss
        self.optimizer_factory = optimizer
        self.lr_backbone = lr_backbone
        self.lr_head = lr_head
        self.warmup_ratio = warmup_ratio
        self.subword = subword
        self.run_config = run_config or {}
        # Checkpoints hold only trained weights; the frozen backbone comes from its source.
        self.strict_loading = False
        self._outputs: dict[int, list] = defaultdict(list)
        self.predictions: dict[str, dict[int, list[str]]] = {}
        self.gold: dict[str, dict[int, list[str]]] = {}

    @property
    def tags(self) -> list[str]:
        return self.head.tags

    # --- forward ------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Emissions (B, W, K) for the words of a batch from ``TaggingDataModule``."""
        hidden = self.backbone(batch["input_ids"], batch["attention_mask"])  # (B, T, H)
        index = batch[self.subword]  # (B, W)
        words = hidden.gather(1, index.unsqueeze(-1).expand(-1, -1, hidden.size(-1)))  # (B, W, H)
        return self.head(words)  # (B, W, K)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        terms = self.loss(self(batch), batch["labels"], batch["word_mask"], self.head)
        n = int(batch["word_mask"].sum())
        self.log("train/loss", terms["loss"], prog_bar=True, batch_size=n)
        self.log_dict({f"train/{k}": v for k, v in terms.items() if k != "loss"}, batch_size=n)
        return terms["loss"]

    # --- evaluation: windows -> whole sentences -> entity metrics ----------------------------
    def _eval_step(self, batch: dict[str, torch.Tensor]) -> None:
        emissions = self(batch)
        mask = batch["word_mask"]
        loss = self.loss(emissions, batch["labels"], mask, self.head)["loss"]
        prefix = "test" if self._trainer is not None and self.trainer.testing else "val"
        self.log(f"{prefix}/loss", loss, batch_size=int(mask.sum()))
        pred = self.head.decode(emissions, mask)
        for row, (s, o) in enumerate(zip(batch["sentence"].tolist(), batch["offset"].tolist())):
            gold = batch["labels"][row][mask[row]].tolist()
            self._outputs[s].append((o, pred[row], gold))

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch)

    def _eval_epoch_end(self, split: str) -> None:
        pred, gold = {}, {}
        for s, parts in self._outputs.items():
            parts.sort(key=lambda p: p[0])  # windows in word order
            pred[s] = [self.tags[t] for _, p, _ in parts for t in p]
            gold[s] = [self.tags[t] for _, _, g in parts for t in g]
        self._outputs.clear()
        self.predictions[split], self.gold[split] = pred, gold
        order = sorted(pred)
        metrics = entity_scores([gold[s] for s in order], [pred[s] for s in order], split)
        f1 = metrics.pop(f"{split}/f1")
        self.log_dict(metrics)
        self.log(f"{split}/f1", f1, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    # --- prediction on raw text ------------------------------------------------------------
    @torch.no_grad()
    def predict(self, texts: list[str], batch_size: int = 16) -> list[dict[str, list[str]]]:
        """Entities of each text as ``{type: [text slices]}`` (every type of the tag set, values once each).

        Words come from a regex tokenizer that keeps character offsets (``llmner.data.chat.word_offsets``);
        long texts are split into overlapping windows exactly as in training (the run's
        ``data.max_length`` and ``data.context_words``), so every word gets a prediction.
        """
        from llmner.data.alignment import encode_sentence, encode_words, special_affixes
        from llmner.data.chat import spans_to_answers, word_offsets
        from llmner.data.datamodule import collate

        data = self.run_config.get("data", {})
        max_length, context = data.get("max_length") or 256, data.get("context_words") or 16
        tokenizer = self.backbone.tokenizer
        prefix, suffix = special_affixes(tokenizer)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        keys = sorted({t[2:] for t in self.tags if t != "O"})
        was_training = self.training
        self.eval()
        out = []
        for text in texts:
            offsets = word_offsets(text)
            words = [text[s:e] for s, e in offsets]
            tags: list[str] = []
            if words:
                windows = encode_sentence(encode_words(tokenizer, words), [0] * len(words), 0, prefix, suffix, max_length, context)
                parts = []
                for i in range(0, len(windows), batch_size):
                    chunk = windows[i : i + batch_size]
                    batch = {k: v.to(self.device) for k, v in collate(chunk, pad_id).items()}
                    pred = self.head.decode(self(batch), batch["word_mask"])
                    parts += [(w.offset, p) for w, p in zip(chunk, pred)]
                tags = [self.tags[t] for _, p in sorted(parts, key=lambda x: x[0]) for t in p]
            out.append(spans_to_answers(text, offsets, tags, keys))
        self.train(was_training)
        return out

    # --- optimisation ---------------------------------------------------------------------
    def configure_optimizers(self):
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        head = [p for p in self.head.parameters() if p.requires_grad]
        groups = [{"params": head, "lr": self.lr_head, "name": "head"}]
        if backbone:
            groups.insert(0, {"params": backbone, "lr": self.lr_backbone, "name": "backbone"})
        optimizer = self.optimizer_factory(groups)
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            return optimizer
        return warmup_then_decay(optimizer, total, int(self.warmup_ratio * total))
