"""The training split a run was trained on, found from its Hydra config, and its entity strings."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from llmner.data.conll import ConllCorpus, find_split_file
from llmner.data.schema import DataError, Sentence
from llmner.evaluation.analyze.categories import entities, surface
from llmner.evaluation.predictions import conll_word, predictions_path


def _resolve(path: str, run_dir: Path) -> Path | None:
    """A config's data path: absolute, or relative to the run's launch directory or the current one."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    hydra_yaml = run_dir / ".hydra" / "hydra.yaml"
    candidates = []
    if hydra_yaml.is_file():
        cwd = OmegaConf.select(OmegaConf.load(hydra_yaml), "hydra.runtime.cwd", default=None)
        if cwd:
            candidates.append(Path(cwd) / p)
    candidates.append(Path.cwd() / p)
    return next((c for c in candidates if c.exists()), None)


def find_train(run: str | Path) -> tuple[list[Sentence] | None, str]:
    """The training split a run was trained on, when its config says where it is and it is readable.

    Looks for ``.hydra/config.yaml`` in the run folder (a train run: ``data.path`` and
    ``data.corpus``'s column layout) and then in up to two folders above it (a benchmark's:
    ``data_path``, read with the CoNLL corpus defaults). Data from the Hub is never fetched.

    Returns:
        The sentences (or ``None``) and a note saying where they came from, or why there are none.
    """
    path = predictions_path(run)
    folder = path.parent
    for config_dir in [folder, *list(folder.parents)[:2]]:
        config = config_dir / ".hydra" / "config.yaml"
        if not config.is_file():
            continue
        cfg = OmegaConf.load(config)
        key = "data.path" if "data" in cfg else "data_path"  # a train run's config, or a benchmark's
        data_path = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
        if not data_path:
            return None, f"{config}: no local data path (the run read its data from the Hub); give --train FILE"
        directory = _resolve(str(data_path), config_dir)
        if directory is None:
            return None, f"{config}: data path {data_path} not found from here; give --train FILE"
        corpus = OmegaConf.select(cfg, "data.corpus", default=None, throw_on_resolution_failure=False)
        target = str(OmegaConf.select(corpus, "_target_", default="")) if corpus is not None else ""
        if target and not target.endswith("ConllCorpus"):
            return None, f"{config}: corpus {target} is not a CoNLL corpus; give --train FILE"
        columns = {k: corpus[k] for k in ("token_column", "tag_column", "separator") if corpus is not None and k in corpus}
        try:
            sentences = ConllCorpus(path=str(directory), splits=("train",), **columns).load()["train"]
        except DataError as err:
            return None, f"training split not readable: {err}"
        return sentences, f"training split: {find_split_file(directory, 'train')} ({len(sentences)} sentences)"
    return None, f"no .hydra/config.yaml in {folder} or above it; give --train FILE"


def train_surfaces(train: list[Sentence]) -> set[str]:
    """The word strings annotated as an entity (of any type) somewhere in the training split."""
    out = set()
    for s in train:
        out |= {surface([conll_word(w) for w in s.tokens], e) for e in entities([s.tags])[0]}
    return out
