"""Sentences as chat examples for the generative head: prompts, answer-only loss masks, and the
way back from generated values to word tags.

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

Nothing here knows about models: a tokenizer's ``apply_chat_template`` and ``__call__`` only.
"""

from __future__ import annotations

import json
import logging
import random
import re
from dataclasses import dataclass, field
from typing import Callable

import lightning as L
from torch.utils.data import DataLoader

from llmner.data.schema import DataError, Sentence, labels_of, tag_set, tags_to_spans

log = logging.getLogger(__name__)

SYSTEM = "A virtual assistant answers questions from a user based on the provided text."
READ_REPLY = "I've read this text."
QUESTION = "What describes {label} in the text?"
SINGLE_QUESTION = "What describes {labels} in the text? Answer with one JSON object."
STYLES = ("single", "per_type")


@dataclass
class ChatExample:
    """One sentence as text, word offsets into it, gold tags and gold answers ``{type: [values]}``."""

    index: int  # the sentence's index in its split
    text: str
    offsets: list[tuple[int, int]]  # (start, end) of each word in text
    tags: list[str]
    answers: dict[str, list[str]] = field(default_factory=dict)


def _dedup(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def sentence_to_example(sentence: Sentence, index: int) -> ChatExample:
    """The chat view of one sentence (see the module docstring)."""
    meta = sentence.meta or {}
    if "text" in meta and "offsets" in meta:
        text, offsets = meta["text"], [tuple(o) for o in meta["offsets"]]
    else:
        text, offsets, pos = " ".join(sentence.tokens), [], 0
        for w in sentence.tokens:
            offsets.append((pos, pos + len(w)))
            pos += len(w) + 1
    answers: dict[str, list[str]] = {}
    if "spans" in meta:
        spans = sorted([*meta["spans"], *meta.get("dropped_spans", [])], key=lambda s: (s.start, s.end))
        for s in spans:
            answers.setdefault(s.label, []).append(text[s.start:s.end])
    else:
        for start, end, label in tags_to_spans(sentence.tokens, sentence.tags):
            answers.setdefault(label, []).append(text[offsets[start][0]:offsets[end - 1][1]])
    answers = {k: _dedup(v) for k, v in answers.items()}
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
    """

    style: str = "single"
    types: tuple[str, ...] | None = None
    integer_types: tuple[str, ...] = ()
    system: str = SYSTEM

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"prompt style must be one of {STYLES}, got {self.style!r}")
        object.__setattr__(self, "types", tuple(self.types) if self.types is not None else None)
        object.__setattr__(self, "integer_types", tuple(self.integer_types))

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

    def opening(self, text: str) -> list[dict]:
        """The messages before the first question."""
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": f"Text:\n{text}"},
            {"role": "assistant", "content": READ_REPLY},
        ]

    def conversation(self, text: str, answers: dict[str, list], keys: list[str]) -> tuple[list[dict], list[int]]:
        """The full training conversation and the indices of the messages that carry loss."""
        messages = self.opening(text)
        targets = []
        for question, qkeys in self.questions(keys):
            messages.append({"role": "user", "content": question})
            targets.append(len(messages))
            messages.append({"role": "assistant", "content": self.answer(answers, qkeys)})
        return messages, targets


def render(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def encode_chat(tokenizer, messages: list[dict], targets: list[int]) -> tuple[list[int], list[int]]:
    """Token ids of a conversation, rendered by the tokenizer's chat template, and labels that are
    ``-100`` everywhere but on the target assistant messages (their content and end-of-turn markup).

    A target's characters are those the template adds to go from "the messages before it, with the
    generation prompt" to "the messages up to it"; a token is a target if it starts among them.

    Raises:
        ValueError: if the template is not prefix-stable (a later turn rewrites earlier text), so
            answers cannot be located.
    """
    full = render(tokenizer, messages)
    spans = []
    for k in targets:
        prompt = render(tokenizer, messages[:k], add_generation_prompt=True)
        upto = render(tokenizer, messages[: k + 1])
        if not (full.startswith(upto) and upto.startswith(prompt)):
            raise ValueError("the chat template rewrites earlier turns; cannot mask the prompt tokens")
        spans.append((len(prompt), len(upto)))
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    labels = [t if any(s <= start < e for s, e in spans) else -100 for t, (start, _) in zip(ids, enc["offset_mapping"])]
    return ids, labels


# --- generated values -> word tags -------------------------------------------------------------
def _edges(text: str, start: int, end: int) -> bool:
    left = start == 0 or not (text[start - 1].isalnum() and text[start].isalnum())
    right = end == len(text) or not (text[end - 1].isalnum() and text[end].isalnum())
    return left and right


def locate(text: str, value: str, taken: list[tuple[int, int]]) -> tuple[int, int] | None:
    """The first occurrence of ``value`` in ``text`` that overlaps nothing in ``taken``: at word
    edges if there is one, else anywhere; ``None`` if every occurrence is taken or there is none."""
    if not value:
        return None
    found = []
    start = text.find(value)
    while start >= 0:
        end = start + len(value)
        if not any(start < e and s < end for s, e in taken):
            found.append((start, end))
        start = text.find(value, start + 1)
    edged = [f for f in found if _edges(text, *f)]
    return (edged or found or [None])[0]


def values_to_tags(text: str, offsets: list[tuple[int, int]], answers: dict[str, list], keys: list[str] | None = None) -> list[str]:
    """IOB2 tags over the words at ``offsets`` for the values in ``answers``.

    Deterministic: values are placed longest first (ties: key order, then answer order), each at
    its first unused occurrence (``locate``), so that a short value ("Paris") does not take a word
    of a longer one ("Paris Saint-Germain"). A span covers every word it overlaps. Values that are
    not in the text are skipped.
    """
    keys = keys if keys is not None else list(answers)
    items = [(-len(str(v)), ki, vi, k, str(v)) for ki, k in enumerate(keys) for vi, v in enumerate(answers.get(k, []))]
    taken: list[tuple[int, int, str]] = []
    for *_, label, value in sorted(items, key=lambda t: t[:3]):
        where = locate(text, value.strip(), [(s, e) for s, e, _ in taken])
        if where is not None:
            taken.append((*where, label))
    tags = ["O"] * len(offsets)
    for start, end, label in sorted(taken):
        words = [i for i, (s, e) in enumerate(offsets) if s < end and start < e and tags[i] == "O"]
        for n, i in enumerate(words):
            tags[i] = ("B-" if n == 0 else "I-") + label
    return tags


def spans_to_answers(text: str, offsets: list[tuple[int, int]], tags: list[str], keys: list[str]) -> dict[str, list[str]]:
    """``{type: [text slices]}`` (every key, values once each in order) from IOB2 word tags."""
    out: dict[str, list[str]] = {k: [] for k in keys}
    for start, end, label in tags_to_spans([""] * len(tags), tags):
        out.setdefault(label, []).append(text[offsets[start][0]:offsets[end - 1][1]])
    return {k: _dedup(v) for k, v in out.items()}


# --- the datamodule ------------------------------------------------------------------------------
class ChatDataModule(L.LightningDataModule):
    """Any corpus of ``Sentence`` as batches of ``ChatExample`` (the generative model tokenizes them
    with its own prompt format, so the same data serves every prompt style and backbone).

    Accepts the arguments of ``TaggingDataModule`` so that ``model=generative`` can swap it in
    under any data config; ``max_length``, ``context_words`` and ``bucket`` are not used here.

    Args:
        corpus: builds the corpus from ``path`` (``ConllCorpus``, ``CrimeCorpus``, ...).
        path: where the corpus lives.
        test_corpus: optional second corpus (built with ``test_path``) whose ``test`` split
            replaces the corpus's own, e.g. train on generated reports, test on a hand-written file.
        test_path: where ``test_corpus`` lives.
        tags: the tag list; ``None``: derived from the data.
        batch_size: training conversations per batch.
        eval_batch_size: evaluation sentences per batch (generation runs batched).
        max_train_samples, max_eval_samples, max_test_samples: seeded subsets of train, validation
            and test (quick runs; generation is slow).
        num_workers: DataLoader workers.
        seed: training order.
    """

    def __init__(
        self,
        corpus: Callable,
        path: str | None = None,
        test_corpus: Callable | None = None,
        test_path: str | None = None,
        tokenizer=None,
        tags: list[str] | None = None,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        max_train_samples: int | None = None,
        max_eval_samples: int | None = None,
        max_test_samples: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        max_length: int | None = None,
        context_words: int | None = None,
        bucket: bool | None = None,
    ) -> None:
        super().__init__()
        self.corpus = corpus(path=path)
        self.test_corpus = test_corpus(path=test_path) if test_corpus is not None else None
        self.tokenizer = tokenizer  # unused: the model renders its own prompts
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.max_train_samples = max_train_samples
        self.max_eval_samples = max_eval_samples
        self.max_test_samples = max_test_samples
        self.num_workers = num_workers
        self.seed = seed
        self._given_tags = list(tags) if tags is not None else None
        self._sentences: dict[str, list[Sentence]] | None = None

    @property
    def sentences(self) -> dict[str, list[Sentence]]:
        """Split -> sentences after subsetting; loaded once."""
        if self._sentences is None:
            splits = self.corpus.load()
            if self.test_corpus is not None:
                test = self.test_corpus.load()
                if "test" not in test:
                    raise DataError(f"test_corpus ({self.test_corpus.path}) has no 'test' split: {sorted(test)}")
                splits["test"] = test["test"]
            limits = {"train": self.max_train_samples, "validation": self.max_eval_samples, "test": self.max_test_samples}
            for split, sents in splits.items():
                limit = limits.get(split)
                if limit is not None and limit < len(sents):
                    keep = sorted(random.Random(0).sample(range(len(sents)), limit))
                    splits[split] = [sents[i] for i in keep]
            self._sentences = splits
        return self._sentences

    @property
    def tags(self) -> list[str]:
        if self._given_tags is not None:
            return self._given_tags
        return tag_set(labels_of([s for sents in self.sentences.values() for s in sents]))

    def setup(self, stage: str | None = None) -> None:
        known = set(self.tags)
        for split, sents in self.sentences.items():
            for s in sents:
                unknown = sorted(set(s.tags) - known)
                if unknown:
                    raise DataError(f"{s.source or split}: tags {unknown} are not in the model's tag set {self.tags}")

    def examples(self, split: str) -> list[ChatExample]:
        if split not in self.sentences:
            raise DataError(f"the corpus has no {split!r} split (it has {sorted(self.sentences)})")
        return [sentence_to_example(s, i) for i, s in enumerate(self.sentences[split])]

    def _loader(self, split: str, train: bool) -> DataLoader:
        examples = self.examples(split)
        if train:
            return DataLoader(examples, batch_size=self.batch_size, shuffle=True, collate_fn=list,
                              num_workers=self.num_workers, generator=_generator(self.seed))
        # Longest first: generation batches hold texts of similar length.
        examples = sorted(examples, key=lambda e: -len(e.text))
        return DataLoader(examples, batch_size=self.eval_batch_size, collate_fn=list, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)


def _generator(seed: int):
    import torch

    return torch.Generator().manual_seed(seed)


_WORD = re.compile(r"[^\W_]+|\S")  # letters and digits; any other visible character alone


def word_offsets(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each word of ``text``: runs of letters/digits, other characters alone."""
    return [m.span() for m in _WORD.finditer(text)]
