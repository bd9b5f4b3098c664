"""The crime-report generator, its views, corpora and the ``generate`` command."""

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from llmner.data.conll import read_conll
from llmner.data.crime import ENTITY_TYPES
from llmner.data.crime.__main__ import main
from llmner.data.crime.corpus import CrimeCorpus, split_by_fractions
from llmner.data.crime.generator import Report, generate_reports
from llmner.data.crime.importer import parse_conversation
from llmner.data.crime.views import (
    TAGS,
    report_to_conversation,
    report_to_json,
    report_to_sentence,
    tokenize,
)
from llmner.data.schema import Span, tags_to_spans

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reports() -> list[Report]:
    return generate_reports(600, seed=1)


def test_deterministic_and_seeded():
    assert generate_reports(50, seed=3) == generate_reports(50, seed=3)
    assert [r.text for r in generate_reports(50, seed=3)] != [r.text for r in generate_reports(50, seed=4)]


def test_variety(reports):
    texts = [r.text for r in reports]
    assert len(set(texts)) == len(texts)
    labels = Counter(s.label for r in reports for s in r.spans)
    assert set(labels) == set(ENTITY_TYPES)
    assert min(labels.values()) >= 20, labels
    # both styles: labelled fields and free narrative paragraphs
    fields = sum("**" in t or "\nLocation:" in t or "LOCATION:" in t for t in texts)
    narrative = sum("**" not in t and "\n" not in t.split("\n\n")[-1] and ":" not in t[:60] for t in texts)
    assert fields > 100 and narrative > 100
    openings = Counter(t.split()[0] for t in texts)
    assert len(openings) > 15
    assert len({r.text[s.start:s.end] for r in reports for s in r.spans if s.label == "Crime_Type"}) > 40


def test_spans_are_exact(reports):
    for r in reports:
        assert r.text == r.text.strip()
        for s in r.spans:
            value = r.text[s.start:s.end]
            assert value and value == value.strip() and s.label in ENTITY_TYPES
            if s.label == "Victim_Age":
                assert value.isdigit()
        ordered = sorted(r.spans, key=lambda s: s.start)
        assert all(a.end <= b.start for a, b in zip(ordered, ordered[1:])), "generated spans never overlap"


def test_bio_view_round_trips_spans(reports):
    for r in reports[:200]:
        sentence = report_to_sentence(r)
        assert set(sentence.tags) <= set(TAGS)
        assert all(t and not any(c.isspace() for c in t) for t in sentence.tokens)
        offsets = sentence.meta["offsets"]
        words = tags_to_spans(sentence.tokens, sentence.tags)
        back = [Span(offsets[a][0], offsets[b - 1][1], label) for a, b, label in words]
        assert back == r.spans
        assert sentence.meta["dropped_spans"] == []


def test_bio_cuts_words_at_span_boundaries():
    text = "Officer Ann Lee, Badge #1457, email ann.lee@pd.gov (age 35)."
    spans = [Span(text.index("1457"), text.index("1457") + 4, "Officer_BadgeNumber"),
             Span(text.index("ann.lee"), text.index(" (age"), "Victim_Email"),
             Span(text.index("35"), text.index("35") + 2, "Victim_Age")]
    sentence = report_to_sentence(Report(text, spans))
    pairs = list(zip(sentence.tokens, sentence.tags))
    assert ("#", "O") in pairs and ("1457", "B-Officer_BadgeNumber") in pairs
    email = [t for t, tag in pairs if tag.endswith("Victim_Email")]
    assert email == ["ann", ".", "lee", "@", "pd", ".", "gov"]
    assert pairs[-3:] == [("35", "B-Victim_Age"), (")", "O"), (".", "O")]


def test_span_inside_a_word_splits_the_word():
    text = "Ref:AB1457x done"
    sentence = report_to_sentence(Report(text, [Span(6, 10, "Officer_BadgeNumber")]))
    assert sentence.tokens == ["Ref", ":", "AB", "1457", "x", "done"]
    assert sentence.tags == ["O", "O", "O", "B-Officer_BadgeNumber", "O", "O"]
    assert tokenize("a_b 5'9\"") == [(0, 1), (1, 2), (2, 3), (4, 5), (5, 6), (6, 7), (7, 8)]


def test_overlaps_keep_the_longer_span():
    text = "Summary: thieves hit Oak Boutique overnight."
    summary = Span(9, len(text), "Crime_Summary")
    victim = Span(text.index("Oak"), text.index(" overnight"), "Victim_Name")
    sentence = report_to_sentence(Report(text, [victim, summary]))
    assert sentence.meta["spans"] == [summary] and sentence.meta["dropped_spans"] == [victim]
    assert sentence.tags.count("B-Crime_Summary") == 1 and "B-Victim_Name" not in sentence.tags
    # the JSON view still lists both
    answers = report_to_json(Report(text, [victim, summary]))
    assert answers["Victim_Name"] == ["Oak Boutique"] and len(answers["Crime_Summary"]) == 1


