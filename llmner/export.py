"""Export a checkpoint as a standard transformers model: ``python -m llmner.export ckpt_path=... out=DIR``.

The LoRA adapter is merged into the backbone (``merge_and_unload``) and ``DIR`` gets
``save_pretrained`` of the model and its tokenizer, which load without llmner:

- generative head: ``AutoModelForCausalLM.from_pretrained(DIR)``; ``DIR/llmner_prompt.json`` holds
  the prompt format (style, keys, integer types) to ask it the same way;
- tag heads: ``AutoModel.from_pretrained(DIR)``'s ``last_hidden_state`` is what the head reads (a
  backbone cut to ``backbone.layer`` layers is saved with just those), and ``DIR/llmner_head.pt``
  holds ``{"state_dict": head weights (linear layer, CRF transitions), "tags": [...],
  "head": head config, "subword": "first"|"last"}``
  (``torch.load(DIR/"llmner_head.pt")``; the head classes are ``llmner.heads``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from llmner import cli
from llmner.builders import load

log = logging.getLogger(__name__)


def export(ckpt_path: str | Path, out: str | Path) -> Path:
    """Write the merged model, its tokenizer and the head (tag heads) or prompt (generative) to ``out``."""
    model = load(ckpt_path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    backbone = model.backbone
    merged = backbone.model.merge_and_unload() if hasattr(backbone.model, "merge_and_unload") else backbone.model
    merged.save_pretrained(out)
    backbone.tokenizer.save_pretrained(out)
    if getattr(backbone, "causal_lm", False):
        prompt = dataclasses.asdict(model.prompt) | {"keys": model.keys, "tags": model.tags}
        (out / "llmner_prompt.json").write_text(json.dumps(prompt, indent=2) + "\n")
    else:
        torch.save({"state_dict": model.head.state_dict(), "tags": model.tags, "head": model.run_config.get("head"),
                    "subword": model.subword}, out / "llmner_head.pt")
    log.info("exported %s to %s", ckpt_path, out)
    return out


@hydra.main(version_base="1.3", config_path="../conf", config_name="export.yaml")
def main(cfg: DictConfig) -> None:
    cli.run("export", lambda: export(cfg.ckpt_path, cfg.out))


if __name__ == "__main__":
    main()
