"""The LightningModule of the generative head: the LLM writes the entities as JSON.

Training: next-token loss on the answer tokens only (``llmner.data.chat.ChatEncoder`` tokenizes
each conversation once in the datamodule and masks everything but the answers with -100).
Evaluation: greedy decoding, constrained so that every answer parses and fits the schema
(``llmner.decoding``); the values are mapped back onto the words of the text
(``llmner.data.text.values_to_tags``, the rule that places gold values too), so ``predictions`` and
``gold`` hold IOB2 tags as for the tag heads and the seqeval ``f1`` is comparable; the field-level
scores (``field_f1``) judge the JSON itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from llmner.backbone.inference import decoding_weights
from llmner.backbone.util import evaluating
from llmner.data.chat import ChatEncoder, ChatExample, ChatFormat, few_shot_examples
from llmner.data.text import dedup, values_to_entities, values_to_tags
from llmner.decoding import JsonDecoder, parse_answer
from llmner.metrics import field_scores
from llmner.modules.base import LlmnerModule, Record, shards_weights

log = logging.getLogger(__name__)


class GenerativeModule(LlmnerModule):
    """Fine-tunes a causal LM (with LoRA) to answer NER questions in JSON, and scores its answers.

    Args:
        backbone: ``llmner.backbone.Backbone`` built with ``causal_lm=True`` (``.model``: the peft
            model with its LM head; ``.tokenizer`` with a chat template).
        head: the ``JsonDecoder`` (decoding settings; its ``tags`` are the model's tag set).
        encoder: a partial ``ChatEncoder``, finished here with the tokenizer and ``prompt``.
        optimizer: a partial optimizer taking parameter groups (e.g. ``torch.optim.AdamW``).
        prompt: the ``ChatFormat`` (style, types, integer types), or its keyword arguments.
        lr: learning rate of the LoRA adapters.
        warmup_steps: linear warm-up steps; linear decay to 0 after them.
        run_config: the resolved run configuration, stored in checkpoints to rebuild the model.
    """

    needs_lm_head = True
    heads = (JsonDecoder,)

    def __init__(
        self,
        backbone: nn.Module,
        head: JsonDecoder,
        encoder: Callable[..., ChatEncoder],
        optimizer: Callable,
        prompt: ChatFormat | dict | None = None,
        lr: float = 2e-4,
        warmup_steps: int = 10,
        run_config: dict | None = None,
    ) -> None:
        if not getattr(backbone, "causal_lm", False):
            raise ValueError("the generative head needs a causal-LM backbone (backbone.causal_lm: true)")
        prompt = prompt if isinstance(prompt, ChatFormat) else ChatFormat(**(prompt or {}))
        super().__init__(backbone, head, encoder(tokenizer=backbone.tokenizer, prompt=prompt), optimizer, run_config)
        self.prompt = prompt
        self.lr = lr
        self.warmup = warmup_steps
        self.keys = self.prompt.keys(self.tags)
        unknown = set(self.prompt.integer_types) - set(self.keys)
        if unknown:
            raise ValueError(f"integer_types {sorted(unknown)} are not among the answer keys {self.keys}")
        self.answers: dict[str, dict[int, dict[str, list]]] = {}  # split -> sentence -> the decoded JSON

    @staticmethod
    def configure(model_cfg, datamodule) -> None:
        """Choose the few-shot examples (``prompt.shots``) from the train split, once: a config
        that holds them already (a checkpoint's) keeps its own."""
        prompt = model_cfg.get("prompt") or {}
        k = int(prompt.get("shots") or 0)
        if k and not prompt.get("examples"):
            examples = few_shot_examples(datamodule.sentences["train"], k, int(prompt.get("shot_seed") or 0))
            if len(examples) < k:
                log.warning("model.prompt.shots=%d, but the train split has %d examples to show", k, len(examples))
            model_cfg.prompt.examples = examples
            model_cfg.prompt.shots = len(examples)

    @staticmethod
    def finish_head(head: Callable, backbone: nn.Module, tags: list[str], model_cfg=None) -> JsonDecoder:
        return head(tokenizer=backbone.tokenizer, tags=tags)

    @property
    def tokenizer(self):
        return self.backbone.tokenizer

    @property
    def eos_id(self) -> int:
        return self.tokenizer.eos_token_id

    # --- training: answer-only next-token loss -------------------------------------------
    def loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Mean cross-entropy and accuracy over answer tokens, and their count.

        Logits are computed only where some row's next token is an answer token
        (``logits_to_keep``): the prompt, most of each conversation, never reaches the LM head,
        whose (T, V) logits would otherwise be the largest tensors of the step (49k x 600 floats
        a conversation for SmolLM2).
        """
        labels = batch["labels"]  # (B, T)
        self.backbone.restore_hooks()  # selective recompute's hook, if a strategy removed it
        keep = (labels[:, 1:] != -100).any(0).nonzero().squeeze(-1)  # (P,) positions t whose token t+1 is an answer
        logits = self.backbone.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                     logits_to_keep=keep).logits  # (B, P, V)
        target = labels[:, keep + 1]  # (B, P)
        mask = target != -100  # (B, P)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), target.reshape(-1), ignore_index=-100)
        accuracy = (logits.argmax(-1)[mask] == target[mask]).float().mean()
        return loss, accuracy, int(mask.sum())

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, accuracy, n = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log("train/answer_accuracy", accuracy, prog_bar=True, batch_size=n)
        return loss

    # --- decoding --------------------------------------------------------------------------
    @torch.no_grad()
    def _generate(self, conversations: list[list[dict]], keys: list[str], texts: list[str], constrained: bool) -> list[str]:
        """Greedy answers to the next question of each conversation (left-padded into one batch)."""
        batch = {k: v.to(self.device) for k, v in self.encoder.prompts(conversations).items()}
        T = batch["input_ids"].shape[1]
        limit = getattr(self.backbone.config, "max_position_embeddings", None)
        if limit and T + self.head.max_new_tokens > limit:  # never truncated: RoPE models run on, degraded
            log.warning("a prompt of %d tokens + %d new tokens exceeds the backbone's %d positions; "
                        "answers may degrade (nothing is truncated)", T, self.head.max_new_tokens, limit)
        kwargs = dict(max_new_tokens=self.head.max_new_tokens, do_sample=False, eos_token_id=self.eos_id,
                      pad_token_id=self.encoder.pad_id, synced_gpus=self.synced_generation)
        if constrained:
            processor = self.head.processor(keys, set(self.prompt.integer_types), texts, T, self.eos_id)
            kwargs["logits_processor"] = [processor]
        out = self.backbone.model.generate(**batch, **kwargs)[:, T:].tolist()  # (B, new)
        if constrained:  # the exact strings the grammar accepted
            return [self.head.text_of(row, self.eos_id) for row in out]
        return [self.tokenizer.decode(row, skip_special_tokens=True) for row in out]

    def decoding_weights(self):
        """The weights to decode with (a context): adapters merged (``head.merge_adapters``), cast
        (``head.dtype``), restored exactly after; as they are under a strategy that shards them."""
        sharded = self._trainer is not None and shards_weights(self.trainer.strategy)
        dtype = getattr(torch, self.head.dtype) if getattr(self.head, "dtype", None) and not sharded else None
        return decoding_weights(self.backbone.model, merge=getattr(self.head, "merge_adapters", False) and not sharded,
                                dtype=dtype)

    @property
    def synced_generation(self) -> bool:
        """Whether every rank must run a decoding step until all are done (``generate(synced_gpus=True)``).

        Under FSDP or ZeRO-3 each step gathers the weights from every rank: a rank whose answers ended
        early and stopped would leave the others waiting. transformers infers this for FSDP only; it
        cannot see Lightning's DeepSpeed engine (``is_deepspeed_zero3_enabled`` reads its own config).
        """
        if self._trainer is None or not shards_weights(self.trainer.strategy):
            return False
        return self.trainer.world_size > 1

    def answer(self, texts: list[str], constrained: bool = True, also_free: bool = False) -> dict[str, list]:
        """Ask every question of the prompt format about each text.

        In the per-type style each turn sees the model's earlier (decoded) answers. With
        ``also_free``, every turn is also decoded without the constraint from the same context
        (that answer is scored, never fed back), to measure how often it would not parse.

        Returns:
            ``{"answers": per text {key: [values]} (every key), "parsed": per text, per turn
            (is a JSON object, fits the schema)}``, and ``free_answers``/``free_parsed`` likewise.
        """
        with evaluating(self), self.decoding_weights():
            conversations = [self.prompt.opening(t, self.keys) for t in texts]
            runs = {"": constrained} | ({"free_": False} if also_free else {})
            out: dict[str, list] = {}
            for name in runs:
                out[f"{name}answers"] = [{k: [] for k in self.keys} for _ in texts]
                out[f"{name}parsed"] = [[] for _ in texts]
            integer = set(self.prompt.integer_types)
            for question, qkeys in self.prompt.questions(self.keys):
                for c in conversations:
                    c.append({"role": "user", "content": question})
                for name, use_constraint in runs.items():
                    raws = self._generate(conversations, qkeys, texts, use_constraint)
                    for i, raw in enumerate(raws):
                        obj, fits = parse_answer(raw, qkeys, integer)
                        out[f"{name}parsed"][i].append((obj is not None, fits))
                        for k in qkeys:
                            out[f"{name}answers"][i][k] = dedup((obj or {}).get(k, []))
                        if not name:
                            conversations[i].append({"role": "assistant", "content": raw})
        return out

    def predict(self, texts: list[str], grouped: bool = False) -> list:
        """Entities of each text, constrained greedy: ``[{"type", "text", "start", "end", "score"}, ...]``
        in text order, each answer value at its first occurrence not yet taken (``locate_values``),
        ``score`` None (a value found nowhere in the text is logged and left out).

        Args:
            grouped: return the answers as decoded instead, ``{type: [values]}`` per text (every
                type of the schema; integer types as integers; values not in the text kept).
        """
        entities, answers = self.predict_both(texts)
        return answers if grouped else entities

    def predict_both(self, texts: list[str]) -> tuple[list[list[dict]], list[dict[str, list]]]:
        """Both views of ``predict``, from one decoding: the entities of each text, and its answers."""
        if not texts:
            return [], []
        answers = self.answer(list(texts), constrained=self.head.constrained)["answers"]
        entities = []
        for text, answer in zip(texts, answers):
            found, missing = values_to_entities(text, answer, self.keys)
            if missing:
                log.warning("values not found in the text, left out of its entities: %s",
                            ", ".join(f"{k}={v!r}" for k, v in missing))
            entities.append(found)
        return entities, answers

    # --- evaluation ---------------------------------------------------------------------------
    def _record(self, batch: dict) -> list[Record]:
        split = self.split
        loss, accuracy, n = self.loss(batch)
        self.log(f"{split}/loss", loss, batch_size=n)
        self.log(f"{split}/answer_accuracy", accuracy, batch_size=n)
        examples: list[ChatExample] = batch["examples"]
        out = self.answer([e.text for e in examples], self.head.constrained,
                          also_free=split == "test" and self.head.check_unconstrained)
        return [(e.index, 0, {"example": e} | {k: v[i] for k, v in out.items()}) for i, e in enumerate(examples)]

    def assemble(self, split: str, records: list[Record]):
        rows = [r[2] for r in records]
        keys = self.keys
        pred = {r["example"].index: values_to_tags(r["example"].text, r["example"].offsets, r["answers"], keys) for r in rows}
        gold = {r["example"].index: r["example"].tags for r in rows}
        self.answers[split] = {r["example"].index: r["answers"] for r in rows}
        gold_answers = [r["example"].answers for r in rows]
        metrics = field_scores(gold_answers, [r["answers"] for r in rows], split, keys)
        turns = [p for r in rows for p in r["parsed"]]
        metrics[f"{split}/parse_rate"] = sum(a for a, _ in turns) / len(turns)
        metrics[f"{split}/schema_rate"] = sum(b for _, b in turns) / len(turns)
        if "free_parsed" in rows[0]:
            free = [p for r in rows for p in r["free_parsed"]]
            metrics[f"{split}/unconstrained_parse_rate"] = sum(a for a, _ in free) / len(free)
            metrics[f"{split}/unconstrained_schema_rate"] = sum(b for _, b in free) / len(free)
            metrics[f"{split}/unconstrained_field_f1"] = field_scores(
                gold_answers, [r["free_answers"] for r in rows], split, keys)[f"{split}/field_f1"]
        return pred, gold, metrics

    # --- optimisation ---------------------------------------------------------------------
    def param_groups(self) -> list[dict]:
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": self.lr, "name": "adapter"}]

    def warmup_steps(self, total: int) -> int:
        return min(self.warmup, total)  # the recipe's schedule: a fixed number of warm-up steps
