"""llmner's tagger as transformers custom code (``trust_remote_code=True``); needs torch and transformers only.

``llmner.export`` copies this file into an exported directory whose ``config.json`` names it in
``auto_map``: ``AutoModelForTokenClassification.from_pretrained(DIR, trust_remote_code=True)``
builds the backbone from the same config, reads it as llmner trained it and returns per-word
emissions. What it keeps of llmner's reading (``config.llmner``):

- ``unmasked``: ``[from, to)`` layers of a decoder that attend both ways (padding still masked),
  through forward pre-hooks that pass transformers' bidirectional mask, as llmner's attention
  schedule does; the other layers stay causal;
- positions counted over real tokens only (``cumsum`` of the attention mask);
- ``subword``: how a word's subwords make its features (first, last, mean, first_last);
- the head's linear layer (``classifier``) and, for a CRF head, its IOB2-constrained transition
  scores with a Viterbi decoder (``decode``).

Repetition and windows are the inputs' business (``pipeline_llmner``): ``first`` and ``last`` point
into the last copy of a window. Without ``first``/``last`` every token is a word (per-token
emissions, what a stock token-classification pipeline reads).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.modeling_outputs import TokenClassifierOutput


def pool_words(hidden: torch.Tensor, first: torch.Tensor, last: torch.Tensor, how: str) -> torch.Tensor:
    """(B, T, H), (B, W), (B, W) -> (B, W, H) or (B, W, 2H): llmner's ``pool_words``."""
    def take(index: torch.Tensor) -> torch.Tensor:
        return hidden.gather(1, index.unsqueeze(-1).expand(-1, -1, hidden.size(-1)))  # (B, W, H)

    if how == "first":
        return take(first)
    if how == "last":
        return take(last)
    if how == "first_last":
        return torch.cat([take(first), take(last)], dim=-1)  # (B, W, 2H)
    t = torch.arange(hidden.size(1), device=hidden.device)  # (T,)
    inside = (t >= first.unsqueeze(-1)) & (t <= last.unsqueeze(-1))  # (B, W, T)
    weights = inside.to(hidden.dtype) / inside.sum(-1, keepdim=True).clamp(min=1)
    return weights @ hidden  # (B, W, H)


def _layers(model: nn.Module) -> nn.ModuleList:
    base = getattr(model, "model", model)
    return base.layers if hasattr(base, "layers") else base.encoder.layer


class LlmnerForTokenClassification(PreTrainedModel):
    """Backbone (``AutoModel`` of the config) -> word features -> emissions (B, W, K)."""

    base_model_prefix = "model"  # AutoModel.from_pretrained(DIR) still loads the bare backbone
    supports_gradient_checkpointing = False
    _supports_sdpa = True  # attention is the backbone's own: whatever it supports
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def __init__(self, config) -> None:
        super().__init__(config)
        spec = config.llmner
        self.model = AutoModel.from_config(config)
        self.subword = spec["subword"]
        self.decoder = spec["decoder"]
        width = 2 if self.subword == "first_last" else 1
        self.classifier = nn.Linear(width * config.hidden_size, config.num_labels)
        k = config.num_labels
        self.register_buffer("start_transitions", torch.zeros(k))  # (K,) IOB2 constraints applied: -10000
        self.register_buffer("end_transitions", torch.zeros(k))  # (K,)
        self.register_buffer("transitions", torch.zeros(k, k))  # (K, K) [from, to]
        self._padding: torch.Tensor | None = None
        layers = _layers(self.model)
        lo, hi = spec["unmasked"] or (0, 0)
        for i in range(lo, hi):
            layers[i].register_forward_pre_hook(self._unmask, with_kwargs=True)
        self.post_init()

    def _unmask(self, layer: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        from transformers.masking_utils import create_bidirectional_mask

        hidden = args[0] if args else kwargs["hidden_states"]  # (B, T, H)
        kwargs["attention_mask"] = create_bidirectional_mask(self.model.config, hidden, self._padding)
        kwargs["is_causal"] = False
        return args, kwargs

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                first: torch.Tensor | None = None, last: torch.Tensor | None = None, **kwargs) -> TokenClassifierOutput:
        """(B, T) ids and mask, (B, W) first/last subword of each word -> ``logits``: emissions (B, W, K)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if first is None:  # every token a word
            first = last = torch.arange(input_ids.size(1), device=input_ids.device).expand_as(input_ids)
        self._padding = attention_mask
        try:
            if self.decoder:
                positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, T)
                hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                                    use_cache=False).last_hidden_state  # (B, T, H)
            else:
                hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        finally:
            self._padding = None
        words = pool_words(hidden, first, last, self.subword)  # (B, W, H or 2H)
        return TokenClassifierOutput(logits=self.classifier(words.to(self.classifier.weight.dtype)).float())

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor) -> list[int]:
        """Best tag ids of one sequence (W, K): Viterbi under the CRF's scores, or argmax without a CRF."""
        if not self.config.llmner["crf"]:
            return emissions.argmax(-1).tolist()
        # pytorch-crf's _viterbi_decode for one unpadded sequence (the same operations, so the same ties)
        score = self.start_transitions + emissions[0]  # (K,)
        history = []
        for i in range(1, emissions.size(0)):
            nxt = score.unsqueeze(1) + self.transitions + emissions[i].unsqueeze(0)  # (K, K)
            score, index = nxt.max(dim=0)
            history.append(index)
        score = score + self.end_transitions
        best = [int(score.max(dim=0)[1])]
        for index in reversed(history):
            best.append(int(index[best[-1]]))
        return best[::-1]
