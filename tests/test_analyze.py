"""``llmner.analyze`` (``llmner.evaluation.analyze``) on hand-made prediction files whose error counts are worked out by hand below."""

import random
import re

import pandas as pd
import pytest

from llmner.analyze import main as analyze_main
from llmner.data.conll import read_conll
from llmner.data.schema import DataError
from llmner.evaluation.analyze.analysis import analyze_run, compare_runs
from llmner.evaluation.analyze.benchmark import analyze_benchmark
from llmner.evaluation.analyze.buckets import length_tables
from llmner.evaluation.analyze.categories import CATEGORIES, classify
from llmner.evaluation.analyze.markdown import pattern_examples, pattern_text
from llmner.evaluation.analyze.training import train_surfaces
from llmner.evaluation.analyze.write import analyze
from llmner.evaluation.predictions import read_predictions
from llmner.metrics import entity_scores

# (words, gold tags, run A's tags, run B's tags), one sentence each. What each sentence does to A:
SENTENCES = [
    # PER "John Smith" correct; LOC "New York" predicted ORG on the same span: wrong_type
    ("John Smith lives in New York .".split(),
     "B-PER I-PER O O B-LOC I-LOC O".split(),
     "B-PER I-PER O O B-ORG I-ORG O".split(),
     "B-PER I-PER O O B-LOC I-LOC O".split()),
    # ORG "Bank of England" predicted ORG "England": wrong_boundary
    ("The Bank of England said .".split(),
     "O B-ORG I-ORG I-ORG O O".split(),
     "O O O B-ORG O O".split(),
     "O B-ORG I-ORG I-ORG O O".split()),
    # PER "Paris Hilton" predicted LOC "Paris": wrong_type_and_boundary; LOC "Berlin" missed
    ("Paris Hilton visited Berlin".split(),
     "B-PER I-PER O B-LOC".split(),
     "B-LOC O O O".split(),
     "B-PER I-PER O B-LOC".split()),
    # no entity; A predicts MISC "Monday": spurious
    ("Prices rose on Monday".split(),
     "O O O O".split(),
     "O O O B-MISC".split(),
     "O O O O".split()),
    # ORG "Reuters" and LOC "Rome" correct in A; B misses "Rome"
    ("Reuters reported from Rome".split(),
     "B-ORG O O B-LOC".split(),
     "B-ORG O O B-LOC".split(),
     "B-ORG O O O".split()),
    # LOC "Germany" and LOC "Italy" correct: an I-LOC after O starts an entity (conlleval's rule)
    ("Germany beat Italy".split(),
     "B-LOC O B-LOC".split(),
     "B-LOC O I-LOC".split(),
     "B-LOC O B-LOC".split()),
]
# A: 9 gold entities, 9 predicted, 5 correct (John Smith, Reuters, Rome, Germany, Italy).
# B: 9 gold, 8 predicted, 8 correct (all but Rome).
TRAIN = [("John Smith met officials in New York".split(), "B-PER I-PER O O O B-LOC I-LOC".split()),
         ("Germany won".split(), "B-LOC O".split())]


def write(path, rows):
    path.write_text("".join("".join(f"{w} {g} {p}\n" for w, g, p in zip(*r)) + "\n" for r in rows))
    return path


@pytest.fixture
def files(tmp_path):
    """Run A as a run folder ``a/``, run B as a bare file, and a 2-column training split."""
    (tmp_path / "a").mkdir()
    a = write(tmp_path / "a" / "test_predictions.conll", [(w, g, p) for w, g, p, _ in SENTENCES])
    b = write(tmp_path / "b.conll", [(w, g, q) for w, g, _, q in SENTENCES])
    train = tmp_path / "train.txt"
    train.write_text("".join("".join(f"{w} {t}\n" for w, t in zip(*s)) + "\n" for s in TRAIN))
    return a, b, train


def test_categories_per_type(files):
    r = analyze_run(read_predictions(files[0]))
    got = r.categories.set_index("type").to_dict("index")
    zero = dict.fromkeys(CATEGORIES, 0)
    assert got["LOC"] == zero | {"correct": 3, "wrong_type": 1, "missed": 1}       # Rome, Germany, Italy; New York; Berlin
    assert got["ORG"] == zero | {"correct": 1, "wrong_boundary": 1}                # Reuters; Bank of England
    assert got["PER"] == zero | {"correct": 1, "wrong_type_and_boundary": 1}       # John Smith; Paris Hilton
    assert got["MISC"] == zero | {"spurious": 1}                                   # Monday
    assert got["all"] == {"correct": 5, "wrong_type": 1, "wrong_boundary": 1, "wrong_type_and_boundary": 1,
                          "missed": 1, "spurious": 1}


