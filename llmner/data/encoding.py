"""What the two encoders share (``WindowEncoder`` for the tag heads, ``ChatEncoder`` for the
generative model): a tokenizer, a length budget, the raw-text word splitter, and padding."""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import pad_sequence

from llmner.data.text import check_splitter


def pad_token_id(tokenizer) -> int:
    """The id that pads batches: the tokenizer's pad token, else its end-of-sequence token, else 0.

    Padding is always masked, so which id it is does not change any result.
    """
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return tid
    return 0


def pad(rows: list[list[int]], value: int, side: str = "right") -> torch.Tensor:
    """(B, T) long tensor of ``rows`` padded with ``value`` on ``side`` (``right`` or ``left``)."""
    return pad_sequence([torch.tensor(r, dtype=torch.long) for r in rows], batch_first=True,
                        padding_value=value, padding_side=side)


class Encoder:
    """Base of the encoders: sentences or raw text -> items -> padded batches.

    Args:
        tokenizer: the backbone's tokenizer.
        max_length: tokens per item (a window, a conversation).
        splitter: how raw text is split into words for prediction (``llmner.data.text.split_words``);
            the training corpus's own when the run did not set one, ``punct`` otherwise.
    """

    def __init__(self, tokenizer, max_length: int, splitter: str | None = None) -> None:
        check_splitter(splitter)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.splitter = splitter or "punct"
        self.pad_id = pad_token_id(tokenizer)
