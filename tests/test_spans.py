"""Entities with offsets and scores: CRF span marginals against brute-force enumeration and against
pytorch-crf's own forward algorithm, the linear head's mean softmax by hand, offsets on awkward
texts (hand-made tags, and a tiny model whose decisions are forced), the grouped view against the
old ``{type: [values]}`` rule, and the generative head's located values."""

import itertools
import math

import pytest
import torch

from llmner.data.text import group_entities, spans_to_answers, split_words, trim_value, values_to_entities
from llmner.heads import ConstrainedCRF, CRFHead, LinearHead
from llmner.heads.marginals import crf_lattices, forward_backward
from llmner.heads.spans import ScoredWindow, score_windows, text_entities

TAGS = ["O", "B-A", "I-A", "B-B", "I-B"]
ID = {t: i for i, t in enumerate(TAGS)}


def random_crf(seed: int) -> ConstrainedCRF:
    torch.manual_seed(seed)
    crf = ConstrainedCRF(TAGS).double()
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    return crf


def path_score(crf, emissions, path):
    s = crf.start_transitions[path[0]] + emissions[0, path[0]] + crf.end_transitions[path[-1]]
    for t in range(1, len(path)):
        s = s + crf.transitions[path[t - 1], path[t]] + emissions[t, path[t]]
    return s


def enumerate_paths(crf, emissions):
    """Every one of the K^n tag paths of one row with its probability."""
    n, k = emissions.shape
    paths = list(itertools.product(range(k), repeat=n))
    scores = torch.stack([path_score(crf, emissions, p) for p in paths])
    return dict(zip(paths, (scores - torch.logsumexp(scores, 0)).exp().tolist()))


def lattices(crf, emissions, mask):
    return crf_lattices(emissions, mask, crf.start_transitions, crf.end_transitions, crf.transitions)


@pytest.mark.parametrize("seed", range(4))
def test_span_marginals_equal_the_sum_over_every_tag_path(seed):
    crf = random_crf(seed)
    lengths = [5, 3, 1]
    emissions = torch.randn(3, 5, len(TAGS), dtype=torch.float64)  # (B, W, K)
    mask = torch.tensor([[i < n for i in range(5)] for n in lengths])
    rows = lattices(crf, emissions, mask)
    checked = 0
    for b, n in enumerate(lengths):
        probs = enumerate_paths(crf, emissions[b, :n])
        for label, start in itertools.product("AB", range(n)):
            for end in range(start + 1, n + 1):
                B, I = ID[f"B-{label}"], ID[f"I-{label}"]
                # exactly this span: B-X at start, I-X inside, and no I-X right after it
                expected = sum(p for path, p in probs.items() if path[start] == B and all(
                    path[t] == I for t in range(start + 1, end)) and (end == n or path[end] != I))
                got = math.exp(rows[b].segment_log_prob(start, [B] + [I] * (end - start - 1), I))
                assert got == pytest.approx(expected, rel=1e-9, abs=1e-12), (b, label, start, end)
                checked += 1
        for start in range(n):  # any fixed segment, nothing asked of the next tag
            seg = [int(x) for x in torch.randint(len(TAGS), (min(2, n - start),))]
            expected = sum(p for path, p in probs.items() if list(path[start : start + len(seg)]) == seg)
            assert math.exp(rows[b].segment_log_prob(start, seg)) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert checked == 2 * (15 + 6 + 1)


def test_forward_backward_agrees_with_pytorch_crf_and_marginals_sum_to_one():
    crf = random_crf(7)
    lengths = [12, 7, 1, 3]
    emissions = torch.randn(4, 12, len(TAGS), dtype=torch.float64)
    mask = torch.tensor([[i < n for i in range(12)] for n in lengths])
    alpha, beta, log_z = forward_backward(emissions, mask, crf.start_transitions, crf.end_transitions, crf.transitions)
    torch.testing.assert_close(log_z, crf._compute_normalizer(emissions.transpose(0, 1), mask.transpose(0, 1)))
    unary = (alpha + beta - log_z[:, None, None]).exp().sum(-1)  # (B, W): P(y_t = k) summed over k
    torch.testing.assert_close(unary[mask], torch.ones(int(mask.sum()), dtype=torch.float64))


