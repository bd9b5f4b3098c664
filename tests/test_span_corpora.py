"""Span corpora from annotation tools: each format round-trips hand-made spans through words and tags,
and every bad input stops with one line naming the file, the line or task, and what was expected."""

import json
import logging

import pytest

from llmner.data.annotations import read_records
from llmner.data.schema import DataError, Span
from llmner.data.spans import SpanCorpus, span_words, spans_to_word_tags, word_tags_to_spans
from llmner.data.text import split_words

# CRLF, a tab, double spaces, an emoji (non-BMP: two UTF-16 code units) before the later spans, an
# accented letter, a flag (two code points, one grapheme), abbreviations with full stops.
TEXT = "Ann Lee  flew to Paris, France.\r\nThen\t😀 Zoë met the U.N. team 🇫🇷 in Nice."
WANT = [("Ann Lee", "PER"), ("Paris", "LOC"), ("France", "LOC"), ("Zoë", "PER"), ("U.N.", "ORG"), ("Nice", "LOC")]


def spans_of(text, wanted):
    """Spans at the first occurrence (after the previous one) of each wanted text."""
    out, pos = [], 0
    for value, label in wanted:
        start = text.index(value, pos)
        out.append(Span(start, start + len(value), label))
        pos = start + len(value)
    return out


SPANS = spans_of(TEXT, WANT)


def doccano(text, spans, key="label"):
    return {"id": 1, "text": text, key: [[s.start, s.end, s.label] for s in spans], "Comments": []}


def spacy(text, spans):  # the shape llmner.predict writes: extra span keys text and score
    return {"text": text, "spans": [{"start": s.start, "end": s.end, "label": s.label, "text": text[s.start:s.end],
                                     "score": 0.9, "token_start": 0, "token_end": 1} for s in spans]}


def label_studio(text, spans, task_id=1):
    result = [{"id": f"r{i}", "from_name": "label", "to_name": "text", "type": "labels",
               "value": {"start": s.start, "end": s.end, "text": text[s.start:s.end], "labels": [s.label]}}
              for i, s in enumerate(spans)]
    return {"id": task_id, "data": {"text": text}, "annotations": [{"id": 9, "was_cancelled": False, "result": result}]}


def write_jsonl(path, records, newline="\n"):
    path.write_bytes("".join(json.dumps(r, ensure_ascii=False) + newline for r in records).encode("utf-8"))
    return path


def write_json(path, tasks):
    path.write_text(json.dumps(tasks, ensure_ascii=True), encoding="utf-8")  # \ud83d\ude00 escapes for the emoji
    return path


def corpus_sentences(path, **kwargs):
    return SpanCorpus(path=str(path), **kwargs).sentences(read_records(path, **{k: v for k, v in kwargs.items()
                                                                                 if k in ("format", "offsets")}))


FORMATS = {
    "doccano label": lambda p, t, s: write_jsonl(p / "a.jsonl", [doccano(t, s)], newline="\r\n"),
    "doccano labels": lambda p, t, s: write_jsonl(p / "a.jsonl", [doccano(t, s, "labels")]),
    "doccano entities": lambda p, t, s: write_jsonl(p / "a.jsonl", [{"text": t, "entities": [
        {"id": i, "start_offset": x.start, "end_offset": x.end, "label": x.label} for i, x in enumerate(s)]}]),
    "label studio": lambda p, t, s: write_json(p / "a.json", [label_studio(t, s)]),
    "spacy": lambda p, t, s: write_jsonl(p / "a.jsonl", [spacy(t, s)]),
    "label studio min": lambda p, t, s: write_json(p / "a.json", [{"id": 1, "text": t, "annotator": 1, "label": [
        {"start": x.start, "end": x.end, "text": t[x.start:x.end], "labels": [x.label]} for x in s]}]),
}


@pytest.mark.parametrize("form", FORMATS)
@pytest.mark.parametrize("splitter", ["punct", "conll", "whitespace"])
def test_round_trip_spans_words_tags_spans(tmp_path, form, splitter):
    path = FORMATS[form](tmp_path, TEXT, SPANS)
    [sentence] = corpus_sentences(path, splitter=splitter)
    offsets = sentence.meta["offsets"]
    assert sentence.tokens == [TEXT[s:e] for s, e in offsets]
    assert word_tags_to_spans(offsets, sentence.tags) == SPANS
    assert [TEXT[s.start:s.end] for s in word_tags_to_spans(offsets, sentence.tags)] == [w for w, _ in WANT]
    assert sentence.source == f"{path}:1" or "task #0 (id 1)" in sentence.source


