"""Start a run from a trained checkpoint's weights: ``init_from=CKPT`` (with ``init_map`` for a new tag set).

Unlike ``ckpt_path`` (resume: weights, optimizer, schedule and step), ``init_from`` copies weights
only and the run starts at step 0 with a fresh optimizer and schedule:

- **Adapters** (every trained backbone weight, LoRA A/B) are copied as they are. They fit only the
  backbone they were trained on, cut at the same layer with the same LoRA settings
  (``ADAPTER_SETTINGS``); anything else is a one-line error before the backbone loads.
- **Head rows, by tag.** The new head is sized for this run's tag set. Row ``k`` of the linear layer
  (weight and bias) is copied from the checkpoint when tag ``k`` has a source there: the same tag
  (``O``; a type of the same name), or for a type ``init_map`` lists, the old type's tag of the same
  prefix (``init_map={PER: [Victim_Name, Officer_Name]}``: ``B-Victim_Name`` <- ``B-PER``,
  ``I-Victim_Name`` <- ``I-PER``). Rows of tags with no source keep their fresh initialisation.
- **CRF** (both heads CRFs): the transition from tag ``i`` to tag ``j`` is the checkpoint's transition
  between their sources when both have one (so ``B-Victim_Name -> I-Victim_Name`` starts as
  ``B-PER -> I-PER``, and ``O -> B-Location`` as ``O -> B-LOC``); start and end scores of a tag with a
  source are its source's. Every entry that touches a tag without a source stays fresh. Transitions
  IOB2 forbids stay forbidden whatever is copied (``ConstrainedCRF`` masks them).

A same-tag-set run thus starts with the whole head; a linear head copies into a CRF head's linear
layer (its transitions start fresh) and a CRF head into a linear one (its transitions are dropped).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from llmner.checkpoint import read_checkpoint, upgrade_config
from llmner.data.schema import split_tag
from llmner.errors import ConfigError

log = logging.getLogger(__name__)

#: backbone settings that decide which adapter weights exist and what they compute
ADAPTER_SETTINGS = ("layer", "freeze", "lora", "lora_r", "lora_alpha", "lora_target_modules", "lora_layers")
#: what names the pretrained weights
IDENTITY = ("name_or_path", "gguf_file", "package")
#: head parameters indexed by tag: name -> how many leading dimensions are tags
TAG_DIMS = {"proj.weight": 1, "proj.bias": 1, "crf.start_transitions": 1, "crf.end_transitions": 1, "crf.transitions": 2}


class InitSource:
    """A checkpoint read for ``init_from``: its weights, tag set and (upgraded) config."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        checkpoint = read_checkpoint(path)
        self.state_dict: dict[str, torch.Tensor] = checkpoint["state_dict"]
        self.tags: list[str] = list(checkpoint["llmner"].get("tags") or [])
        self.config: dict = upgrade_config(checkpoint["llmner"].get("config") or {})
        self.step: int = int(checkpoint.get("global_step", 0))


def _describe(backbone: Mapping) -> str:
    parts = [str(backbone.get(k)) for k in ("package", "name_or_path", "gguf_file") if backbone.get(k)]
    return ":".join(parts) or "?"


def _plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def backbone_defaults() -> dict[str, Any]:
    """``Backbone``'s default arguments (lists for tuples, as a stored config holds them)."""
    import inspect

    from llmner.backbone import Backbone

    params = inspect.signature(Backbone.__init__).parameters.values()
    return {p.name: list(p.default) if isinstance(p.default, tuple) else p.default
            for p in params if p.default is not inspect.Parameter.empty}


def check_compatible(source: InitSource, cfg: DictConfig) -> None:
    """Refuse a checkpoint whose weights cannot start this run, before anything is loaded.

    Raises:
        ConfigError: another model class (tagger vs generative), another backbone, or backbone
            settings under which its adapters do not fit (layer cut, LoRA rank/alpha/targets/layers).
    """
    key = f"init_from={source.path}"
    old_model, new_model = source.config.get("model") or {}, _plain(cfg.model)
    if old_model.get("_target_") != new_model.get("_target_"):
        raise ConfigError(f"{key}: a {str(old_model.get('_target_')).rsplit('.', 1)[-1]} checkpoint; this run builds a "
                          f"{str(new_model.get('_target_')).rsplit('.', 1)[-1]} (init_from needs the same model: "
                          "tag heads from a tag-head checkpoint, the generative head from a generative one)")
    reads = {"subword": "first", "encoder.repeat": 1, "encoder.bos": False}  # how the head reads words; the defaults

    def read(model: dict, key: str) -> Any:
        node, _, leaf = key.rpartition(".")
        return ((model.get(node) or {}) if node else model).get(leaf, reads[key])

    changed = [f"model.{k}: {read(old_model, k)} -> {read(new_model, k)}" for k in reads if read(old_model, k) != read(new_model, k)]
    if changed:  # the weights fit, but read other positions than they were trained on: allowed, and said
        log.warning("init_from %s: the head will read words differently than it was trained to (%s)", source.path,
                    "; ".join(changed))
    old, new = source.config.get("backbone") or {}, _plain(cfg.backbone)
    if any(old.get(k) != new.get(k) for k in IDENTITY):
        raise ConfigError(f"{key}: a checkpoint of another backbone ({_describe(old)}) than this run's ({_describe(new)}); "
                          "its adapters fit only the backbone they were trained on (set the same backbone)")
    default = backbone_defaults()  # a setting an older checkpoint's config lacks had its default then
    differ = [k for k in ADAPTER_SETTINGS if old.get(k, default.get(k)) != new.get(k, default.get(k))]
    if differ:
        theirs = ", ".join(f"backbone.{k}={old.get(k, default.get(k))}" for k in differ)
        ours = ", ".join(f"{new.get(k, default.get(k))}" for k in differ)
        raise ConfigError(f"{key}: its adapters were trained with {theirs}; this run has {ours}, "
                          "under which they do not fit (set the checkpoint's values)")


