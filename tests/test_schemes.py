"""Tag schemes: IOB1, IOB2, IOBES and BILOU read into the same IOB2 entities, written back as they came,
scored the same by conlleval (the Python port of conlleval.pl) and by training."""

import pytest

from llmner.data.conll import ConllCorpus, read_conll
from llmner.data.schema import DataError
from llmner.data.schemes import SCHEMES, detect_scheme, entities, from_iob2, normalize_scheme, to_iob2, well_formed
from llmner.evaluation.predictions import read_predictions
from llmner.train import train
from tests.conftest import TINY, compose_config, make_sentences, write_conll

# One hand-written sentence per scheme: PER "John Smith", LOC "Paris", LOC "Lyon" right after it, ORG "UN".
WORDS = ["John", "Smith", "saw", "Paris", "Lyon", "and", "the", "UN"]
HAND = {
    "iob2": ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "O", "O", "B-ORG"],
    "iob1": ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "O", "O", "I-ORG"],
    "iobes": ["B-PER", "E-PER", "O", "S-LOC", "S-LOC", "O", "O", "S-ORG"],
    "bilou": ["B-PER", "L-PER", "O", "U-LOC", "U-LOC", "O", "O", "U-ORG"],
}
SPANS = [(0, 2, "PER"), (3, 4, "LOC"), (4, 5, "LOC"), (7, 8, "ORG")]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_hand_made_sentence_in_each_scheme(scheme):
    assert entities(HAND[scheme]) == SPANS
    assert to_iob2(HAND[scheme]) == HAND["iob2"]
    assert from_iob2(HAND["iob2"], scheme) == HAND[scheme]
    assert detect_scheme([HAND[scheme]]) == scheme
    assert well_formed(HAND[scheme], scheme)


def test_names_and_aliases():
    assert normalize_scheme("BIOES") == "iobes" and normalize_scheme("BILUO") == "bilou" and normalize_scheme(None) == "auto"
    with pytest.raises(DataError, match="data.corpus.scheme='IOE2': expected auto, iob1, iob2"):
        normalize_scheme("IOE2")


def as_conlleval(tags):
    """BILOU as conlleval.pl can read it (it knows E- and S-, not L- and U-)."""
    return [{"L": "E", "U": "S"}.get(t[0], t[0]) + t[1:] if t != "O" else t for t in tags]


def test_a_corpus_converted_to_each_scheme_reads_back_the_same_and_scores_the_same(tmp_path):
    conlleval = pytest.importorskip("conlleval")
    gold = make_sentences(60, seed=3)
    # predictions with errors of every kind: a missed entity, a wrong type, a shifted edge
    pred = []
    for n, sent in enumerate(gold):
        tags = [t for _, t in sent]
        if n % 3 == 0:
            tags = ["O"] * len(tags)
        elif n % 3 == 1:
            tags = [t.replace("LOC", "ORG") for t in tags]
        else:
            tags = ["O", *tags[1:]]
        pred.append(to_iob2(tags))
    iob2 = [[t for _, t in s] for s in gold]
    oracle = conlleval.evaluate([f"{w} {g} {p}" for s, gs, ps in zip(gold, iob2, pred) for (w, _), g, p in zip(s, gs, ps)])
    for scheme in SCHEMES:
        d = tmp_path / scheme
        d.mkdir()
        write_conll(d / "train.txt", [[(w, t) for (w, _), t in zip(s, from_iob2(tags, scheme))] for s, tags in zip(gold, iob2)])
        sentences = read_conll(d / "train.txt")  # scheme detected
        assert [s.tags for s in sentences] == iob2, scheme
        lines = [f"{w} {g} {p}" for s, gs, ps in zip(gold, iob2, pred)
                 for (w, _), g, p in zip(s, as_conlleval(from_iob2(gs, scheme)), as_conlleval(from_iob2(ps, scheme)))]
        summary = conlleval.evaluate(lines)
        assert summary["overall"]["chunks"]["evals"] == oracle["overall"]["chunks"]["evals"], scheme


def test_corpus_detects_the_scheme_over_all_splits_and_remembers_it(tmp_path):
    for split, tags in (("train", HAND["iobes"]), ("dev", ["O"] * 8), ("test", ["B-PER", "I-PER", *["O"] * 6])):
        write_conll(tmp_path / f"{split}.txt", [list(zip(WORDS, tags))])
    corpus = ConllCorpus(path=str(tmp_path))
    splits = corpus.load()
    assert corpus.scheme == "iobes"
    assert splits["train"][0].tags == HAND["iob2"]
    # B-PER I-PER with no E-: ill-formed IOBES, read as conlleval reads it (one entity), and logged
    assert splits["test"][0].tags == ["B-PER", "I-PER", *["O"] * 6]