def test_punct_words_are_those_of_raw_text(tmp_path):
    """Under the default splitter no span edge adds a cut: training words are prediction words."""
    [sentence] = corpus_sentences(FORMATS["spacy"](tmp_path, TEXT, SPANS))
    assert sentence.meta["offsets"] == split_words(TEXT, "punct")
    assert "🇫🇷" in sentence.tokens and "😀" in sentence.tokens


def test_a_cut_that_the_splitter_can_make_is_kept(tmp_path):
    text = "Visit Paris, then (Lyon)."
    path = write_jsonl(tmp_path / "a.jsonl", [doccano(text, spans_of(text, [("Paris", "LOC"), ("Lyon", "LOC")]))])
    [sentence] = corpus_sentences(path, splitter="whitespace")
    assert list(zip(sentence.tokens, sentence.tags)) == [
        ("Visit", "O"), ("Paris", "B-LOC"), (",", "O"), ("then", "O"), ("(", "O"), ("Lyon", "B-LOC"), (").", "O")]


@pytest.mark.parametrize("text, value, at, word", [
    ("We met in Parisian cafes.", "Paris", 10, "Parisian"),  # inside a run of letters
    ("Zoe\u0308 left.", "Zoe", 0, "Zoe\u0308"),               # before the combining diaeresis: inside a grapheme
    ("Flags 🇫🇷 here", "🇫", 6, "🇫🇷"),                         # half a flag
])
def test_misaligned_spans_are_an_error_or_dropped_never_moved(tmp_path, caplog, text, value, at, word):
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": "nothing here"}, doccano(text, [Span(at, at + len(value), "LOC")])])
    with pytest.raises(DataError, match=rf"a.jsonl:2: span \[{at}, {at + len(value)}\) '{value}' \(LOC\) cuts the word "
                                        rf"'{word}' at {at + len(value)}; expected spans on word edges \(1 such spans"):
        corpus_sentences(path)
    with caplog.at_level(logging.WARNING):
        sentences = corpus_sentences(path, misaligned="drop")
    assert "dropped 1 spans" in caplog.text and f"a.jsonl:2: span [{at}" in caplog.text
    assert all(t[2:] != "LOC" for t in sentences[1].tags)


def test_overlapping_and_nested_spans(tmp_path, caplog):
    text = "New York City is big."
    spans = [Span(0, 8, "LOC"), Span(4, 13, "GPE"), Span(0, 3, "MISC"), Span(0, 8, "LOC")]
    path = write_jsonl(tmp_path / "a.jsonl", [doccano(text, spans)])
    with pytest.raises(DataError, match=r"a.jsonl:1: spans \[0, 8\) 'New York' \(LOC\) and \[0, 3\) 'New' \(MISC\) "
                                        r"overlap; expected flat spans"):
        corpus_sentences(path)
    with caplog.at_level(logging.WARNING):
        [sentence] = corpus_sentences(path, overlapping="longest")
    # GPE "York City" is longest; LOC "New York" (its duplicate counts once) overlaps it; MISC "New" overlaps nothing kept
    assert word_tags_to_spans(sentence.meta["offsets"], sentence.tags) == [Span(0, 3, "MISC"), Span(4, 13, "GPE")]
    assert "left out 1 spans nested in or overlapping longer ones (first: " in caplog.text and "'New York' (LOC)" in caplog.text


def test_duplicates_count_once(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [doccano("Ann left.", [Span(0, 3, "PER"), Span(0, 3, "PER")])])
    assert corpus_sentences(path)[0].tags == ["B-PER", "O", "O"]


def test_empty_texts_are_skipped_and_counted(tmp_path, caplog):
    path = write_jsonl(tmp_path / "a.jsonl", [doccano("", []), doccano("  \r\n", []), doccano("Ann left.", [Span(0, 3, "PER")])])
    with caplog.at_level(logging.WARNING):
        sentences = corpus_sentences(path)
    assert len(sentences) == 1 and "skipped 2 empty texts (first: " in caplog.text and "a.jsonl:1" in caplog.text


