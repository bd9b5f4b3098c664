"""The constrained CRF against brute-force enumeration of every tag path."""

import itertools

import pytest
import torch

from llmner.data.schema import is_allowed_transition
from llmner.heads import ConstrainedCRF, CRFHead

TAGS = ["O", "B-A", "I-A", "B-B", "I-B"]


def path_score(crf, emissions, path):
    s = crf.start_transitions[path[0]] + emissions[0, path[0]] + crf.end_transitions[path[-1]]
    for t in range(1, len(path)):
        s = s + crf.transitions[path[t - 1], path[t]] + emissions[t, path[t]]
    return s


def brute_force(crf, emissions):
    """log Z and the best path over all K^n paths of one unpadded sequence."""
    n, k = emissions.shape
    paths = list(itertools.product(range(k), repeat=n))
    scores = torch.stack([path_score(crf, emissions, p) for p in paths])
    return torch.logsumexp(scores, 0), list(paths[int(scores.argmax())]), dict(zip(paths, scores))


def valid(path):
    prev = None
    for t in path:
        if not is_allowed_transition(prev, TAGS[t]):
            return False
        prev = TAGS[t]
    return True


@pytest.mark.parametrize("seed", range(5))
def test_log_likelihood_and_viterbi_match_enumeration(seed):
    torch.manual_seed(seed)
    crf = ConstrainedCRF(TAGS)
    with torch.no_grad():  # non-trivial transition scores
        for p in crf.parameters():
            p.normal_()
    lengths = [4, 2, 1]
    emissions = torch.randn(3, 4, len(TAGS))  # (B, W, K)
    mask = torch.tensor([[i < n for i in range(4)] for n in lengths])
    labels = torch.tensor([[1, 2, 0, 3], [3, 4, 0, 0], [0, 0, 0, 0]])
    llh = crf(emissions, labels, mask=mask, reduction="none")
    decoded = crf.decode(emissions, mask=mask)
    for b, n in enumerate(lengths):
        log_z, best, scores = brute_force(crf, emissions[b, :n])
        gold = tuple(labels[b, :n].tolist())
        torch.testing.assert_close(llh[b], scores[gold] - log_z, rtol=1e-4, atol=1e-4)
        assert decoded[b] == best
        assert valid(best)


def test_forbidden_paths_have_no_probability_mass():
    crf = ConstrainedCRF(TAGS)
    emissions = torch.randn(5, len(TAGS))
    log_z, _, scores = brute_force(crf, emissions)
    allowed = torch.logsumexp(torch.stack([s for p, s in scores.items() if valid(p)]), 0)
    torch.testing.assert_close(log_z, allowed)


def test_adversarial_emissions_never_decode_invalid_transitions():
    torch.manual_seed(0)
    crf = ConstrainedCRF(TAGS)
    # Emissions that shout I-A after O, I-B after B-A, and I-A at the start.
    emissions = torch.full((4, 6, len(TAGS)), -5.0)
    emissions[:, :, 2] = 50.0
    emissions[1, ::2, 1] = 60.0
    emissions[2, :, 4] = 40.0
    emissions[3] = torch.randn(6, len(TAGS)) * 100
    for path in crf.decode(emissions, mask=torch.ones(4, 6, dtype=torch.bool)):
        assert valid(path), [TAGS[t] for t in path]


def test_parameters_train_and_state_dict_is_plain_crf():
    head = CRFHead(hidden_size=8, tags=TAGS)
    assert set(head.crf.state_dict()) == {"start_transitions", "end_transitions", "transitions"}
    feats, labels = torch.randn(2, 3, 8), torch.tensor([[1, 2, 0], [3, 0, 0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    head.nll(head(feats), labels, mask).backward()
    grad = head.crf._parameters["transitions"].grad
    assert grad is not None and grad.abs().sum() > 0
    assert head.crf.start_transitions[2] == -10000.0  # I-A cannot start a sequence
