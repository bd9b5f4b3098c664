"""Right context for decoder taggers: which positions each layer sees, padding, repetition, pooling.

Oracles: the causal/bidirectional definitions themselves (a change at word j must or must not
reach word i < j), the same rows without padding, the other attention implementation, and
hand-computed poolings.
"""

import random

import pytest
import torch

from llmner.backbone import Backbone
from llmner.backbone.layers import unmasked_range
from llmner.backbone.testing import TINY_RANDOM
from llmner.data.alignment import encode_sentence, plan_windows
from llmner.modules.tagger import pool_words

IMPLEMENTATIONS = ["sdpa", "eager"]
SETTINGS = [  # (attention, unmask_layers)
    ("causal", "all"),
    ("bidirectional", "all"),
    ("bidirectional", [1, 2]),
]


def backbone(attention, unmask="all", impl="sdpa", **kw):
    b = Backbone(TINY_RANDOM, lora=False, attention=attention, unmask_layers=unmask,
                 attn_implementation=impl, dtype="float32", **kw)
    return b.eval()


def layer_outputs(b, ids, mask):
    """Each decoder layer's output for one forward through ``Backbone.forward``: [(B, T, H)] per layer."""
    outs, hooks = [], [layer.register_forward_hook(lambda m, a, o: outs.append(o[0] if isinstance(o, tuple) else o))
                       for layer in b.model.layers]
    try:
        with torch.no_grad():
            b(ids, mask)
    finally:
        for h in hooks:
            h.remove()
    return outs


def row(n, seed=0):
    return torch.randint(10, 400, (n,), generator=torch.Generator().manual_seed(seed))


# --- leakage: what a position can see --------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("attention,unmask", SETTINGS)
def test_right_context_reaches_exactly_the_unmasked_layers(attention, unmask, impl):
    b = backbone(attention, unmask, impl)
    ids = row(12).unsqueeze(0)  # batch size 1, no padding: where a config flag alone stays causal
    changed = ids.clone()
    changed[0, 8] = (changed[0, 8] + 7) % 400 + 10  # a word to the right of positions 0..7
    mask = torch.ones_like(ids)
    before, after = layer_outputs(b, ids, mask), layer_outputs(b, changed, mask)
    open_layers = set(unmasked_range(unmask, 2)) if attention == "bidirectional" else set()
    first_open = min(open_layers, default=2)
    for k, (x, y) in enumerate(zip(before, after)):
        left = (x[0, :8] - y[0, :8]).abs().max().item()
        if k < first_open:  # causal so far: the left positions never see position 8
            assert left == 0, f"layer {k} leaked right context ({left})"
        else:
            assert left > 1e-4, f"layer {k} should see the right context"


def test_unmask_layer_ranges():
    assert unmasked_range("all", 30) == range(30)
    assert unmasked_range("middle", 30) == range(10, 20)
    assert unmasked_range("middle", 2) == range(0, 1)
    assert unmasked_range([2, -1], 30) == range(2, 29)
    for bad in ([5, 5], [0, 31], "some", [1]):
        with pytest.raises(ValueError, match="unmask_layers"):
            unmasked_range(bad, 30)


def test_bad_attention_settings_are_clear_errors():
    with pytest.raises(ValueError, match="must stay causal"):
        Backbone(TINY_RANDOM, causal_lm=True, attention="bidirectional")
    with pytest.raises(ValueError, match="needs backbone.attention=bidirectional"):
        Backbone(TINY_RANDOM, unmask_layers="middle")
    with pytest.raises(ValueError, match="causal, bidirectional or null"):
        Backbone(TINY_RANDOM, attention="both")


def test_bidirectional_layers_run_only_with_a_padding_mask():
    b = backbone("bidirectional")
    ids = row(5).unsqueeze(0)
    with pytest.raises(RuntimeError, match="inside Backbone.forward"):
        b.model(input_ids=ids, attention_mask=torch.ones_like(ids))


