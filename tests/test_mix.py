"""data=mix: several corpora in one run, batches drawn by weight, validation and test scored per corpus."""

import json
import math
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from llmner.cli import user_error
from llmner.data.mix import MixBatchSampler, MixCorpus, rename_tag
from llmner.data.schema import Sentence
from llmner.evaluate import evaluate
from llmner.metrics import entity_scores
from llmner.train import train
from tests.conftest import compose_config, make_sentences, write_conll

FAST = ["model.lr_backbone=5e-3", "model.lr_head=5e-2", "data.batch_size=8", "trainer.log_every_n_steps=1"]
WEIGHTS = {"conll": 1.0, "crime": 3.0}


def conll_and_crime(tmp_path: Path) -> list[str]:
    """Two CoNLL-format corpora: ``conll`` (the fixture's PER/LOC/ORG) and ``crime`` (ORG renamed Agency, 12
    test sentences), mixed with ``crime``'s types prefixed, on the tiny backbone."""
    dirs = {}
    for name, seeds, n in (("conll", (0, 1, 2), (60, 10, 10)), ("crime", (3, 4, 5), (40, 8, 12))):
        d = dirs[name] = tmp_path / name
        d.mkdir()
        for split, seed, k in zip(("train", "validation", "test"), seeds, n):
            sents = make_sentences(k, seed)
            if name == "crime":
                sents = [[(w, t.replace("ORG", "Agency")) for w, t in s] for s in sents]
            write_conll(d / f"{split}.txt", sents)
    return ["backbone=tiny_random", "trainer.accelerator=cpu", "data=mix", f"data.corpora.conll.data.path={dirs['conll']}",
            "data@data.corpora.crime.data=conll2003", f"data.corpora.crime.data.path={dirs['crime']}",
            "data.corpora.crime.types=prefix", f"data.corpora.crime.weight={WEIGHTS['crime']}"]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mix")
    cfg = compose_config(conll_and_crime(tmp) + FAST + ["trainer.max_steps=30", "trainer.val_check_interval=10",
                                                  "optimized_metric=val/crime/f1", "callbacks.model_checkpoint.monitor=val/crime/f1"], tmp / "run")
    metrics, objects = train(cfg)
    return tmp / "run", metrics, objects, cfg


def test_rename_tag():
    assert [rename_tag(t, "c", "keep") for t in ("O", "B-PER")] == ["O", "B-PER"]
    assert [rename_tag(t, "c", "prefix") for t in ("O", "B-PER", "I-PER")] == ["O", "B-c.PER", "I-c.PER"]
    assert [rename_tag(t, "c", {"PER": "Victim_Name", "MISC": "O"}) for t in ("I-PER", "B-MISC", "B-LOC")] == \
        ["I-Victim_Name", "O", "B-LOC"]


def test_a_mix_concatenates_renamed_splits_and_remembers_each_corpus_part():
    def corpus(tags_per_split):
        return SimpleNamespace(splitter="conll", sentences={
            split: [Sentence([f"w{i}" for i in range(len(t))], t) for t in tags] for split, tags in tags_per_split.items()})

    a = corpus({"train": [["B-PER", "I-PER", "O"]], "test": [["B-MISC"], ["B-LOC"]]})
    b = corpus({"train": [["B-PER"], ["O", "B-ORG"]], "validation": [["B-PER"]]})
    mix = MixCorpus({"a": a, "b": b}, {"a": {"PER": "Victim_Name", "MISC": None}, "b": "prefix"})
    out = mix.load()
    assert [s.tags for s in out["train"]] == [["B-Victim_Name", "I-Victim_Name", "O"], ["B-b.PER"], ["O", "B-b.ORG"]]
    assert [s.tags for s in out["test"]] == [["O"], ["B-LOC"]] and [s.tags for s in out["validation"]] == [["B-b.PER"]]
    assert mix.ranges == {"train": {"a": (0, 1), "b": (1, 3)}, "test": {"a": (0, 2)}, "validation": {"b": (0, 1)}}


def test_the_sampler_draws_corpora_by_weight_and_passes_over_each_corpus():
    sources = [0] * 30 + [1] * 10 + [2] * 8  # corpus 2 has weight 0: never drawn
    sampler = MixBatchSampler(sources, [1 + i % 7 for i in range(len(sources))], [1.0, 3.0, 0.0], batch_size=4, seed=3)
    batches = [b for _ in range(100) for b in sampler]
    assert len(batches) == 100 * math.ceil(48 / 4)
    drawn = [{sources[i] for i in b} for b in batches]
    assert all(len(s) == 1 for s in drawn)  # one corpus a batch
    counts = Counter(next(iter(s)) for s in drawn)
    n, p = len(batches), 3 / 4
    assert counts[2] == 0 and abs(counts[1] / n - p) < 4 * math.sqrt(p * (1 - p) / n), counts
    ones = [b for b in batches if sources[b[0]] == 1]  # corpus 1: passes of 3 batches (4 + 4 + 2 items)
    for k in range(0, 30, 3):
        assert sorted(i for b in ones[k : k + 3] for i in b) == list(range(30, 40))


