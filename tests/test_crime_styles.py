"""The varied crime generator (``variety=varied``): its grammar, determinism, exact spans, no lost facts."""

import random
import re
from collections import Counter

import pytest

from llmner.data.crime import ENTITY_TYPES
from llmner.data.crime import generator as g
from llmner.data.crime.corpus import CrimeCorpus
from llmner.data.crime.grammar import Grammar, GrammarError, text_of
from llmner.data.crime.importer import import_conversations
from llmner.data.crime.styles import STYLES, generate_reports, generate_varied_report_with_facts
from llmner.data.crime.views import report_to_conversation, report_to_sentence
from llmner.data.schema import DataError


@pytest.fixture(scope="module")
def drawn() -> list[tuple]:
    rng = random.Random(7)
    return [generate_varied_report_with_facts(rng) for _ in range(500)]


def test_grammar_skips_alternatives_whose_slots_are_missing():
    grammar = Grammar({"s": ("on {date} at {time}", "on {date}", "at {time}"), "x": ("<s>.", "<s><y?>."),
                       "y": (" too",)})
    rng = random.Random(0)
    only_date = {text_of(grammar.expand(rng, "s", {"date": ("May 1", "Crime_Date")})) for _ in range(30)}
    assert only_date == {"on May 1"}
    both = {text_of(grammar.expand(rng, "s", {"date": "May 1", "time": "9:00"})) for _ in range(60)}
    assert both == {"on May 1 at 9:00", "on May 1", "at 9:00"}
    pieces = grammar.expand(rng, "s", {"date": ("May 1", "Crime_Date"), "time": None})
    assert pieces == ["on ", ("May 1", "Crime_Date")]  # the entity stays a labelled piece
    assert {text_of(grammar.expand(rng, "x", {"time": "9"})) for _ in range(40)} == {"at 9.", "at 9 too."}
    with pytest.raises(GrammarError, match="no alternative of <s>"):
        grammar.expand(rng, "s", {})
    with pytest.raises(GrammarError, match="unknown rule <nope>"):
        Grammar({"a": ("<nope>",)})


def test_varied_is_deterministic_and_classic_is_unchanged():
    assert generate_reports(40, seed=3, variety="varied") == generate_reports(40, seed=3, variety="varied")
    assert [r.text for r in generate_reports(40, seed=3, variety="varied")] != \
        [r.text for r in generate_reports(40, seed=4, variety="varied")]
    assert generate_reports(40, seed=3, variety="classic") == g.generate_reports(40, seed=3)
    with pytest.raises(ValueError, match="variety must be one of"):
        generate_reports(1, variety="fancy")


def test_spans_are_exact_and_round_trip_through_the_importer(drawn, tmp_path):
    reports = [r for _, r, _ in drawn]
    for r in reports:
        assert r.text == r.text.strip()
        for s in r.spans:
            value = r.text[s.start:s.end]
            assert value and value == value.strip() and s.label in ENTITY_TYPES
        assert all(a.end <= b.start for a, b in zip(r.spans, r.spans[1:])), "spans never overlap"
        sentence = report_to_sentence(r)
        assert sentence.meta["dropped_spans"] == [] and sentence.meta["spans"] == r.spans
    path = tmp_path / "varied.jsonl"
    import json
    path.write_text("".join(json.dumps({"conversation": report_to_conversation(r)}) + "\n" for r in reports[:200]))
    result = import_conversations(path)  # the independent oracle: locate every answer value in the text
    assert result.num_unlocated == 0 and result.overlaps == 0
    assert [r.spans for r in result.reports] == [r.spans for r in reports[:200]]