@pytest.mark.parametrize("record, message", [
    (doccano("Ann", [Span(0, 5, "PER")]), r"a.jsonl:2: span \[0, 5\) 'PER': past the end of the text \(3 characters\)"),
    (doccano("Ann", [Span(2, 2, "PER")]), r"a.jsonl:2: span \[2, 2\) 'PER': expected 0 <= start < end"),
    ({"text": "Ann", "label": [["0", 3, "PER"]]}, r"a.jsonl:2: span \['0', 3\) 'PER': expected integer character offsets"),
    ({"text": "Ann", "label": ["positive"]}, r"a.jsonl:2: 'label': expected \[start, end, label\] .*text-classification"),
    ({"text": 3, "label": []}, r"a.jsonl:2: expected a 'text' string, got int"),
    ({"text": "😀 Ann", "label": [[3, 6, "PER"]]}, r"past the end of the text \(5 characters\) \(within its length in "
                                                  r"UTF-16 code units: .*data.corpus.offsets=utf16\)"),
    ({"text": "Ann", "label": [[0, 3, "PER"]], "labels": [[0, 3, "PER"]]}, r"a.jsonl:2: both 'label' and 'labels'"),
])
def test_bad_doccano_records_name_file_line_and_expectation(tmp_path, record, message):
    path = write_jsonl(tmp_path / "a.jsonl", [doccano("fine", []), record])
    with pytest.raises(DataError, match=message):
        read_records(path)


def test_bad_json_line_and_unknown_format(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "a", "label": []}\n\n{"text": "b", "label": [}\n')
    with pytest.raises(DataError, match=r"a.jsonl:3: not a JSON object: Expecting value at column 25"):
        read_records(path)
    path.write_text('{"text": "a"}\n')
    with pytest.raises(DataError, match=r"a.jsonl: cannot tell the format .*set data.corpus.format"):
        read_records(path)


def test_unknown_keys_are_reported(tmp_path, caplog):
    path = write_jsonl(tmp_path / "a.jsonl", [doccano("Ann left.", [Span(0, 3, "PER")]),
                                              {"text": "Bob left.", "lables": [[0, 3, "PER"]]}])
    with caplog.at_level(logging.WARNING):
        read_records(path)
    assert "keys not read by the doccano reader: lables (first at " in caplog.text and "a.jsonl:2" in caplog.text


def test_stated_span_text_is_checked_and_utf16_offsets_are_recognised(tmp_path):
    zoe = SPANS[3]  # after the emoji: UTF-16 offsets are one more than code points
    units = TEXT[:zoe.start].encode("utf-16-le")
    start16 = len(units) // 2
    spaced = {"text": TEXT, "spans": [{"start": start16, "end": start16 + 3, "label": "PER", "text": "Zoë"}]}
    path = write_jsonl(tmp_path / "a.jsonl", [spacy(TEXT, SPANS), spaced])
    with pytest.raises(DataError, match=r"a.jsonl:2: span \[\d+, \d+\) 'PER' says its text is 'Zoë' but the text there "
                                        r"is 'oë ' .*they match as UTF-16 code units: set data.corpus.offsets=utf16"):
        read_records(path)
    path = write_jsonl(tmp_path / "b.jsonl", [spaced])
    [record] = read_records(path, offsets="utf16")
    assert record.spans == [zoe]


def test_label_studio_first_completed_annotation_and_skips(tmp_path, caplog):
    text = "Ann met Bob."
    task = label_studio(text, [Span(0, 3, "PER")])
    cancelled = {"id": 8, "was_cancelled": True, "result": task["annotations"][0]["result"] * 0}
    task["annotations"] = [cancelled, task["annotations"][0],
                           {"id": 10, "result": [{"value": {"start": 8, "end": 11, "text": "Bob", "labels": ["PER"]}}]}]
    task["annotations"][1]["result"].append({"type": "choices", "value": {"choices": ["news"]}})
    unannotated = {"id": 2, "data": {"text": "Nobody here."}, "annotations": []}
    only_cancelled = {"id": 3, "data": {"text": "Nor here."}, "annotations": [cancelled]}
    path = write_json(tmp_path / "export.json", [task, unannotated, only_cancelled])
    with caplog.at_level(logging.WARNING):
        records = read_records(path)
    assert [(r.text, r.spans) for r in records] == [(text, [Span(0, 3, "PER")])]  # not the third annotation's Bob
    assert "skipped 2 records (no annotation that was not cancelled; first: " in caplog.text and "task #1 (id 2)" in caplog.text


@pytest.mark.parametrize("value, message", [
    ({"start": 0, "end": 3, "text": "Bob", "labels": ["PER"]},
     r"export.json: task #0 \(id 1\): span \[0, 3\) 'PER' says its text is 'Bob' but the text there is 'Ann'"),
    ({"start": "/div[1]/text()[1]", "end": "/div[1]/text()[1]", "labels": ["PER"]}, r"task #0 \(id 1\): .*expected integer"),
    ({"start": 0, "end": 3, "labels": []}, r"task #0 \(id 1\): result r0: expected a non-empty 'labels' list"),
])
def test_bad_label_studio_tasks_name_the_task(tmp_path, value, message):
    task = label_studio("Ann met Bob.", [Span(0, 3, "PER")])
    task["annotations"][0]["result"][0]["value"] = value
    with pytest.raises(DataError, match=message):
        read_records(write_json(tmp_path / "export.json", [task]))


def test_prodigy_rejected_answers_are_skipped(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{**spacy("Ann left.", [Span(0, 3, "PER")]), "answer": "reject", "_task_hash": 1},
                                              {**spacy("Bob left.", [Span(0, 3, "PER")]), "answer": "accept"}])
    assert [r.text for r in read_records(path)] == ["Bob left."]