def head_sources(old_tags: list[str], new_tags: list[str], init_map: Mapping[str, Any] | None = None) -> dict[int, int]:
    """For each new tag id that has one, the old tag id its head row starts from.

    A tag's source is the old tag of the same name (``O``, a type both tag sets hold) or, for a
    type that ``init_map`` lists under an old type, that old type's tag of the same prefix (``B``/``I``).
    ``init_map`` wins over a same-named old type.

    Args:
        old_tags: the checkpoint's tag list.
        new_tags: this run's tag list.
        init_map: old type -> new type or list of new types.

    Raises:
        ConfigError: an old type the checkpoint lacks, a new type this run's data lacks, or a new
            type listed under two old types.
    """
    old_types = sorted({split_tag(t)[1] for t in old_tags if t != "O"})
    new_types = sorted({split_tag(t)[1] for t in new_tags if t != "O"})
    mapped: dict[str, str] = {}  # new type -> old type
    for old_type, targets in (init_map or {}).items():
        if old_type not in old_types:
            raise ConfigError(f"init_map: {old_type} is not a type of the checkpoint (its types: {', '.join(old_types)})")
        for new_type in [targets] if isinstance(targets, str) else list(targets or []):
            if new_type not in new_types:
                raise ConfigError(f"init_map: {old_type} -> {new_type}: {new_type} is not a type of this run's data "
                                  f"(its types: {', '.join(new_types)})")
            if new_type in mapped:
                raise ConfigError(f"init_map: {new_type} is listed under both {mapped[new_type]} and {old_type}; "
                                  "a new type starts from one old type")
            mapped[new_type] = old_type
    old_id = {t: i for i, t in enumerate(old_tags)}
    out = {}
    for k, tag in enumerate(new_tags):
        prefix, label = split_tag(tag)
        name = tag if label is None or label not in mapped else f"{prefix}-{mapped[label]}"
        if name in old_id:
            out[k] = old_id[name]
    return out


def initialise(model: torch.nn.Module, source: InitSource, init_map: Mapping[str, Any] | None = None) -> dict[str, int]:
    """Copy ``source``'s adapters and, row by tag, its head into ``model`` (built for this run's tags).

    Returns:
        Counts for the log: ``adapters`` (tensors copied), ``rows`` (tags with a source), ``tags``.

    Raises:
        ConfigError: the checkpoint's adapter weights do not match the model's (names or shapes), or
            its head reads features of another width; and ``head_sources``'s errors.
    """
    key = f"init_from={source.path}"
    params = dict(model.named_parameters())
    wanted = {n for n, p in params.items() if p.requires_grad and n.startswith("backbone.")}
    given = {n for n in source.state_dict if n.startswith("backbone.")}
    if wanted != given:
        odd = sorted(wanted ^ given)[:2]
        raise ConfigError(f"{key}: its adapter weights do not fit this backbone ({len(wanted - given)} missing, "
                          f"{len(given - wanted)} unknown, e.g. {odd})")
    for n in sorted(wanted):
        if params[n].shape != source.state_dict[n].shape:
            raise ConfigError(f"{key}: adapter weight {n} has shape {tuple(source.state_dict[n].shape)}, "
                              f"this model's {tuple(params[n].shape)}")
    rows = head_sources(source.tags, list(model.tags), init_map)
    new_ids = torch.tensor(sorted(rows), dtype=torch.long)  # (R,) tags of this run with a source
    old_ids = torch.tensor([rows[k] for k in sorted(rows)], dtype=torch.long)  # (R,) their sources
    copies: dict[str, tuple[torch.nn.Parameter, torch.Tensor]] = {}
    for name, dims in TAG_DIMS.items():
        old, param = source.state_dict.get(f"head.{name}"), params.get(f"head.{name}")
        if old is None or param is None:
            continue  # a linear head has no CRF: transitions stay fresh (or are dropped)
        if old.shape[dims:] != param.shape[dims:]:
            raise ConfigError(f"{key}: its head reads features of width {old.shape[-1]}, this run's {param.shape[-1]} "
                              "(model.subword=first_last doubles it: set the checkpoint's model.subword)")
        value = param.detach().clone()
        if dims == 1:
            value[new_ids] = old[old_ids].to(value.dtype)  # (R, H) or (R,)
        else:  # transitions (K, K): entries between two tags that both have a source
            value[new_ids.unsqueeze(1), new_ids.unsqueeze(0)] = old[old_ids.unsqueeze(1), old_ids.unsqueeze(0)].to(value.dtype)
        copies[f"head.{name}"] = (param, value)
    with torch.no_grad():
        for n in wanted:
            params[n].copy_(source.state_dict[n])
        for param, value in copies.values():
            param.copy_(value)
    tags = list(model.tags)
    rows = rows if copies else {}  # a head with no tag-indexed weights (the generative model's) copies none
    pairs = sorted({(split_tag(tags[k])[1] or "O", split_tag(source.tags[o])[1] or "O") for k, o in rows.items()})
    shown = ", ".join(a if a == b else f"{a} <- {b}" for a, b in pairs)
    log.info("init_from %s (step %d): %d adapter tensors; head rows of %d of %d tags (%s), the others fresh; "
             "optimizer, schedule and step start fresh", source.path, source.step, len(wanted), len(rows), len(tags),
             shown or "none")
    return {"adapters": len(wanted), "rows": len(rows), "tags": len(tags)}
