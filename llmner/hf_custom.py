"""The transformers export of a tagger whose reading is not the stock one, as custom code.

A stock ``*ForTokenClassification`` reads each token once, causally (for a decoder), and tags it
by argmax: a model trained with bidirectional layers, repeated windows, another subword pooling
or a CRF would run differently in ``pipeline("token-classification", model=DIR)``, silently.
Such a model is written the way models with their own architecture ship on the Hugging Face
Hub: ``config.json`` names the code in ``DIR`` (``auto_map`` for the model,
``custom_pipelines`` for the pipeline) and ``trust_remote_code=True`` runs it:

- ``modeling_llmner.py``: the backbone (adapters merged), the attention schedule, pooling, the
  head's linear layer and the CRF's constrained scores with a Viterbi decoder;
- ``pipeline_llmner.py``: words, windows and repetition as llmner encodes them, entities with
  character offsets.

Both are copied from ``llmner/hf_remote/`` and need only torch, transformers and regex.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import torch

REMOTE = Path(__file__).parent / "hf_remote"
FILES = ("modeling_llmner.py", "pipeline_llmner.py")


def needs_custom_code(model) -> bool:
    """Whether the tagger reads or decodes differently from a stock token classifier."""
    bidirectional = model.backbone.schedule is not None
    return bidirectional or model.encoder.repeat > 1 or model.subword != "first" or hasattr(model.head, "crf")


def write_custom(model, merged, out: Path) -> None:
    """Write ``out`` as a custom-code token classifier of ``model`` (a ``TaggerModule``) with ``merged`` as backbone."""
    from llmner.hf_remote.modeling_llmner import LlmnerForTokenClassification

    tags, head, encoder = model.tags, model.head, model.encoder
    schedule = model.backbone.schedule
    crf = getattr(head, "crf", None)
    config = copy.deepcopy(merged.config)
    config.num_labels = len(tags)
    config.id2label = dict(enumerate(tags))
    config.label2id = {t: i for i, t in enumerate(tags)}
    config.architectures = ["LlmnerForTokenClassification"]
    config.llmner = {
        "subword": model.subword, "decoder": bool(model.backbone.decoder), "crf": crf is not None,
        "unmasked": [schedule.unmasked.start, schedule.unmasked.stop] if schedule is not None else None,
        "splitter": encoder.splitter, "max_length": encoder.max_length, "context_words": encoder.context_words,
        "repeat": encoder.repeat, "prefix": list(encoder.prefix), "suffix": list(encoder.suffix),
    }
    config.auto_map = {"AutoModelForTokenClassification": "modeling_llmner.LlmnerForTokenClassification"}
    config.custom_pipelines = {"token-classification": {"impl": "pipeline_llmner.LlmnerTokenClassificationPipeline",
                                                        "pt": ["AutoModelForTokenClassification"]}}
    hf = LlmnerForTokenClassification(config).to(merged.dtype)
    hf.model.load_state_dict(merged.state_dict(), strict=True)
    with torch.no_grad():
        hf.classifier.weight.copy_(head.proj.weight)
        hf.classifier.bias.copy_(head.proj.bias)
        if crf is not None:  # the properties give the scores with IOB2's forbidden moves at -10000
            hf.start_transitions.copy_(crf.start_transitions)
            hf.end_transitions.copy_(crf.end_transitions)
            hf.transitions.copy_(crf.transitions)
    hf.eval().save_pretrained(out)
    for name in FILES:
        shutil.copy(REMOTE / name, out / name)
