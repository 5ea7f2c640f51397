"""Put OpenAI-style messages and tools into the shape a model's chat template can render.

Serving (the prompt for a chat completion) and finetuning (the text a tool-calling sample trains on) must agree
on how a conversation with tools looks to the model, or a model trained on agent runs would be asked in one
format and have learned another. Both go through here. Templates that render `tools` and `tool_calls` get them
as they are; a template that ignores them (SmolLM2's does) would silently drop them, so for such templates the
tool schemas go into the system message in the Hermes format, assistant tool calls become `<tool_call>` text
and tool results become `<tool_response>` user turns.

Plain dicts in, plain dicts out: no protocol types, no torch.
"""

from __future__ import annotations

import json
from typing import Any

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


def template_text(tokenizer) -> str:
    """The tokenizer's own template text (named templates joined); empty when it has none."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        return "\n".join(template.values())
    return template or ""


def template_handles_tools(tokenizer) -> bool:
    """Whether the tokenizer's template renders `tools` itself (else they go in as Hermes text)."""
    return "tools" in template_text(tokenizer)


def arguments_object(arguments: Any) -> Any:
    """Call arguments as an object: templates render them with `tojson`, so a JSON string would be encoded twice."""
    if not isinstance(arguments, str):
        return arguments
    try:
        return json.loads(arguments)
    except json.JSONDecodeError:
        return arguments


def tool_call_text(call: dict[str, Any]) -> str:
    """One OpenAI tool call ({function: {name, arguments}}) as the Hermes JSON inside `<tool_call>` tags."""
    function = call["function"]
    return json.dumps(
        {"name": function["name"], "arguments": arguments_object(function.get("arguments", {}))}, ensure_ascii=False
    )


def to_template_message(message: dict[str, Any], tool_aware: bool) -> dict[str, Any]:
    """One OpenAI message as the template should see it (Hermes text when the template ignores tools)."""
    role = "system" if message["role"] == "developer" else message["role"]
    content = message.get("content") or ""
    tool_calls = message.get("tool_calls") or []
    if tool_calls and not tool_aware:
        content += "".join(f"\n<tool_call>\n{tool_call_text(c)}\n</tool_call>" for c in tool_calls)
        return {"role": role, "content": content.lstrip("\n")}
    if role == "tool" and not tool_aware:
        return {"role": "user", "content": f"<tool_response>\n{content}\n</tool_response>"}
    out: dict[str, Any] = {"role": role, "content": content}
    if tool_calls:
        out["tool_calls"] = [
            {
                "id": c.get("id"),
                "type": "function",
                "function": {
                    "name": c["function"]["name"],
                    "arguments": arguments_object(c["function"].get("arguments", {})),
                },
            }
            for c in tool_calls
        ]
    for key in ("tool_call_id", "name"):
        if message.get(key) is not None:
            out[key] = message[key]
    return out


def add_to_system(messages: list[dict[str, Any]], text: str) -> None:
    """Append text to the first system message, or open the conversation with one."""
    if messages and messages[0]["role"] == "system":
        messages[0] = {**messages[0], "content": f"{messages[0]['content']}\n\n{text}".lstrip()}
    else:
        messages.insert(0, {"role": "system", "content": text})


def template_messages(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, tool_aware: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """(messages, tools) to hand `apply_chat_template`: for a template that ignores tools, the tool schemas are
    in the first system message and the returned tools are None."""
    rendered = [to_template_message(m, tool_aware) for m in messages]
    if tools and not tool_aware:
        schemas = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
        add_to_system(rendered, TOOLS_SYSTEM_PROMPT.format(tools=schemas))
        return rendered, None
    return rendered, tools or None
