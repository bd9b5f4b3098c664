"""The LightningModule of the generative head: the LLM writes the entities as JSON.

Training: next-token loss on the answer tokens only (``llmner.data.chat.encode_chat`` masks the
system, user and report tokens with -100). Evaluation: greedy decoding, constrained so that every
answer parses and fits the schema (``llmner.heads.generative``); the values are mapped back onto
the words of the text, so ``predictions``/``gold`` hold IOB2 tags as for the tag heads and the
seqeval ``f1`` is comparable; the field-level scores (``field_f1``) judge the JSON itself.
"""

from __future__ import annotations

import logging
import math
from typing import Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from llmner.data.chat import (
    ChatExample,
    ChatFormat,
    encode_chat,
    render,
    sentence_to_example,
    values_to_tags,
    word_offsets,
)
from llmner.heads.generative import JsonDecoder, parse_answer
from llmner.metrics import entity_scores, field_scores
from llmner.module import TrainedWeightsCheckpoint, warmup_then_decay

log = logging.getLogger(__name__)


class GenerativeModule(TrainedWeightsCheckpoint, L.LightningModule):
    """Fine-tunes a causal LM (with LoRA) to answer NER questions in JSON, and scores its answers.

    Args:
        backbone: ``llmner.backbone.Backbone`` built with ``causal_lm=True`` (``.model``: the peft
            model with its LM head; ``.tokenizer`` with a chat template).
        head: the ``JsonDecoder`` (decoding settings; its ``tags`` are the model's tag set).
        optimizer: a partial optimizer taking parameters (e.g. ``torch.optim.AdamW``).
        prompt: the ``ChatFormat`` (style, types, integer types), or its keyword arguments.
        lr: learning rate of the LoRA adapters.
        warmup_steps: linear warm-up steps; linear decay to 0 after them.
        max_length: training conversations longer than this many tokens are cut (and counted).
        run_config: the resolved run configuration, stored in checkpoints to rebuild the model.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: JsonDecoder,
        optimizer: Callable,
        prompt: ChatFormat | dict | None = None,
        lr: float = 2e-4,
        warmup_steps: int = 10,
        max_length: int = 4096,
        run_config: dict | None = None,
    ) -> None:
        super().__init__()
        if not getattr(backbone, "causal_lm", False):
            raise ValueError("the generative head needs a causal-LM backbone (backbone.causal_lm: true)")
        self.backbone = backbone
        self.head = head
        self.optimizer_factory = optimizer
        self.prompt = prompt if isinstance(prompt, ChatFormat) else ChatFormat(**(prompt or {}))
        self.lr = lr
        self.warmup_steps = warmup_steps
        self.max_length = max_length
        self.run_config = run_config or {}
        self.strict_loading = False
        self.keys = self.prompt.keys(self.tags)
        unknown = set(self.prompt.integer_types) - set(self.keys)
        if unknown:
            raise ValueError(f"integer_types {sorted(unknown)} are not among the answer keys {self.keys}")
        self._outputs: list[dict] = []
        self.predictions: dict[str, dict[int, list[str]]] = {}
        self.gold: dict[str, dict[int, list[str]]] = {}
        self.answers: dict[str, dict[int, dict[str, list]]] = {}  # the decoded JSON per sentence

    @property
    def tags(self) -> list[str]:
        return self.head.tags

    @property
    def tokenizer(self):
        return self.backbone.tokenizer

    @property
    def eos_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else self.eos_id

    # --- training: answer-only next-token loss -------------------------------------------
    def encode(self, examples: list[ChatExample]) -> dict[str, torch.Tensor]:
        """Padded (B, T) ``input_ids``, ``attention_mask`` and ``labels`` (-100 off the answers)."""
        rows = []
        for ex in examples:
            messages, targets = self.prompt.conversation(ex.text, ex.answers, self.keys)
            ids, labels = encode_chat(self.tokenizer, messages, targets)
            if len(ids) > self.max_length:
                log.warning("a conversation of %d tokens is cut to max_length=%d", len(ids), self.max_length)
                ids, labels = ids[: self.max_length], labels[: self.max_length]
            rows.append((ids, labels))
        B, T = len(rows), max(len(r[0]) for r in rows)
        input_ids = torch.full((B, T), self.pad_id, dtype=torch.long)
        labels = torch.full((B, T), -100, dtype=torch.long)
        attention_mask = torch.zeros((B, T), dtype=torch.long)
        for b, (ids, lab) in enumerate(rows):
            input_ids[b, : len(ids)] = torch.tensor(ids)
            labels[b, : len(ids)] = torch.tensor(lab)
            attention_mask[b, : len(ids)] = 1
        return {k: v.to(self.device) for k, v in
                {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}.items()}

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Mean cross-entropy and accuracy over answer tokens, and their count."""
        logits = self.backbone.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (B, T, V)
        logits, target = logits[:, :-1], batch["labels"][:, 1:]  # position t predicts token t+1
        mask = target != -100  # (B, T-1)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), target.reshape(-1), ignore_index=-100)
        accuracy = (logits.argmax(-1)[mask] == target[mask]).float().mean()
        return loss, accuracy, int(mask.sum())

    def training_step(self, examples: list[ChatExample], batch_idx: int) -> torch.Tensor:
        loss, accuracy, n = self.loss(self.encode(examples))
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log("train/answer_accuracy", accuracy, prog_bar=True, batch_size=n)
        return loss

    # --- decoding --------------------------------------------------------------------------
    @torch.no_grad()
    def _generate(self, prompts: list[str], keys: list[str], texts: list[str], constrained: bool) -> list[str]:
        """Greedy answers to rendered prompts (left-padded into one batch)."""
        encoded = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        B, T = len(encoded), max(len(e) for e in encoded)
        limit = getattr(self.backbone.config, "max_position_embeddings", None)
        if limit and T + self.head.max_new_tokens > limit:  # never truncated: RoPE models run on, degraded
            log.warning("a prompt of %d tokens + %d new tokens exceeds the backbone's %d positions; "
                        "answers may degrade (nothing is truncated)", T, self.head.max_new_tokens, limit)
        input_ids = torch.full((B, T), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((B, T), dtype=torch.long)
        for b, e in enumerate(encoded):  # left padding: every row's answer starts at column T
            input_ids[b, T - len(e) :] = torch.tensor(e)
            attention_mask[b, T - len(e) :] = 1
        kwargs = dict(max_new_tokens=self.head.max_new_tokens, do_sample=False, eos_token_id=self.eos_id,
                      pad_token_id=self.pad_id)
        if constrained:
            processor = self.head.processor(keys, set(self.prompt.integer_types), texts, T, self.eos_id)
            kwargs["logits_processor"] = [processor]
        out = self.backbone.model.generate(
            input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device), **kwargs
        )[:, T:].tolist()  # (B, new)
        if constrained:  # the exact strings the grammar accepted
            return [self.head.text_of(row, self.eos_id) for row in out]
        return [self.tokenizer.decode(row, skip_special_tokens=True) for row in out]

    def answer(self, texts: list[str], constrained: bool = True, also_free: bool = False) -> dict[str, list]:
        """Ask every question of the prompt format about each text.

        In the per-type style each turn sees the model's earlier (decoded) answers. With
        ``also_free``, every turn is also decoded without the constraint from the same context
        (that answer is scored, never fed back), to measure how often it would not parse.

        Returns:
            ``{"answers": per text {key: [values]} (every key), "parsed": per text, per turn
            (is a JSON object, fits the schema)}``, and ``free_answers``/``free_parsed`` likewise.
        """
        was_training = self.training
        self.eval()
        conversations = [self.prompt.opening(t) for t in texts]
        runs = {"": constrained} | ({"free_": False} if also_free else {})
        out: dict[str, list] = {}
        for name in runs:
            out[f"{name}answers"] = [{k: [] for k in self.keys} for _ in texts]
            out[f"{name}parsed"] = [[] for _ in texts]
        integer = set(self.prompt.integer_types)
        for question, qkeys in self.prompt.questions(self.keys):
            for c in conversations:
                c.append({"role": "user", "content": question})
            prompts = [render(self.tokenizer, c, add_generation_prompt=True) for c in conversations]
            for name, use_constraint in runs.items():
                raws = self._generate(prompts, qkeys, texts, use_constraint)
                for i, raw in enumerate(raws):
                    obj, fits = parse_answer(raw, qkeys, integer)
                    out[f"{name}parsed"][i].append((obj is not None, fits))
                    for k in qkeys:
                        out[f"{name}answers"][i][k] = list(dict.fromkeys((obj or {}).get(k, [])))
                    if not name:
                        conversations[i].append({"role": "assistant", "content": raw})
        self.train(was_training)
        return out

    def predict(self, texts: list[str]) -> list[dict[str, list]]:
        """Entities of each text as ``{type: [values]}`` (every type of the schema), constrained greedy."""
        if not texts:
            return []
        return self.answer(list(texts), constrained=self.head.constrained)["answers"]

    # --- evaluation ---------------------------------------------------------------------------
    def _eval_step(self, examples: list[ChatExample]) -> None:
        split = "test" if self._trainer is not None and self.trainer.testing else "val"
        loss, accuracy, n = self.loss(self.encode(examples))
        self.log(f"{split}/loss", loss, batch_size=n)
        self.log(f"{split}/answer_accuracy", accuracy, batch_size=n)
        texts = [e.text for e in examples]
        out = self.answer(texts, self.head.constrained, also_free=split == "test" and self.head.check_unconstrained)
        for i, ex in enumerate(examples):
            self._outputs.append({"example": ex} | {k: v[i] for k, v in out.items()})

    def validation_step(self, examples: list[ChatExample], batch_idx: int) -> None:
        self._eval_step(examples)

    def test_step(self, examples: list[ChatExample], batch_idx: int) -> None:
        self._eval_step(examples)

    def _eval_epoch_end(self, split: str) -> None:
        rows = sorted(self._outputs, key=lambda r: r["example"].index)
        self._outputs = []
        if not rows:
            return
        keys = self.keys
        pred = {r["example"].index: values_to_tags(r["example"].text, r["example"].offsets, r["answers"], keys) for r in rows}
        gold = {r["example"].index: r["example"].tags for r in rows}
        self.predictions[split], self.gold[split] = pred, gold
        self.answers[split] = {r["example"].index: r["answers"] for r in rows}
        order = sorted(pred)
        metrics = entity_scores([gold[s] for s in order], [pred[s] for s in order], split)
        gold_answers = [r["example"].answers for r in rows]
        metrics |= field_scores(gold_answers, [r["answers"] for r in rows], split, keys)
        turns = [p for r in rows for p in r["parsed"]]
        metrics[f"{split}/parse_rate"] = sum(a for a, _ in turns) / len(turns)
        metrics[f"{split}/schema_rate"] = sum(b for _, b in turns) / len(turns)
        if "free_parsed" in rows[0]:
            free = [p for r in rows for p in r["free_parsed"]]
            metrics[f"{split}/unconstrained_parse_rate"] = sum(a for a, _ in free) / len(free)
            metrics[f"{split}/unconstrained_schema_rate"] = sum(b for _, b in free) / len(free)
            metrics[f"{split}/unconstrained_field_f1"] = field_scores(
                gold_answers, [r["free_answers"] for r in rows], split, keys)[f"{split}/field_f1"]
        f1 = metrics.pop(f"{split}/f1")
        self.log_dict(metrics)
        self.log(f"{split}/f1", f1, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    # --- optimisation ---------------------------------------------------------------------
    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            raise ValueError("nothing to train: the backbone has no trainable adapter (backbone.lora: true?)")
        optimizer = self.optimizer_factory([{"params": params, "lr": self.lr, "name": "adapter"}])
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            return optimizer
        return warmup_then_decay(optimizer, total, min(self.warmup_steps, int(total)))  # the recipe's schedule


__all__ = ["GenerativeModule", "sentence_to_example", "word_offsets"]
