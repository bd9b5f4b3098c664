"""A tokenizer's chat template: rendering, and what it writes around each message (one prober).

``chat_affixes`` renders probe conversations once per tokenizer and reads off each role's
``prefix + content + suffix``. Two users: the chat encoder finds the answers in a rendered
conversation in one pass (``llmner.data.chat.encode_chat``), and the GGUF export writes the same
affixes as an Ollama ``TEMPLATE`` (``llmner.gguf_export.modelfile``). A template that is not of
this kind (it rewrites earlier turns, or writes later turns differently) is refused with the
reason; the encoder then renders each prefix of a conversation instead (slower, any template).
"""

from __future__ import annotations

from dataclasses import dataclass

_PROBE = "\x1fllmner-{}\x1f"


def render(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> str:
    """The conversation as the tokenizer's chat template writes it (text, not ids)."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


@dataclass(frozen=True)
class ChatAffixes:
    """What a chat template writes around each role's message content (prefix-stable templates).

    An assistant message is written ``generation prompt + lead + content + end of turn``; the
    generation prompt ends a prompt, so the model writes ``lead`` (usually empty) itself.
    """

    system: tuple[str, str]
    user: tuple[str, str]
    assistant: tuple[str, str]  # (the generation prompt, the end of turn)
    lead: str = ""

    @property
    def answer(self) -> tuple[str, str]:
        """``(lead, end of turn)``: what surrounds an answer after the generation prompt."""
        return self.lead, self.assistant[1]

    def render(self, messages: list[dict], add_generation_prompt: bool = False) -> str:
        """The conversation as these affixes write it (what the Ollama template produces)."""
        parts = {"system": self.system, "user": self.user,
                 "assistant": (self.assistant[0] + self.lead, self.assistant[1])}
        out = "".join(parts[m["role"]][0] + m["content"] + parts[m["role"]][1] for m in messages)
        return out + (self.assistant[0] if add_generation_prompt else "")


def _probe(tokenizer) -> ChatAffixes:
    s, u, a = (_PROBE.format(r) for r in ("system", "user", "assistant"))
    msgs = [{"role": "system", "content": s}, {"role": "user", "content": u}, {"role": "assistant", "content": a}]
    check = msgs + [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}]
    try:
        one, two = render(tokenizer, msgs[:1]), render(tokenizer, msgs[:2])
        prompt, full = render(tokenizer, msgs[:2], add_generation_prompt=True), render(tokenizer, msgs)
        expected = render(tokenizer, check)
    except Exception as err:  # noqa: BLE001 - a template may refuse a role or an order (jinja raises)
        raise ValueError(f"the chat template cannot render a system/user/assistant conversation ({err})") from None
    if not (s in one and two.startswith(one) and prompt.startswith(two) and full.startswith(two) and u in two and a in full):
        raise ValueError("the chat template is not prefix-stable (a later turn rewrites earlier text)")
    sys_pre, sys_post = one.split(s)
    user_pre, user_post = two[len(one):].split(u)
    gen = prompt[len(two):]
    if not full[len(two):].startswith(gen):
        raise ValueError("the chat template's generation prompt is not where the assistant message starts")
    lead, end = full[len(two) + len(gen):].split(a)
    affixes = ChatAffixes((sys_pre, sys_post), (user_pre, user_post), (gen, end), lead)
    if affixes.render(check) != expected:
        raise ValueError("the chat template writes later turns differently")
    return affixes


def chat_affixes(tokenizer) -> ChatAffixes:
    """The per-role affixes of ``tokenizer``'s chat template, probed once per tokenizer.

    Raises:
        ValueError: if the template is not of the "prefix + content + suffix per message" kind.
    """
    template, found = getattr(tokenizer, "_llmner_chat_affixes", (None, None))
    if found is None or template != tokenizer.chat_template:
        try:
            found = _probe(tokenizer)
        except ValueError as err:
            found = err
        try:
            tokenizer._llmner_chat_affixes = (tokenizer.chat_template, found)
        except AttributeError:
            pass
    if isinstance(found, ValueError):
        raise ValueError(str(found))
    return found