def test_span_marginals_on_long_rows_equal_a_forward_pass_restricted_to_the_span():
    """Beyond enumeration: P(span) = Z(paths with the span) / Z, by pytorch-crf's forward algorithm
    with every other tag shut off at the span's words (and I-X at the word after it)."""
    crf = random_crf(3)
    n = 14
    emissions = torch.randn(1, n, len(TAGS), dtype=torch.float64)
    mask = torch.ones(1, n, dtype=torch.bool)
    row = lattices(crf, emissions, mask)[0]
    log_z = crf._compute_normalizer(emissions.transpose(0, 1), mask.t())
    for start, end, label in [(0, 1, "A"), (3, 7, "B"), (10, 14, "A"), (13, 14, "B"), (0, 14, "A")]:
        B, I = ID[f"B-{label}"], ID[f"I-{label}"]
        shut = torch.full_like(emissions, -1e9)
        allowed = emissions.clone()
        allowed[0, start] = shut[0, start]
        allowed[0, start, B] = emissions[0, start, B]
        for t in range(start + 1, end):
            allowed[0, t] = shut[0, t]
            allowed[0, t, I] = emissions[0, t, I]
        if end < n:
            allowed[0, end, I] = -1e9
        expected = (crf._compute_normalizer(allowed.transpose(0, 1), mask.t()) - log_z).exp().item()
        got = math.exp(row.segment_log_prob(start, [B] + [I] * (end - start - 1), I))
        assert got == pytest.approx(expected, rel=1e-9), (start, end, label)


def test_linear_score_is_the_mean_softmax_probability_of_the_chosen_tags():
    head = LinearHead(4, TAGS)
    emissions = torch.tensor([[[0.0, 3.0, 1.0, 0.0, 0.0],  # B-A
                               [0.0, 0.0, 2.0, 1.0, 0.5],  # I-A
                               [4.0, 0.0, 0.0, 0.0, 0.0],  # O
                               [0.0, 0.0, 0.0, 0.0, 1.0]]])  # I-B: an entity of its own (IOB1 reading)
    windows = score_windows(head, emissions, torch.ones(1, 4, dtype=torch.bool), [0])
    text = "Ann Lee saw Bo"
    entities = text_entities(text, split_words(text), windows, TAGS)

    def softmax(row, k):
        return math.exp(row[k]) / sum(math.exp(x) for x in row)

    rows = emissions[0].tolist()
    assert [(e["type"], e["text"], e["start"], e["end"]) for e in entities] == [("A", "Ann Lee", 0, 7), ("B", "Bo", 12, 14)]
    assert entities[0]["score"] == pytest.approx((softmax(rows[0], 1) + softmax(rows[1], 2)) / 2, rel=1e-6)
    assert entities[1]["score"] == pytest.approx(softmax(rows[3], 4), rel=1e-6)


HARD_TEXTS = [
    "  Ann   Lee\tmet José Ünal\nin Zürich,  (Oak Park).  ",
    "Çağla 😀 Øster-Ålund!!\n\n\t“Mr. Dvořák” said: 🇫🇷 café…",
    "ゆき and 李伟 met e\u0301lan at 9:25 p.m. (room #4411);\r\nthen left.",
    "...",
    "",
]


def window_of(tags: list[str]) -> list[ScoredWindow]:
    return [ScoredWindow(0, [ID[t] for t in tags], probs=[1.0] * len(tags))]


@pytest.mark.parametrize("splitter", ["punct", "conll", "whitespace"])
@pytest.mark.parametrize("text", HARD_TEXTS)
def test_offsets_slice_the_input_text_whatever_its_spacing_and_characters(text, splitter):
    offsets = split_words(text, splitter)
    n = len(offsets)
    cases = {"every word": ["B-A"] * n, "one entity": ["B-A"] + ["I-A"] * (n - 1) if n else [],
             "alternating": ["B-A" if i % 2 == 0 else "B-B" for i in range(n)]}
    for name, tags in cases.items():
        entities = text_entities(text, offsets, window_of(tags), TAGS)
        assert all(text[e["start"] : e["end"]] == e["text"] and e["text"] for e in entities), name
        assert [e["start"] for e in entities] == sorted(e["start"] for e in entities)
        # the same entities as the words' trimmed slices (independently: word offsets + trim_value)
        words = [trim_value(text, s, e) for s, e in offsets]
        if name == "every word":
            assert [(e["start"], e["end"]) for e in entities] == [(a, b) for a, b in words if a < b]
        if name == "one entity" and n:
            a, b = trim_value(text, offsets[0][0], offsets[-1][1])
            assert [(e["start"], e["end"]) for e in entities] == ([(a, b)] if a < b else [])
        # the grouped view is the old rule's output
        keys = ["A", "B"]
        assert group_entities(entities, keys) == spans_to_answers(text, offsets, tags, keys)


