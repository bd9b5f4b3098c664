"""Experiment trackers (``conf/logger/``): what a tiny run leaves in CSV, MLflow and W&B, read back with their own tools.

The oracle is the run's ``metrics.json`` (written by ``RunOutputs``, independently of any logger) and the
config the run was composed with.
"""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from llmner.benchmark import benchmark
from llmner.evaluate import evaluate
from llmner.train import train
from tests.conftest import TINY, compose_config

FAST = ["model.lr_backbone=5e-3", "model.lr_head=5e-2", "data.batch_size=16", "trainer.max_steps=4",
        "trainer.val_check_interval=2", "trainer.check_val_every_n_epoch=null", "trainer.num_sanity_val_steps=0"]


def test_mlflow_and_csv_together_hold_params_metrics_and_the_final_figures(tiny_conll, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    out = tmp_path / "run"
    cfg = compose_config([*TINY, *FAST, f"data.path={tiny_conll}", "logger=[tensorboard,csv,mlflow]"], out)
    metrics, _ = train(cfg)
    final = json.loads((out / "metrics.json").read_text())
    assert final == pytest.approx(metrics) and (out / "tensorboard").is_dir()  # the default logger still writes

    client = mlflow.MlflowClient(cfg.logger.mlflow.tracking_uri)
    assert cfg.logger.mlflow.tracking_uri == f"sqlite:///{out}/mlflow.db"  # the default: a database in the log dir
    [run] = client.search_runs([client.get_experiment_by_name("train").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["output_dir"] == str(out)
    params = run.data.params
    assert params["seed"] == "42" and params["trainer/max_steps"] == "4" and params["head/_target_"] == cfg.head._target_
    assert params["data/path"] == str(tiny_conll)
    assert run.data.metrics["val/f1"] == pytest.approx(final["val/f1"])  # the latest value: the selected checkpoint's
    assert run.data.metrics["test/f1"] == pytest.approx(final["test/f1"])
    assert run.data.metrics["train/steps"] == 4 and run.data.metrics["memory/peak_mb"] == pytest.approx(final["memory/peak_mb"])
    history = client.get_metric_history(run.info.run_id, "val/f1")
    assert len(history) >= 2  # each of the 2 validations (and the selected checkpoint's again if it is not the last)
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) >= 1

    rows = pd.read_csv(out / "csv" / "metrics.csv")
    assert rows["val/f1"].dropna().iloc[-1] == pytest.approx(final["val/f1"])
    assert rows["test/f1"].dropna().iloc[-1] == pytest.approx(final["test/f1"])
    assert rows["train/seconds"].dropna().iloc[-1] == pytest.approx(final["train/seconds"])  # metrics.json's own figure
    assert rows["train/loss"].notna().sum() >= 1
    hparams = yaml.safe_load((out / "csv" / "hparams.yaml").read_text())
    assert hparams["seed"] == 42 and hparams["trainer"]["max_steps"] == 4

    scored = tmp_path / "eval"  # llmner.evaluate sends its figures the same way
    ckpt = next((out / "checkpoints").glob("epoch*.ckpt"))
    evaluate(compose_config([f"ckpt_path={ckpt}", "logger=csv"], scored, "eval"))
    rows = pd.read_csv(scored / "csv" / "metrics.csv")
    assert rows["test/f1"].dropna().iloc[-1] == pytest.approx(json.loads((scored / "metrics.json").read_text())["test/f1"])
    assert yaml.safe_load((scored / "csv" / "hparams.yaml").read_text())["ckpt_path"] == str(ckpt)


def wandb_records(path: Path) -> list:
    """The records of a W&B run file, read by hand: wandb 0.31 ships no reader of its own.

    The file is a LevelDB log: a 7-byte header (``:W&B``, magic, version), then 32 KiB blocks of records,
    each with a 7-byte header (CRC, length, kind: 1 whole, 2-4 first/middle/last piece); each record is
    a ``wandb_internal_pb2.Record``.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    records, pending, pos = [], b"", 7
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        if kind == 0:
            break
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            records.append(pb.Record.FromString(pending))
            pending = b""
    return records


def test_a_benchmark_logs_each_run_to_wandb_offline(tiny_conll, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is not installed: pip install 'llmner[tracking]'")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    extra = [*TINY[:-1], *FAST[:3], "logger=[wandb]"]
    cfg = compose_config([f"data_path={tiny_conll}", "max_steps=3", "seeds=[1,2]", "bootstrap_samples=20",
                          'systems=[{name:crf,overrides:["head=crf"]}]',
                          "extra_overrides=[" + ",".join(f'"{o}"' for o in extra) + "]"], tmp_path, "benchmark")
    benchmark(cfg)
    ids = set()
    for seed in (1, 2):
        folder = tmp_path / "crf" / f"seed{seed}"
        [run_file] = (folder / "wandb").glob("offline-run-*/run-*.wandb")  # one W&B run per benchmark run, in its folder
        final = json.loads((folder / "metrics.json").read_text())
        records = wandb_records(run_file)
        kinds = [r.WhichOneof("record_type") for r in records]
        [run] = [r.run for r in records if r.HasField("run")]
        config = {i.key: json.loads(i.value_json) for r in records if r.HasField("config") for i in r.config.update}
        history = {}  # key -> values in the order logged
        for r in records:
            for item in r.history.item if r.HasField("history") else []:
                history.setdefault(item.key or "/".join(item.nested_key), []).append(json.loads(item.value_json))
        assert run.project == "llmner" and run.run_group == "train" and kinds[-1] == "exit"  # finished
        assert config["seed"] == seed and config["trainer"]["max_steps"] == 3
        assert history["test/f1"][-1] == pytest.approx(final["test/f1"]) and history["train/steps"] == [3]
        assert history["val/f1"] == [pytest.approx(final["val/f1"])]  # the one validation, at the budget's end
        ids.add(run.run_id)
    assert len(ids) == 2
