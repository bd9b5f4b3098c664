"""Reading llmner checkpoints safely, and upgrading the configs of older ones.

A checkpoint is unpickled with ``torch.load(weights_only=True)``: tensors, numbers, strings and
plain containers only, so a file someone sent you cannot run code when it is loaded. What llmner
and Lightning store fits in that (``tests/test_checkpoint.py`` checks it).

A checkpoint's stored config is an API (``_target_`` paths, key names). When a class moves or a key
changes, ``upgrade_config`` maps the old config to the current layout, so checkpoints written by
earlier versions keep loading (tested with checkpoints from version 0.1 in ``tests/fixtures/v0_1``).
"""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import torch

from llmner.errors import CheckpointError

FORMAT = 2  # checkpoint["llmner"]["format"]; 0.1 wrote none (format 1)

# _target_ paths that moved (of any node: model, data, head, backbone).
MOVED = {
    # format 1 -> 2
    "llmner.module.TaggerModule": "llmner.modules.tagger.TaggerModule",
    "llmner.generative.GenerativeModule": "llmner.modules.generative.GenerativeModule",
    "llmner.data.datamodule.TaggingDataModule": "llmner.data.datamodule.CorpusDataModule",
    "llmner.data.chat.ChatDataModule": "llmner.data.datamodule.CorpusDataModule",
    # the second restructure: decoding is not a head (llmner.backbone.Backbone, now a package's, keeps its path)
    "llmner.heads.generative.JsonDecoder": "llmner.decoding.JsonDecoder",
}


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """The checkpoint at ``path``, unpickled safely.

    Raises:
        CheckpointError: the file is missing, is not a readable PyTorch checkpoint, holds objects
            other than tensors and plain data, or is not llmner's.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: a directory, not a checkpoint file (expected a .ckpt file written by "
                              "python -m llmner.train, e.g. <run>/checkpoints/last.ckpt)")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = [ln for ln in str(err).splitlines() if "Unsupported global" in ln or "WeightsUnpickler error" in ln]
        first = (found or str(err).strip().splitlines() or [type(err).__name__])[0].strip()
        if "Unsupported global" in str(err):  # a class or function the allow-list does not know
            raise CheckpointError(f"{path}: holds Python objects other than tensors and plain data, so it was not "
                                  f"loaded (it could run code); it is not an llmner checkpoint ({first})") from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (corrupt or truncated?): {first}") from None
    except Exception as err:  # noqa: BLE001 - a damaged file fails anywhere in the unpickler (a text file: KeyError)
        first = str(err).strip().splitlines()[0] if str(err).strip() else "no data"
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (corrupt, truncated or not a checkpoint?): "
                              f"{type(err).__name__}: {first}") from None
    if not isinstance(checkpoint, dict) or "llmner" not in checkpoint or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: not an llmner checkpoint (no 'llmner' entry); write one with python -m llmner.train")
    return checkpoint


def upgrade_config(config: dict) -> dict:
    """A stored run config in the current layout (a copy; current configs come back equal).

    Format 1 (llmner 0.1) kept window settings in ``data`` (``max_length``, ``context_words``) and
    the generative conversation length in ``model.max_length``; they now belong to the model's
    encoder (``model.encoder``). ``backbone.causal_lm`` is now implied by the model class. A
    generative head stored without ``no_repeat`` (before the rule existed) keeps decoding without it.
    """
    config = copy.deepcopy(config)
    model, data = config.get("model", {}), config.get("data", {})
    for node in (model, data, config.get("head") or {}, config.get("backbone") or {}):
        if node.get("_target_") in MOVED:
            node["_target_"] = MOVED[node["_target_"]]
    if "encoder" not in model and "_target_" in model:
        corpus = (data.get("corpus") or {}).get("_target_", "")
        splitter = "conll" if corpus.endswith("ConllCorpus") else "punct"
        if model["_target_"].endswith("GenerativeModule"):
            encoder = {"_target_": "llmner.data.chat.ChatEncoder", "max_length": model.pop("max_length", 4096)}
        else:
            encoder = {"_target_": "llmner.data.alignment.WindowEncoder", "max_length": data.get("max_length") or 256,
                       "context_words": data.get("context_words") or 16, "bos": False}  # 0.1 put no BOS first
        model["encoder"] = {**encoder, "_partial_": True, "splitter": splitter}
    for key in ("max_length", "context_words", "tokenizer"):
        data.pop(key, None)
    config.get("backbone", {}).pop("causal_lm", None)
    head = config.get("head") or {}
    if str(head.get("_target_", "")).endswith("JsonDecoder") and "no_repeat" not in head:
        head["no_repeat"] = False  # decoded as trained: repeated list values were allowed then
    return config