def test_one_file_is_split_by_seeded_fractions(tmp_path):
    texts = [f"Text number {i} by Ann." for i in range(20)]
    records = [doccano(t, spans_of(t, [("Ann", "PER")])) for t in texts]
    path = write_jsonl(tmp_path / "all.jsonl", records)
    splits = SpanCorpus(path=str(path), split={"train": 0.5, "validation": 0.25, "test": 0.25}, seed=1).load()
    assert {k: len(v) for k, v in splits.items()} == {"train": 10, "validation": 5, "test": 5}
    assert sorted(s.source for v in splits.values() for s in v) == sorted(f"{path}:{i + 1}" for i in range(20))
    assert all(s.tags[-2:] == ["B-PER", "O"] for v in splits.values() for s in v)
    again = SpanCorpus(path=str(path), split={"train": 0.5, "validation": 0.25, "test": 0.25}, seed=1).load()
    assert [s.source for s in again["test"]] == [s.source for s in splits["test"]]


def test_directory_without_split_files(tmp_path):
    (tmp_path / "other.jsonl").write_text("")
    with pytest.raises(DataError, match=r"no split file \(looked for train.jsonl, train.json, validation.jsonl"):
        SpanCorpus(path=str(tmp_path)).load()


def export(sentences):
    """Texts (two generated sentences each, a newline between) and their spans."""
    out = []
    for a, b in zip(sentences[::2], sentences[1::2]):
        text, spans = "", []
        for words in (a, b):
            text += "\n" if text else ""
            for n, (w, tag) in enumerate(words):
                text += " " if n else ""
                if tag.startswith("B-"):
                    spans.append(Span(len(text), len(text) + len(w), tag[2:]))
                elif tag.startswith("I-"):
                    spans[-1] = Span(spans[-1].start, len(text) + len(w), spans[-1].label)
                text += w
        out.append((text, spans))
    return out


@pytest.fixture(scope="module")
def tool_runs(tmp_path_factory):
    """The same annotations as a doccano export and as a Label Studio export, each trained 5 steps."""
    from llmner.train import train
    from tests.conftest import TINY, compose_config, make_sentences

    runs = {}
    for tool in ("doccano", "label_studio"):
        d = tmp_path_factory.mktemp(tool)
        for split, n, seed in (("train", 60, 0), ("validation", 12, 1), ("test", 12, 2)):
            texts = export(make_sentences(n, seed))
            if tool == "doccano":
                write_jsonl(d / f"{split}.jsonl", [doccano(t, s) for t, s in texts])
            else:
                write_json(d / f"{split}.json", [label_studio(t, s, i) for i, (t, s) in enumerate(texts)])
        cfg = compose_config([*TINY, "data=spans", f"data.path={d}", "trainer.max_steps=5"], d / "run")
        runs[tool] = train(cfg)
    return runs