def test_json_view():
    text = "Victim: Ann Lee, 35. Witness: Bo Chu. Witness Bo Chu again. Evidence: gloves, tape."
    spans = [Span(8, 15, "Victim_Name"), Span(17, 19, "Victim_Age"), Span(30, 36, "Witness_Name"),
             Span(46, 52, "Witness_Name"), Span(text.index("tape"), text.index("tape") + 4, "Evidence_Type"),
             Span(text.index("gloves"), text.index("gloves") + 6, "Evidence_Type")]
    answers = report_to_json(Report(text, spans))
    assert list(answers) == list(ENTITY_TYPES)
    assert answers["Victim_Age"] == [35] and answers["Witness_Name"] == ["Bo Chu"]
    assert answers["Evidence_Type"] == ["gloves", "tape"] and answers["Location"] == []


def test_conversation_format():
    report = Report('Said "hi" at 5 Elm St.', [Span(13, 22, "Location")])
    lines = report_to_conversation(report).split("\n")
    assert lines[:4] == ["A virtual assistant answers questions from a user based on the provided text.",
                         "User: Text:", 'Said "hi" at 5 Elm St.', "Assistant: I've read this text."]
    assert lines[4:6] == ["User: What describes Location in the text?", 'Assistant: {"Location": ["5 Elm St."]}']
    assert len(lines) == 4 + 2 * len(ENTITY_TYPES)
    assert parse_conversation("\n".join(lines))[1]["Location"] == ["5 Elm St."]


def test_crime_corpus_on_the_fly():
    splits = CrimeCorpus(num_train=40, num_validation=10, num_test=10, seed=5).load()
    assert {k: len(v) for k, v in splits.items()} == {"train": 40, "validation": 10, "test": 10}
    texts = {k: {s.meta["text"] for s in v} for k, v in splits.items()}
    assert not (texts["train"] & texts["validation"]) and not (texts["train"] & texts["test"])
    again = CrimeCorpus(num_train=40, num_validation=10, num_test=10, seed=5).load()
    assert [s.tokens for s in again["test"]] == [s.tokens for s in splits["test"]]


def test_split_by_fractions():
    parts = split_by_fractions(list(range(100)), {"test": 0.1, "train": 0.8, "validation": 0.1}, seed=0)
    assert [len(parts[k]) for k in ("train", "validation", "test")] == [80, 10, 10]
    assert sorted(parts["train"] + parts["validation"] + parts["test"]) == list(range(100))
    assert parts == split_by_fractions(list(range(100)), {"train": 0.8, "validation": 0.1, "test": 0.1}, seed=0)


def test_cli_generate_writes_three_forms(tmp_path):
    assert main(["generate", "--num-reports", "50", "--out", str(tmp_path), "--seed", "2",
                 "--validation-fraction", "0.2", "--test-fraction", "0.1"]) == 0
    for split, n in (("train", 35), ("validation", 10), ("test", 5)):
        bio = read_conll(tmp_path / f"{split}.txt")
        records = [json.loads(line) for line in (tmp_path / f"{split}.jsonl").read_text().splitlines()]
        convs = (tmp_path / f"{split}.conversations.jsonl").read_text().splitlines()
        assert len(bio) == len(records) == len(convs) == n
        first = records[0]
        assert list(first["answers"]) == list(ENTITY_TYPES)
        assert all(first["text"][s["start"]:s["end"]] for s in first["spans"])
        assert parse_conversation(json.loads(convs[0])["conversation"])[0] == first["text"]
    # the directory holds what CrimeCorpus would generate with the same sizes and seed
    from_dir = CrimeCorpus(path=str(tmp_path)).load()
    on_the_fly = CrimeCorpus(num_train=35, num_validation=10, num_test=5, seed=2).load()
    for split in from_dir:
        assert [(s.tokens, s.tags) for s in from_dir[split]] == [(s.tokens, s.tags) for s in on_the_fly[split]]


def test_cli_runs_as_module(tmp_path):
    out = subprocess.run([sys.executable, "-m", "llmner.data.crime", "generate", "--num-reports", "10",
                          "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True, check=True)
    assert "train.*: 8 reports" in out.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{s}{ext}" for s in ("train", "validation", "test") for ext in (".txt", ".jsonl", ".conversations.jsonl"))


def test_crime_bio_config_builds_the_datamodule(tmp_path):
    from hydra.utils import instantiate

    from tests.conftest import compose_config

    overrides = ["data=crime_bio", "data.corpus.num_train=30", "data.corpus.num_validation=5", "data.corpus.num_test=5"]
    datamodule = instantiate(compose_config(overrides, tmp_path).data)
    assert {k: len(v) for k, v in datamodule.sentences.items()} == {"train": 30, "validation": 5, "test": 5}
    assert datamodule.tags == TAGS and len(TAGS) == 35