def test_offsets_of_a_hand_checked_text():
    text = "  Ann   Lee\tmet José Ünal\nin Zürich,  (Oak Park).  "
    offsets = split_words(text, "punct")
    words = [text[s:e] for s, e in offsets]
    assert words == ["Ann", "Lee", "met", "José", "Ünal", "in", "Zürich", ",", "(", "Oak", "Park", ")", "."]
    tags = ["B-A", "I-A", "O", "B-A", "I-A", "O", "B-B", "I-B", "B-B", "I-B", "I-B", "I-B", "I-B"]
    got = [(e["type"], e["text"], e["start"], e["end"]) for e in text_entities(text, offsets, window_of(tags), TAGS)]
    assert got == [("A", "Ann   Lee", 2, 11), ("A", "José Ünal", 16, 25), ("B", "Zürich", 29, 35), ("B", "Oak Park", 39, 47)]
    # two "John"s are two entities; the grouped view lists the value once
    text = "John met John."
    entities = text_entities(text, split_words(text), window_of(["B-A", "O", "B-A", "O"]), TAGS)
    assert [(e["start"], e["end"]) for e in entities] == [(0, 4), (9, 13)]
    assert group_entities(entities, ["A", "B"]) == {"A": ["John"], "B": []}


def test_an_entity_across_two_windows_is_one_entity_scored_over_both():
    text = "Ann Lee Smith Jones"
    offsets = split_words(text)
    linear = [ScoredWindow(2, [ID["I-A"], ID["I-A"]], probs=[0.5, 0.7]), ScoredWindow(0, [ID["B-A"], ID["I-A"]], probs=[0.9, 0.8])]
    (entity,) = text_entities(text, offsets, linear, TAGS)
    assert (entity["text"], entity["score"]) == (text, pytest.approx((0.9 + 0.8 + 0.5 + 0.7) / 4))
    # with a CRF: the product of each window's part (the part that closes the span asks for no I-X after it)
    crf = random_crf(1)
    emissions = torch.randn(2, 2, len(TAGS), dtype=torch.float64)
    rows = lattices(crf, emissions, torch.ones(2, 2, dtype=torch.bool))
    windows = [ScoredWindow(0, [ID["B-A"], ID["I-A"]], lattice=rows[0]), ScoredWindow(2, [ID["I-A"], ID["I-A"]], lattice=rows[1])]
    (entity,) = text_entities(text, offsets, windows, TAGS)
    first = enumerate_paths(crf, emissions[0])[(ID["B-A"], ID["I-A"])]
    second = enumerate_paths(crf, emissions[1])[(ID["I-A"], ID["I-A"])]
    assert entity["score"] == pytest.approx(first * second, rel=1e-9)


def test_crf_head_scores_are_probabilities_of_the_decoded_spans():
    head = CRFHead(4, TAGS).double()
    with torch.no_grad():
        for p in head.crf.parameters():
            p.normal_()
    emissions = torch.randn(2, 4, len(TAGS), dtype=torch.float64)
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    windows = score_windows(head, emissions, mask, [0, 0])
    for b, (w, n) in enumerate(zip(windows, [4, 2])):
        assert w.tags == head.decode(emissions, mask)[b]
        text = " ".join("w" * (i + 1) for i in range(n))
        probs = enumerate_paths(head.crf, emissions[b, :n])
        for e in text_entities(text, split_words(text), [w], TAGS):
            s, t = text[: e["start"]].count(" "), text[: e["end"]].count(" ") + 1  # word span
            B, I = ID["B-" + e["type"]], ID["I-" + e["type"]]
            expected = sum(p for path, p in probs.items() if path[s] == B and all(
                path[k] == I for k in range(s + 1, t)) and (t == n or path[t] != I))
            assert e["score"] == pytest.approx(expected, rel=1e-9)


def test_generative_values_are_placed_at_their_first_free_occurrence():
    text = "Mary, 35, met John at 14:35;\tjohn and Mary Ann left."
    answers = {"PER": ["Mary Ann", "John", "john", "Mary"], "AGE": [35], "LOC": []}
    entities, missing = values_to_entities(text, answers, ["PER", "AGE", "LOC"])
    assert missing == []
    assert [(e["type"], e["text"], e["start"], e["score"]) for e in entities] == [
        ("PER", "Mary", 0, None), ("AGE", "35", 6, None), ("PER", "John", 14, None),
        ("PER", "john", 29, None), ("PER", "Mary Ann", 38, None)]
    assert all(text[e["start"] : e["end"]] == e["text"] for e in entities)
    _, missing = values_to_entities(text, {"PER": ["Nobody"]})
    assert missing == [("PER", "Nobody")]