def test_confusion_matrix(files):
    r = analyze_run(read_predictions(files[0]))
    labels = ["LOC", "MISC", "ORG", "PER", "O"]
    expected = pd.DataFrame(0, index=labels, columns=labels)
    expected.loc["LOC", "LOC"] = 3   # Rome, Germany, Italy
    expected.loc["LOC", "ORG"] = 1   # New York
    expected.loc["LOC", "O"] = 1     # Berlin missed
    expected.loc["ORG", "ORG"] = 2   # Reuters, Bank of England (wrong boundary, right type)
    expected.loc["PER", "PER"] = 1   # John Smith
    expected.loc["PER", "LOC"] = 1   # Paris Hilton -> Paris
    expected.loc["O", "MISC"] = 1    # Monday spurious
    assert r.confusion.values.tolist() == expected.values.tolist()
    assert list(r.confusion.index) == labels and list(r.confusion.columns) == labels


def test_scenario_scores(files):
    r = analyze_run(read_predictions(files[0]))
    f1 = r.scores[r.scores["type"] == "all"].set_index("scenario")["f1"]
    assert f1["strict"] == pytest.approx(5 / 9)    # 9 predicted, 9 gold, 5 correct: P = R = F1
    assert f1["exact"] == pytest.approx(6 / 9)     # + New York (same span)
    assert f1["ent_type"] == pytest.approx(6 / 9)  # + Bank of England (same type, overlapping)
    assert f1["partial"] == pytest.approx(7 / 9)   # 6 exact spans + half of 2 overlapping ones
    assert r.seqeval_f1 == pytest.approx(5 / 9)


def test_strict_f1_equals_seqeval_on_random_tags():
    rng = random.Random(0)
    tags = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]  # I-X after O or B-Y too
    gold = [[rng.choice(tags) for _ in range(rng.randint(1, 12))] for _ in range(300)]
    pred = [[t if rng.random() < 0.7 else rng.choice(tags) for t in s] for s in gold]
    _, results = classify(gold, pred)
    seqeval = entity_scores(gold, pred, "test")
    assert results["overall"]["strict"].f1 == pytest.approx(seqeval["test/f1"])
    for t in ("PER", "LOC", "ORG"):
        assert results["entities"][t]["strict"].f1 == pytest.approx(seqeval[f"test/f1_{t}"])


def test_buckets_by_length_and_seen(files):
    p = read_predictions(files[0])
    seen = train_surfaces(read_conll(files[2]))
    assert seen == {"John Smith", "New York", "Germany"}
    tables = length_tables(p, ["LOC", "MISC", "ORG", "PER"], seen)
    length = tables["by_entity_length"].set_index("bucket")
    # gold: 5 one-word, 3 two-word, 1 three-word; predicted: 7 one-word, 2 two-word
    assert length.loc["1", ["gold", "pred", "correct"]].tolist() == [5, 7, 4]
    assert length.loc["2", ["gold", "pred", "correct"]].tolist() == [3, 2, 1]
    assert length.loc["3", ["gold", "pred", "correct"]].tolist() == [1, 0, 0]
    assert length.loc["1", "f1"] == pytest.approx(2 * 4 / (5 + 7))
    by_seen = tables["by_seen"].set_index("bucket")
    # seen gold: John Smith, New York, Germany; seen predictions: the same words (New York as ORG)
    assert by_seen.loc["seen", ["gold", "pred", "correct"]].tolist() == [3, 3, 2]
    assert by_seen.loc["unseen", ["gold", "pred", "correct"]].tolist() == [6, 6, 3]
    sentence = tables["by_sentence_length"].set_index("bucket")
    # 1-5 words: sentences 3-6 (gold 2+0+2+2, predicted 1+1+2+2, correct 0+0+2+2); 6-10: sentences 1, 2
    assert sentence.loc["1-5", ["sentences", "gold", "pred", "correct"]].tolist() == [4, 6, 6, 4]
    assert sentence.loc["6-10", ["sentences", "gold", "pred", "correct"]].tolist() == [2, 3, 3, 1]


def test_patterns_and_examples(files):
    p = read_predictions(files[0])
    r = analyze_run(p)
    assert len(r.errors) == 5 and len(r.patterns) == 5  # each error once
    first = r.patterns.iloc[0]
    assert pattern_text(first) == 'wrong_type: gold LOC "New York" → pred ORG "New York"'
    text = pattern_examples(p, r.errors, r.patterns)
    assert "gold: The [[Bank of England]]/ORG said ." in text
    assert "pred: The Bank of [[England]]/ORG said ." in text
    assert "pred: Prices rose on [[Monday]]/MISC" in text


