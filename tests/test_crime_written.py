"""The developer-written crime reports (``llmner/data/crime/written``) and ``data=crime_written`` / ``crime_mix``."""

import re
from pathlib import Path

from hydra.utils import instantiate

from llmner.data.crime import ENTITY_TYPES
from llmner.data.crime.corpus import WRITTEN, ConversationCorpus
from llmner.data.crime.importer import import_conversations
from tests.conftest import compose_config

HANDWRITTEN = Path(__file__).parent / "fixtures" / "crime_handwritten.jsonl"  # the test set of real prose


def _texts(path: Path) -> list[str]:
    return [r.text for r in import_conversations(path).reports]


def _shingles(text: str, n: int = 8) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def test_every_written_answer_is_located_and_every_type_occurs():
    result = import_conversations(WRITTEN)
    assert len(result.reports) == 216 and result.num_unlocated == 0 and result.overlaps == 0
    assert not result.ignored_types
    counts = {t: sum(s.label == t for r in result.reports for s in r.spans) for t in ENTITY_TYPES}
    assert min(counts.values()) >= 10, counts  # every field is learnt from, the rarest (Victim_CEO) too
    assert len({r.text for r in result.reports}) == 216  # no report twice


def test_the_written_split_is_fixed_and_disjoint():
    fractions = {"train": 0.67, "validation": 0.33}
    first, again = ConversationCorpus(None, fractions).load(), ConversationCorpus(None, fractions).load()
    assert {k: len(v) for k, v in first.items()} == {"train": 145, "validation": 71}
    assert [s.tokens for s in first["validation"]] == [s.tokens for s in again["validation"]]
    train = {tuple(s.tokens) for s in first["train"]}
    assert not train & {tuple(s.tokens) for s in first["validation"]}
    # the evaluation spelling of the same cut (README): validation reports scored as a test split
    as_test = ConversationCorpus(None, {"train": 0.67, "test": 0.33}).load()["test"]
    assert [s.tokens for s in as_test] == [s.tokens for s in first["validation"]]


def test_the_written_reports_share_no_text_with_the_handwritten_test_set():
    """Written without the test fixture: at most a stock phrase in common (8-word shingles)."""
    handwritten = set().union(*(_shingles(t) for t in _texts(HANDWRITTEN)))
    shared = [len(_shingles(t) & handwritten) / len(_shingles(t)) for t in _texts(WRITTEN)]
    assert max(shared) < 0.05
    assert not set(_texts(WRITTEN)) & set(_texts(HANDWRITTEN))


def test_crime_mix_reads_generated_and_written_reports_scored_apart(tmp_path):
    cfg = compose_config(["data=crime_mix", "data.corpora.generated.data.corpus.num_train=8",
                          "data.corpora.generated.data.corpus.num_validation=3",
                          "data.corpora.generated.data.corpus.num_test=2"], tmp_path)
    assert cfg.data.corpora.generated.weight == 3.0 and cfg.data.corpora.written.weight == 1.0
    assert cfg.data.corpora.generated.data.corpus.variety == "varied" and cfg.data.corpora.written.data.path is None
    dm = instantiate(cfg.data)
    sizes = {split: {name: b - a for name, (a, b) in dm.groups(split).items()} for split in ("train", "val", "test")}
    assert sizes == {"train": {"generated": 8, "written": 145}, "val": {"generated": 3, "written": 71},
                     "test": {"generated": 2}}
    assert dm.weights == {"generated": 3.0, "written": 1.0}


def test_training_on_the_written_reports_alone_validates_and_skips_the_test_it_has_not(tmp_path, caplog):
    """``data=crime_written`` has train and validation only: the run ends without a test, and says so before training
    (it used to fail after training, at the test)."""
    from llmner.train import train

    cfg = compose_config(["data=crime_written", "backbone=tiny_random", "trainer.accelerator=cpu", "trainer.max_steps=2",
                          "trainer.val_check_interval=2", "data.max_train_samples=4", "data.max_eval_samples=3",
                          "data.batch_size=2"], tmp_path)
    with caplog.at_level("WARNING"):
        metrics, objects = train(cfg)
    assert "val/f1" in metrics and not any(k.startswith("test/") for k in metrics)
    assert "no 'test' split" in caplog.text and objects["best_ckpt"]
