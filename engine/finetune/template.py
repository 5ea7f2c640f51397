"""Render a conversation through the model's own chat template and mark which tokens are trained.

Only assistant turns carry loss. The trained character spans are found by rendering growing prefixes of the
conversation (what the template adds for turn i is the difference between two renders); the rendered text is
then tokenized once with offsets, so a token is trained when it overlaps a trained span. That works for any
template whose renders are prefix-stable (ChatML, Llama 3, Mistral, Gemma …); for the others the assistant
contents are located in the full render instead. Base models without a template get a plain fallback one,
which is saved with the merged model so chat uses the format it was trained on.

Tool-calling samples (a sample-level `tools` list, assistant turns with `tool_calls`, `tool` results) go through
engine/chat_format.py, the conversion the server uses for its prompts: a template that renders tools gets them
as they are; for one that ignores them the schemas join the first system message and calls/results become
Hermes `<tool_call>`/`<tool_response>` text. Either way an assistant turn's calls are trained and tool results
are not, and because the tools sit in the first system message of every prefix render, prefixes stay stable.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.chat_format import template_handles_tools, template_messages

IGNORE = -100

# For base models: plain role headers, and the EOS after each answer so the model learns to stop.
FALLBACK_TEMPLATE = (
    "{% for message in messages %}### {{ message['role'] | capitalize }}:\n{{ message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}\n\n{% endfor %}"
    "{% if add_generation_prompt %}### Assistant:\n{% endif %}"
)


@dataclass
class Tokenized:
    """A tokenized training sample: ids, and labels with IGNORE where no loss is taken."""

    input_ids: list[int]
    """Token ids."""
    labels: list[int]
    """Same length; IGNORE for masked (non-assistant) tokens."""


def ensure_chat_template(tokenizer) -> bool:
    """Give a template-less tokenizer the fallback template; True when it had to."""
    if tokenizer.chat_template:
        return False
    tokenizer.chat_template = FALLBACK_TEMPLATE
    return True


def _render(tokenizer, messages: list[dict], tools: list[dict] | None, generation_prompt: bool = False) -> str:
    if not messages and not generation_prompt:
        return ""
    return tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=generation_prompt)


def trained_spans(
    tokenizer, messages: list[dict], tools: list[dict] | None = None
) -> tuple[str, list[tuple[int, int]]]:
    """(full rendered text, character spans of the assistant turns — answers and tool calls — end-of-turn
    markers included)."""
    messages, tools = template_messages(messages, tools, template_handles_tools(tokenizer))
    full = _render(tokenizer, messages, tools)
    spans = []
    try:
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            before = _render(tokenizer, messages[:i], tools, generation_prompt=True)
            upto = _render(tokenizer, messages[: i + 1], tools)
            if not (full.startswith(upto) and upto.startswith(before)):
                raise LookupError
            spans.append((len(before), len(upto)))
    except LookupError:
        spans = _search_spans(tokenizer, full, messages)
    return full, spans


def _search_spans(tokenizer, full: str, messages: list[dict]) -> list[tuple[int, int]]:
    """Templates that rewrite earlier turns: find each answer's text in order, plus an EOS right after it.

    A tool-call turn of a tool-aware template has no text of its own to find (its calls are rendered by the
    template's own markup), so only its content, if any, is trained here."""
    spans, cursor = [], 0
    eos = tokenizer.eos_token or ""
    for message in messages:
        content = (message.get("content") or "").strip()
        if not content:
            continue
        start = full.find(content, cursor)
        if start < 0:
            continue
        end = start + len(content)
        cursor = end
        if message["role"] == "assistant":
            if eos and full.startswith(eos, end):
                end += len(eos)
            spans.append((start, end))
    return spans


def tokenize_conversation(tokenizer, messages: list[dict], max_len: int, tools: list[dict] | None = None) -> Tokenized:
    """Token ids and labels (assistant tokens only), truncated to max_len; `tools` are the sample's tool schemas."""
    full, spans = trained_spans(tokenizer, messages, tools)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    labels = []
    for tok, (a, b) in zip(ids, offsets, strict=True):
        # Zero-width offsets happen for some special tokens: take their position instead.
        b = max(b, a + 1)
        labels.append(tok if any(a < end and b > start for start, end in spans) else IGNORE)
    return Tokenized(ids[:max_len], labels[:max_len])


def tokenize_text(tokenizer, text: str) -> list[int]:
    """A raw document for continued pretraining: its ids followed by EOS, so documents stay apart."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return bos + ids + eos


def preview(
    tokenizer, messages: list[dict], max_len: int = 4096, tools: list[dict] | None = None
) -> list[tuple[str, bool]]:
    """(token text, trained?) for every token of one sample: the token-level mask view."""
    sample = tokenize_conversation(tokenizer, messages, max_len, tools)
    return [
        (tokenizer.decode([tok]), label != IGNORE) for tok, label in zip(sample.input_ids, sample.labels, strict=True)
    ]
