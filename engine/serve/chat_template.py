"""Turn OpenAI chat messages (and tools) into the one prompt string the model was trained on.

The model's own chat template is used through `tokenizer.apply_chat_template(..., tools=...)`. Two gaps are
filled here so every model can chat and call tools:
- a model with no template gets a plain ChatML one;
- a template that ignores `tools` (SmolLM2's does) would silently drop them, so for such templates the tool
  schemas go into the system message in the Hermes format (the one tool_calls.py parses), earlier assistant
  tool calls become `<tool_call>` text and tool results become `<tool_response>` user turns.
"""

from __future__ import annotations

import json
from typing import Any

import jinja2

from engine.serve.protocol import APIError, ChatMessage, Tool

FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TOOLS_SYSTEM_PROMPT = """# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{tools}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> \
XML tags:
<tool_call>
{{"name": <function-name>, "arguments": <args-json-object>}}
</tool_call>"""


def template_of(tokenizer) -> str:
    """The template text the tokenizer will use (named templates joined), or the fallback."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        return "\n".join(template.values())
    return template or FALLBACK_CHAT_TEMPLATE


def template_handles_tools(tokenizer) -> bool:
    return "tools" in template_of(tokenizer)


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


def _arguments_object(arguments: str) -> Any:
    # Templates render arguments with `tojson`; a dict keeps them from being double-encoded.
    try:
        return json.loads(arguments)
    except json.JSONDecodeError:
        return arguments


def _to_template_message(message: ChatMessage, tool_aware: bool) -> dict[str, Any]:
    role = "system" if message.role == "developer" else message.role
    content = _text_of(message)
    if message.tool_calls and not tool_aware:
        calls = [json.dumps({"name": c.function.name, "arguments": _arguments_object(c.function.arguments)},
                            ensure_ascii=False) for c in message.tool_calls]
        content += "".join(f"\n<tool_call>\n{c}\n</tool_call>" for c in calls)
        return {"role": role, "content": content.lstrip("\n")}
    if role == "tool" and not tool_aware:
        return {"role": "user", "content": f"<tool_response>\n{content}\n</tool_response>"}
    out: dict[str, Any] = {"role": role, "content": content}
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function",
             "function": {"name": c.function.name, "arguments": _arguments_object(c.function.arguments)}}
            for c in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        out["name"] = message.name
    return out


def _add_to_system(messages: list[dict[str, Any]], text: str) -> None:
    if messages and messages[0]["role"] == "system":
        messages[0]["content"] = f"{messages[0]['content']}\n\n{text}".lstrip()
    else:
        messages.insert(0, {"role": "system", "content": text})


def build_chat_prompt(tokenizer, messages: list[ChatMessage], tools: list[Tool] | None = None,
                      system_extra: str | None = None, prefill: str = "") -> str:
    """Render messages (+ tools, + extra system instructions) and open the assistant turn with `prefill`."""
    tool_aware = template_handles_tools(tokenizer)
    rendered = [_to_template_message(m, tool_aware) for m in messages]
    tool_dicts = [t.model_dump(exclude_none=True) for t in tools] if tools else None
    if tool_dicts and not tool_aware:
        schemas = "\n".join(json.dumps(t, ensure_ascii=False) for t in tool_dicts)
        _add_to_system(rendered, TOOLS_SYSTEM_PROMPT.format(tools=schemas))
        tool_dicts = None
    if system_extra:
        _add_to_system(rendered, system_extra)
    try:
        text = tokenizer.apply_chat_template(
            rendered, tools=tool_dicts, add_generation_prompt=True, tokenize=False,
            chat_template=None if getattr(tokenizer, "chat_template", None) else FALLBACK_CHAT_TEMPLATE,
        )
    except jinja2.TemplateError as exc:
        raise APIError(f"the chat template rejected these messages: {exc}", param="messages") from exc
    return text + prefill
