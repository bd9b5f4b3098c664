"""Shared fixtures: a learnable CoNLL-format corpus written for the tests, and the real config."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

CONF = str(Path(__file__).resolve().parents[1] / "conf")
SHARED_CONLL = Path(__file__).resolve().parents[2] / "shared" / "data" / "conll2003"

PEOPLE = ["John Smith", "Mary Jones", "Peter Blackburn", "Anna Berg", "Li Wei", "Omar Haddad", "Sara Costa"]
PLACES = ["Paris", "London", "New York", "Berlin", "Cairo", "Lima", "Oslo"]
ORGS = ["European Union", "Acme Corp", "Red Cross", "United Nations", "Shell", "Reuters"]
TEMPLATES = [
    "{PER} visited {LOC} on Monday .",
    "the {ORG} said {PER} will lead it .",
    "officials in {LOC} met the {ORG} .",
    "{PER} and {PER} flew to {LOC} .",
    "a spokesman for {ORG} in {LOC} declined to comment .",
    "prices fell again on Tuesday .",
]


def make_sentences(n: int, seed: int) -> list[list[tuple[str, str]]]:
    """``n`` sentences of (word, IOB2 tag) from the templates above."""
    rng = random.Random(seed)
    pools = {"PER": PEOPLE, "LOC": PLACES, "ORG": ORGS}
    out = []
    for _ in range(n):
        words = []
        for piece in rng.choice(TEMPLATES).split():
            if piece.startswith("{"):
                label = piece[1:4]
                for i, w in enumerate(rng.choice(pools[label]).split()):
                    words.append((w, f"{'B' if i == 0 else 'I'}-{label}"))
            else:
                words.append((piece, "O"))
        out.append(words)
    return out


def write_conll(path: Path, sentences: list[list[tuple[str, str]]], sep: str = " ") -> None:
    path.write_text("".join("".join(f"{w}{sep}NN{sep}O{sep}{t}\n" for w, t in s) + "\n" for s in sentences))


def write_corpus(d: Path, train: int, validation: int, test: int) -> Path:
    """train/validation/test files of generated sentences (seeds 0, 1, 2) in CoNLL-2003 layout, in ``d``."""
    for split, n, seed in (("train", train, 0), ("validation", validation, 1), ("test", test, 2)):
        write_conll(d / f"{split}.txt", make_sentences(n, seed))
    return d


@pytest.fixture(scope="session")
def tiny_conll(tmp_path_factory) -> Path:
    """A directory with train/validation/test files in CoNLL-2003 layout (4 columns)."""
    return write_corpus(tmp_path_factory.mktemp("tiny_conll"), 240, 40, 40)


def compose_config(overrides: list[str], output_dir: Path, config_name: str = "train") -> DictConfig:
    """The real config, composed as the entry point would, with the run folder set by hand."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=False)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir)
    return cfg


TINY = [
    "backbone=tiny_random",
    "data=conll2003",
    "trainer.accelerator=cpu",
    "logger=tensorboard",
]
