"""The exported answer grammar (GBNF) and JSON Schema against llmner's own constraint.

Oracles: strings that ``AnswerGrammar`` accepts for some report (random walks through it) must be
accepted; strings it accepts for no report (hand-made, and single-character mutations checked
with a witness report) must be rejected. The GBNF is read by a GBNF-to-regex translation written
here from the GBNF syntax (the exported grammar has no recursive rule, so it is a regular
language and ``re.fullmatch`` decides it); the schema by ``jsonschema``. Where llama-cpp-python is
installed, llama.cpp's own grammar engine judges the same strings (``tests/test_gguf_llamacpp.py``
reuses ``accepted_and_rejected``).
"""

from __future__ import annotations

import json
import random
import re

import pytest

from llmner.decoding.grammar import AnswerGrammar
from llmner.decoding.portable import answer_gbnf, answer_schema, gbnf_literal, grammar_files

KEYS = ["PER", "Victim_Age", "LOC"]
INTS = {"Victim_Age"}
TEXTS = [
    'John Smith, 47, met Mary "Mo" Jones in Paris at 10.',
    "Ann Lee (#4411) saw C:\\temp\\x and a tab\there;\nnew line, 0 and 007 and 305.",
    "Zoë Ñúñez of Köln and 李伟 in 東京, aged 9 and 99 / 90.",
]
_ESC = {'"': '"', "\\": "\\", "/": "/", "n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}


# --- GBNF -> regex (the subset of GBNF syntax: literals, classes, rule names, ( ) | * + ?) ---------
def _unescape(body: str) -> list[str]:
    """The characters of a GBNF literal or class body (escapes \\x.., \\n, \\r, \\t, \\\\, \\", \\], \\[)."""
    out, i = [], 0
    while i < len(body):
        if body[i] == "\\":
            nxt = body[i + 1]
            if nxt == "x":
                out.append(chr(int(body[i + 2 : i + 4], 16)))
                i += 4
                continue
            out.append({"n": "\n", "r": "\r", "t": "\t"}.get(nxt, nxt))
            i += 2
        else:
            out.append(body[i])
            i += 1
    return out


def _class(body: str) -> str:
    neg = body.startswith("^")
    chars = _unescape(body[1:] if neg else body)
    parts, i = [], 0
    while i < len(chars):
        if i + 2 < len(chars) and chars[i + 1] == "-":
            parts.append(re.escape(chars[i]) + "-" + re.escape(chars[i + 2]))
            i += 3
        else:
            parts.append(re.escape(chars[i]))
            i += 1
    return "[" + ("^" if neg else "") + "".join(parts) + "]"


_TOKEN = re.compile(r'\s*("(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|\{\d+(?:,\d*)?\}|[a-zA-Z0-9-]+|[()|*+?])')


def gbnf_regex(grammar: str) -> re.Pattern:
    rules = {}
    for line in grammar.splitlines():
        line = line.split("#")[0] if line.lstrip().startswith("#") else line
        if "::=" in line:
            name, body = line.split("::=", 1)
            rules[name.strip()] = body

    def translate(name: str, depth: int = 0) -> str:
        assert depth < 20, "recursive grammar: not regular"
        out, body = [], rules[name].strip()
        pos = 0
        while pos < len(body):
            m = _TOKEN.match(body, pos)
            assert m, f"cannot read {body[pos:]!r}"
            tok, pos = m.group(1), m.end()
            if tok.startswith('"'):
                out.append(re.escape("".join(_unescape(tok[1:-1]))))
            elif tok.startswith("["):
                out.append(_class(tok[1:-1]))
            elif tok in "()|*+?" or tok.startswith("{"):  # GBNF's {m,n} repetition is the regex one
                out.append("(?:" if tok == "(" else tok)
            else:
                out.append("(?:" + translate(tok, depth + 1) + ")")
        return "".join(out)

    return re.compile(translate("root"), re.S)


# --- strings AnswerGrammar accepts, and strings it rejects for every report ---------------------
def walk(grammar: AnswerGrammar, rng: random.Random, stop: float = 0.25) -> str:
    """A random answer that ``grammar`` accepts (strictly), char by char."""
    cands = sorted(set(grammar.text) | set('{}[]", :0123456789\\/nrtbfu') | set("".join(grammar.keys)))
    state, out = grammar.start, []
    while state != ("D",):
        allowed = [c for c in cands if grammar.step(state, c) is not None]
        assert allowed, f"dead end after {''.join(out)!r}"
        closing = [c for c in allowed if c in ']"'] if rng.random() < stop else []
        ch = rng.choice(closing or allowed)
        out.append(ch)
        state = grammar.step(state, ch)
    return "".join(out)


def witness(obj: dict) -> str:
    """A report that holds every value of ``obj`` (and a letter, so a new string value always exists)."""
    values = [str(v) for vs in obj.values() if isinstance(vs, list) for v in vs if isinstance(v, (str, int))]
    return "\n".join(values + ["x"])


def in_language(s: str, keys: list[str], ints: set[str], no_repeat: bool) -> bool:
    """Whether ``AnswerGrammar`` accepts ``s`` for some report: for the witness report, since a
    report only ever widens what the grammar accepts by holding more values."""
    try:
        obj = json.loads(s)
    except ValueError:
        return False
    if not isinstance(obj, dict):
        return False
    g = AnswerGrammar(keys, ints, witness(obj), no_repeat=no_repeat)
    state = g.start
    for ch in s:
        state = g.step(state, ch)
        if state is None:
            return False
    return state == ("D",)


def schema_expected(s: str, keys: list[str], ints: set[str]) -> bool | None:
    """What the schema should say of ``s``: its object written in the training layout is in the
    no-repeat language. ``None`` where JSON Schema's data model differs from llmner's (not JSON; a
    control character only \\uXXXX can write, which the layout grammar does not allow)."""
    try:
        obj = json.loads(s)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return False
    strings = [v for vs in obj.values() if isinstance(vs, list) for v in vs if isinstance(v, str)]
    if any(ord(c) < 0x20 and c not in "\n\r\t\b\f" for v in strings for c in v):
        return None
    if set(obj) != set(keys):
        return False
    # JSON Schema counts 47.0 as an integer; llmner's layout writes 47
    obj = {k: [int(v) if k in ints and isinstance(v, float) and v.is_integer() else v for v in obj[k]]
           if isinstance(obj[k], list) else obj[k] for k in keys}
    return in_language(json.dumps(obj, ensure_ascii=False), keys, ints, no_repeat=True)


HAND_REJECTED = [
    '{"PER": [], "Victim_Age": [], "LOC": []} ',  # trailing space
    '{"PER": [],"Victim_Age": [], "LOC": []}',  # layout
    '{"Victim_Age": [], "PER": [], "LOC": []}',  # key order
    '{"PER": [], "LOC": []}',  # a key missing
    '{"PER": [], "Victim_Age": [], "LOC": [], "ORG": []}',  # an extra key
    '{"PER": [""], "Victim_Age": [], "LOC": []}',  # an empty string
    '{"PER": ["a\\u0041"], "Victim_Age": [], "LOC": []}',  # \\u escapes are not written
    '{"PER": ["a\nb"], "Victim_Age": [], "LOC": []}',  # a raw newline
    '{"PER": [], "Victim_Age": [047], "LOC": []}',  # a leading zero
    '{"PER": [], "Victim_Age": [-4], "LOC": []}',
    '{"PER": [], "Victim_Age": [4.5], "LOC": []}',
    '{"PER": [], "Victim_Age": ["47"], "LOC": []}',
    '{"PER": [47], "Victim_Age": [], "LOC": []}',
    '{"PER": [true], "Victim_Age": [], "LOC": []}',
    '{"PER": "Ann", "Victim_Age": [], "LOC": []}',
    '{"PER": ["Ann",], "Victim_Age": [], "LOC": []}',
    '["PER"]',
]


def accepted_and_rejected(n_walks: int = 60, seed: int = 0) -> tuple[list[str], list[str], list[str]]:
    """(answers llmner's constraint accepts, with repeats forbidden; accepted with repeats allowed;
    strings that no report makes acceptable)."""
    rng = random.Random(seed)
    strict, loose = [], []
    for i in range(n_walks):
        text = TEXTS[i % len(TEXTS)]
        strict.append(walk(AnswerGrammar(KEYS, INTS, text), rng, stop=0.25 if i % 2 else 0.05))
        loose.append(walk(AnswerGrammar(KEYS, INTS, text, no_repeat=False), rng, stop=0.1))
    # repeats made on purpose: each value of a list written twice
    for s in strict[:20]:
        obj = json.loads(s)
        loose.append(json.dumps({k: v + v for k, v in obj.items()}, ensure_ascii=False))
    rejected = list(HAND_REJECTED)
    pool = "{}[]\", :0123456789\\ntu.-x\n"
    for s in strict + loose:
        for _ in range(6):
            j = rng.randrange(len(s) + 1)
            op = rng.randrange(3)
            m = s[:j] + rng.choice(pool) + s[j:] if op == 0 else (
                s[:j] + s[j + 1 :] if op == 1 else s[:j] + rng.choice(pool) + s[j + 1 :])
            if not in_language(m, KEYS, INTS, no_repeat=False):
                rejected.append(m)
    return strict, loose, sorted(set(rejected))


@pytest.fixture(scope="module")
def cases():
    return accepted_and_rejected()


def test_walks_cover_what_the_grammar_must_decide(cases):
    """The oracle sets are not trivial: values, escapes, integers, repeats, many kinds of rejects."""
    strict, loose, rejected = cases
    assert all(in_language(s, KEYS, INTS, no_repeat=True) for s in strict)
    assert sum('\\"' in s or "\\\\" in s or "\\n" in s for s in strict) >= 3
    assert sum(bool(json.loads(s)["Victim_Age"]) for s in strict) >= 10
    assert sum(len(json.loads(s)["PER"]) >= 2 for s in strict) >= 10
    assert sum(not in_language(s, KEYS, INTS, no_repeat=True) for s in loose) >= 20  # repeats
    assert len(rejected) >= 200 and sum(schema_expected(s, KEYS, INTS) is not None for s in rejected) >= 50


def test_gbnf_accepts_llmners_language_and_nothing_else(cases):
    strict, loose, rejected = cases
    pattern = gbnf_regex(answer_gbnf([KEYS], INTS))
    assert all(pattern.fullmatch(s) for s in strict + loose)  # repeats too: a grammar cannot forbid them
    wrongly = [s for s in rejected if pattern.fullmatch(s)]
    assert not wrongly, wrongly[:5]


def test_the_regex_oracle_reads_gbnf_as_gbnf():
    """The translation above, on hand-written GBNF with known answers."""
    p = gbnf_regex('root ::= "a\\"" x* ("-" | [^a-c\\x00-\\x1f])?\nx ::= [0-9] | "\\\\"')
    assert p.fullmatch('a"12\\3-') and p.fullmatch('a"') and p.fullmatch('a"d')
    assert not p.fullmatch('a"b') and not p.fullmatch("a") and not p.fullmatch('a"\n')
    q = gbnf_regex('root ::= "<" x{1,3} ("," x){0,1} ">"\nx ::= [0-9]')
    assert q.fullmatch("<1>") and q.fullmatch("<123,4>") and not q.fullmatch("<1234>") and not q.fullmatch("<1,2,3>")


@pytest.mark.parametrize(("items", "chars"), [(1, None), (3, None), (None, 4), (2, 6)])
def test_bounded_grammar_and_schema_end_lists_and_values(cases, items, chars):
    """With ``max_items`` / ``max_chars`` the GBNF and the schema accept exactly the unbounded
    language's answers whose lists and values are within the bounds (counted on the parsed JSON:
    an escape is one character), on the oracle sets and on hand-made answers at each bound."""
    jsonschema = pytest.importorskip("jsonschema")
    strict, loose, rejected = cases

    def within(s: str) -> bool:
        obj = json.loads(s)
        return all((items is None or len(v) <= items)
                   and (chars is None or all(len(x) <= chars for x in v if isinstance(x, str))) for v in obj.values())

    edge = []
    for n in {1, 2, 3, items or 1, (items or 1) + 1}:
        for m in {1, chars or 3, (chars or 3) + 1}:
            edge.append(json.dumps({"PER": [chr(65 + i) * m for i in range(n)], "Victim_Age": list(range(n)),
                                    "LOC": ['a"' + "b" * (m - 2)] if m >= 2 else []}, ensure_ascii=False))
    bounded = gbnf_regex(answer_gbnf([KEYS], INTS, max_items=items, max_chars=chars))
    schema = jsonschema.Draft202012Validator(answer_schema([KEYS], INTS, max_items=items, max_chars=chars))
    unbounded = gbnf_regex(answer_gbnf([KEYS], INTS))
    kept = 0
    for s in strict + loose + edge:
        assert unbounded.fullmatch(s)
        assert bool(bounded.fullmatch(s)) == within(s), s
        unique = all(len(v) == len({json.dumps(x) for x in v}) for v in json.loads(s).values())
        assert schema.is_valid(json.loads(s)) == (within(s) and unique), s
        kept += within(s)
    assert 0 < kept < len(strict + loose + edge)  # the bounds cut some answers and keep others
    assert not any(bounded.fullmatch(s) for s in rejected)
    with pytest.raises(ValueError, match="max_items"):
        answer_gbnf([KEYS], INTS, max_items=0)


def test_schema_accepts_the_no_repeat_language_with_any_layout(cases):
    jsonschema = pytest.importorskip("jsonschema")
    strict, loose, rejected = cases
    schema = answer_schema([KEYS], INTS)
    jsonschema.Draft202012Validator.check_schema(schema)
    v = jsonschema.Draft202012Validator(schema)
    for s in strict:
        assert v.is_valid(json.loads(s)), s
        assert v.is_valid(json.loads(json.dumps(json.loads(s), indent=1)))  # layout is not the schema's
    checked = 0
    for s in loose + rejected:
        expected = schema_expected(s, KEYS, INTS)
        if expected is not None:
            checked += 1
            assert v.is_valid(json.loads(s)) == expected, s
    assert checked >= 100


def test_one_grammar_per_question_and_a_union():
    """per_type: each question's file accepts its own answer only; answer.gbnf any question's."""
    questions = [["Officer_Name"], ["Victim_Age"], ["we/ird key"]]
    files = grammar_files(questions, INTS)
    assert set(files) == {"answer.gbnf", "answer.schema.json", "answers/Officer_Name.gbnf",
                          "answers/Officer_Name.schema.json", "answers/Victim_Age.gbnf",
                          "answers/Victim_Age.schema.json", "answers/we_ird_key.gbnf", "answers/we_ird_key.schema.json"}
    name, age, weird = '{"Officer_Name": ["Ann Lee"]}', '{"Victim_Age": [47, 9]}', '{"we/ird key": ["x"]}'
    union = gbnf_regex(files["answer.gbnf"])
    assert union.fullmatch(name) and union.fullmatch(age) and union.fullmatch(weird)
    assert not union.fullmatch('{"Victim_Age": ["47"]}')
    own = gbnf_regex(files["answers/Victim_Age.gbnf"])
    assert own.fullmatch(age) and not own.fullmatch(name)
    jsonschema = pytest.importorskip("jsonschema")
    assert jsonschema.Draft202012Validator(json.loads(files["answer.schema.json"])).is_valid(json.loads(weird))
    assert not jsonschema.Draft202012Validator(json.loads(files["answers/Officer_Name.schema.json"])).is_valid(
        json.loads(age))


def test_keys_that_need_escaping_in_gbnf():
    keys = ['a"b', "c\\d", "tab\tkey", "é"]
    s = json.dumps({k: ["v"] for k in keys}, ensure_ascii=False)
    assert gbnf_regex(answer_gbnf([keys])).fullmatch(s)
    assert gbnf_literal('"\\\n\x01') == '"\\"\\\\\\n\\x01"'


def test_gguf_export_writes_the_grammar_of_the_checkpoints_answers(tmp_path):
    """The files beside model.gguf are the checkpoint's (its keys), and llmner's own decoded answers fit them."""
    import llmner
    from llmner.export import export

    ckpt = "tests/fixtures/v0_1/generative.ckpt"
    out = export(ckpt, tmp_path, format="gguf")
    model = llmner.load(ckpt)
    ((question, keys),) = model.prompt.questions(model.keys)
    assert (out / "answer.gbnf").read_text() == answer_gbnf([keys])
    assert json.loads((out / "answer.schema.json").read_text()) == answer_schema([keys])
    readme, modelfile = (out / "README.md").read_text(), (out / "Modelfile").read_text()
    assert "--grammar-file answer.gbnf" in readme and 'LlamaGrammar.from_file("answer.gbnf")' in readme
    assert "answer.schema.json" in readme and "answer.schema.json" in modelfile
    assert json.dumps(question)[1:-1] in readme  # the question to ask, as JSON in the conversation shown
    texts = ["John Smith visited Paris on Monday .", 'the "Red Cross" said Mary Jones will lead it .']
    convs = [model.prompt.opening(t, model.keys) + [{"role": "user", "content": question}] for t in texts]
    pattern = gbnf_regex((out / "answer.gbnf").read_text())
    # today's decoder (the checkpoint predates no_repeat), with room to close every answer by itself: a
    # closure forced by the budget may write "" (AnswerGrammar's relaxed tail), which llama.cpp never needs
    model.head.no_repeat, model.head.max_new_tokens = True, 200
    raws = model._generate(convs, keys, texts, constrained=True)
    assert all(pattern.fullmatch(r) for r in raws), raws
    assert not pattern.fullmatch(raws[0].replace("[", "[ ", 1))
