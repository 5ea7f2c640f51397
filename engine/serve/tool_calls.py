"""Parse Hermes/Qwen-style tool calls, `<tool_call>{"name": ..., "arguments": ...}</tool_call>`, out of text.

This is the format Qwen2/2.5/3, Hermes and SmolLM3 templates teach their models, and the one our fallback
tool prompt (chat_template.py) asks for. One streaming parser serves both paths: a non-streaming response
feeds the whole text at once. While streaming it holds back any tail that may be the start of `<tool_call>`,
so a client never sees half a tag as content, and emits a call only once its closing tag (or the end of the
output) shows it complete. A block whose JSON does not parse is given back as plain content, never lost.
"""

from __future__ import annotations

import json

from engine.serve.protocol import FunctionCall, ToolCall

TOOL_CALL_START = "<tool_call>"
TOOL_CALL_END = "</tool_call>"


def _parse_call(payload: str) -> ToolCall | None:
    try:
        obj = json.loads(payload)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    # Some models write "parameters" where the format says "arguments".
    arguments = obj.get("arguments", obj.get("parameters", {}))
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    return ToolCall(function=FunctionCall(name=obj["name"], arguments=arguments))


def _partial_start_len(text: str) -> int:
    """Length of the longest suffix of text that is a proper prefix of `<tool_call>`."""
    for size in range(min(len(text), len(TOOL_CALL_START) - 1), 0, -1):
        if TOOL_CALL_START.startswith(text[-size:]):
            return size
    return 0


class StreamingToolCallParser:
    """Feed text deltas; get back (content to show now, tool calls completed now)."""

    def __init__(self) -> None:
        self.buffer = ""
        self.in_call = False
        self.num_calls = 0
        # Whitespace between or around calls is held so a pure tool-call answer shows no stray "\n" content.
        self.pending_space = ""

    def feed(self, text: str) -> tuple[str, list[ToolCall]]:
        self.buffer += text
        content, calls = "", []
        while True:
            if not self.in_call:
                start = self.buffer.find(TOOL_CALL_START)
                if start < 0:
                    keep = _partial_start_len(self.buffer)
                    content += self.buffer[: len(self.buffer) - keep]
                    self.buffer = self.buffer[len(self.buffer) - keep:]
                    break
                content += self.buffer[:start]
                self.buffer = self.buffer[start + len(TOOL_CALL_START):]
                self.in_call = True
            else:
                end = self.buffer.find(TOOL_CALL_END)
                if end < 0:
                    break
                payload, self.buffer = self.buffer[:end], self.buffer[end + len(TOOL_CALL_END):]
                self.in_call = False
                call = _parse_call(payload)
                if call is None:
                    content += TOOL_CALL_START + payload + TOOL_CALL_END
                else:
                    calls.append(call)
        self.num_calls += len(calls)
        return self._release(content), calls

    def finish(self) -> tuple[str, list[ToolCall]]:
        """The output ended: an unclosed call counts if its JSON is complete; anything else is content."""
        content, calls = "", []
        if self.in_call:
            call = _parse_call(self.buffer)
            if call is None:
                content = TOOL_CALL_START + self.buffer
            else:
                calls.append(call)
        else:
            content = self.buffer
        self.buffer, self.in_call = "", False
        self.num_calls += len(calls)
        released = self._release(content)
        if self.num_calls == 0:
            released += self.pending_space
        self.pending_space = ""
        return released, calls

    def _release(self, content: str) -> str:
        if not content:
            return ""
        if not content.strip():
            self.pending_space += content
            return ""
        content, self.pending_space = self.pending_space + content, ""
        return content


def parse_tool_calls(text: str) -> tuple[str | None, list[ToolCall]]:
    """Split a whole output into (content or None, tool calls); content is stripped when calls were found."""
    parser = StreamingToolCallParser()
    content, calls = parser.feed(text)
    tail, last = parser.finish()
    content, calls = content + tail, calls + last
    if calls:
        content = content.strip()
        return (content or None), calls
    return content, calls
