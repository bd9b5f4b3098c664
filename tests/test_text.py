"""Word splitting of raw text: each corpus's own rule, checked on hand-made cases."""

import pytest

from llmner.data.schema import DataError
from llmner.data.text import check_splitter, spans_to_answers, split_words


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


def _answers(text: str, values: dict[str, str], splitter: str = "punct") -> dict[str, list[str]]:
    """What ``spans_to_answers`` makes of word tags that cover exactly ``values`` (value -> type)."""
    offsets = split_words(text, splitter)
    tags = ["O"] * len(offsets)
    for value, label in values.items():
        start = text.index(value)
        words = [i for i, (s, e) in enumerate(offsets) if s < start + len(value) and start < e]
        for n, i in enumerate(words):
            tags[i] = ("B-" if n == 0 else "I-") + label
    return spans_to_answers(text, offsets, tags, sorted(set(values.values())))


@pytest.mark.parametrize("text, tagged, expected", [
    # the sentence's full stop, tagged with the address as a word of its own, is not the address's
    ("The van was parked at 14 Elm Street.", {"14 Elm Street.": "LOC"}, {"LOC": ["14 Elm Street"]}),
    ("Seen at 14 Elm Street, then at (Oak Park), at 9 pm!", {"14 Elm Street,": "LOC", "(Oak Park),": "PLACE"},
     {"LOC": ["14 Elm Street"], "PLACE": ["Oak Park"]}),
    # a full stop that ends an abbreviation stays, also at the end of the sentence
    ("It happened at 969 3rd Rd.", {"969 3rd Rd.": "LOC"}, {"LOC": ["969 3rd Rd."]}),
    ("Owned by Silver Systems Corp. since 9:25a.m.", {"Silver Systems Corp.": "ORG", "9:25a.m.": "TIME"},
     {"ORG": ["Silver Systems Corp."], "TIME": ["9:25a.m."]}),
    # brackets inside a value and an inch mark are the value's own; quotes around it or unmatched are the sentence's
    ('A man (tall) of 5\'9" ran.', {"man (tall) of 5'9\"": "DESC"}, {"DESC": ["man (tall) of 5'9\""]}),
    ('She said "Anna Berg" twice.', {'"Anna Berg"': "PER"}, {"PER": ["Anna Berg"]}),
    ('She said "Anna Berg twice.', {'"Anna Berg': "PER"}, {"PER": ["Anna Berg"]}),
    # punctuation alone is no value
    ("Stop . here", {".": "LOC"}, {"LOC": []}),
])
def test_values_keep_their_own_punctuation_and_lose_the_sentences(text, tagged, expected):
    assert _answers(text, tagged) == expected


def test_conll_words_lose_edge_punctuation_the_same_way():
    assert _answers("He flew to U.S. soil and to Paris .", {"U.S.": "LOC", "Paris .": "LOC"}, "conll") == {"LOC": ["U.S.", "Paris"]}
