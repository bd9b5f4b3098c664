"""Importing conversation JSONL files: parsing, locating values, errors and the ``import`` command."""

import json
from pathlib import Path

import pytest

from llmner.data.conll import read_conll
from llmner.data.crime import ENTITY_TYPES
from llmner.data.crime.__main__ import main
from llmner.data.crime.corpus import ConversationCorpus
from llmner.data.crime.generator import Report, generate_reports
from llmner.data.crime.importer import import_conversations, parse_conversation
from llmner.data.crime.views import answers_to_conversation, report_to_conversation, report_to_json
from llmner.data.schema import DataError, Span
from llmner.data.text import locate_values

FIXTURE = Path(__file__).parent / "fixtures" / "crime_handwritten.jsonl"


def write_jsonl(path: Path, conversations: list[str]) -> Path:
    path.write_text("".join(json.dumps({"conversation": c}) + "\n" for c in conversations), encoding="utf-8")
    return path


def located(text: str, answers: dict) -> list[tuple[str, str, int]]:
    spans, missing = locate_values(text, answers)
    assert not missing
    return [(s.label, text[s.start:s.end], s.start) for s in spans]


def test_round_trip_reproduces_generated_spans(tmp_path):
    reports = generate_reports(400, seed=11)
    path = write_jsonl(tmp_path / "gen.jsonl", [report_to_conversation(r) for r in reports])
    result = import_conversations(path)
    assert result.num_unlocated == 0 and result.overlaps == 0
    assert [r.text for r in result.reports] == [r.text for r in reports]
    assert [r.spans for r in result.reports] == [r.spans for r in reports]
    assert result.jsons == [report_to_json(r) for r in reports]


def test_handwritten_fixture_imports_completely():
    result = import_conversations(FIXTURE)
    assert len(result.reports) >= 20
    assert result.num_unlocated == 0 and not result.ignored_types
    labels = {s.label for r in result.reports for s in r.spans}
    assert labels == set(ENTITY_TYPES)
    for answers, report in zip(result.answers, result.reports):
        assert all(isinstance(a, int) for a in answers["Victim_Age"])
        assert len(report.spans) == sum(len(v) for v in answers.values())


def test_parse_is_robust_to_spacing_and_literal_answers():
    conversation = (
        "User: Text: Theft at 5 Elm St.\r\n"
        "Assistant: I've read this text.\r\n"
        "User:  What describes Location in the text?\r\n"
        "Assistant: {'Location': ['5 Elm St.']}\r\n"
        "User: What describes Crime_Type in the text?\r\n"
        'Assistant: {\n  "Crime_Type": ["Theft"]\n}\n'
    )
    text, answers = parse_conversation(conversation)
    assert text == "Theft at 5 Elm St."
    assert answers == {"Location": ["5 Elm St."], "Crime_Type": ["Theft"]}


