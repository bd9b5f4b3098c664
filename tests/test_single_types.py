"""One span per text for single-valued types (``llmner.heads.single``): which types ``auto`` finds (hand-made
corpora), which span stays (hand-made cases, and every small tag sequence against a plain re-implementation),
and the entities' view; the evaluation and predict paths are checked on a trained model in ``test_train.py``."""

import itertools
import random

import pytest

from llmner.data.schema import Sentence, tags_to_spans
from llmner.heads.single import keep_best_entities, keep_best_tags, single_types


def sentence(*tags: str) -> Sentence:
    return Sentence(tokens=["w"] * len(tags), tags=list(tags))


def test_auto_lists_the_types_no_text_holds_twice_within_the_tolerance():
    once = [sentence("B-DATE", "O", "B-LOC", "I-LOC")] * 99
    twice = [sentence("B-DATE", "B-DATE", "O", "B-LOC")]  # DATE twice in 1 of 100 texts; LOC never
    people = [sentence("B-PER", "O", "B-PER"), sentence("B-PER")]  # PER twice in 1 of 2
    assert single_types(once + twice + people) == ["DATE", "LOC"]  # 1% is within the default tolerance
    assert single_types(once + twice + people, tolerance=0.0) == ["LOC"]
    assert single_types(once[:49] + twice + people) == ["LOC"]  # 1 of 50: 2%, over it
    assert single_types([sentence("I-LOC", "B-LOC")]) == []  # IOB1 read as conlleval: two LOC spans
    assert single_types([]) == []


def test_the_best_scored_span_of_a_single_type_stays():
    tags = ["B-DATE", "I-DATE", "O", "B-PER", "B-DATE", "O", "B-PER", "I-PER", "B-DATE"]
    scores = {0: 0.4, 3: 0.9, 4: 0.7, 6: 0.2, 8: 0.7}
    assert keep_best_tags(tags, scores, ["DATE"]) == ["O", "O", "O", "B-PER", "B-DATE", "O", "B-PER", "I-PER", "O"]
    assert keep_best_tags(tags, scores, ["PER"]) == ["B-DATE", "I-DATE", "O", "B-PER", "B-DATE", "O", "O", "O", "B-DATE"]
    assert keep_best_tags(tags, scores, []) == tags
    assert keep_best_tags(tags, {}, ["DATE"]) == ["B-DATE", "I-DATE"] + ["O", "B-PER", "O", "O", "B-PER", "I-PER", "O"]
    assert keep_best_tags([], {}, ["DATE"]) == []


def plain_keep(tags, scores, single):
    """The rule spelt out another way: drop a single-type span if an earlier one scores at least as much, or a
    later one more."""
    spans = tags_to_spans([""] * len(tags), tags)
    out = list(tags)
    for i, (s, e, label) in enumerate(spans):
        if label not in single:
            continue
        rivals = [(j, scores.get(s2, 0.0)) for j, (s2, _, l2) in enumerate(spans) if l2 == label and j != i]
        mine = scores.get(s, 0.0)
        if any((j < i and sc >= mine) or (j > i and sc > mine) for j, sc in rivals):
            out[s:e] = ["O"] * (e - s)
    return out


def test_every_short_tag_sequence_agrees_with_the_plain_rule():
    rng = random.Random(0)
    tags = ["O", "B-A", "I-A", "B-B", "I-B"]
    checked = 0
    for n in range(1, 6):
        for seq in itertools.product(tags, repeat=n):
            seq = list(seq)
            scores = {i: rng.choice([0.1, 0.5, 0.5, 0.9]) for i in range(n)}  # ties included
            for single in ([], ["A"], ["A", "B"]):
                got = keep_best_tags(seq, scores, single)
                assert got == plain_keep(seq, scores, single), (seq, scores, single)
                kept = tags_to_spans([""] * n, got)
                assert all(sum(1 for *_, l in kept if l == t) <= 1 for t in single)
                checked += 1
    assert checked == 3 * sum(5 ** n for n in range(1, 6))


def test_entities_keep_the_best_of_each_single_type_in_text_order():
    entities = [{"type": "DATE", "start": 0, "score": 0.3}, {"type": "PER", "start": 5, "score": 0.1},
                {"type": "DATE", "start": 9, "score": 0.8}, {"type": "PER", "start": 14, "score": 0.9},
                {"type": "DATE", "start": 20, "score": 0.8}]
    assert keep_best_entities(entities, ["DATE"]) == [entities[1], entities[2], entities[3]]
    assert keep_best_entities(entities, ["DATE", "PER"]) == [entities[2], entities[3]]
    assert keep_best_entities(entities, []) == entities
    assert keep_best_entities([], ["DATE"]) == []


def test_auto_reads_the_train_split_and_a_list_is_checked(tiny_conll, tmp_path):
    from hydra.errors import InstantiationException
    from omegaconf import open_dict

    from llmner.builders import build_datamodule, build_model
    from llmner.errors import ConfigError
    from tests.conftest import TINY, compose_config

    cfg = compose_config(TINY + [f"data.path={tiny_conll}", "model.single_types=auto"], tmp_path)
    datamodule = build_datamodule(cfg)
    # the fixture's templates repeat {PER} ("{PER} and {PER} flew to {LOC}"), never {LOC} or {ORG}
    assert list(cfg.model.single_types) == ["LOC", "ORG"]
    assert build_model(cfg, datamodule.tags).single_types == ["LOC", "ORG"]
    with open_dict(cfg):
        cfg.model.single_types = ["LOC", "CITY"]
    with pytest.raises(InstantiationException) as err:
        build_model(cfg, datamodule.tags)
    assert isinstance(err.value.__cause__, ConfigError) and "['CITY'] are not entity types" in str(err.value)
    with open_dict(cfg):
        cfg.model.single_types = "auto"  # only llmner.train resolves it
    with pytest.raises(InstantiationException, match="auto when training"):
        build_model(cfg, datamodule.tags)


def test_auto_without_a_train_split_lists_no_type():
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from llmner.modules.tagger import TaggerModule

    cfg = OmegaConf.create({"single_types": "auto"})
    TaggerModule.configure(cfg, SimpleNamespace(sentences={"test": [sentence("B-DATE")]}))  # llmner.train test-only
    assert list(cfg.single_types) == []
    TaggerModule.configure(cfg, SimpleNamespace(sentences={"train": [sentence("B-DATE")]}))  # a list stays as given
    assert list(cfg.single_types) == []
