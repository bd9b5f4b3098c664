"""The predictions reader/writer and the run-folder files of ``llmner.evaluation``, on hand-written files."""

import pytest
import torch

from llmner.builders import count_parameters
from llmner.data.schema import DataError
from llmner.evaluation.predictions import (
    read_answers,
    read_predictions,
    run_name,
    write_answers,
    write_predictions,
)
from llmner.evaluation.runs import read_run, write_metrics, write_results

HAND_WRITTEN = """\
John B-PER B-PER
Smith I-PER O
visited O O

Rome B-LOC B-LOC
. O O
"""


def test_reader_reads_a_hand_written_file_and_the_writer_writes_it_back(tmp_path):
    path = tmp_path / "test_predictions.conll"
    path.write_text(HAND_WRITTEN)
    p = read_predictions(path)
    assert p.tokens == [["John", "Smith", "visited"], ["Rome", "."]]
    assert p.gold == [["B-PER", "I-PER", "O"], ["B-LOC", "O"]]
    assert p.pred == [["B-PER", "O", "O"], ["B-LOC", "O"]]
    assert p.lines == [1, 5] and p.name == tmp_path.name  # a run folder's file: named after the folder
    again = tmp_path / "again.conll"
    write_predictions(again, p.tokens, p.gold, p.pred)
    assert again.read_text() == HAND_WRITTEN + "\n"  # the writer ends every sentence with a blank line


def test_writer_joins_words_with_spaces_so_that_conlleval_splits_them_right(tmp_path):
    write_predictions(tmp_path / "p.conll", [["New York", "x"]], [["B-LOC", "O"]], [["B-LOC", "O"]])
    assert (tmp_path / "p.conll").read_text() == "New_York B-LOC B-LOC\nx O O\n\n"
    assert read_predictions(tmp_path / "p.conll").tokens == [["New_York", "x"]]


def test_run_names(tmp_path):
    folder = tmp_path / "crf" / "seed3"
    folder.mkdir(parents=True)
    (folder / "test_predictions.conll").write_text(HAND_WRITTEN)
    (tmp_path / "other.conll").write_text(HAND_WRITTEN)
    assert run_name(folder) == "crf_seed3" and run_name(tmp_path / "other.conll") == "other"
    with pytest.raises(DataError, match="no such file"):
        read_predictions(tmp_path / "missing")


@pytest.mark.parametrize("text, message", [
    ("a B-PER\n", r":1: expected `token gold predicted` \(3 columns\), got 2"),
    ("a O O\nb B-PER Q-PER\n", r":2: predicted tag 'Q-PER' is not O"),  # S-PER (IOBES) is read
    ("a X O\n", r":1: gold tag 'X' is not O"),
    ("\n\n", r"no sentences found"),
])
def test_reader_names_the_line_of_a_bad_file(tmp_path, text, message):
    (tmp_path / "bad.conll").write_text(text)
    with pytest.raises(DataError, match=message):
        read_predictions(tmp_path / "bad.conll")


def test_answers_round_trip(tmp_path):
    answers = {2: {"PER": ["Zoë"], "AGE": [47]}, 0: {}}
    write_answers(tmp_path / "a.jsonl", answers)
    lines = (tmp_path / "a.jsonl").read_text(encoding="utf-8").splitlines()
    assert lines == ['{"sentence": 0, "answers": {}}', '{"sentence": 2, "answers": {"PER": ["Zoë"], "AGE": [47]}}']
    assert read_answers(tmp_path / "a.jsonl") == answers
    (tmp_path / "b.jsonl").write_text('{"sentence": 0, "answers": {}}\n{"answers": {}}\n')
    with pytest.raises(DataError, match=r"b.jsonl:2: expected"):
        read_answers(tmp_path / "b.jsonl")


def test_metrics_and_results_files(tmp_path):
    write_metrics(tmp_path / "metrics.json", {"val/f1": 0.5, "test/f1": 0.25})
    assert (tmp_path / "metrics.json").read_text() == '{\n  "test/f1": 0.25,\n  "val/f1": 0.5\n}\n'
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text("- head=crf\n- seed=2\n")
    row = read_run(tmp_path)
    assert row == {"output_dir": str(tmp_path), "overrides": "head=crf seed=2", "test/f1": 0.25, "val/f1": 0.5}
    df = write_results([{"val/f1": 0.5, "seed": 1, "system": "a", "b/x": 1}], tmp_path / "r.csv")
    assert list(df.columns) == ["system", "seed", "b/x", "val/f1"]


def test_count_parameters_by_hand():
    import lightning as L

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.frozen = torch.nn.Linear(3, 2)   # 3 * 2 + 2 = 8
            self.head = torch.nn.Linear(2, 4)     # 2 * 4 + 4 = 12
            self.tied = self.head                 # the same tensors again: counted once
            self.frozen.requires_grad_(False)

    assert count_parameters(Tiny()) == (12, 20)