@pytest.mark.parametrize(
    "line, expected",
    [
        ("not json at all", 'expected a JSON object with a "conversation" string'),
        ('{"text": "no conversation key"}', 'expected a JSON object with a "conversation" string'),
        ('{"conversation": "Assistant: hello"}', "expected a 'User: Text:' turn"),
        (json.dumps({"conversation": "User: Text:\nA report\nAssistant: ok\nUser: What describes Location in the text?"
                                     "\nAssistant: {broken"}), "answer to 'Location' is not a JSON object"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, line, expected):
    path = tmp_path / "reports.jsonl"
    good = json.dumps({"conversation": answers_to_conversation("A theft.", {"Crime_Type": ["theft"]})})
    path.write_text(good + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        import_conversations(path)
    assert str(err.value).startswith(f"{path}:2: ") and expected in str(err.value)


def test_partial_answers_fill_missing_types(tmp_path):
    conversation = "User: Text:\nBurglary at 9 Oak Rd.\nAssistant: I've read this text.\n" \
                   "User: What describes Location in the text?\nAssistant: {\"Location\": [\"9 Oak Rd.\"]}"
    result = import_conversations(write_jsonl(tmp_path / "p.jsonl", [conversation]))
    assert list(result.answers[0]) == list(ENTITY_TYPES)
    assert result.answers[0]["Crime_Type"] == [] and result.jsons[0]["Location"] == ["9 Oak Rd."]
    assert result.sentences[0].tags[:2] == ["O", "O"] and "B-Location" in result.sentences[0].tags


def test_repeated_values_take_first_free_occurrences():
    text = "Officer Kim saw Kim Lee. Kim Lee ran. Kim Lee hid."
    assert located(text, {"Witness_Name": ["Kim Lee"]}) == [("Witness_Name", "Kim Lee", 16)]
    # listed twice: the first two occurrences
    assert [s for _, _, s in located(text, {"Witness_Name": ["Kim Lee", "Kim Lee"]})] == [16, 25]
    # a value already covered by a longer span takes the next free occurrence
    text = "Location: 35 Elm St. Victim age 35, badge 1435."
    spans = located(text, {"Location": ["35 Elm St."], "Victim_Age": [35]})
    assert spans == [("Location", "35 Elm St.", 10), ("Victim_Age", "35", 32)]


def test_nested_value_overlaps_and_is_counted(tmp_path):
    text = "Summary: thieves hit Oak Boutique overnight."
    answers = {"Crime_Summary": ["thieves hit Oak Boutique overnight."], "Victim_Name": ["Oak Boutique"]}
    assert located(text, answers) == [("Crime_Summary", answers["Crime_Summary"][0], 9),
                                      ("Victim_Name", "Oak Boutique", 21)]
    result = import_conversations(write_jsonl(tmp_path / "n.jsonl", [answers_to_conversation(text, answers)]))
    assert result.overlaps == 1 and result.num_unlocated == 0
    assert "B-Victim_Name" not in result.sentences[0].tags


def test_punctuation_quotes_ages_and_loose_matches():
    text = 'Suspect: male, 5\'9", "Red" cap; email j.o\'neil@x.co. Age: 41. Location: 12  Main\nStreet'
    answers = {
        "Suspect_Description": ['male, 5\'9", "Red" cap'],
        "Victim_Email": ["j.o'neil@x.co"],
        "Victim_Age": [41],
        "Location": ["12 main street"],  # case and whitespace differ
    }
    spans = located(text, answers)
    assert ("Victim_Email", "j.o'neil@x.co", text.index("j.o")) in spans
    assert ("Victim_Age", "41", text.index("41")) in spans
    assert ("Location", "12  Main\nStreet", text.index("12  Main")) in spans
    assert ("Suspect_Description", 'male, 5\'9", "Red" cap', 9) in spans


def test_not_provided_is_an_entity_only_when_listed():
    text = "Witnesses: Not provided\nSuspect: Not provided"
    assert located(text, {"Witness_Name": []}) == []
    spans = located(text, {"Suspect_Description": ["Not provided"]})
    assert spans == [("Suspect_Description", "Not provided", 11)]  # listed once: the first occurrence


def test_unlocated_values_are_reported_and_counted(tmp_path):
    conv = answers_to_conversation("Officer Li took the report.", {
        "Officer_Name": ["Officer Li"], "Victim_Name": ["Nobody Here"], "Victim_Age": [52], "Witness_Name": [None],
    })
    path = write_jsonl(tmp_path / "u.jsonl", [answers_to_conversation("A quiet night.", {}), conv])
    with pytest.warns(UserWarning, match="3 answer values not found"):
        result = import_conversations(path)
    assert result.num_unlocated == 3
    assert [(u.report, u.label, u.value) for u in result.unlocated] == [
        (1, "Victim_Name", "Nobody Here"), (1, "Victim_Age", 52), (1, "Witness_Name", None)]
    assert result.unlocated[0].source.endswith("u.jsonl:2")
    assert result.jsons[1]["Officer_Name"] == ["Officer Li"]


def test_value_not_at_word_edges_is_last_resort():
    assert located("Badge#A1457B", {"Officer_BadgeNumber": ["1457"]}) == [("Officer_BadgeNumber", "1457", 7)]
    spans, missing = locate_values("Age 356.", {"Victim_Age": [56]})
    assert [(s.start, s.end) for s in spans] == [(5, 7)] and not missing


def test_conversation_corpus_splits(tmp_path):
    reports = generate_reports(30, seed=4)
    path = write_jsonl(tmp_path / "c.jsonl", [report_to_conversation(r) for r in reports])
    assert {k: len(v) for k, v in ConversationCorpus(str(path)).load().items()} == {"test": 30}
    fractions = {"train": 0.8, "validation": 0.1, "test": 0.1}
    splits = ConversationCorpus(str(path), split=fractions, seed=1).load()
    assert {k: len(v) for k, v in splits.items()} == {"train": 24, "validation": 3, "test": 3}
    again = ConversationCorpus(str(path), fractions, seed=1).load()
    assert [s.source for s in splits["test"]] == [s.source for s in again["test"]]


def test_cli_import_writes_three_forms(tmp_path, capsys):
    out = tmp_path / "out"
    src = write_jsonl(tmp_path / "in.jsonl", [
        report_to_conversation(Report("Theft at 5 Elm St.", [Span(0, 5, "Crime_Type"), Span(9, 18, "Location")])),
        answers_to_conversation("Vandalism reported.", {"Crime_Type": ["Vandalism"], "Location": ["Mars"]}),
    ])
    with pytest.warns(UserWarning):
        assert main(["import", str(src), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "test.*: 2 reports, 3 spans" in printed and "Location = 'Mars'" in printed
    first = read_conll(out / "test.txt")[0]
    assert first.tags == ["B-Crime_Type", "O", "B-Location", "I-Location", "I-Location", "I-Location"]
    records = [json.loads(line) for line in (out / "test.jsonl").read_text().splitlines()]
    assert records[1]["answers"]["Crime_Type"] == ["Vandalism"] and records[1]["answers"]["Location"] == []
    assert len((out / "test.conversations.jsonl").read_text().splitlines()) == 2


def test_crime_conversations_config_builds_the_datamodule(tmp_path):
    from hydra.utils import instantiate

    from tests.conftest import compose_config

    cfg = compose_config(["data=crime_conversations", f"data.path={FIXTURE}"], tmp_path)
    assert {k: len(v) for k, v in instantiate(cfg.data).sentences.items()} == {"test": 22}
    cfg = compose_config(["data=crime_conversations", f"data.path={FIXTURE}",
                          "data.corpus.split={train: 0.8, validation: 0.1, test: 0.1}"], tmp_path)
    assert {k: len(v) for k, v in instantiate(cfg.data).sentences.items()} == {"train": 18, "validation": 2, "test": 2}


def test_every_mention_labels_each_free_mention():
    text = "Officer Kim saw Kim Lee. kim lee ran. Kim Leeds hid; Kim Lee."
    answers = {"Witness_Name": ["Kim Lee"], "Officer_Name": ["Kim"]}
    every, missing = locate_values(text, answers, every=True)
    assert not missing
    # by hand: the free mentions at word edges, longest values first ("Kim Lee" inside "Kim Leeds" is not at an edge,
    # so that "Kim" is free for Officer_Name; the "Kim" inside each "Kim Lee" is taken)
    assert [(s.label, text[s.start:s.end], s.start) for s in every] == [
        ("Officer_Name", "Kim", 8), ("Witness_Name", "Kim Lee", 16), ("Witness_Name", "kim lee", 25),
        ("Officer_Name", "Kim", 38), ("Witness_Name", "Kim Lee", 53)]
    assert located(text, answers) == [("Officer_Name", "Kim", 8), ("Witness_Name", "Kim Lee", 16)]  # the default
    twice, _ = locate_values(text, {"Witness_Name": ["Kim Lee", "Kim Lee"], "Officer_Name": ["Kim"]}, every=True)
    assert twice == every  # a value listed twice: the same mentions


def test_every_mention_import_adds_only_further_mentions_of_listed_values():
    first, every = import_conversations(FIXTURE), import_conversations(FIXTURE, mentions="every")
    assert every.num_unlocated == 0 and [r.text for r in every.reports] == [r.text for r in first.reports]
    added = 0
    for a, b, answers in zip(first.reports, every.reports, every.answers):
        assert set(a.spans) <= set(b.spans)
        assert all(x.end <= y.start or y.end <= x.start for x, y in zip(b.spans, b.spans[1:]))  # sorted: no overlap
        listed = {(label, " ".join(str(v).split()).lower()) for label, values in answers.items() for v in values}
        for span in set(b.spans) - set(a.spans):
            assert (span.label, " ".join(b.text[span.start:span.end].split()).lower()) in listed
            added += 1
    assert added > 0  # the hand-written reports do name some values twice
    with pytest.raises(DataError, match="mentions"):
        import_conversations(FIXTURE, mentions="all")
    with pytest.raises(DataError, match="mentions"):
        ConversationCorpus(str(FIXTURE), mentions="all")


def test_tag_value_scores_count_a_value_once_whichever_mentions_are_tagged(tmp_path):
    from llmner.data.text import spans_to_tags
    from llmner.metrics import entity_scores
    from llmner.modules.tagger import tag_value_scores

    conversation = answers_to_conversation("Witness Kim Lee saw it. Later Kim Lee left.", {"Witness_Name": ["Kim Lee"]})
    sentence = import_conversations(write_jsonl(tmp_path / "one.jsonl", [conversation])).sentences[0]
    offsets, keys = sentence.meta["offsets"], ["Victim_Name", "Witness_Name"]
    both = spans_to_tags(offsets, [Span(8, 15, "Witness_Name"), Span(30, 37, "Witness_Name")])
    assert sentence.tags != both  # the gold (first mention) tags one of the two
    assert entity_scores([sentence.tags], [both], "test")["test/precision"] == 0.5
    scores = tag_value_scores([sentence], {0: both}, keys, "test")
    assert (scores["test/field_precision"], scores["test/field_recall"], scores["test/field_f1"]) == (1.0, 1.0, 1.0)
    mistyped = spans_to_tags(offsets, [Span(8, 15, "Witness_Name"), Span(30, 37, "Victim_Name")])
    scores = tag_value_scores([sentence], {0: mistyped}, keys, "test")
    assert (scores["test/field_precision"], scores["test/field_recall"]) == (0.5, 1.0)
    assert scores["test/field_f1_Victim_Name"] == 0.0 and scores["test/field_f1_Witness_Name"] == 1.0
    assert tag_value_scores([sentence], {0: ["O"] * len(offsets)}, keys, "test")["test/field_recall"] == 0.0
    # values keep their punctuation, as the gold values do
    period = import_conversations(write_jsonl(tmp_path / "two.jsonl", [answers_to_conversation(
        "Summary: a bike was stolen. Status: open.", {"Crime_Summary": ["a bike was stolen."]})])).sentences[0]
    assert tag_value_scores([period], {0: period.tags}, ["Crime_Summary"], "test")["test/field_f1"] == 1.0
    # CoNLL sentences carry no text: no value scores
    assert tag_value_scores([type(sentence)(tokens=["a"], tags=["O"])], {0: ["O"]}, keys, "test") == {}


def test_a_tagger_reports_value_scores_on_conversation_reports(tmp_path):
    """The run's ``test/field_f1`` is that of its own ``test_predictions.conll`` read back as values."""
    from llmner.evaluation.predictions import read_predictions
    from llmner.modules.tagger import tag_value_scores
    from llmner.train import train
    from tests.conftest import TINY, compose_config

    overrides = [o for o in TINY if not o.startswith("data=")] + [
        "data=crime_conversations", f"data.path={FIXTURE}", "data.corpus.split={train: 0.6, validation: 0.2, test: 0.2}",
        "data.corpus.mentions=every", "trainer.max_steps=3", "trainer.val_check_interval=3", "data.batch_size=2"]
    metrics, objects = train(compose_config(overrides, tmp_path))
    assert {"val/field_f1", "test/field_f1", "test/field_precision", "test/field_f1_Victim_Name"} <= set(metrics)
    sentences = objects["datamodule"].sentences["test"]
    predicted = read_predictions(tmp_path)
    assert predicted.tokens == [s.tokens for s in sentences]
    again = tag_value_scores(sentences, dict(enumerate(predicted.pred)), objects["model"].keys, "test")
    assert metrics["test/field_f1"] == pytest.approx(again["test/field_f1"])
    assert metrics["test/field_recall"] == pytest.approx(again["test/field_recall"])


@pytest.mark.parametrize("variety", ["classic", "varied"])
def test_gold_tags_read_as_values_give_every_gold_value(variety):
    """The oracle: a tagger that predicts the gold tags scores field F1 1.0 (values lost to an overlap aside)."""
    from llmner.data.crime.corpus import generate_splits
    from llmner.data.crime.views import report_to_sentence
    from llmner.modules.tagger import tag_value_scores

    sentences = [report_to_sentence(r) for r in generate_splits({"test": 150}, seed=3, variety=variety)["test"]]
    clean = [s for s in sentences if not s.meta["dropped_spans"]]
    assert len(clean) > 100
    scores = tag_value_scores(clean, {i: s.tags for i, s in enumerate(clean)}, list(ENTITY_TYPES), "test")
    assert scores["test/field_f1"] == 1.0, {k: v for k, v in scores.items() if v < 1}