def _fact_values(f: g._Facts) -> list[tuple[str, str]]:
    """Every fact that must be tagged in the report, as (label, text)."""
    out = [("Crime_Type", c) for c in f.crime_types]
    out += [(label, value) for label, value in (("Crime_Date", f.date), ("Crime_Time", f.time), ("Location", f.location),
                                                ("Officer_Name", f.officer), ("Officer_BadgeNumber", f.badge),
                                                ("Crime_Summary", f.summary), ("Crime_Status", f.status)) if value]
    for v in f.victims:
        out += [(label, value) for label, value in (("Victim_Name", v.name), ("Victim_Owner", v.owner),
                                                    ("Victim_Manager", v.manager), ("Victim_CEO", v.ceo),
                                                    ("Victim_Email", v.email)) if value]
        if v.age is not None:
            out.append(("Victim_Age", str(v.age)))
    out += [("Evidence_Type", e) for e in f.evidence] + [("Witness_Name", w) for w in f.witnesses]
    out += [("Suspect_Description", d) for d, _ in f.suspects]
    return out


def test_no_fact_is_lost(drawn):
    """Each drawn fact is a span of its label (case aside: some styles write capitals or lower-case a
    summary after "According to police,"), and the report has no span beyond the facts."""
    for facts, report, style in drawn:
        tagged = Counter((s.label, report.text[s.start:s.end].lower()) for s in report.spans)
        wanted = Counter((label, value.lower()) for label, value in _fact_values(facts))
        missing = wanted - tagged
        assert not missing, (style, missing, report.text)
        extra = {key for key in tagged if key not in wanted}
        # a crime type may be written twice (a memo's subject and body): still one of the facts
        assert not extra, (style, extra, report.text)


def _left_contexts(reports: list[g.Report], labels: tuple[str, ...], k: int = 3) -> int:
    """Distinct (label, k words before the span): how many ways the text leads into a field."""
    seen = set()
    for r in reports:
        for s in r.spans:
            if s.label in labels:
                seen.add((s.label, tuple(re.findall(r"\w+|[^\w\s]", r.text[:s.start].lower())[-k:])))
    return len(seen)


def test_varied_has_more_ways_to_write_the_free_text_fields(drawn):
    classic = g.generate_reports(500, seed=7)
    varied = [r for _, r, _ in drawn]
    fields = ("Crime_Summary", "Location", "Victim_Name", "Suspect_Description")
    assert _left_contexts(varied, fields) > 1.4 * _left_contexts(classic, fields)
    summaries = {r.text[s.start:s.end] for r in varied for s in r.spans if s.label == "Crime_Summary"}
    old = {r.text[s.start:s.end] for r in classic for s in r.spans if s.label == "Crime_Summary"}
    assert len(summaries) > len(old)
    assert set(Counter(style for *_, style in drawn)) == set(STYLES)
    labels = Counter(s.label for r in varied for s in r.spans)
    assert set(labels) == set(ENTITY_TYPES) and min(labels.values()) >= 20, labels
    # locations: intersections, landmarks' parts, highways beside the classic addresses
    locations = [r.text[s.start:s.end] for r in varied for s in r.spans if s.label == "Location"]
    assert sum(" and " in loc or " & " in loc for loc in locations) > 20
    assert sum(loc.startswith("the ") and " of " in loc for loc in locations) > 10


def test_corpus_variety_option(tmp_path):
    varied = CrimeCorpus(num_train=20, num_validation=5, num_test=5, seed=2, variety="varied").load()
    classic = CrimeCorpus(num_train=20, num_validation=5, num_test=5, seed=2).load()
    assert {k: len(v) for k, v in varied.items()} == {"train": 20, "validation": 5, "test": 5}
    assert [s.tokens for s in varied["test"]] != [s.tokens for s in classic["test"]]
    with pytest.raises(DataError, match="data.corpus.variety must be one of classic, varied, got 'new'"):
        CrimeCorpus(variety="new")
    from llmner.data.crime.__main__ import main
    assert main(["generate", "--num-reports", "30", "--out", str(tmp_path), "--seed", "2", "--variety", "varied",
                 "--validation-fraction", "0.2", "--test-fraction", "0.2"]) == 0
    on_the_fly = CrimeCorpus(num_train=18, num_validation=6, num_test=6, seed=2, variety="varied").load()
    from_dir = CrimeCorpus(path=str(tmp_path)).load()
    assert [(s.tokens, s.tags) for s in from_dir["test"]] == [(s.tokens, s.tags) for s in on_the_fly["test"]]
