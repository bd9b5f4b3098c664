"""The generative head's plain parts: answer-only masks, constrained decoding, parsing, scoring, value->span."""

import json
import zlib

import pytest
import torch

from llmner.backbone.testing import tiny_tokenizer
from llmner.data.chat import ChatFormat, encode_chat, sentence_to_example
from llmner.data.schema import Sentence
from llmner.data.text import spans_to_answers, split_words, values_to_tags
from llmner.decoding import AnswerGrammar, JsonDecoder, parse_answer
from llmner.metrics import field_scores


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def decoder(tokenizer):
    return JsonDecoder(tokenizer, ["O", "B-AGE", "I-AGE", "B-PER", "I-PER"], max_new_tokens=40)


# --- the loss mask ---------------------------------------------------------------------------------
# the tiny template, and one that numbers the turns (its markup differs per turn: no affixes)
NUMBERED = ("{% for m in messages %}<s>{{ loop.index }}{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
            "{% if add_generation_prompt %}<s>{{ messages|length + 1 }}assistant\n{% endif %}")


def test_chat_affixes_of_the_tiny_template_by_hand_and_a_refusal(tokenizer):
    import copy

    from llmner.data.template import chat_affixes

    a = chat_affixes(tokenizer)
    assert (a.system, a.user, a.assistant, a.lead) == (("<s>system\n", "</s>\n"), ("<s>user\n", "</s>\n"),
                                                       ("<s>assistant\n", "</s>\n"), "")
    numbered = copy.deepcopy(tokenizer)  # carries the memo of the first template: must not be reused
    numbered.chat_template = NUMBERED
    with pytest.raises(ValueError, match="later turns differently"):
        chat_affixes(numbered)


@pytest.mark.parametrize("template", ["tiny", "numbered"])
def test_answer_only_mask_on_a_tiny_chat(tokenizer, template):
    """The answers are found in one pass with the template's affixes, or, for a template whose
    markup changes per turn, by rendering each prefix: the same tokens are learned either way."""
    if template == "numbered":
        import copy

        tokenizer = copy.deepcopy(tokenizer)
        tokenizer.chat_template = NUMBERED
    messages = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Text:\nJohn visited Paris"},
        {"role": "assistant", "content": "I've read this text."},
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": '{"PER": ["John"]}'},
        {"role": "user", "content": "Q2"},
        {"role": "assistant", "content": '{"LOC": ["Paris"]}'},
    ]
    ids, labels = encode_chat(tokenizer, messages, targets=[4, 6])
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    assert tokenizer.decode(ids) == full
    # the tiny template: "<s>{role}\n{content}</s>\n" per message. By hand: the learned text is the
    # two answers, each with its end-of-turn "</s>\n"; nothing of the prompt, the report or the
    # "I've read this text." turn.
    learned = [i for i, l in zip(ids, labels) if l != -100]
    assert all(l in (-100, i) for i, l in zip(ids, labels))
    runs, run = [], []
    for i, l in zip(ids, labels):
        if l == -100:
            if run:
                runs.append(tokenizer.decode(run))
            run = []
        else:
            run.append(i)
    runs.append(tokenizer.decode(run)) if run else None
    assert runs == ['{"PER": ["John"]}</s>\n', '{"LOC": ["Paris"]}</s>\n']
    assert len(learned) < len(ids) / 2


def test_conversation_styles():
    fmt = ChatFormat(style="per_type", types=["PER", "AGE"], integer_types=["AGE"])
    messages, targets = fmt.conversation("Ann, 47", {"PER": ["Ann"], "AGE": ["47"]}, fmt.keys([]))
    assert [messages[t]["content"] for t in targets] == ['{"PER": ["Ann"]}', '{"AGE": [47]}']
    assert messages[targets[0] - 1]["content"] == "What describes PER in the text?"
    single = ChatFormat(style="single")
    keys = single.keys(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])
    messages, targets = single.conversation("x", {"PER": ["x"]}, keys)
    assert keys == ["LOC", "PER"] and [messages[t]["content"] for t in targets] == ['{"LOC": [], "PER": ["x"]}']


# --- constrained decoding ----------------------------------------------------------------------
TEXT = 'Officer John Smith, 47, said "stop"\nto Mary\\Ann at 5 Elm St.'


def run_constraint(decoder, tokenizer, texts, keys, integer, pick, steps=40):
    """Greedy decoding under the constraint with fake logits ``pick(step) -> (B, V)``."""
    proc = decoder.processor(keys, integer, texts, prompt_len=2, eos_id=tokenizer.eos_token_id)
    ids = torch.zeros(len(texts), 2, dtype=torch.long)
    for step in range(steps):
        scores = proc(ids, pick(step, len(texts)))
        ids = torch.cat([ids, scores.argmax(-1, keepdim=True)], 1)
    return [decoder.text_of(row, tokenizer.eos_token_id) for row in ids[:, 2:].tolist()]