def test_doccano_and_label_studio_exports_train_to_the_same_tags_and_entity_counts(tool_runs):
    from llmner.data.schemes import entities

    (m1, o1), (m2, o2) = tool_runs["doccano"], tool_runs["label_studio"]
    s1, s2 = o1["datamodule"].sentences, o2["datamodule"].sentences
    assert {k: [(s.tokens, s.tags) for s in v] for k, v in s1.items()} == {k: [(s.tokens, s.tags) for s in v] for k, v in s2.items()}
    counts = {k: sum(len(entities(s.tags)) for s in v) for k, v in s1.items()}
    assert counts["train"] > 60 and o1["model"].tags == o2["model"].tags == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert m1["train/steps"] == m2["train/steps"] == 5 and "test/f1" in m1 and "test/f1" in m2
    assert o1["datamodule"].splitter == "punct"  # raw text at prediction time is split as these texts were


def test_the_readme_example_file_reads_as_it_says(tmp_path):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    example = re.search(r"A doccano `train.jsonl`:\n```json\n(.*?)```", readme, flags=re.S).group(1)
    assert len(example.splitlines()) == 5
    (tmp_path / "train.jsonl").write_text(example, encoding="utf-8")
    [train] = SpanCorpus(path=str(tmp_path)).load().values()
    found = [(s.meta["text"][x.start:x.end], x.label) for s in train for x in word_tags_to_spans(s.meta["offsets"], s.tags)]
    assert found == [("Ann Lee", "PER"), ("Paris", "LOC"), ("Red Cross", "ORG"), ("Lima", "LOC"), ("Omar Haddad", "PER"),
                     ("Reuters", "ORG"), ("Zoë", "PER"), ("U.N.", "ORG"), ("Nice", "LOC")]


def test_a_span_of_whitespace_alone_is_misaligned(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [doccano("Ann  left.", [Span(3, 5, "PER")])])
    with pytest.raises(DataError, match=r"a.jsonl:1: span \[3, 5\) '  ' \(PER\) covers whitespace only"):
        corpus_sentences(path)


def test_the_command_line_stops_with_one_line_naming_file_and_line(tmp_path):
    import subprocess
    import sys

    for split in ("train", "validation", "test"):
        write_jsonl(tmp_path / f"{split}.jsonl", [doccano("Ann left.", [Span(0, 3, "PER")]), doccano("Ann", [Span(0, 9, "PER")])])
    proc = subprocess.run([sys.executable, "-m", "llmner.train", "backbone=tiny_random", "data=spans", f"data.path={tmp_path}",
                           f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last == f"llmner train: {tmp_path / 'train.jsonl'}:2: span [0, 9) 'PER': past the end of the text (3 characters)"


def test_punct_words_hold_for_combining_marks(tmp_path):
    """'Cafe\u0301s' is one punct word: a span 'Cafe\u0301' cuts a run of letters and marks, never an extra word."""
    text = "Cafe\u0301s open."
    path = write_jsonl(tmp_path / "a.jsonl", [doccano(text, [Span(0, 5, "ORG")])])
    with pytest.raises(DataError, match="cuts the word 'Cafe\u0301s' at 5"):
        corpus_sentences(path)


def test_random_texts_and_spans_against_the_punct_words(tmp_path):
    """Random texts (emoji, flags, accents, CRLF, tabs, punctuation) and random flat spans: under punct a span
    is kept iff neither edge is strictly inside a word of split_words (the oracle), and comes back as itself
    less the whitespace at its edges; the words are always exactly split_words'."""
    import random

    rng = random.Random(0)
    pieces = ["Ann", "Zoë", "Cafe\u0301", "42", "U.N.", "😀", "🇫🇷", "👍🏽", ",", "(", ")", "-", " ", "  ", "\t", "\r\n", "_"]
    for _ in range(300):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
        edges = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, 2 * rng.randint(1, 3))))
        spans = [Span(a, b, "X") for a, b in zip(edges[::2], edges[1::2]) if a < b]
        words = split_words(text, "punct")
        inside = {i for s, e in words for i in range(s + 1, e)}
        offsets, bad = span_words(text, spans, "punct")
        assert offsets == words
        for span in spans:
            expect_bad = span.start in inside or span.end in inside or not text[span.start:span.end].strip()
            assert (span in bad) == expect_bad, (text, span)
        good = [s for s in spans if s not in bad]
        back = word_tags_to_spans(offsets, spans_to_word_tags(offsets, good))
        stripped = [Span(s.start + len(text[s.start:s.end]) - len(text[s.start:s.end].lstrip()),
                         s.end - len(text[s.start:s.end]) + len(text[s.start:s.end].rstrip()), s.label) for s in good]
        assert back == stripped, (text, spans)
