"""The answer grammar for other runtimes: GBNF (llama.cpp, llama-cpp-python) and JSON Schema (Ollama).

``AnswerGrammar`` decides per report; these files are written once per checkpoint
(``llmner.export ... format=gguf``), so they say what holds for every report and nothing more:

- said by both: one JSON object with exactly the keys of the question, lists of non-empty strings
  (integers for the integer keys, no leading zeros, no sign);
- said by the GBNF only: the exact ``json.dumps`` layout the model was trained on (keys in schema
  order, ``", "`` and ``": "``, no other whitespace), the escapes ``AnswerGrammar`` allows (``\\"``,
  ``\\\\``, ``\\/``, ``\\n``, ``\\r``, ``\\t``, ``\\b``, ``\\f``; no ``\\uXXXX``) and no raw control
  characters; after the ``}`` llama.cpp allows only the end of the turn;
- said by the schema only: no value twice in a list (``uniqueItems``). A grammar cannot say it:
  "no two equal strings in a list" is not context-free for unbounded strings, so the GBNF allows
  repeats (llama.cpp's and Ollama's schema-to-grammar converters drop ``uniqueItems`` too: a
  validator checks it after the fact). JSON objects are unordered, so the schema cannot fix the key
  order or the layout;
- said by neither: that a value occurs in the report (a per-request rule; no static grammar knows
  the text), and that the answer closes within the token budget (``AnswerGrammar``'s closure): in
  llama.cpp, ``n_predict`` cuts an answer wherever it is.

Why by hand (house rule 8): the grammar is a dozen lines generated from the keys; llama.cpp's
``json_schema_to_grammar`` accepts any whitespace and key order and would not match the training
layout. ``tests/test_portable_grammar.py`` checks both files against ``AnswerGrammar`` (and
against llama.cpp's own grammar engine where llama-cpp-python is installed).
"""

from __future__ import annotations

import json
import re

# One string character as AnswerGrammar allows it: any but the quote, the backslash and the
# control characters, or one of its escapes.
_CHAR = r'char ::= [^"\\\x00-\x1f] | "\\" ["\\/nrtbf]'


def _rules(max_items: int | None = None, max_chars: int | None = None) -> list[str]:
    """The value rules; ``max_items`` bounds each list, ``max_chars`` each string (GBNF ``{m,n}``)."""
    def values(item: str) -> str:
        if max_items == 1:
            return f"{item}?"
        more = "*" if max_items is None else f"{{0,{max_items - 1}}}"
        return f'({item} (", " {item}){more})?'

    chars = "char+" if max_chars is None else f"char{{1,{max_chars}}}"
    return [
        f'string ::= "\\"" {chars} "\\""',
        _CHAR,
        'integer ::= "0" | [1-9] [0-9]*',
        f"strings ::= {values('string')}",
        f"integers ::= {values('integer')}",
    ]


