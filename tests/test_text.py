"""Word splitting of raw text: each corpus's own rule, checked on hand-made cases."""

import pytest

from llmner.data.schema import DataError
from llmner.data.text import check_splitter, split_words


def words(text, splitter):
    return [text[s:e] for s, e in split_words(text, splitter)]


def test_conll_splitter_keeps_abbreviations_and_splits_edge_punctuation():
    text = 'The U.S. and Acme Inc. said ("no comment"), Smith\'s 1,000 e-mails.'
    assert words(text, "conll") == ["The", "U.S.", "and", "Acme", "Inc.", "said", "(", '"', "no", "comment", '"', ")", ",",
                                    "Smith", "'s", "1,000", "e-mails", "."]


def test_punct_splitter_keeps_graphemes_whole():
    text = "Badge #4411 at 14:35 \U0001F1FA\U0001F1F8 caf\u0065\u0301!"  # a flag emoji; a combining accent stays on its letter
    assert words(text, "punct") == ["Badge", "#", "4411", "at", "14", ":", "35", "\U0001F1FA\U0001F1F8", "caf\u0065\u0301", "!"]
    assert words(text, "whitespace") == ["Badge", "#4411", "at", "14:35", "\U0001F1FA\U0001F1F8", "caf\u0065\u0301!"]


def test_offsets_slice_the_text_and_empty_text_has_no_words():
    text = "  Mary  Jones , Paris "
    for splitter in ("punct", "conll", "whitespace"):
        assert all(text[s:e].strip() == text[s:e] != "" for s, e in split_words(text, splitter))
        assert split_words("", splitter) == [] and split_words("   \n", splitter) == []


def test_unknown_splitter_is_refused():
    with pytest.raises(DataError, match="word splitter 'spacy' is not one of"):
        check_splitter("spacy")