def test_batches_of_a_mix_come_from_its_corpora_by_weight(mixed):
    _, _, objects, _ = mixed
    dm = objects["datamodule"]
    groups = dm.groups("train")
    assert list(groups) == ["conll", "crime"] and groups["conll"] == (0, 60) and groups["crime"] == (60, 100)
    counts = Counter()
    loader = dm.train_dataloader()
    for _ in range(40):
        for batch in loader:
            sentences = batch["sentence"].tolist()
            corpus = {name for s in sentences for name, (a, b) in groups.items() if a <= s < b}
            assert len(corpus) == 1
            counts[corpus.pop()] += 1
    n, p = sum(counts.values()), WEIGHTS["crime"] / sum(WEIGHTS.values())
    assert abs(counts["crime"] / n - p) < 4 * math.sqrt(p * (1 - p) / n), counts


def test_metrics_per_corpus_equal_scoring_each_corpus_alone(mixed):
    out, metrics, objects, cfg = mixed
    saved = json.loads((out / "metrics.json").read_text())
    tags = objects["model"].tags
    assert "B-crime.Agency" in tags and "B-PER" in tags and "B-crime.PER" in tags and "B-Agency" not in tags
    sentences = [s for s in (out / "test_predictions.conll").read_text().split("\n\n") if s.strip()]
    assert len(sentences) == 22
    gold = [[line.split()[1] for line in s.splitlines()] for s in sentences]
    pred = [[line.split()[2] for line in s.splitlines()] for s in sentences]
    for name, part in (("conll", slice(0, 10)), ("crime", slice(10, 22))):  # corpus order, as the groups say
        alone = entity_scores(gold[part], pred[part], "x")
        for key in ("f1", "precision", "recall", "accuracy"):
            assert saved[f"test/{name}/{key}"] == pytest.approx(alone[f"x/{key}"], abs=1e-6), (name, key)
        assert f"val/{name}/f1" in saved
    assert saved["test/f1"] == pytest.approx(entity_scores(gold, pred, "x")["x/f1"], abs=1e-6)  # overall: every entity
    assert saved["test/corpus_mean/f1"] == pytest.approx((saved["test/conll/f1"] + saved["test/crime/f1"]) / 2)
    assert saved["test/crime/f1_crime.Agency"] == pytest.approx(alone["x/f1_crime.Agency"])
    assert cfg.optimized_metric in metrics  # what the sweepers get back
    best = torch.load(objects["best_ckpt"], weights_only=True)["callbacks"]
    scores = [v["best_model_score"] for k, v in best.items() if k.startswith("ModelCheckpoint")]
    assert scores and float(scores[0]) == pytest.approx(saved["val/crime/f1"], abs=1e-6)  # selected on one corpus


def test_evaluate_scores_a_mix_checkpoint_per_corpus_again(mixed, tmp_path):
    out, metrics, objects, _ = mixed
    cfg = compose_config([f"ckpt_path={objects['best_ckpt']}", "trainer.accelerator=cpu"], tmp_path, config_name="eval")
    again, _ = evaluate(cfg)
    for key in ("test/f1", "test/conll/f1", "test/crime/f1"):
        assert again[key] == pytest.approx(metrics[key], abs=1e-6), key


@pytest.mark.parametrize("override, message", [
    ("+data.corpora.conll.wieght=2", "data.corpora.conll: expected {data: <a data config>, weight, types}, got keys ['data', 'types', 'weight', 'wieght']"),
    ("data.corpora.crime.weight=-1", "data.corpora.crime.weight=-1.0: expected a number >= 0"),
    ("data.corpora.crime.types=split", "data.corpora.crime.types='split': expected keep, prefix or a mapping"),
    ("data.corpora.crime.types={PERSON: Victim_Name}", "data.corpora.crime.types: ['PERSON'] are not types of corpus crime"),
])
def test_a_bad_mix_is_one_error(override, message, tmp_path):
    cfg = compose_config(conll_and_crime(tmp_path) + [override], tmp_path / "run")
    with pytest.raises(Exception) as err:  # noqa: B017 - Hydra wraps the constructor's error; cli unwraps it
        train(cfg)
    assert message in (user_error(err.value) or ""), err.value


def test_the_mix_limits_cut_each_corpus_to_a_seeded_subset(tmp_path):
    """``data.max_*_samples`` of a mix (``debug=fast``) keep at most that many sentences of each corpus's split, the
    same subset as the corpus's own limit would; a corpus's own smaller limit stays."""
    from hydra.utils import instantiate

    base = conll_and_crime(tmp_path)
    cfg = compose_config(base + ["data.max_train_samples=7", "data.max_test_samples=5",
                                 "data.corpora.crime.data.max_train_samples=3"], tmp_path / "run")
    dm = instantiate(cfg.data)
    size = {split: {n: b - a for n, (a, b) in dm.groups(split).items()} for split in ("train", "val", "test")}
    assert size == {"train": {"conll": 7, "crime": 3}, "val": {"conll": 10, "crime": 8}, "test": {"conll": 5, "crime": 5}}
    alone = instantiate(compose_config(base[:4] + ["data.corpora.conll.data.max_train_samples=7"],
                                       tmp_path / "alone").data.corpora.conll.data)  # its own limit, no mix limit
    a, b = dm.groups("train")["conll"]
    assert [s.tokens for s in dm.sentences["train"][a:b]] == [s.tokens for s in alone.sentences["train"]]