# --- padding ---------------------------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("attention,unmask", SETTINGS)
@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_never_changes_a_real_token(attention, unmask, impl, side):
    b = backbone(attention, unmask, impl)
    lengths = [9, 4, 6]
    rows = [row(n, seed=i) for i, n in enumerate(lengths)]
    alone = [b(r.unsqueeze(0), torch.ones(1, len(r), dtype=torch.long))[0] for r in rows]  # batch size 1
    for extra, pad_id in [(0, 0), (5, 0), (5, 123)]:  # longer padding, and another pad token
        width = max(lengths) + extra
        ids = torch.full((len(rows), width), pad_id)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows):
            sl = slice(0, len(r)) if side == "right" else slice(width - len(r), width)
            ids[i, sl], mask[i, sl] = r, 1
        with torch.no_grad():
            hidden = b(ids, mask)
        for i, r in enumerate(rows):
            sl = slice(0, len(r)) if side == "right" else slice(width - len(r), width)
            torch.testing.assert_close(hidden[i, sl], alone[i].detach(), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("attention,unmask", SETTINGS)
def test_sdpa_and_eager_agree(attention, unmask):
    ids = torch.stack([row(7, 1), torch.cat([row(4, 2), torch.zeros(3, dtype=torch.long)])])
    mask = (torch.arange(7) < torch.tensor([[7], [4]])).long()
    with torch.no_grad():
        a = backbone(attention, unmask, "sdpa")(ids, mask)
        e = backbone(attention, unmask, "eager")(ids, mask)
    torch.testing.assert_close(a[mask.bool()], e[mask.bool()], atol=1e-5, rtol=1e-4)


def test_4bit_bidirectional_keeps_padding_masked():
    pytest.importorskip("bitsandbytes")
    b = Backbone(TINY_RANDOM, load_in_4bit=True, dtype="float32", attention="bidirectional").eval()
    r = row(6)
    ids = torch.cat([r, torch.zeros(4, dtype=torch.long)]).unsqueeze(0)
    mask = (torch.arange(10) < 6).long().unsqueeze(0)
    with torch.no_grad():
        torch.testing.assert_close(b(ids, mask)[0, :6], b(r.unsqueeze(0), torch.ones(1, 6, dtype=torch.long))[0],
                                   atol=1e-4, rtol=1e-3)


# --- repetition ------------------------------------------------------------------------------
def test_repetition_reads_the_second_copy():
    words = [[11, 12], [13], [14, 15, 16]]
    (w,) = encode_sentence(words, [1, 2, 3], 0, prefix=[1], suffix=[], max_length=64, context=2, repeat=2)
    assert w.input_ids == [1, 11, 12, 13, 14, 15, 16, 11, 12, 13, 14, 15, 16]
    assert w.first == [7, 9, 10] and w.last == [8, 9, 12]
    # the read positions are exactly the second occurrences of each word's subwords
    assert [w.input_ids[i] for i in w.first] == [11, 13, 14]


def test_repeated_features_see_the_whole_window():
    b = backbone("causal")
    words = [[20 + i] for i in range(6)]
    (w,) = encode_sentence(words, [0] * 6, 0, [], [], max_length=64, context=2, repeat=2)
    (v,) = encode_sentence([x if i != 5 else [99] for i, x in enumerate(words)], [0] * 6, 0, [], [], 64, 2, repeat=2)
    with torch.no_grad():
        a = b(torch.tensor([w.input_ids]), torch.ones(1, 12, dtype=torch.long))[0, w.first]
        c = b(torch.tensor([v.input_ids]), torch.ones(1, 12, dtype=torch.long))[0, v.first]
    assert (a[0] - c[0]).abs().max() > 1e-4  # word 0 (second copy) sees the change of word 5


@pytest.mark.parametrize("seed", range(30))
def test_repeated_windows_fit_and_cover_every_word_once(seed):
    rng = random.Random(seed)
    words = [[rng.randint(5, 99)] * rng.randint(1, 4) for _ in range(rng.randint(1, 60))]
    max_length, repeat = rng.randint(10, 40), rng.choice([2, 3])
    out = encode_sentence(words, list(range(len(words))), 0, [1], [2], max_length, context=3, repeat=repeat)
    assert [lab for w in out for lab in w.labels] == list(range(len(words)))  # every word once, in order
    for w in out:
        budget = (max_length - 2) // repeat
        assert len(w.input_ids) <= max_length or len(plan_windows([len(x) for x in words], budget, 3)) == len(out)
        body = w.input_ids[1:-1]
        n = len(body) // repeat
        assert body == body[:n] * repeat  # copies are identical
        assert all(i >= 1 + (repeat - 1) * n for i in w.first)  # read from the last copy


# --- pooling ---------------------------------------------------------------------------------
def test_poolings_by_hand():
    hidden = torch.arange(2 * 5 * 2, dtype=torch.float).view(2, 5, 2)  # (B=2, T=5, H=2)
    first, last = torch.tensor([[0, 1], [2, 0]]), torch.tensor([[0, 3], [4, 0]])
    torch.testing.assert_close(pool_words(hidden, first, last, "first"), hidden[[[0], [1]], first])
    torch.testing.assert_close(pool_words(hidden, first, last, "last"), hidden[[[0], [1]], last])
    mean = pool_words(hidden, first, last, "mean")
    torch.testing.assert_close(mean[0, 1], hidden[0, 1:4].mean(0))
    torch.testing.assert_close(mean[1, 0], hidden[1, 2:5].mean(0))
    both = pool_words(hidden, first, last, "first_last")
    assert both.shape == (2, 2, 4)
    torch.testing.assert_close(both[0, 1], torch.cat([hidden[0, 1], hidden[0, 3]]))


# --- end to end: a trained checkpoint predicts the same at every batch size -------------------
RUNS = {
    "causal": [],
    "bidirectional": ["backbone.attention=bidirectional", "model.subword=mean"],
    "bidirectional_top": ["backbone.attention=bidirectional", "backbone.unmask_layers=[1,2]", "model.subword=last"],
    "repeat": ["model.encoder.repeat=2", "model.subword=first_last"],
    "repeat_cached": ["model.encoder.repeat=2", "backbone.lora_layers=1", "backbone.cache=true",
                      "backbone.attention=bidirectional", "backbone.unmask_layers=[0,1]"],
    # int8 trunk: the best checkpoint (adapters and head only) must load into its quantized layers
    "int8_cached": ["backbone.lora_layers=1", "backbone.cache=true", "backbone.cache_int8=true"],
}


@pytest.mark.parametrize("name", RUNS)
def test_checkpoint_predicts_the_same_at_batch_size_1_and_32(name, tiny_conll, tmp_path):
    import llmner
    from llmner.train import train
    from tests.conftest import TINY, compose_config

    cfg = compose_config(TINY + RUNS[name] + [
        f"data.path={tiny_conll}", "head=crf", "model.lr_backbone=5e-3", "model.lr_head=5e-2",
        "data.batch_size=16", "trainer.max_epochs=1", "data.max_test_samples=40"], tmp_path)
    metrics, objects = train(cfg)
    model = llmner.load(objects["best_ckpt"] or str(tmp_path / "checkpoints" / "last.ckpt"))
    assert model.encoder.repeat == (2 if name.startswith("repeat") else 1)
    assert (model.backbone.trunk is not None) == name.endswith("cached")
    assert (model.backbone.schedule is not None) == ("backbone.attention=bidirectional" in RUNS[name])
    sentences = objects["datamodule"].sentences["test"]
    # varied lengths, so that batches of 32 pad most rows
    texts = [" ".join(s.tokens[: 1 + i % len(s.tokens)]) for i, s in enumerate(sentences)]
    one, many = model.predict(texts, batch_size=1), model.predict(texts, batch_size=32)
    # the same entities; scores equal up to float rounding (padding changes the order of additions)
    assert [[{**e, "score": None} for e in ents] for ents in one] == [[{**e, "score": None} for e in ents] for ents in many]
    assert [e["score"] for ents in one for e in ents] == pytest.approx([e["score"] for ents in many for e in ents], abs=1e-4)
    assert any(one), "the model found no entity: a weak test"
    assert metrics["test/f1"] > 0.3, metrics  # it learned the tiny corpus with this setting