def _check_bounds(max_items: int | None, max_chars: int | None) -> None:
    for name, v in (("max_items", max_items), ("max_chars", max_chars)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ValueError(f"{name} must be a positive integer or None, got {v!r}")


def gbnf_literal(text: str) -> str:
    """``text`` as a GBNF string literal (quotes, backslashes and control characters escaped)."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _object_rule(name: str, keys: list[str], integer_keys: set[str] | frozenset[str]) -> str:
    """``name ::= "{\\"K1\\": [" strings "], \\"K2\\": [" integers "]}"`` in the json.dumps layout."""
    parts = []
    for i, k in enumerate(keys):
        head = ("{" if i == 0 else "], ") + json.dumps(k, ensure_ascii=False) + ": ["
        parts += [gbnf_literal(head), "integers" if k in integer_keys else "strings"]
    parts.append(gbnf_literal("]}" if keys else "{}"))
    return f"{name} ::= " + " ".join(parts)


def answer_gbnf(questions: list[list[str]], integer_keys: set[str] | frozenset[str] = frozenset(),
                max_items: int | None = None, max_chars: int | None = None) -> str:
    """A GBNF grammar (root rule ``root``) of one answer to any of ``questions`` (each: its keys).

    With one question (``style=single``) that is the answer; with one per type (``per_type``) the
    root allows any question's answer (``answer_gbnf([keys])`` is one question's alone).
    ``max_items`` / ``max_chars``: at most that many values a list / characters a string (an
    escape is one character), a static stand-in for the no-repeat rule and the budget that ends a
    looping list or string (``None``: unbounded, the language of llmner's constraint).
    """
    _check_bounds(max_items, max_chars)
    names = [f"answer-{i}" for i in range(len(questions))]
    lines = [
        "# llmner answer grammar (llama.cpp GBNF): one JSON object in the json.dumps layout the model was trained on.",
        "# Not expressed: values must occur in the text, no value twice in a list, closing within the token budget.",
    ]
    if max_items is not None or max_chars is not None:
        lines.append(f"# Bounded: at most {max_items or 'any number of'} values a list, {max_chars or 'any number of'} "
                     "characters a value.")
    lines.append("root ::= " + " | ".join(names))
    lines += [_object_rule(n, q, integer_keys) for n, q in zip(names, questions)]
    return "\n".join(lines + _rules(max_items, max_chars)) + "\n"


def answer_schema(questions: list[list[str]], integer_keys: set[str] | frozenset[str] = frozenset(),
                  max_items: int | None = None, max_chars: int | None = None) -> dict:
    """A JSON Schema (draft 2020-12) of one answer to any of ``questions`` (each: its keys); the
    bounds as ``answer_gbnf``'s (``maxItems``, ``maxLength``)."""
    _check_bounds(max_items, max_chars)

    def one(keys: list[str]) -> dict:
        def values(k: str) -> dict:
            item = {"type": "integer", "minimum": 0} if k in integer_keys else {"type": "string", "minLength": 1}
            if max_chars is not None and k not in integer_keys:
                item["maxLength"] = max_chars
            bound = {} if max_items is None else {"maxItems": max_items}
            return {"type": "array", "items": item, "uniqueItems": True} | bound

        return {"type": "object", "properties": {k: values(k) for k in keys}, "required": list(keys),
                "additionalProperties": False}

    head = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "llmner answer"}
    if len(questions) == 1:
        return head | one(questions[0])
    return head | {"anyOf": [one(q) for q in questions]}


def grammar_stems(questions: list[list[str]]) -> list[str]:
    """Each question's grammar file stem: ``answer`` for a single question, else ``answers/<keys>``
    (characters other than letters, digits, ``.``, ``_``, ``-`` become ``_``; numbered if two collide)."""
    if len(questions) == 1:
        return ["answer"]
    names = [re.sub(r"[^\w.-]", "_", "-".join(q)) or "empty" for q in questions]
    if len(set(names)) < len(names):
        names = [f"{i:02d}-{n}" for i, n in enumerate(names)]
    return [f"answers/{n}" for n in names]


def grammar_files(questions: list[list[str]], integer_keys: set[str] | frozenset[str] = frozenset(),
                  max_items: int | None = None, max_chars: int | None = None) -> dict[str, str]:
    """The files the GGUF export writes, by relative path: ``answer.gbnf``, ``answer.schema.json``
    (any question's answer) and, with more than one question, ``answers/<key>.gbnf`` and
    ``answers/<key>.schema.json`` for each question's own answer (``grammar_stems``); the bounds as
    ``answer_gbnf``'s."""
    bounds = {"max_items": max_items, "max_chars": max_chars}

    def schema(qs: list[list[str]]) -> str:
        return json.dumps(answer_schema(qs, integer_keys, **bounds), indent=2, ensure_ascii=False) + "\n"

    files = {"answer.gbnf": answer_gbnf(questions, integer_keys, **bounds), "answer.schema.json": schema(questions)}
    if len(questions) > 1:
        for stem, q in zip(grammar_stems(questions), questions):
            files[f"{stem}.gbnf"] = answer_gbnf([q], integer_keys, **bounds)
            files[f"{stem}.schema.json"] = schema([q])
    return files


