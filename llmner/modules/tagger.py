"""The LightningModule of the tag heads: backbone -> word features -> head -> loss / tags."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch
from torch import nn

from llmner.backbone.util import evaluating
from llmner.data.alignment import WindowEncoder
from llmner.data.chat import sentence_to_example
from llmner.data.schema import Sentence
from llmner.data.spans import word_tags_to_spans
from llmner.data.text import group_entities
from llmner.errors import ConfigError
from llmner.heads import CRFHead, LinearHead
from llmner.heads.single import keep_best_entities, keep_best_tags, single_types
from llmner.heads.spans import predict_entities, score_windows, window_span_scores
from llmner.losses import CompoundLoss
from llmner.metrics import field_scores
from llmner.modules.base import LlmnerModule, Record, shards_weights

log = logging.getLogger(__name__)

SUBWORDS = ("first", "last", "mean", "first_last")


def pool_words(hidden: torch.Tensor, first: torch.Tensor, last: torch.Tensor, how: str) -> torch.Tensor:
    """Word features from subword states: (B, T, H), (B, W), (B, W) -> (B, W, H) or (B, W, 2H).

    ``first`` / ``last``: one subword's state; ``mean``: the average over the word's subwords;
    ``first_last``: first and last concatenated (Flair's ``first_last``).
    """
    def take(index: torch.Tensor) -> torch.Tensor:
        return hidden.gather(1, index.unsqueeze(-1).expand(-1, -1, hidden.size(-1)))  # (B, W, H)

    if how == "first":
        return take(first)
    if how == "last":
        return take(last)
    if how == "first_last":
        return torch.cat([take(first), take(last)], dim=-1)  # (B, W, 2H)
    # mean: a (B, W, T) averaging matrix; exact, unlike differences of a running sum next to
    # the large activations decoders keep at their first positions
    t = torch.arange(hidden.size(1), device=hidden.device)  # (T,)
    inside = (t >= first.unsqueeze(-1)) & (t <= last.unsqueeze(-1))  # (B, W, T)
    weights = inside.to(hidden.dtype) / inside.sum(-1, keepdim=True).clamp(min=1)
    return weights @ hidden  # (B, W, H)


def tag_value_scores(sentences: list[Sentence], pred: dict[int, list[str]], keys: list[str],
                     split: str) -> dict[str, float]:
    """``field_f1`` (and per type) of predicted tags read as values, on span-annotated sentences.

    Where every predicted sentence holds its text and gold spans (``meta["spans"]``: crime reports,
    generated or imported), each run of tagged words becomes the text from its first word's start to
    its last word's end, and these ``{type: [values]}`` are scored against the gold spans' values the
    way the generative head is scored (``sentence_to_example``, ``field_scores``): both heads compare
    on one figure, and a value counts once however many of its mentions the gold spans or the
    predictions label. The gold spans fall on word edges (``report_to_sentence`` splits words there),
    so the gold tags read back give every gold value that was not lost to an overlap. Values are not
    trimmed of punctuation (``spans_to_answers`` would cut the full stop a Crime_Summary value keeps).
    Empty for other data (CoNLL files carry no text to read values from).

    Args:
        sentences: the split's sentences; ``pred`` maps an index into them to its predicted tags.
    """
    order = sorted(i for i in pred if i < len(sentences))
    if not order or not all("spans" in (sentences[i].meta or {}) for i in order):
        return {}
    gold = [sentence_to_example(sentences[i], i).answers for i in order]
    answers = []
    for i in order:
        text, offsets = sentences[i].meta["text"], sentences[i].meta["offsets"]
        values: dict[str, list[str]] = {}
        for span in word_tags_to_spans(offsets, pred[i]):
            values.setdefault(span.label, []).append(text[span.start:span.end])
        answers.append(values)
    return field_scores(gold, answers, split, keys)


class TaggerModule(LlmnerModule):
    """Trains and evaluates a word tagger on top of a (LoRA-adapted) backbone.

    Args:
        backbone: ``llmner.backbone.Backbone`` (ids -> hidden states) with a ``tokenizer``.
        head: ``LinearHead`` or ``CRFHead`` (word features -> emissions -> tag ids).
        encoder: a partial ``WindowEncoder`` (window settings, word splitter), finished here with
            the backbone's tokenizer.
        loss: the compound loss.
        optimizer: a partial optimizer taking parameter groups (e.g. ``torch.optim.AdamW``).
        lr_backbone: learning rate of the backbone's trainable weights (LoRA adapters).
        lr_head: learning rate of the head and CRF, which start from scratch.
        warmup_ratio: fraction of the steps with a linear warm-up; linear decay to 0 after it.
        subword: how a word's subwords feed the head: ``first`` (the classic choice), ``last``
            (for decoder LMs the first position that has seen the whole word), ``mean`` or
            ``first_last`` (both concatenated: a head of twice the hidden size).
        single_types: types that hold one value per text (a report's date): of the spans a text gets of
            each, only the best-scored stays, in evaluation and prediction (``llmner.heads.single``). ``auto``
            (resolved by ``configure`` from the train split): the types at most 1% of the training texts
            hold twice. None: every span stays.
        run_config: the resolved run configuration, stored in checkpoints to rebuild the model.
    """

    heads = (LinearHead, CRFHead)

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        encoder: Callable[..., WindowEncoder],
        loss: CompoundLoss,
        optimizer: Callable,
        lr_backbone: float = 5e-5,
        lr_head: float = 1e-3,
        warmup_ratio: float = 0.1,
        subword: str = "first",
        single_types: list[str] | None = None,
        run_config: dict | None = None,
    ) -> None:
        if subword not in SUBWORDS:
            raise ValueError(f"model.subword must be one of {SUBWORDS}, got {subword!r}")
        if isinstance(single_types, str):
            raise ConfigError(f"model.single_types={single_types!r}: a list of entity types, or auto when training "
                              "(python -m llmner.train reads them from the train split)")
        windows = encoder(tokenizer=backbone.tokenizer)
        if windows.repeat > 1 and not getattr(backbone, "decoder", True):
            # an encoder's every position already sees the whole window: a second copy adds only cost
            log.info("model.encoder.repeat=%d applies to decoder backbones; this encoder reads each window once",
                     windows.repeat)
            windows.repeat = 1
        super().__init__(backbone, head, windows, optimizer, run_config)
        self.loss = loss
        self.lr_backbone = lr_backbone
        self.lr_head = lr_head
        self.warmup_ratio = warmup_ratio
        self.subword = subword
        self.use_single_types(single_types or [], "model.single_types")

    def use_single_types(self, types: list[str], key: str = "single_types") -> None:
        """Keep one span per text of ``types`` from now on (``[]``: every span); ``key`` names the setting in errors.

        Raises:
            ConfigError: a type the model's tag set does not have.
        """
        unknown = sorted(set(types) - set(self.keys))
        if unknown:
            raise ConfigError(f"{key}: {unknown} are not entity types of this model (it has {self.keys})")
        self.single_types = sorted(types)

    @staticmethod
    def configure(model_cfg, datamodule) -> None:
        """``model.single_types=auto`` -> the types of the train split that its texts hold once (``single_types``)."""
        if model_cfg.get("single_types") == "auto":
            model_cfg.single_types = single_types(datamodule.sentences.get("train", []))  # no train split: none
            log.info("model.single_types=auto: one span per text for %s", ", ".join(model_cfg.single_types) or "no type")

    @staticmethod
    def finish_head(head: Callable, backbone: nn.Module, tags: list[str], model_cfg=None) -> nn.Module:
        width = 2 if (model_cfg or {}).get("subword") == "first_last" else 1
        return head(hidden_size=width * backbone.hidden_size, tags=tags)

    # --- forward ------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Emissions (B, W, K) for the words of a batch from ``WindowEncoder.collate``."""
        hidden = self.backbone(batch["input_ids"], batch["attention_mask"])  # (B, T, H)
        words = pool_words(hidden, batch["first"], batch["last"], self.subword)  # (B, W, H or 2H)
        return self.head(words)  # (B, W, K)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        terms = self.loss(self(batch), batch["labels"], batch["word_mask"], self.head)
        n = int(batch["word_mask"].sum())
        self.log("train/loss", terms["loss"], prog_bar=True, batch_size=n)
        self.log_dict({f"train/{k}": v for k, v in terms.items() if k != "loss"}, batch_size=n)
        return terms["loss"]

    # --- the trunk cache, filled before training and before testing --------------------------
    def _fill_trunk(self, splits: tuple[str, ...], stage: str) -> None:
        """Compute the cached trunk for every window of ``splits`` in one pass (``backbone.cache``).

        Its time goes to ``metrics.json`` (``cache/<stage>_fill_seconds``); before training it lies
        inside ``train/seconds`` and a ``trainer.max_time`` budget, which the schedule starts after.
        """
        dm = self.trainer.datamodule
        if getattr(self.backbone, "trunk", None) is None or dm is None:
            return
        windows = [w.input_ids for split in splits for w in getattr(dm, "items", {}).get(split, [])]
        start = time.perf_counter()
        computed = self.backbone.fill(windows, desc=f"trunk cache ({'+'.join(splits)})")
        seconds = time.perf_counter() - start
        self.run_metrics |= {f"cache/{stage}_fill_seconds": seconds, f"cache/{stage}_windows": len(windows),
                             f"cache/{stage}_computed": computed}
        log.info("trunk cache: %d of %d windows of %s computed in %.1f s", computed, len(windows), "+".join(splits), seconds)

    def setup(self, stage: str) -> None:
        if getattr(self.backbone, "trunk", None) is not None and shards_weights(self.trainer.strategy):
            # the fill runs the trunk outside any forward (sharded weights), hits differ per rank (so would the
            # weight gathers), and the fingerprint would hash this rank's shard: one copy of the model per process only
            raise ConfigError("backbone.cache=true needs the whole model on every process: use trainer=ddp "
                              "(or one device), not FSDP or DeepSpeed ZeRO-3")

    def on_train_start(self) -> None:
        self._fill_trunk(("train", "validation"), "train")

    def on_test_start(self) -> None:
        self._fill_trunk(("test",), "test")

    # --- evaluation: windows -> whole sentences -------------------------------------------
    def _record(self, batch: dict[str, torch.Tensor]) -> list[Record]:
        emissions = self(batch)
        mask = batch["word_mask"]
        loss = self.loss(emissions, batch["labels"], mask, self.head)["loss"]
        self.log(f"{self.split}/loss", loss, batch_size=int(mask.sum()))
        gold = [row[m].tolist() for row, m in zip(batch["labels"], mask)]
        if self.single_types:  # what ranks a text's spans later: each span's score, by its first word in the window
            scored = score_windows(self.head, emissions, mask, batch["offset"].tolist())
            single = set(self.single_types)
            pred, scores = [w.tags for w in scored], [window_span_scores(w, self.tags, single) for w in scored]
        else:
            pred, scores = self.head.decode(emissions, mask), [None] * len(gold)
        return [(s, o, (p, g, sc)) for s, o, p, g, sc in
                zip(batch["sentence"].tolist(), batch["offset"].tolist(), pred, gold, scores)]

    def assemble(self, split: str, records: list[Record]):
        pred: dict[int, list[str]] = {}
        gold: dict[int, list[str]] = {}
        scores: dict[int, dict[int, float]] = {}
        for s, o, (p, g, sc) in records:  # sorted by (sentence, first word): windows in word order
            pred.setdefault(s, []).extend(self.tags[t] for t in p)
            gold.setdefault(s, []).extend(self.tags[t] for t in g)
            if sc:
                scores.setdefault(s, {}).update({o + k: v for k, v in sc.items()})
        if self.single_types:
            pred = {s: keep_best_tags(tags, scores.get(s, {}), self.single_types) for s, tags in pred.items()}
        return pred, gold, self.value_scores(split, pred)

    def value_scores(self, split: str, pred: dict[int, list[str]]) -> dict[str, float]:
        """``tag_value_scores`` of the split's sentences held by the trainer's datamodule (empty without one)."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        sentences = getattr(datamodule, "sentences", {}).get({"val": "validation"}.get(split, split)) if datamodule else None
        return tag_value_scores(sentences or [], pred, self.keys, split)

    # --- prediction on raw text ------------------------------------------------------------
    @property
    def keys(self) -> list[str]:
        """The entity types of the tag set, sorted (the keys of the grouped view)."""
        return sorted({t[2:] for t in self.tags if t != "O"})

    def predict(self, texts: list[str], batch_size: int = 32, grouped: bool = False) -> list:
        """Entities of each text: ``[{"type", "text", "start", "end", "score"}, ...]`` in text order,
        ``text[start:end] == entity["text"]`` (``llmner.heads.spans``).

        Texts are split into words as the training data was (the encoder's ``splitter``) and cut
        into windows exactly as in training; windows of all texts are batched together, longest
        first, and every word gets one prediction. ``score``: the CRF's marginal probability of the
        span, or the linear head's mean softmax probability of its words' tags.

        Args:
            grouped: return ``{type: [values]}`` per text instead (every type of the tag set, each
                value once, in text order; ``group_entities``).
        """
        entities, groups = self.predict_both(texts, batch_size)
        return groups if grouped else entities

    @torch.no_grad()
    def predict_both(self, texts: list[str], batch_size: int = 32) -> tuple[list[list[dict]], list[dict[str, list[str]]]]:
        """Both views of ``predict``: the entities of each text, and its grouped view."""
        with evaluating(self):
            entities = predict_entities(list(texts), self.encoder, self, self.head, batch_size, self.device)
        if self.single_types:
            entities = [keep_best_entities(e, self.single_types) for e in entities]
        return entities, [group_entities(e, self.keys) for e in entities]

    # --- optimisation ---------------------------------------------------------------------
    def param_groups(self) -> list[dict]:
        return [
            {"params": [p for p in self.backbone.parameters() if p.requires_grad], "lr": self.lr_backbone, "name": "backbone"},
            {"params": [p for p in self.head.parameters() if p.requires_grad], "lr": self.lr_head, "name": "head"},
        ]

    def warmup_steps(self, total: int) -> int:
        return int(self.warmup_ratio * total)
