"""The trunk cache filled up front: same loss and gradients, no trunk pass in training, top layers
that look right over a causal cached trunk, and a store on disk reused only by the same trunk."""

import pytest
import torch

from llmner.backbone import Backbone, trunk
from llmner.backbone.testing import TINY_RANDOM
from tests.test_trunk import batch, loss_and_grads, make


def windows_of(ids, mask):
    return [row[m.bool()].tolist() for row, m in zip(ids, mask)]


def count_trunk_calls(b):
    calls = []
    b.model.base_model.model.layers[0].register_forward_hook(lambda *a: calls.append(1))
    return calls


def test_a_filled_cache_trains_like_the_whole_model_without_running_the_trunk():
    trunk._STORES.clear()
    plain, ref = loss_and_grads(*make(False))
    b, h = make(True, cache_dtype="float32")
    ids, mask, _ = batch()
    assert b.fill(windows_of(ids, mask), max_tokens=10) == 3  # 10 tokens a batch: windows of 9, 7, 5 in 3 batches
    calls = count_trunk_calls(b)
    loss, grads = loss_and_grads(b, h)
    assert calls == []  # training read no layer below the cut
    torch.testing.assert_close(loss, plain, atol=1e-6, rtol=1e-6)
    for n in ref:
        torch.testing.assert_close(grads[n], ref[n], atol=1e-6, rtol=5e-5, msg=n)
    assert b.trunk.hits == 3 and b.trunk.misses == 0
    assert b.fill(windows_of(ids, mask)) == 0  # filled already


def features(b, ids, mask):
    with torch.no_grad():
        return b(ids, mask)  # (B, T, H)


@pytest.mark.parametrize("attention, sees_right", [("bidirectional", True), (None, False)])
def test_top_layers_over_a_cached_causal_trunk(attention, sees_right):
    """Word i's feature changes with word j > i only through the top (uncached) layers."""
    trunk._STORES.clear()
    kw = {"attention": "bidirectional", "unmask_layers": "top"} if attention else {}
    b, _ = make(True, **kw)
    ids = torch.randint(10, 400, (1, 8), generator=torch.Generator().manual_seed(1))
    changed = ids.clone()
    changed[0, 6] = (ids[0, 6] + 1) % 400 + 10  # a word to the right of position 3
    mask = torch.ones_like(ids)
    b.fill(windows_of(ids, mask) + windows_of(changed, mask))
    lower = [b.trunk.store[k] for k in b.trunk.keys_of(torch.cat([ids, changed]), torch.cat([mask, mask]))]
    torch.testing.assert_close(lower[0][:6], lower[1][:6])  # the cached trunk is causal: left of 6, equal
    a, c = features(b, ids, mask), features(b, changed, mask)
    assert (a[0, 3] - c[0, 3]).abs().max().item() > 1e-6 if sees_right else torch.equal(a[0, 3], c[0, 3])
    # padding never changes a real word's feature: the window alone vs in a padded batch of 32
    rows = torch.randint(10, 400, (32, 12), generator=torch.Generator().manual_seed(2))
    rows[5, :8] = ids[0]
    pmask = torch.ones_like(rows)
    pmask[5, 8:] = 0
    torch.testing.assert_close(features(b, rows, pmask)[5, :8], a[0], atol=1e-5, rtol=1e-4)


def test_top_needs_lora_layers():
    with pytest.raises(ValueError, match="lora_layers"):
        Backbone(TINY_RANDOM, attention="bidirectional", unmask_layers="top")


def filled_from_disk(tmp_path, ids, mask, **kw):
    """A fresh process's view: the in-process stores emptied, then a fill from ``cache_dir``."""
    trunk._STORES.clear()
    b, _ = make(True, cache_dir=str(tmp_path), **kw)
    calls = count_trunk_calls(b)
    computed = b.fill(windows_of(ids, mask))
    return computed, calls, b


def test_a_stored_trunk_is_reused_by_the_same_settings_only(tmp_path):
    ids, mask, _ = batch()
    twice = windows_of(ids, mask) + windows_of(ids[:1], mask[:1])  # a repeated window, in the same batch
    trunk._STORES.clear()
    b, _ = make(True, cache_dir=str(tmp_path))
    assert b.fill(twice) == 3 and len(list(tmp_path.glob("*/*.states"))) == 1
    first = {k: v.clone() for k, v in b.trunk.store.items()}
    computed, calls, b = filled_from_disk(tmp_path, ids, mask)  # the same settings: read from disk
    assert computed == 0 and calls == []
    for k, v in first.items():
        assert torch.equal(b.trunk.store[k], v)
    assert b.trunk.store[next(iter(first))].dtype == torch.float16  # float16 on disk by default
    # what changes the trunk's output gets its own folder and is computed again
    assert filled_from_disk(tmp_path, ids, mask, attention="bidirectional", unmask_layers=[0, 1])[0] == 3
    assert filled_from_disk(tmp_path, ids, mask, cache_dtype="float32")[0] == 3
    # other windows (another tokenizer, repetition): new keys, computed; the stored ones still reused
    repeated = torch.cat([ids, ids], dim=1)
    rmask = torch.cat([mask, mask], dim=1)
    computed, _, b = filled_from_disk(tmp_path, repeated, rmask)
    assert computed == 3
    # other trunk weights: another fingerprint, another folder
    trunk._STORES.clear()
    b, _ = make(True, cache_dir=str(tmp_path))
    with torch.no_grad():
        b.model.base_model.model.layers[0].mlp.up_proj.weight.add_(0.01)
    assert b.fill(windows_of(ids, mask)) == 3
    assert len({p.parent for p in tmp_path.glob("*/*.states")}) == 4  # default, bidirectional below, float32, weights


def test_an_int8_trunk_is_another_trunk_close_to_the_float_one(tmp_path):
    ids, mask, _ = batch()
    trunk._STORES.clear()
    ref, _ = make(True, cache_dtype="float32")
    ref.fill(windows_of(ids, mask))
    want = dict(ref.trunk.store)
    trunk._STORES.clear()
    b, _ = make(True, cache_dtype="float32", cache_int8=True)
    assert type(b.model.base_model.model.layers[0].mlp.up_proj).__name__ == "Linear"  # the dynamic quantized one
    assert "quantized" in type(b.model.base_model.model.layers[0].mlp.up_proj).__module__
    assert "quantized" not in type(b.model.base_model.model.layers[1].mlp.up_proj).__module__  # above the cut
    assert b.fill(windows_of(ids, mask)) == 3
    assert b.trunk.key != ref.trunk.key
    for k, v in want.items():
        got = b.trunk.store[k]
        assert not torch.equal(got, v)
        assert (got - v).abs().max() < 0.05 * v.abs().max()  # int8 weights: close, not equal
    with pytest.raises(ValueError, match="cache=true"):
        Backbone(TINY_RANDOM, lora_layers=1, cache_int8=True)
