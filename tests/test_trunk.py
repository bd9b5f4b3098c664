"""The trunk cache computes the same loss and gradients as the whole model, and is rebuilt when
anything that changes the trunk's output changes."""

import pytest
import torch

from llmner.backbone import Backbone, trunk
from llmner.backbone.testing import TINY_RANDOM
from llmner.heads import CRFHead
from llmner.losses import CompoundLoss

TAGS = ["O", "B-PER", "I-PER"]


def make(cache, **kw):
    torch.manual_seed(0)  # same LoRA init and head in both models
    b = Backbone(TINY_RANDOM, lora_r=4, lora_alpha=8, lora_dropout=0.0, lora_layers=1, dtype="float32",
                 cache=cache, **kw)
    with torch.no_grad():  # LoRA B starts at 0: give the adapters a value so gradients flow everywhere
        for n, p in b.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    return b, CRFHead(b.hidden_size, TAGS, dropout=0.0)


def batch():
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(10, 400, (3, 9), generator=g)
    mask = (torch.arange(9) < torch.tensor([[9], [5], [7]])).long()
    labels = torch.randint(0, 3, (3, 9), generator=g)
    return ids, mask, labels


def loss_and_grads(backbone, head):
    ids, mask, labels = batch()
    feats = backbone(ids, mask)
    loss = CompoundLoss()(head(feats), labels, mask.bool(), head)["loss"]
    loss.backward()
    grads = {n: p.grad.clone() for n, p in [*backbone.named_parameters(), *head.named_parameters()] if p.requires_grad}
    return loss.detach(), grads


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-6), ("float16", 2e-3)])
def test_cache_gives_the_loss_and_gradients_of_the_whole_model(dtype, tol):
    trunk._STORES.clear()
    plain, ref = loss_and_grads(*make(False))
    b, h = make(True, cache_dtype=dtype)
    for step in range(2):  # first pass fills the cache, the second reads it
        b.zero_grad(), h.zero_grad()
        loss, grads = loss_and_grads(b, h)
        torch.testing.assert_close(loss, plain, atol=tol, rtol=tol)
        assert grads.keys() == ref.keys() and len(grads) == 2 * 4 + 5  # LoRA A/B of q,k,v,o in layer 1; head
        assert all(".layers.1." in n for n in grads if "lora_" in n)
        for n in grads:
            torch.testing.assert_close(grads[n], ref[n], atol=tol, rtol=50 * tol, msg=n)
    assert b.trunk.misses == 3 and b.trunk.hits == 3


def test_second_pass_skips_the_trunk():
    trunk._STORES.clear()
    b, _ = make(True)
    calls = []
    b.model.base_model.model.layers[0].register_forward_hook(lambda *a: calls.append(1))
    ids, mask, _ = batch()
    b(ids, mask)
    first = len(calls)
    b(ids, mask)
    b(ids[:1, :9], mask[:1])  # a row already seen, in another batch and padding
    assert first >= 1 and len(calls) == first


def test_changed_settings_rebuild_and_equal_settings_share():
    trunk._STORES.clear()
    ids, mask, _ = batch()

    def key(**kw):
        b, _ = make(True, **kw)
        b(ids, mask)
        return next(iter(trunk._STORES)), b

    k1, _ = key()
    k2, _ = key()
    assert k1 == k2  # a second model on the same trunk (a benchmark's next seed) reuses it
    k3, b3 = key(attention="bidirectional", unmask_layers=[0, 1])  # the cached layer now looks right
    assert k3 != k1 and b3.trunk.misses == 3
    k4, _ = key(cache_dtype="float32")
    assert k4 != k3
    # other weights below the cut: another fingerprint
    b5, _ = make(True)
    with torch.no_grad():
        b5.model.base_model.model.layers[0].mlp.up_proj.weight.add_(0.01)
    b5(ids, mask)
    assert next(iter(trunk._STORES)) not in (k1, k3, k4)


def test_cache_settings_that_cannot_work_are_refused():
    with pytest.raises(ValueError, match="lora_layers"):
        Backbone(TINY_RANDOM, cache=True)  # adapters in every layer: nothing is frozen
    with pytest.raises(ValueError, match="tag head"):
        Backbone(TINY_RANDOM, cache=True, causal_lm=True, lora_layers=1)


def test_a_split_that_changes_the_result_is_an_error(monkeypatch):
    trunk._STORES.clear()
    b, _ = make(True)
    real_upper = trunk.TrunkCache.upper
    monkeypatch.setattr(trunk.TrunkCache, "upper", lambda self, s, m, p: real_upper(self, s * 1.01, m, p))
    ids, mask, _ = batch()
    with pytest.raises(RuntimeError, match="cannot be cached"):
        b(ids, mask)
