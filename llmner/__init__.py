"""llmner: named-entity recognition with open decoder LLMs (LoRA, CRF), on Lightning and Hydra."""

__version__ = "0.1.0"


def load(ckpt_path: str):
    """Rebuild a trained model from an llmner checkpoint (see ``llmner.builders.load``).

    Whatever its head (linear, CRF, generative), ``load(path).predict(["some text", ...])`` returns
    per text a list of entities ``{"type", "text", "start", "end", "score"}`` in text order, with
    ``text[start:end] == entity["text"]``; ``predict(texts, grouped=True)`` one ``{type: [values]}``
    dict per text instead.
    """
    from llmner.builders import load as _load

    return _load(ckpt_path)