def usage_readme(name: str, opening: list[dict], questions: list[tuple[str, list[str]]], max_new_tokens: int) -> str:
    """The export folder's README: the conversation to send, and the grammar passed to llama.cpp,
    llama-cpp-python and Ollama (written beside ``model.gguf``)."""
    per_question = len(questions) > 1
    first_q = questions[0][0]
    grammar = grammar_stems([q for _, q in questions])[0]
    messages = opening + [{"role": "user", "content": first_q}]
    shown = json.dumps(messages, ensure_ascii=False)
    lines = [
        f"# {name}: an llmner generative NER model for llama.cpp and Ollama",
        "",
        "- `model.gguf`: the fine-tuned model (LoRA merged), its tokenizer and chat template;",
        "- `Modelfile`: Ollama (`ollama create llmner -f Modelfile`): template, system line, greedy;",
        "- `llmner_prompt.json`: the prompt format; `answer.gbnf` and `answer.schema.json`: what an answer may be"
        + (" (any question's; `answers/<key>.*`: one question's)" if per_question else "") + ".",
        "",
        "## Asking",
        "Send the conversation llmner trains on and decodes with, then read the next assistant turn:",
        "",
        "```json",
        shown,
        "```",
    ]
    if per_question:
        lines += ["", f"then each of the {len(questions)} questions in turn (the next: {questions[1][0]!r}), the answers "
                  "appended as assistant turns, each decoded with its own `answers/<key>.gbnf`."]
    lines += [
        "",
        "## With the grammar (greedy, as llmner decodes)",
        "```python",
        "# llama-cpp-python (pip install llama-cpp-python): the chat template is read from model.gguf",
        "from llama_cpp import Llama, LlamaGrammar",
        "llm = Llama(\"model.gguf\", n_ctx=2048, verbose=False)",
        "messages = [...]   # the conversation above, the report in place of <report>",
        f"grammar = LlamaGrammar.from_file(\"{grammar}.gbnf\")",
        f"out = llm.create_chat_completion(messages, grammar=grammar, temperature=0, max_tokens={max_new_tokens})",
        "answer = out[\"choices\"][0][\"message\"][\"content\"]   # JSON",
        "```",
        "```bash",
        "# llama.cpp's server: the grammar applies to every request; send the messages above",
        f"llama-server -m model.gguf --grammar-file {grammar}.gbnf --temp 0 -n {max_new_tokens}",
        "curl -s localhost:8080/v1/chat/completions -d '{\"messages\": [...]}'",
        "# Ollama: a JSON schema as the request's format (the Modelfile sets the system line)",
        "ollama create llmner -f Modelfile",
        "curl -s localhost:11434/api/chat -d \"{\\\"model\\\": \\\"llmner\\\", \\\"stream\\\": false, "
        f"\\\"format\\\": $(cat {grammar}.schema.json), \\\"messages\\\": [...]}}\"",
        "```",
        "",
        "## What the grammar cannot say",
        "llmner's own decoder also keeps every value a piece of the report, forbids a value twice in one list and",
        "closes the answer within the token budget. The grammar fixes the keys, their order, the layout and the value",
        "types; the schema fixes keys and types and says `uniqueItems` (validators check it; llama.cpp's and",
        "Ollama's grammar converters ignore it). Neither knows the report: a value the model invents is allowed,",
        f"and an answer longer than the token limit ({max_new_tokens}) is cut. A model that loops on one value",
        "keeps the grammar happy until that limit; `llmner.export ... gguf_max_items=N gguf_max_chars=M` writes",
        "grammars that end every list after N values and every value after M characters.",
        "",
        "## Quantized copies",
        "`llama-quantize model.gguf model-Q8_0.gguf Q8_0` (llama.cpp) or `ollama create -q q8_0 ...`. On CPUs with AMX,",
        "llama.cpp builds whose AMX/repacked weight buffers fault (a segfault on the first token) run with",
        "`--no-repack` (llama-cpp-python: `use_extra_bufts=False` in the model parameters).",
    ]
    return "\n".join(lines) + "\n"