# --- a tiny model whose decisions are forced: every word's emissions are the head's bias ------------
MODEL_TAGS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


@pytest.fixture(scope="module", params=["linear", "crf"])
def forced(request, tmp_path_factory):
    from llmner.builders import build_model
    from tests.conftest import compose_config

    cfg = compose_config(["backbone=tiny_random", f"head={request.param}", "model.encoder.max_length=8",
                          "model.encoder.context_words=2"], tmp_path_factory.mktemp("forced"))
    model = build_model(cfg, MODEL_TAGS).eval()
    with torch.no_grad():
        model.head.proj.weight.zero_()
        if request.param == "crf":
            for p in model.head.crf.parameters():
                p.zero_()
    return request.param, model


def force(model, bias: list[float]) -> None:
    with torch.no_grad():
        model.head.proj.bias.copy_(torch.tensor(bias))


@pytest.mark.parametrize("text", HARD_TEXTS)
def test_a_forced_model_returns_offsets_into_the_raw_text(forced, text):
    kind, model = forced
    offsets = split_words(text, model.encoder.splitter)
    assert len(model.encoder.encode_texts([text])[0]) > 1 or len(offsets) < 4  # several windows per text
    force(model, [0.0, 0.0, 0.0, 6.0, 0.0])  # every word B-PER
    entities = model.predict([text, "", text])
    assert entities[0] == entities[2] and entities[1] == []
    trimmed = [trim_value(text, s, e) for s, e in offsets]
    assert [(e["type"], e["start"], e["end"]) for e in entities[0]] == [("PER", a, b) for a, b in trimmed if a < b]
    assert all(text[e["start"] : e["end"]] == e["text"] for e in entities[0])
    softmax = math.exp(6) / (math.exp(6) + 4)
    for e in entities[0]:
        if kind == "linear":
            assert e["score"] == pytest.approx(softmax, rel=1e-5)
        else:  # B-PER and not I-PER after it: nearly certain, never above 1
            assert 0.99 < e["score"] <= 1
    grouped = model.predict([text], grouped=True)
    assert grouped == [spans_to_answers(text, offsets, ["B-PER"] * len(offsets), ["LOC", "PER"])]  # the old output


def test_a_forced_entity_across_windows_is_one_entity(forced):
    kind, model = forced
    text = "  Ann   Lee\tmet José Ünal\nin Zürich,  (Oak Park).  "
    force(model, [0.0, 0.0, 0.0, 3.0, 5.0])  # I-PER wins every word; the CRF starts each window with B-PER
    (entities,) = model.predict([text])
    windows = model.encoder.encode_texts([text])[0]
    assert len(windows) > 2
    if kind == "linear":  # one entity over every window, read as conlleval does
        a, b = trim_value(text, 0, len(text))
        assert [(e["start"], e["end"], e["text"]) for e in entities] == [(a, b, text[a:b])]
        assert entities[0]["score"] == pytest.approx(math.exp(5) / (math.exp(5) + math.exp(3) + 3), rel=1e-5)
    else:  # the CRF cannot start a window on I-PER: one entity per window, each a marginal of its own window
        offsets = split_words(text, model.encoder.splitter)
        starts = sorted(w.offset for w in windows)
        ends = starts[1:] + [len(offsets)]
        expected = [trim_value(text, offsets[s][0], offsets[e - 1][1]) for s, e in zip(starts, ends)]
        assert [(e["start"], e["end"]) for e in entities] == [(a, b) for a, b in expected if a < b]
        assert all(text[e["start"] : e["end"]] == e["text"] and 0 < e["score"] <= 1 for e in entities)


def test_length_batches_cut_where_padding_would_grow():
    """By hand: longest first, at most ``batch_size``, a new batch where padding would add over 25%."""
    from types import SimpleNamespace

    from llmner.heads.spans import length_batches

    windows = [SimpleNamespace(input_ids=[0] * n, name=i) for i, n in enumerate([3, 10, 1, 9, 3, 10, 2])]

    def lengths(batches):
        return [[len(w.input_ids) for w in b] for b in batches]

    # [10, 10, 9, 3] pads to 40 tokens for 32 real (25%); a second 3 would pad to 50 for 35
    assert lengths(length_batches(windows, 32)) == [[10, 10, 9, 3], [3, 2], [1]]
    assert lengths(length_batches(windows, 2)) == [[10, 10], [9], [3, 3], [2], [1]]
    assert lengths(length_batches(windows, 32, padding=10.0)) == [[10, 10, 9, 3, 3, 2, 1]]
    assert sorted(w.name for b in length_batches(windows, 3) for w in b) == list(range(7))
