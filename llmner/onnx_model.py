"""A tagger that runs an ONNX export (``llmner.onnx_export``) in ONNX Runtime: ``llmner.load(DIR)``.

Only the backbone and the head's linear layer run in ONNX Runtime; everything around them is
the tagger's own code, so both paths predict the same way: the windows (``WindowEncoder``,
rebuilt from the saved settings), the batching, spans and scores of ``TaggerModule.predict``
(borrowed as is, not copied: ``llmner.heads.spans``), and the decoding of the head class the
checkpoint trained (``CRFHead``: the IOB2-constrained Viterbi of training and its
forward-backward scores, over the saved transition scores).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from llmner.data.alignment import WindowEncoder
from llmner.errors import CheckpointError
from llmner.heads import CRFHead, LinearHead
from llmner.modules.tagger import TaggerModule
from llmner.onnx_export import FILES, SPEC


def is_onnx_export(path: str | Path) -> bool:
    """Whether ``path`` is an ONNX export directory or a ``.onnx`` file inside one."""
    path = Path(path)
    return (path / SPEC).is_file() or (path.suffix == ".onnx" and (path.parent / SPEC).is_file())


class OnnxTagger(nn.Module):
    """``TaggerModule``'s ``predict`` over emissions from an ONNX Runtime session.

    Args:
        path: the export directory (runs ``model.onnx``) or one of its ``.onnx`` files
            (e.g. ``model.int8.onnx``).
        threads: ONNX Runtime's intra-op threads; ``None``: ``OMP_NUM_THREADS`` if set, else its default.
    """

    # the one predict: windows, batches, decoding, entities with offsets and scores (llmner.heads.spans)
    predict = TaggerModule.predict
    predict_both = TaggerModule.predict_both
    keys = TaggerModule.keys
    use_single_types = TaggerModule.use_single_types  # llmner.evaluate single_types=[...]

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime as ort
        from transformers import AutoTokenizer

        path = Path(path)
        folder, file = (path, path / FILES["fp32"]) if path.is_dir() else (path.parent, path)
        try:
            spec = json.loads((folder / SPEC).read_text())
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{folder / SPEC}: not an llmner ONNX export ({err})") from None
        if not file.is_file():
            raise CheckpointError(f"{file}: no such ONNX file (the export has {sorted(spec['files'].values())})")
        self.spec, self.path = spec, file
        self.encoder = WindowEncoder(AutoTokenizer.from_pretrained(folder), **{
            k: spec["encoder"][k] for k in ("max_length", "context_words", "splitter", "repeat")})
        self.encoder.prefix, self.encoder.suffix = spec["encoder"]["prefix"], spec["encoder"]["suffix"]
        self.head = (CRFHead if spec["head"] == "crf" else LinearHead)(1, spec["tags"])
        if spec["crf"] is not None:
            crf = self.head.crf
            with torch.no_grad():
                for name, key in (("start_transitions", "start"), ("end_transitions", "end"), ("transitions", "transitions")):
                    crf._parameters[name].copy_(torch.tensor(spec["crf"][key]))
        self.subword = spec["subword"]
        self.single_types = spec.get("single_types", [])  # exports before model.single_types: none
        self.run_config: dict = {}
        options = ort.SessionOptions()
        threads = threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
        self.eval()

    @property
    def inputs(self) -> list[str]:
        """The graph's inputs (an optimized graph drops one its pooling does not read, e.g. ``last``)."""
        return [i.name for i in self.session.get_inputs()]

    @property
    def tags(self) -> list[str]:
        return self.head.tags

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Emissions (B, W, K) for a batch from ``WindowEncoder.collate``, as ``TaggerModule.forward``."""
        feed = {k: batch[k].cpu().numpy() for k in self.inputs}
        return torch.from_numpy(self.session.run(["emissions"], feed)[0])  # (B, W, K)
