"""data=hf: datasets saved with save_to_disk, local parquet/JSON/arrow files, ClassLabel names as tags.
Never the Hub: every dataset here is built locally."""

import pytest

from llmner.data.hf import HFCorpus
from llmner.data.schema import DataError
from llmner.data.schemes import from_iob2
from tests.conftest import make_sentences

datasets = pytest.importorskip("datasets")

NAMES = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]


def rows(n, seed, scheme="iob2"):
    sents = make_sentences(n, seed)
    return {"tokens": [[w for w, _ in s] for s in sents], "ner_tags": [from_iob2([t for _, t in s], scheme) for s in sents]}


def classlabel_dataset(n, seed):
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=NAMES))})
    r = rows(n, seed)
    return datasets.Dataset.from_dict({"tokens": r["tokens"], "ner_tags": [[NAMES.index(t) for t in ts] for ts in r["ner_tags"]]},
                                      features=features)


def expected(n, seed):
    return [([w for w, _ in s], [t for _, t in s]) for s in make_sentences(n, seed)]


def got(sentences):
    return [(s.tokens, s.tags) for s in sentences]


def test_save_to_disk_dataset_dict_with_classlabel_names(tmp_path):
    dd = datasets.DatasetDict({"train": classlabel_dataset(12, 0), "validation": classlabel_dataset(4, 1),
                               "test": classlabel_dataset(4, 2)})
    dd.save_to_disk(str(tmp_path / "saved"))
    corpus = HFCorpus(path=str(tmp_path / "saved"))
    splits = corpus.load()
    assert got(splits["train"]) == expected(12, 0) and got(splits["test"]) == expected(4, 2)
    assert corpus.scheme == "iob2" and splits["validation"][0].source == f"{tmp_path / 'saved'}:validation[0]"


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".arrow"])
def test_split_files_with_string_tags_in_iobes(tmp_path, suffix):
    names = {"train": "train", "validation": "dev", "test": "test"}
    for (split, name), seed in zip(names.items(), range(3)):
        ds = datasets.Dataset.from_dict(rows(6, seed, "iobes"))
        path = str(tmp_path / f"{name}{suffix}")
        if suffix == ".parquet":
            ds.to_parquet(path)
        elif suffix == ".jsonl":
            ds.to_json(path, lines=True)
        else:
            from pyarrow import ipc

            with ipc.new_stream(path, ds.data.table.schema) as writer:  # the arrow stream format datasets reads
                writer.write_table(ds.data.table)
    corpus = HFCorpus(path=str(tmp_path))
    splits = corpus.load()
    assert corpus.scheme == "iobes"  # detected: predictions are written back in it
    assert got(splits["validation"]) == expected(6, 1)


@pytest.mark.parametrize("form", ["parquet file", "saved Dataset"])
def test_one_split_is_cut_by_fractions(tmp_path, form):
    ds = datasets.Dataset.from_dict(rows(20, 0))
    path = tmp_path / ("all.parquet" if form == "parquet file" else "saved")
    ds.to_parquet(str(path)) if form == "parquet file" else ds.save_to_disk(str(path))
    splits = HFCorpus(path=str(path), split={"train": 0.5, "validation": 0.25, "test": 0.25}).load()
    assert {k: len(v) for k, v in splits.items()} == {"train": 10, "validation": 5, "test": 5}
    assert sorted(got([s for v in splits.values() for s in v])) == sorted(expected(20, 0))


def test_ids_without_names_and_missing_columns_are_clear_errors(tmp_path):
    r = rows(3, 0)
    ids = datasets.Dataset.from_dict({"tokens": r["tokens"], "ner_tags": [[NAMES.index(t) for t in ts] for ts in r["ner_tags"]]})
    ids.to_parquet(str(tmp_path / "train.parquet"))
    with pytest.raises(DataError, match=r"train.parquet:train\[0\]: tags are ids \(\d\) but the column has no ClassLabel "
                                        r"names; set data.corpus.tag_names"):
        HFCorpus(path=str(tmp_path / "train.parquet")).load()
    splits = HFCorpus(path=str(tmp_path / "train.parquet"), tag_names=NAMES, split={"test": 1.0}).load()
    assert got(splits["test"]) == expected(3, 0)
    with pytest.raises(DataError, match=r"no column 'labels' \(columns: tokens, ner_tags\); set data.corpus.tokens_field"):
        HFCorpus(path=str(tmp_path / "train.parquet"), tags_field="labels").load()
    with pytest.raises(DataError, match=r"missing.parquet: no such file or directory"):
        HFCorpus(path=str(tmp_path / "missing.parquet")).load()
