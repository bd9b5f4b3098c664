"""The generative head's encoder: sentences as chat examples, prompts, answer-only loss masks.

A ``ChatExample`` is a sentence seen as text + answers:

- CoNLL-style sentences: the text is the words joined by single spaces, a value is the words of a
  span joined by spaces;
- crime reports (``meta["text"]``, ``meta["offsets"]``, ``meta["spans"]``): the report text, a
  value is the verbatim slice of a span (every annotated span, also those the BIO view had to drop
  because they overlap a longer one, as in ``report_to_json``).

The conversation is the crime-report format (``llmner.data.crime.views``): a system line, the text,
"I've read this text.", then either one question per type (``style="per_type"``, each answered by
``{"Type": [...]}``) or one question for all types (``style="single"``, answered by one JSON object
with every type). Only the answers (and the end-of-turn token after each) carry loss.

``ChatEncoder`` is the one path from sentences (training, evaluation) or raw text (prediction) to
the generative model's inputs: the chat template is rendered and tokenized once per example, in
the datamodule, never in a training step. Nothing here knows about models: a tokenizer's
``apply_chat_template`` and ``__call__`` only. The prompt text is defined here (``SYSTEM``,
``QUESTION``, ...); the crime views write conversations with it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import torch

from llmner.data.encoding import Encoder, pad
from llmner.data.schema import Sentence, tags_to_spans
from llmner.data.template import chat_affixes, render
from llmner.data.text import dedup, join_words

log = logging.getLogger(__name__)

STYLES = ("single", "per_type")

# The prompt text: the crime-conversation format (``llmner.data.crime``), which the importer
# reads, the views write and the generative model is asked in.
SYSTEM = "A virtual assistant answers questions from a user based on the provided text."
READ_REPLY = "I've read this text."
QUESTION = "What describes {label} in the text?"
SINGLE_QUESTION = "What describes {labels} in the text? Answer with one JSON object."


@dataclass
class ChatExample:
    """One sentence as text, word offsets into it, gold tags and gold answers ``{type: [values]}``."""

    index: int  # the sentence's index in its split
    text: str
    offsets: list[tuple[int, int]]  # (start, end) of each word in text
    tags: list[str]
    answers: dict[str, list[str]] = field(default_factory=dict)


def sentence_to_example(sentence: Sentence, index: int) -> ChatExample:
    """The chat view of one sentence (see the module docstring)."""
    meta = sentence.meta or {}
    if "text" in meta and "offsets" in meta:
        text, offsets = meta["text"], [tuple(o) for o in meta["offsets"]]
    else:
        text, offsets = join_words(sentence.tokens)
    answers: dict[str, list[str]] = {}
    if "spans" in meta:
        spans = sorted([*meta["spans"], *meta.get("dropped_spans", [])], key=lambda s: (s.start, s.end))
        for s in spans:
            answers.setdefault(s.label, []).append(text[s.start:s.end])
    else:
        for start, end, label in tags_to_spans(sentence.tokens, sentence.tags):
            answers.setdefault(label, []).append(text[offsets[start][0]:offsets[end - 1][1]])
    answers = {k: dedup(v) for k, v in answers.items()}
    return ChatExample(index, text, offsets, list(sentence.tags), answers)


@dataclass(frozen=True)
class ChatFormat:
    """How the model is asked and how it answers.

    Args:
        style: ``single`` (one question, one JSON object with every type) or ``per_type`` (one
            question and one ``{"Type": [...]}`` answer per type, the crime-conversation format).
        types: the schema's keys in answer order; ``None``: the entity types of the tag set, sorted.
        integer_types: types whose values are integers (``Victim_Age``).
        system: the system line.
        shots: solved examples before the question (few-shot prompting); ``examples`` holds them.
        shot_seed: seed of the choice of the shots among the training sentences.
        examples: ``[{"text": ..., "answers": {type: [values]}}]``, chosen from the train split by
            ``few_shot_examples`` when the run starts and stored with the run's config, so that a
            checkpoint is asked with the same shots.
    """

    style: str = "single"
    types: tuple[str, ...] | None = None
    integer_types: tuple[str, ...] = ()
    system: str = SYSTEM
    shots: int = 0
    shot_seed: int = 0
    examples: tuple[dict, ...] = ()

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"prompt style must be one of {STYLES}, got {self.style!r}")
        if self.shots < 0:
            raise ValueError(f"model.prompt.shots must be >= 0, got {self.shots}")
        object.__setattr__(self, "types", tuple(self.types) if self.types is not None else None)
        object.__setattr__(self, "integer_types", tuple(self.integer_types))
        object.__setattr__(self, "examples", tuple(dict(e) for e in self.examples or ()))
        if self.shots and len(self.examples) != self.shots:
            raise ValueError(f"model.prompt.shots={self.shots} but {len(self.examples)} examples were chosen")

    def keys(self, tags: list[str]) -> list[str]:
        """The answer keys: ``types``, or the entity types of ``tags``."""
        return list(self.types) if self.types is not None else sorted({t[2:] for t in tags if t != "O"})

    def questions(self, keys: list[str]) -> list[tuple[str, list[str]]]:
        """``(question, keys of its answer)`` per question turn."""
        if self.style == "single":
            return [(SINGLE_QUESTION.format(labels=", ".join(keys)), keys)]
        return [(QUESTION.format(label=k), [k]) for k in keys]

    def answer(self, answers: dict[str, list], keys: list[str]) -> str:
        """The JSON answer over ``keys`` (``json.dumps`` layout; digit strings as ints for integer types)."""
        obj = {}
        for k in keys:
            values = answers.get(k, [])
            if k in self.integer_types:
                values = [int(v) if isinstance(v, str) and v.isdigit() else v for v in values]
            obj[k] = list(values)
        return json.dumps(obj, ensure_ascii=False)

    def opening(self, text: str, keys: list[str] | None = None) -> list[dict]:
        """The messages before the first question: the system line, each shot solved (its text
        and every question answered, as in training), then the text."""
        messages = [{"role": "system", "content": self.system}]
        for shot in self.examples:
            messages += [{"role": "user", "content": f"Text:\n{shot['text']}"}, {"role": "assistant", "content": READ_REPLY}]
            for question, qkeys in self.questions(keys or []):
                messages += [{"role": "user", "content": question},
                             {"role": "assistant", "content": self.answer(shot["answers"], qkeys)}]
        return messages + [{"role": "user", "content": f"Text:\n{text}"}, {"role": "assistant", "content": READ_REPLY}]

    def conversation(self, text: str, answers: dict[str, list], keys: list[str]) -> tuple[list[dict], list[int]]:
        """The full training conversation and the indices of the messages that carry loss."""
        messages = self.opening(text, keys)
        targets = []
        for question, qkeys in self.questions(keys):
            messages.append({"role": "user", "content": question})
            targets.append(len(messages))
            messages.append({"role": "assistant", "content": self.answer(answers, qkeys)})
        return messages, targets


def few_shot_examples(sentences: list[Sentence], k: int, seed: int = 0) -> list[dict]:
    """``k`` solved examples for the prompt, drawn (seeded) from the sentences that have an entity
    (an example with only empty lists shows the model nothing to copy); fewer if there are fewer."""
    import random

    candidates = [i for i, s in enumerate(sentences) if any(t != "O" for t in s.tags)] or list(range(len(sentences)))
    chosen = random.Random(seed).sample(candidates, min(k, len(candidates)))
    return [{"text": ex.text, "answers": ex.answers} for ex in (sentence_to_example(sentences[i], i) for i in chosen)]


def _target_spans_slow(tokenizer, messages: list[dict], targets: list[int], full: str) -> list[tuple[int, int]]:
    """Target character spans by rendering each prefix (2 renders per target; any template)."""
    spans = []
    for k in targets:
        prompt = render(tokenizer, messages[:k], add_generation_prompt=True)
        upto = render(tokenizer, messages[: k + 1])
        if not (full.startswith(upto) and upto.startswith(prompt)):
            raise ValueError("the chat template rewrites earlier turns; cannot mask the prompt tokens")
        spans.append((len(prompt), len(upto)))
    return spans


def encode_chat(tokenizer, messages: list[dict], targets: list[int]) -> tuple[list[int], list[int]]:
    """Token ids of a conversation, rendered by the tokenizer's chat template, and labels that are
    ``-100`` everywhere but on the target assistant messages (their content and end-of-turn markup).

    A target's characters are those the template adds to go from "the messages before it, with the
    generation prompt" to "the messages up to it"; a token is a target if it starts among them.
    The conversation is rendered once: each target is found as ``lead + content + end_of_turn``
    (the template's markup, ``llmner.data.template.chat_affixes``), in order. A template whose
    markup depends on the turn falls back to rendering each prefix.

    Raises:
        ValueError: if the template is not prefix-stable (a later turn rewrites earlier text), so
            answers cannot be located.
    """
    full = render(tokenizer, messages)
    try:
        affixes = chat_affixes(tokenizer).answer
    except ValueError:
        affixes = None
    spans, cursor = [], 0
    for k in targets:
        if affixes is None:
            break
        needle = affixes[0] + messages[k]["content"] + affixes[1]
        start = full.find(needle, cursor)
        if start < 0:
            break
        spans.append((start, start + len(needle)))
        cursor = start + len(needle)
    if len(spans) < len(targets):
        spans = _target_spans_slow(tokenizer, messages, targets, full)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    labels = [t if any(s <= start < e for s, e in spans) else -100 for t, (start, _) in zip(ids, enc["offset_mapping"])]
    return ids, labels


@dataclass
class ChatItem:
    """One encoded example: the training conversation's ids and answer-only labels, and the example."""

    example: ChatExample
    input_ids: list[int]
    labels: list[int]

    @property
    def sentence(self) -> int:
        return self.example.index


class ChatEncoder(Encoder):
    """Sentences or raw text -> ``ChatItem`` (conversation tokenized once) -> padded batches.

    Built by the generative model with its backbone's tokenizer and prompt format, and stored in
    its checkpoint config.

    Args:
        tokenizer: the backbone's tokenizer (with a chat template).
        prompt: the ``ChatFormat``.
        max_length: tokens per training conversation; longer ones are cut (and counted).
        splitter: how raw text is split into words when predicted values are mapped back onto
            words (``llmner.data.text.split_words``); the training corpus's own when unset.
    """

    def __init__(self, tokenizer, prompt: ChatFormat, max_length: int = 4096, splitter: str | None = None) -> None:
        super().__init__(tokenizer, max_length, splitter)
        self.prompt = prompt

    def encode_example(self, example: ChatExample, keys: list[str]) -> ChatItem:
        messages, targets = self.prompt.conversation(example.text, example.answers, keys)
        ids, labels = encode_chat(self.tokenizer, messages, targets)
        return ChatItem(example, ids, labels)

    def encode(self, sentences: list[Sentence], tags: list[str]) -> list[ChatItem]:
        """One item per sentence; ``ChatItem.sentence`` is the index in ``sentences``."""
        keys = self.prompt.keys(tags)
        items = [self.encode_example(sentence_to_example(s, i), keys) for i, s in enumerate(sentences)]
        cut = [it for it in items if len(it.input_ids) > self.max_length]
        if cut:
            log.warning("%d conversations longer than max_length=%d tokens are cut (answers after the cut "
                        "carry no loss)", len(cut), self.max_length)
            for it in cut:
                it.input_ids, it.labels = it.input_ids[: self.max_length], it.labels[: self.max_length]
        return items

    @staticmethod
    def length(item: ChatItem) -> int:
        """Tokens of the training conversation (batches group similar lengths)."""
        return len(item.input_ids)

    def collate(self, items: list[ChatItem]) -> dict:
        """Right-padded (B, T) ``input_ids``, ``attention_mask``, ``labels`` (-100 off the answers), and the examples."""
        return {
            "input_ids": pad([it.input_ids for it in items], self.pad_id),  # (B, T)
            "attention_mask": pad([[1] * len(it.input_ids) for it in items], 0),  # (B, T)
            "labels": pad([it.labels for it in items], -100),  # (B, T)
            "examples": [it.example for it in items],
        }

    def prompts(self, conversations: list[list[dict]]) -> dict[str, torch.Tensor]:
        """Rendered, tokenized and left-padded generation prompts: (B, T) ``input_ids``, ``attention_mask``.

        Left padding: every row's answer starts at column T.
        """
        rows = [self.tokenizer(render(self.tokenizer, c, add_generation_prompt=True), add_special_tokens=False)["input_ids"]
                for c in conversations]
        return {"input_ids": pad(rows, self.pad_id, side="left"),  # (B, T)
                "attention_mask": pad([[1] * len(r) for r in rows], 0, side="left")}  # (B, T)
