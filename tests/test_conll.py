import pytest

from llmner.data.conll import ConllCorpus, read_conll, sentences_from_hf
from llmner.data.schema import DataError


def test_reads_conll2003_layout_and_skips_docstart(tmp_path):
    f = tmp_path / "train.txt"
    f.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP I-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP I-PER\nBlackburn NNP I-NP I-PER\n")
    sents = read_conll(f)
    assert [s.tokens for s in sents] == [["EU", "rejects"], ["Peter", "Blackburn"]]
    # IOB1 comes out as IOB2
    assert [s.tags for s in sents] == [["B-ORG", "O"], ["B-PER", "I-PER"]]
    assert sents[1].source == f"{f}:6"


def test_two_column_tab_corpus_with_other_tags(tmp_path):
    for split in ("train", "dev", "test"):
        (tmp_path / f"{split}.tsv").write_text("New York\tB-CITY\nis\tO\n\nfine\tO\n")
    corpus = ConllCorpus(path=str(tmp_path), separator="\t")
    splits = corpus.load()
    assert set(splits) == {"train", "validation", "test"}
    assert splits["validation"][0].tokens == ["New York", "is"]
    assert splits["train"][0].tags == ["B-CITY", "O"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("EU B-ORG\nrejects\n", r"train.txt:2: expected at least 2 columns"),
        ("EU NNP X-ORG\n", r"train.txt:1: tag 'X-ORG' is not O, B-<type> or I-<type>"),
        ("\n\n-DOCSTART- O\n\n", r"train.txt: no sentences found"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, content, message):
    f = tmp_path / "train.txt"
    f.write_text(content)
    with pytest.raises(DataError, match=message):
        read_conll(f)


def test_missing_split_is_a_clear_error(tmp_path):
    (tmp_path / "train.txt").write_text("a O\n")
    with pytest.raises(DataError, match="no file for the 'validation' split"):
        ConllCorpus(path=str(tmp_path)).load()


def test_hub_rows_with_classlabel_tags():
    datasets = pytest.importorskip("datasets")
    names = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
    features = datasets.Features({
        "tokens": datasets.Sequence(datasets.Value("string")),
        "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names)),
    })
    ds = datasets.Dataset.from_dict({"tokens": [["Peter", "Blackburn"], []], "ner_tags": [[1, 2], []]}, features=features)
    sents = sentences_from_hf(ds, source="hub:train")
    assert len(sents) == 1 and sents[0].tags == ["B-PER", "I-PER"]


def test_non_utf8_byte_names_file_line_and_byte(tmp_path):
    f = tmp_path / "train.txt"
    f.write_bytes("\ufeffEU B-ORG\n\nM\u00fcller B-PER\n".encode("utf-8") + b"Z\xfcrich B-LOC\n")
    with pytest.raises(DataError, match=r"train.txt:4: not UTF-8 text \(byte 0xfc at column 2\)"):
        read_conll(f)
    f.write_bytes("\ufeffEU B-ORG\n\nM\u00fcller B-PER\n".encode("utf-8"))  # a BOM and UTF-8 are fine
    assert [s.tokens for s in read_conll(f)] == [["EU"], ["M\u00fcller"]]


def test_an_unreachable_hub_is_one_clear_error(monkeypatch):
    import datasets

    from llmner.data.hf import load_hub_dataset
    from llmner.data.schema import DataError

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'eriktks/conll2003' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"eriktks/conll2003: .*Hub.*data.path=DIR"):
        load_hub_dataset("eriktks/conll2003")
