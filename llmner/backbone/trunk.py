"""Cache the frozen trunk of a decoder: compute the layers below the adapters once per window.

With LoRA only in the top ``k`` layers (``backbone.lora_layers``), the layers below them never
change during training, so the hidden states entering the lowest adapted layer are a function of
the window's token ids alone. ``TrunkCache`` keeps them (half precision by default) and later
epochs, validation passes and the test run compute only the layers above the cut ("Embedding
Recycling", Saad-Falcon et al., EACL Findings 2023: >90% less training compute at negligible
accuracy cost).

Written here rather than taken from a library: transformers and peft cache keys and values for
generation (``DynamicCache``), not a layer's output across training steps.

How a pass is split without rewriting the model's forward: the decoder's own ``forward`` runs
with its layer list temporarily cut to ``[:cut]`` (the states are taken at the last of those
layers, before the final norm) or to ``[cut:]`` with the cached states as ``inputs_embeds``. This
holds for Llama-like decoders whose ``inputs_embeds`` enter the first layer unchanged; the first
split pass of every cache is checked against the whole model and a mismatch is an error, so an
architecture where this does not hold (e.g. one that scales its input embeddings) fails loudly.

Keys. A store is named by a fingerprint of everything that changes the trunk's output: the
weights of the embeddings and the layers below the cut (their bytes, hashed), the model config,
the cut, which of those layers attend both ways, the attention implementation and dtype. Inside a
store each window is keyed by its real token ids (padding excluded: positions count real tokens
only), so tokenization, window settings and data files are covered by construction. Stores live
in the process (a benchmark's seeds share one); only the most recent fingerprint is kept.

Filling. ``fill`` computes the states of many windows at once before training (``inference_mode``,
batches sized by tokens, longest first), so that no training step runs the trunk: without it the
first epoch pays for the whole model on every step. With a ``directory`` the states are also kept
on disk under ``<directory>/<fingerprint>/``, as flat shards (``float16`` by default) that later
runs of the same trunk map into memory instead of recomputing (seeds and sweep trials share them);
a changed trunk or setting has another fingerprint and so another folder, never a stale one.

int8. With ``int8`` the linear layers below the cut are replaced by PyTorch's dynamically quantized
ones (``torch.ao.quantization.quantize_dynamic``: int8 weights, activations quantized per batch),
CPU only, which makes filling cheaper at a cost in accuracy to be measured. ``torch.ao`` is
deprecated in favour of torchao, which is not a dependency; it is still in the pinned torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from torch.ao.quantization import quantize_dynamic

from llmner.backbone.util import evaluating

log = logging.getLogger(__name__)

SHARD_SUFFIX = ".states"  # a shard: (N, H) states back to back; beside it ``.json``: key (hex) -> [row, rows]

_STORES: dict[str, dict[bytes, torch.Tensor]] = {}
CACHE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def fingerprint(embed: nn.Module, lower: list[nn.Module], settings: dict) -> str:
    """A hash of the trunk's weights and the settings that change its output."""
    h = hashlib.sha1(repr(sorted(settings.items())).encode())
    for module in [embed, *lower]:
        for name, t in sorted(module.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


@contextmanager
def layers_cut(owner: nn.Module, name: str, layers: nn.ModuleList, part: slice):
    """Run the model with only ``layers[part]``; the full list is restored afterwards."""
    setattr(owner, name, nn.ModuleList(list(layers)[part]))
    try:
        yield
    finally:
        setattr(owner, name, layers)


class TrunkCache:
    """The cached lower part of a decoder; ``forward`` replaces one pass of the whole model.

    Args:
        model: the (peft-wrapped) decoder, called as ``model(input_ids=..., inputs_embeds=...,
            attention_mask=..., position_ids=...)``.
        owner, name: where its ``nn.ModuleList`` of layers lives (``backbone.layer_list``).
        cut: layers ``[0, cut)`` are cached; ``[cut, n)`` run every pass.
        settings: what besides the weights changes the trunk's output (for the fingerprint).
        dtype: storage precision of the cached states (``float16`` halves memory; ~1e-3 relative
            rounding of the states).
        directory: keep filled states on disk here too, and start from what earlier runs of the same
            trunk kept (``None``: in this process only).
        int8: quantize the linear layers below the cut dynamically to int8 (CPU; see above).
    """

    def __init__(self, model: nn.Module, owner: nn.Module, name: str, cut: int, settings: dict,
                 dtype: str = "float16", directory: str | Path | None = None, int8: bool = False) -> None:
        if dtype not in CACHE_DTYPES:
            raise ValueError(f"backbone.cache_dtype must be one of {sorted(CACHE_DTYPES)}, got {dtype!r}")
        self.model, self.owner, self.name, self.cut = model, owner, name, cut
        self.layers: nn.ModuleList = getattr(owner, name)
        if not 0 < cut <= len(self.layers):
            raise ValueError(f"trunk cache cut must be in 1..{len(self.layers)}, got {cut}")
        self.settings = settings | {"cut": cut, "cache_dtype": dtype}
        self.dtype = CACHE_DTYPES[dtype]
        self._store: dict[bytes, torch.Tensor] | None = None
        self.directory = Path(directory) if directory else None
        self.checked = False
        self.hits = self.misses = 0
        self.key: str | None = None
        if int8:
            self.settings["int8"] = True
            self.store  # noqa: B018 -- the fingerprint hashes the float weights, before they are replaced
            quantize_dynamic(self.layers[: self.cut], {nn.Linear}, dtype=torch.qint8, inplace=True)

    @property
    def store(self) -> dict[bytes, torch.Tensor]:
        if self._store is None:
            key = fingerprint(self.owner.embed_tokens, list(self.layers)[: self.cut], self.settings)
            if key not in _STORES:
                _STORES.clear()  # one trunk at a time: a sweep over backbones does not pile up
                _STORES[key] = {}
                log.info("trunk cache %s: layers 0-%d of %d computed once per window", key, self.cut - 1, len(self.layers))
            self.key, self._store = key, _STORES[key]
            if self.directory is not None:
                self._load_shards()
        return self._store

    # --- on disk ---------------------------------------------------------------------------
    @property
    def folder(self) -> Path:
        self.store  # noqa: B018 -- computes the fingerprint
        return self.directory / self.key

    def _load_shards(self) -> None:
        """Map every shard of this fingerprint into the store (views of the file; nothing is read yet)."""
        loaded = 0
        for index in sorted(self.folder.glob("*.json")):
            data = self.folder / (index.stem + SHARD_SUFFIX)
            rows = json.loads(index.read_text())
            width = rows.pop("_width")
            total = sum(n for _, n in rows.values())
            if not data.is_file() or data.stat().st_size != total * width * self.dtype.itemsize:
                log.warning("trunk cache: %s is incomplete; ignored", data)
                continue
            states = torch.from_file(str(data), shared=False, size=total * width, dtype=self.dtype).view(total, width)
            for hexkey, (row, n) in rows.items():
                key = bytes.fromhex(hexkey)
                if key not in self._store:  # a window in two shards (two runs filled it at once): the first
                    self._store[key] = states[row : row + n]  # (T_i, H), a view of the mapped file
                    loaded += 1
        if loaded:  # written by a run whose split pass was checked against the whole model, on this fingerprint
            self.checked = True
            log.info("trunk cache %s: %d windows from %s", self.key, loaded, self.folder)

    def _save_shard(self, keys: list[bytes]) -> None:
        """Write the states of ``keys`` as one new shard (atomically: a reader never sees half a shard)."""
        if not keys:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{len(keys)}"
        states = torch.cat([self._store[k] for k in keys])  # (N, H)
        index, row = {"_width": states.shape[1]}, 0
        for k in keys:
            n = self._store[k].shape[0]
            index[k.hex()] = [row, n]
            row += n
        tmp = self.folder / f".{stem}.tmp"
        tmp.write_bytes(states.contiguous().view(torch.uint8).numpy().tobytes())
        tmp.rename(self.folder / (stem + SHARD_SUFFIX))
        tmp.write_text(json.dumps(index))
        tmp.rename(self.folder / (stem + ".json"))  # last: a shard counts once its index exists
        log.info("trunk cache %s: %d windows written to %s", self.key, len(keys), self.folder)

    # --- filling ---------------------------------------------------------------------------
    @staticmethod
    def keys_of(input_ids: torch.Tensor, mask: torch.Tensor) -> list[bytes]:
        """Each row's key: its real token ids (padding excluded)."""
        real = mask.bool()  # (B, T)
        return [row[m].to(torch.int32).cpu().numpy().tobytes() for row, m in zip(input_ids, real)]

    def fill(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> int:
        """Compute and keep the states of every window of ``batches`` not stored yet.

        Args:
            batches: ``(input_ids, mask, positions)``, each (B, T), e.g. from ``Backbone.fill``.

        Returns:
            How many windows were computed (those already stored or on disk are skipped).
        """
        store, fresh_keys = self.store, []
        for input_ids, mask, positions in batches:
            keys = self.keys_of(input_ids, mask)
            todo = [i for i, k in enumerate(keys) if k not in store]
            if not todo:
                continue
            real = mask.bool()
            with torch.inference_mode():  # the whole batch: bidirectional layers below the cut hold its mask
                states = self.lower(input_ids, mask, positions)  # (B, T, H)
                for i in todo:
                    store[keys[i]] = states[i, real[i]].to(self.dtype).cpu()  # (T_i, H)
            fresh_keys += [keys[i] for i in todo]
        fresh_keys = list(dict.fromkeys(fresh_keys))  # a window twice in one batch (a repeated sentence) is kept once
        if self.directory is not None:
            self._save_shard(fresh_keys)
        return len(fresh_keys)

    def lower(self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """States entering layer ``cut``: (B, T) -> (B, T, H), taken before the final norm."""
        out = []
        hook = self.layers[self.cut - 1].register_forward_hook(
            lambda m, a, o: out.append(o[0] if isinstance(o, tuple) else o))
        try:
            with layers_cut(self.owner, self.name, self.layers, slice(0, self.cut)), torch.no_grad():
                self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=False)
        finally:
            hook.remove()
        return out[0]

    def upper(self, states: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """The layers above the cut and the final norm: (B, T, H) -> (B, T, H)."""
        with layers_cut(self.owner, self.name, self.layers, slice(self.cut, None)):
            return self.model(inputs_embeds=states, attention_mask=mask, position_ids=positions,
                              use_cache=False).last_hidden_state

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Hidden states of the last layer, the trunk's part from the cache: (B, T) -> (B, T, H)."""
        real = mask.bool()  # (B, T)
        keys = self.keys_of(input_ids, mask)
        store = self.store
        missing = [i for i, k in enumerate(keys) if k not in store]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:  # the whole batch goes through the trunk once; its new rows are kept
            fresh = self.lower(input_ids, mask, positions)  # (B, T, H)
            for i in missing:
                store[keys[i]] = fresh[i, real[i]].to(self.dtype).cpu()  # (T_i, H)
        weight = self.owner.embed_tokens.weight
        states = torch.zeros(*input_ids.shape, weight.shape[1], dtype=weight.dtype, device=input_ids.device)  # (B, T, H)
        for i, k in enumerate(keys):
            states[i, real[i]] = store[k].to(device=input_ids.device, dtype=weight.dtype)
        out = self.upper(states, mask, positions)
        if not self.checked:
            self.check(input_ids, mask, positions)
        return out

    def check(self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> None:
        """Once per cache: the split pass equals the whole model (both at full precision, no dropout)."""
        with evaluating(self.model), torch.no_grad():
            whole = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                               use_cache=False).last_hidden_state
            split = self.upper(self.lower(input_ids, mask, positions), mask, positions)
        real = mask.bool()
        err = (whole[real] - split[real]).abs().max().item()
        scale = whole[real].abs().max().item()
        if err > 1e-4 * max(1.0, scale):
            raise RuntimeError(f"backbone.cache: the split pass differs from the whole model (max |diff| {err:.3g}) "
                               f"for {type(self.owner).__name__}; this architecture cannot be cached, set backbone.cache=false")
        self.checked = True
