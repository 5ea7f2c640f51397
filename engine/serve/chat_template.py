"""Turn OpenAI chat messages (and tools) into the one prompt string the model was trained on.

The model's own chat template is used through `tokenizer.apply_chat_template(..., tools=...)`. Two gaps are
filled here so every model can chat and call tools:
- a model with no template gets a plain ChatML one;
- a template that ignores `tools` (SmolLM2's does) would silently drop them, so for such templates the tool
  schemas go into the system message in the Hermes format (the one tool_calls.py parses), earlier assistant
  tool calls become `<tool_call>` text and tool results become `<tool_response>` user turns. That conversion
  lives in engine/chat_format.py, shared with finetuning so a model trains on the format it is served in;
  this module adds the protocol side (content parts to text, errors as APIError).
"""

from __future__ import annotations

from typing import Any

import jinja2

from engine.chat_format import add_to_system, template_handles_tools, template_messages
from engine.serve.protocol import APIError, ChatMessage, Tool

FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _text_of(message: ChatMessage) -> str:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    parts = []
    for part in message.content:
        if part.type != "text" or part.text is None:
            raise APIError(f"content parts of type {part.type!r} are not supported; send text", param="messages")
        parts.append(part.text)
    return "".join(parts)


def _to_dict(message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": _text_of(message)}
    if message.tool_calls:
        out["tool_calls"] = [c.model_dump() for c in message.tool_calls]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        out["name"] = message.name
    return out


def build_chat_prompt(
    tokenizer,
    messages: list[ChatMessage],
    tools: list[Tool] | None = None,
    system_extra: str | None = None,
    prefill: str = "",
) -> str:
    """Render messages (+ tools, + extra system instructions) and open the assistant turn with `prefill`."""
    tool_dicts = [t.model_dump(exclude_none=True) for t in tools] if tools else None
    rendered, tool_dicts = template_messages(
        [_to_dict(m) for m in messages], tool_dicts, template_handles_tools(tokenizer)
    )
    if system_extra:
        add_to_system(rendered, system_extra)
    try:
        text = tokenizer.apply_chat_template(
            rendered,
            tools=tool_dicts,
            add_generation_prompt=True,
            tokenize=False,
            chat_template=None if getattr(tokenizer, "chat_template", None) else FALLBACK_CHAT_TEMPLATE,
        )
    except jinja2.TemplateError as exc:
        raise APIError(f"the chat template rejected these messages: {exc}", param="messages") from exc
    return text + prefill
