import pytest

from llmner.data.schema import DataError, Sentence, iob1_to_iob2, is_allowed_transition, tag_set, tags_to_spans


def test_iob1_to_iob2_hand_made():
    assert iob1_to_iob2(["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG"]) == [
        "B-PER", "I-PER", "O", "B-LOC", "B-LOC", "B-ORG"]


def test_iob2_is_unchanged():
    tags = ["B-PER", "I-PER", "B-PER", "O", "B-MISC", "I-MISC"]
    assert iob1_to_iob2(tags) == tags


def test_bad_tag_is_an_error():
    with pytest.raises(DataError, match="E-PER"):
        iob1_to_iob2(["O", "E-PER"])


def test_spans_and_transitions():
    assert tags_to_spans(list("abcde"), ["B-PER", "I-PER", "O", "B-LOC", "B-LOC"]) == [
        (0, 2, "PER"), (3, 4, "LOC"), (4, 5, "LOC")]
    assert not is_allowed_transition("O", "I-PER")
    assert not is_allowed_transition("B-LOC", "I-PER")
    assert not is_allowed_transition(None, "I-PER")
    assert is_allowed_transition("B-PER", "I-PER") and is_allowed_transition("I-PER", "I-PER")
    assert tag_set(["PER", "LOC", "PER"]) == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def test_sentence_length_mismatch():
    with pytest.raises(DataError, match="2 tokens but 1 tags"):
        Sentence(["a", "b"], ["O"], source="x.txt:3")


def test_spans_read_iob1_as_iob2():
    """An I-X after O or after another type starts an entity (conlleval's rule), so the two schemes agree."""
    iob1 = ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG", "I-ORG"]
    expected = [(0, 2, "PER"), (3, 4, "LOC"), (4, 5, "LOC"), (5, 7, "ORG")]
    assert tags_to_spans(list("abcdefg"), iob1) == expected
    assert tags_to_spans(list("abcdefg"), iob1_to_iob2(iob1)) == expected
    assert tags_to_spans(["x"], ["B-WORK-OF-ART"]) == [(0, 1, "WORK-OF-ART")]  # a type with hyphens
    assert tags_to_spans([], []) == [] and tags_to_spans(["a", "b"], ["O", "O"]) == []


def test_spans_refuse_tags_of_other_schemes():
    with pytest.raises(DataError, match="E-PER"):
        tags_to_spans(["a", "b"], ["B-PER", "E-PER"])