@pytest.mark.parametrize("scheme, tags, message", [
    ("iob2", HAND["iobes"], r"train.txt:2: tag 'E-PER' is not in the IOB2 scheme \(O, B-<type>, I-<type>\)"),
    ("bilou", HAND["iobes"], r"train.txt:2: tag 'E-PER' is not in the BILOU scheme"),
    ("auto", [*HAND["iobes"][:4], "U-LOC", *HAND["iobes"][5:]],
     r"mix IOBES \(E-, S-; first at .*train.txt:1\) and BILOU \(L-, U-; first at .*train.txt:1\)"),
])
def test_tags_outside_the_scheme_name_file_and_line(tmp_path, scheme, tags, message):
    write_conll(tmp_path / "train.txt", [list(zip(WORDS, tags))])
    with pytest.raises(DataError, match=message):
        read_conll(tmp_path / "train.txt", scheme=scheme)


def test_iob1_or_iob2_by_majority():
    iob1 = [["I-PER", "O"], ["I-LOC", "B-LOC"], ["B-ORG"]]  # the last one is ill-formed IOB1
    assert detect_scheme(iob1) == "iob1"
    assert detect_scheme([["B-PER", "O"], ["I-LOC"], ["B-ORG", "I-ORG"]]) == "iob2"
    assert detect_scheme([["O", "O"]]) == "iob2"  # nothing to tell: the internal scheme


def test_predictions_file_in_iobes_reads_as_iob2(tmp_path):
    f = tmp_path / "p.conll"
    f.write_text("".join(f"{w} {g} {p}\n" for w, g, p in zip(WORDS, HAND["iobes"], HAND["iobes"])) + "\n")
    assert read_predictions(f).gold == [HAND["iob2"]]


@pytest.fixture(scope="module")
def scheme_runs(tmp_path_factory):
    """The same corpus in IOB2 and in BILOU, trained 4 steps from the same seed."""
    runs = {}
    for scheme in ("iob2", "bilou"):
        d = tmp_path_factory.mktemp(scheme)
        for split, n, seed in (("train", 40, 0), ("validation", 10, 1), ("test", 10, 2)):
            sents = make_sentences(n, seed)
            write_conll(d / f"{split}.txt", [[(w, t) for (w, _), t in zip(s, from_iob2([t for _, t in s], scheme))]
                                             for s in sents])
        cfg = compose_config(TINY + [f"data.path={d}", "trainer.max_steps=4", "data.batch_size=16"], d / "run")
        metrics, objects = train(cfg)
        runs[scheme] = (d, metrics, objects)
    return runs


def test_a_bilou_corpus_trains_to_the_same_tags_and_scores_as_its_iob2_original(scheme_runs):
    (_, m2, o2), (db, mb, ob) = scheme_runs["iob2"], scheme_runs["bilou"]
    for split in ("train", "validation", "test"):  # IOB2 inside
        assert [(s.tokens, s.tags) for s in ob["datamodule"].sentences[split]] == \
            [(s.tokens, s.tags) for s in o2["datamodule"].sentences[split]]
    assert ob["model"].predictions["test"] == o2["model"].predictions["test"]
    assert {k: v for k, v in mb.items() if k.startswith(("test/f1", "val/f1"))} == \
        {k: v for k, v in m2.items() if k.startswith(("test/f1", "val/f1"))}
    written = (db / "run" / "test_predictions.conll").read_text().splitlines()
    gold_file = [line.split() for line in (db / "test.txt").read_text().splitlines()]
    assert [line.split()[:2] for line in written if line] == [[g[0], g[-1]] for g in gold_file if g]  # BILOU as it came
    assert any(line.split()[1][0] in "LU" for line in written if line)
    conlleval = pytest.importorskip("conlleval")
    summary = conlleval.evaluate([" ".join([w, *as_conlleval([g, p])]) if w else ""
                                  for w, g, p in (line.split() or ["", "", ""] for line in written)])
    assert summary["overall"]["chunks"]["evals"]["f1"] == pytest.approx(mb["test/f1"], abs=1e-6)