def check(raw, keys, integer, text):
    obj = json.loads(raw)  # parses
    assert list(obj) == keys  # exactly the schema's keys, in order
    for k, values in obj.items():
        assert isinstance(values, list)
        for v in values:
            if k in integer:
                assert type(v) is int and str(v) in text
            else:
                assert isinstance(v, str)
    assert parse_answer(raw, keys, integer)[1]


@pytest.mark.parametrize("adversary", ["random", "close_brace", "garbage", "quote_backslash", "long_strings"])
def test_every_output_parses_with_exactly_the_schema(decoder, tokenizer, adversary, monkeypatch):
    V = len(tokenizer)
    favourite = {
        "close_brace": tokenizer.convert_tokens_to_ids("}"),
        "garbage": tokenizer.convert_tokens_to_ids("z"),
        "quote_backslash": tokenizer.convert_tokens_to_ids("\\"),
        "long_strings": tokenizer.convert_tokens_to_ids("o"),
    }
    g = torch.Generator().manual_seed(zlib.crc32(adversary.encode()))  # the same in every process

    def pick(step, B):
        scores = torch.randn(B, V, generator=g) * 3
        if adversary in favourite:
            scores[:, favourite[adversary]] = 100.0  # always the model's first choice
        if adversary == "quote_backslash":
            scores[:, tokenizer.convert_tokens_to_ids('"')] = 99.0
        scores[:, tokenizer.eos_token_id] = -50.0  # a model that never wants to stop
        return scores

    keys, integer = ["PER", "AGE"], {"AGE"}
    for steps in (40, 30, 22):  # budgets down to the bare minimum (22 tokens on the tiny vocabulary)
        monkeypatch.setattr(decoder, "max_new_tokens", steps)  # restored after the test, pass or fail
        texts = [TEXT, "x", "Mary Ann 5 55"]
        for text, raw in zip(texts, run_constraint(decoder, tokenizer, texts, keys, integer, pick, steps)):
            check(raw, keys, integer, text)


def test_string_values_are_substrings_of_the_text(decoder, tokenizer):
    V = len(tokenizer)
    g = torch.Generator().manual_seed(3)
    texts = [TEXT] * 4
    raws = run_constraint(decoder, tokenizer, texts, ["PER", "AGE"], {"AGE"}, lambda s, B: torch.randn(B, V, generator=g) * 4, 40)
    values = [v for raw in raws for v in json.loads(raw)["PER"]]
    assert values  # random logits do write values
    # under the budget every non-empty value comes from the text (escapes decoded: quote, newline, backslash)
    assert all(v in TEXT for v in values if v)


def test_budget_too_small_is_an_error(decoder, tokenizer, monkeypatch):
    monkeypatch.setattr(decoder, "max_new_tokens", 3)
    with pytest.raises(ValueError, match="max_new_tokens"):
        decoder.processor(["PER", "AGE"], set(), ["x"], 2, tokenizer.eos_token_id)


def test_grammar_by_hand():
    g = AnswerGrammar(["PER", "AGE"], {"AGE"}, 'Ann "A" 47')
    state = g.start
    for ch in '{"PER": ["Ann", "\\"A\\""], "AGE": [47]}':
        state = g.step(state, ch)
        assert state is not None, ch
    assert state == ("D",)
    s = g.feed(g.start, '{"PER": ["')
    assert g.step(s, "B") is None and g.step(s, '"') is None  # not in the text; no empty value
    assert g.closure(s) == '"]' + ', "AGE": []}' and json.loads('{"PER": ["' + g.closure(s))
    s = g.feed(g.start, '{"PER": [], "AGE": [')
    assert g.step(s, "4") and g.step(s, "5") is None and g.step(s, '"') is None  # integers only, from the text


def test_parse_answer():
    keys, integer = ["PER", "AGE"], {"AGE"}
    assert parse_answer('{"PER": ["Ann"], "AGE": [47]}', keys, integer) == ({"PER": ["Ann"], "AGE": [47]}, True)
    assert parse_answer('{"PER": ["Ann"], "AGE": ["47"]}', keys, integer)[1] is False  # a string age
    assert parse_answer('{"PER": ["Ann"]}', keys, integer) == ({"PER": ["Ann"]}, False)  # a key missing
    assert parse_answer('{"PER": ["Ann", ""], "AGE": []', keys, integer) == (None, False)  # truncated
    assert parse_answer("garbage", keys, integer) == (None, False)
    assert parse_answer('["Ann"]', keys, integer) == (None, False)