def test_two_runs(files):
    a = analyze_run(read_predictions(files[0]))
    b = analyze_run(read_predictions(files[1]))
    cmp = compare_runs(a, b, samples=50)
    # A right on sentences 5, 6; B right on 1, 2, 3, 4, 6
    assert cmp["counts"] == {"both_right": 1, "only_a_right": 1, "only_b_right": 4, "both_wrong": 0,
                             "both_right_with_entities": 1, "only_a_right_with_entities": 1,
                             "only_b_right_with_entities": 3, "both_wrong_with_entities": 0}
    delta = cmp["categories"][cmp["categories"]["type"] == "all"].set_index("category")["a_minus_b"].to_dict()
    assert delta == {"correct": 5 - 8, "wrong_type": 1, "wrong_boundary": 1, "wrong_type_and_boundary": 1,
                     "missed": 1 - 1, "spurious": 1}
    assert cmp["bootstrap"]["delta"] == pytest.approx(5 / 9 - 2 * 8 / (8 + 9))


def test_two_runs_on_different_test_sets_are_refused(files, tmp_path):
    other = write(tmp_path / "c.conll", [(w if i != 2 else ["Paris", "Hilton", "saw", "Berlin"], g, g)
                                         for i, (w, g, _, _) in enumerate(SENTENCES)])
    with pytest.raises(DataError, match=r"c.conll:\d+: sentence 3 differs in its words"):
        analyze(files[0], other)


def is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_writes_report_tables_and_plots(files, tmp_path):
    out = tmp_path / "out"
    analyze_main([str(files[0].parent), str(files[1]), "--train", str(files[2]), "--out", str(out), "--samples", "50"])
    for name in ("categories", "scores", "errors", "patterns", "by_entity_length", "by_sentence_length", "by_seen",
                 "comparison_categories", "comparison_sentences", "comparison_summary", "confusion_a", "confusion_b"):
        assert (out / f"{name}.csv").is_file(), name
    for name in ("confusion_a", "confusion_b", "f1_by_bucket", "error_categories"):
        assert is_png(out / f"{name}.png"), name
    text = (out / "report.md").read_text()
    assert "## a (A) vs b (B)" in text and "Paired bootstrap" in text and "seen vs unseen" in text
    assert set(pd.read_csv(out / "categories.csv")["run"]) == {"a", "b"}


def test_cli_default_out_and_train_from_the_run_config(files, tmp_path):
    (tmp_path / "data").mkdir()
    files[2].rename(tmp_path / "data" / "train.txt")
    run = files[0].parent
    (run / ".hydra").mkdir()
    (run / ".hydra" / "config.yaml").write_text(f"data:\n  path: {tmp_path / 'data'}\n  corpus:\n"
                                                "    _target_: llmner.data.conll.ConllCorpus\n    tag_column: -1\n")
    analyze_main([str(run), "--samples", "20"])
    assert (run / "analysis" / "report.md").is_file()
    seen = pd.read_csv(run / "analysis" / "by_seen.csv").set_index("bucket")
    assert seen.loc["seen", "gold"] == 3


def test_no_train_split_skips_the_seen_table(files, tmp_path):
    report = analyze(files[1], out=tmp_path / "o")
    assert "Skipped: no .hydra/config.yaml" in report.read_text()
    assert not (tmp_path / "o" / "by_seen.csv").exists()


@pytest.mark.parametrize("line, message", [
    ("Rome B-LOC\n", r"bad.conll:3: expected `token gold predicted` \(3 columns\), got 2"),
    ("Rome B-LOC X-LOC\n", r"bad.conll:3: predicted tag 'X-LOC' is not O, B-<type> or I-<type>"),
])
def test_malformed_file_is_one_line_with_file_and_line(tmp_path, capsys, line, message):
    bad = tmp_path / "bad.conll"
    bad.write_text("John B-PER B-PER\nvisited O O\n" + line)
    with pytest.raises(SystemExit) as exit_:
        analyze_main([str(bad)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert re.search(message, err), err


def test_analyze_benchmark_best_against_each_other(files, tmp_path):
    out = tmp_path / "bench"
    for system, source in (("crf", files[1]), ("linear", files[0])):
        (out / system / "seed1").mkdir(parents=True)
        (out / system / "seed1" / "test_predictions.conll").write_text(source.read_text())
    (out / "other" / "seed1").mkdir(parents=True)  # no predictions: a partial benchmark, skipped
    summary = pd.DataFrame({"system": ["linear", "crf", "other"], "val_f1": [0.5, 0.9, 0.1]})
    written = analyze_benchmark(out, summary, samples=20)
    assert written == [out / "analysis" / "crf_vs_linear" / "report.md"]
    assert "## crf (A) vs linear (B)" in written[0].read_text()
