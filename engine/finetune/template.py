"""Render a conversation through the model's own chat template and mark which tokens are trained.

Only assistant turns carry loss. The trained character spans are found by rendering growing prefixes of the
conversation (what the template adds for turn i is the difference between two renders); the rendered text is
then tokenized once with offsets, so a token is trained when it overlaps a trained span. That works for any
template whose renders are prefix-stable (ChatML, Llama 3, Mistral, Gemma …); for the others the assistant
contents are located in the full render instead. Base models without a template get a plain fallback one,
which is saved with the merged model so chat uses the format it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def _render(tokenizer, messages: list[dict], generation_prompt: bool = False) -> str:
    if not messages and not generation_prompt:
        return ""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def trained_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """(full rendered text, character spans of the assistant answers, end-of-turn markers included)."""
    full = _render(tokenizer, messages)
    spans = []
    try:
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            before = _render(tokenizer, messages[:i], generation_prompt=True)
            upto = _render(tokenizer, messages[: i + 1])
            if not (full.startswith(upto) and upto.startswith(before)):
                raise LookupError
            spans.append((len(before), len(upto)))
    except LookupError:
        spans = _search_spans(tokenizer, full, messages)
    return full, spans


def _search_spans(tokenizer, full: str, messages: list[dict]) -> list[tuple[int, int]]:
    """Templates that rewrite earlier turns: find each answer's text in order, plus an EOS right after it."""
    spans, cursor = [], 0
    eos = tokenizer.eos_token or ""
    for message in messages:
        content = message["content"].strip()
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


def tokenize_conversation(tokenizer, messages: list[dict], max_len: int) -> Tokenized:
    """Token ids and labels (assistant tokens only), truncated to max_len."""
    full, spans = trained_spans(tokenizer, messages)
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


def preview(tokenizer, messages: list[dict], max_len: int = 4096) -> list[tuple[str, bool]]:
    """(token text, trained?) for every token of one sample: the token-level mask view."""
    sample = tokenize_conversation(tokenizer, messages, max_len)
    return [(tokenizer.decode([tok]), label != IGNORE) for tok, label in zip(sample.input_ids, sample.labels,
                                                                             strict=True)]