# --- scoring and the way back to tags ---------------------------------------------------------
def test_field_scores_by_hand():
    gold = [{"PER": ["John Smith", "Mary"], "LOC": ["Paris"]}, {"AGE": [47]}]
    pred = [{"PER": ["John  Smith", "John"], "LOC": []}, {"AGE": ["47"], "LOC": ["Rome"]}]
    s = field_scores(gold, pred, "test", ["PER", "LOC", "AGE"])
    # tp: (PER, John Smith) (AGE, 47); fp: (PER, John) (LOC, Rome); fn: (PER, Mary) (LOC, Paris)
    assert s["test/field_precision"] == pytest.approx(0.5) and s["test/field_recall"] == pytest.approx(0.5)
    assert s["test/field_f1"] == pytest.approx(0.5)
    assert s["test/field_f1_PER"] == pytest.approx(0.5) and s["test/field_f1_AGE"] == 1.0 and s["test/field_f1_LOC"] == 0.0
    assert field_scores([{"PER": []}], [{"PER": []}], "val")["val/field_f1"] == 0.0  # nothing to find: 0, not NaN


def test_values_to_tags_first_unused_occurrence_longest_first():
    text = "Paris Hilton left Paris for Paris Saint-Germain ."
    offsets = split_words(text)
    words = [text[s:e] for s, e in offsets]
    tags = values_to_tags(text, offsets, {"PER": ["Paris Hilton"], "LOC": ["Paris", "Paris"], "ORG": ["Paris Saint-Germain"]})
    assert list(zip(words, tags)) == [
        ("Paris", "B-PER"), ("Hilton", "I-PER"), ("left", "O"), ("Paris", "B-LOC"), ("for", "O"),
        ("Paris", "B-ORG"), ("Saint", "I-ORG"), ("-", "I-ORG"), ("Germain", "I-ORG"), (".", "O"),
    ]
    # a value that is not in the text is skipped; one inside a word covers that word; deterministic
    assert values_to_tags("Amsterdam is big", split_words("Amsterdam is big"), {"LOC": ["Rome", "dam"]}) == ["B-LOC", "O", "O"]
    # and back again
    assert spans_to_answers(text, offsets, tags, ["LOC", "ORG", "PER"]) == {
        "LOC": ["Paris"], "ORG": ["Paris Saint-Germain"], "PER": ["Paris Hilton"]}


def test_sentence_to_example_conll_and_crime():
    s = Sentence(["EU", "rejects", "German", "call", "to", "Paris"], ["B-ORG", "O", "B-MISC", "O", "O", "B-LOC"])
    ex = sentence_to_example(s, 3)
    assert ex.text == "EU rejects German call to Paris" and ex.index == 3
    assert ex.answers == {"ORG": ["EU"], "MISC": ["German"], "LOC": ["Paris"]}
    assert values_to_tags(ex.text, ex.offsets, ex.answers) == s.tags

    from llmner.data.crime.corpus import CrimeCorpus
    from llmner.data.crime.generator import generate_reports
    from llmner.data.crime.views import report_to_json, report_to_sentence

    report = generate_reports(1, seed=5)[0]
    ex = sentence_to_example(report_to_sentence(report), 0)
    assert ex.text == report.text
    expected = {k: [str(v) for v in vs] for k, vs in report_to_json(report).items() if vs}
    assert ex.answers == expected  # the JSON view, values as text
    assert CrimeCorpus(num_train=2, num_validation=1, num_test=1).load()["train"][0].meta["text"]


def test_no_value_twice_in_a_list_even_when_the_model_wants_to_repeat(decoder, tokenizer, monkeypatch):
    """Adversarial logits: the model's favourite tokens spell values it has already written."""
    V = len(tokenizer)
    texts = ["ages 30 and 35 and 3 , Ann and Ann Lee", "30 30 30", "Ann Ann", "7"]
    favourite = [tokenizer.convert_tokens_to_ids(t) for t in ["3", "0", "5", "J", "ohn", "A", "nn", ",", " "]]
    favourite = [t for t in favourite if t is not None and t != tokenizer.unk_token_id]
    assert len(favourite) >= 4
    g = torch.Generator().manual_seed(5)

    def pick(step, B):
        scores = torch.randn(B, V, generator=g)
        for rank, t in enumerate(favourite):
            scores[:, t] = 60.0 - rank  # repeat these forever if allowed
        scores[:, tokenizer.convert_tokens_to_ids('"')] = 55.0
        scores[:, tokenizer.eos_token_id] = -50.0
        return scores

    keys, integer = ["PER", "AGE"], {"AGE"}
    for steps in (80, 40):
        monkeypatch.setattr(decoder, "max_new_tokens", steps)
        for text, raw in zip(texts, run_constraint(decoder, tokenizer, texts, keys, integer, pick, steps)):
            check(raw, keys, integer, text)
            obj = json.loads(raw)  # the raw JSON itself, before parse_answer's de-duplication
            for k, values in obj.items():
                assert len(values) == len(set(values)), (text, raw)
            # an integer list ends when every integer of the text is in it
            assert set(obj["AGE"]) <= {int(d) for d in ("30", "35", "3", "0", "5", "7") if d in text}


