"""Parse Hermes/Qwen-style tool calls, `<tool_call>{"name": ..., "arguments": ...}</tool_call>`, out of text.

This is the format Qwen2/2.5/3, Hermes and SmolLM3 templates teach their models, and the one our fallback
tool prompt (chat_template.py) asks for. One streaming parser serves both paths: a non-streaming response
feeds the whole text at once. While streaming it holds back any tail that may be the start of `<tool_call>`,
so a client never sees half a tag as content, and emits a call only once its closing tag (or the end of the
output) shows it complete. A call ends at the first `</tool_call>` after which its JSON is complete, so the tag
inside a string argument (code that prints it) does not cut the call short. A block whose JSON never parses is
given back as plain content, never lost.
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
        self.final = False  # the output has ended: a block that never parses ends at its first closing tag
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
                end, call = self._call_end()
                if end < 0:
                    break
                payload, self.buffer = self.buffer[:end], self.buffer[end + len(TOOL_CALL_END):]
                self.in_call = False
                if call is None:
                    content += TOOL_CALL_START + payload + TOOL_CALL_END
                else:
                    calls.append(call)
        self.num_calls += len(calls)
        return self._release(content), calls

    def _call_end(self) -> tuple[int, ToolCall | None]:
        """Where the open call's closing tag is (-1: not seen yet) and the call, None if its JSON is broken."""
        end = self.buffer.find(TOOL_CALL_END)
        first = end
        if self.final and _parse_call(self.buffer) is not None:
            return -1, None  # the whole rest is one call left unclosed; its tags sit inside strings
        while end >= 0:
            call = _parse_call(self.buffer[:end])
            if call is not None:
                return end, call
            end = self.buffer.find(TOOL_CALL_END, end + 1)
        # No closing tag completes the JSON. While streaming, the real one may still come (the tags so far sat
        # inside a string); once the output has ended, the block ends at its first tag and is content.
        return (first, None) if self.final else (-1, None)

    def finish(self) -> tuple[str, list[ToolCall]]:
        """The output ended: an unclosed call counts if its JSON is complete; anything else is content."""
        self.final = True
        content, calls = self.feed("")  # broken blocks that have a closing tag are cut there, and read past
        tail, last = "", []
        if self.in_call:
            call = _parse_call(self.buffer)
            if call is None:
                tail = TOOL_CALL_START + self.buffer
            else:
                last.append(call)
        else:
            tail = self.buffer
        self.buffer, self.in_call = "", False
        self.num_calls += len(last)
        released = content + self._release(tail)
        if self.num_calls == 0:
            released += self.pending_space
        self.pending_space = ""
        return released, calls + last

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