def test_no_repeat_grammar_by_hand():
    g = AnswerGrammar(["AGE"], {"AGE"}, "30 35")
    s = g.feed(g.start, '{"AGE": [30, ')
    assert g.step(s, "3") is not None  # "35" can still grow from "3"
    s3 = g.step(s, "3")
    assert g.step(s3, "0") is None  # "30" is in the list and has no extension
    s35 = g.feed(s, "35")
    assert g.step(s35, ",") is not None  # "3", "5", "0" are still new
    full = g.feed(g.start, '{"AGE": [30, 35, 3, 5, 0')
    assert g.step(full, ",") is None and g.step(full, "]") is not None  # nothing new left: the list ends
    h = AnswerGrammar(["PER"], set(), "Ann Ann")
    s = h.feed(h.start, '{"PER": ["Ann", "')
    assert h.step(h.feed(s, "Ann"), '"') is None  # a repeat cannot be closed
    assert h.feed(s, "Ann ") is not None  # but a longer, new value can grow from it
    assert parse_answer('{"PER": ["Ann", "Ann", "Lee"]}', ["PER"])[0] == {"PER": ["Ann", "Lee"]}


def test_few_shot_conversation_by_hand():
    from llmner.data.chat import ChatFormat, few_shot_examples

    sentences = [Sentence(["prices", "fell"], ["O", "O"]), Sentence(["Ann", "Lee", "ran"], ["B-PER", "I-PER", "O"]),
                 Sentence(["Bo", "won"], ["B-PER", "O"])]
    shots = few_shot_examples(sentences, 2, seed=0)
    assert shots == few_shot_examples(sentences, 2, seed=0)  # seeded
    assert sorted(s["text"] for s in shots) == ["Ann Lee ran", "Bo won"]  # only sentences with an entity
    fmt = ChatFormat(shots=2, examples=shots)
    messages, targets = fmt.conversation("Cy sat", {"PER": ["Cy"]}, ["PER"])
    roles = [m["role"] for m in messages]
    assert roles == ["system"] + ["user", "assistant", "user", "assistant"] * 3
    assert [m["content"] for m in messages[1:5]] == [f"Text:\n{shots[0]['text']}", "I've read this text.",
                                                     "What describes PER in the text? Answer with one JSON object.",
                                                     json.dumps({"PER": shots[0]["answers"]["PER"]})]
    assert targets == [len(messages) - 1]  # only the real answer carries loss, not the shots'
    with pytest.raises(ValueError, match="shots=3"):
        ChatFormat(shots=3, examples=shots)


def test_each_model_takes_only_the_heads_it_declares(tokenizer):
    """``head=generative`` with ``model=tagger`` (or a tag head with ``model=generative``) is a
    config error at one place, ``LlmnerModule.build_head``; the declared heads are built."""
    from functools import partial
    from types import SimpleNamespace

    from llmner.errors import ConfigError
    from llmner.heads import CRFHead, LinearHead
    from llmner.modules import GenerativeModule, TaggerModule

    tags = ["O", "B-PER", "I-PER"]
    with pytest.raises(ConfigError, match="TaggerModule takes a LinearHead or CRFHead head, got a JsonDecoder"):
        TaggerModule.build_head(partial(JsonDecoder), None, tags)
    with pytest.raises(ConfigError, match="GenerativeModule takes a JsonDecoder head, got a CRFHead"):
        GenerativeModule.build_head(partial(CRFHead), None, tags)
    backbone = SimpleNamespace(hidden_size=8, tokenizer=tokenizer)
    for head in (LinearHead, CRFHead):
        built = TaggerModule.build_head(partial(head, dropout=0.0), backbone, tags, {"subword": "first_last"})
        assert type(built) is head and built.proj.in_features == 16
    assert type(GenerativeModule.build_head(partial(JsonDecoder), backbone, tags)) is JsonDecoder
