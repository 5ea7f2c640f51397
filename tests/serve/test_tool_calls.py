"""The Hermes tool-call parser, whole and streamed in every possible split."""

from __future__ import annotations

import json

import pytest

from engine.serve.tool_calls import StreamingToolCallParser, parse_tool_calls

CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}\n</tool_call>'


def stream(text: str, cuts: list[int]):
    """Feed text cut at the given positions; return (content, calls) as a client would assemble them."""
    parser = StreamingToolCallParser()
    content, calls, start = "", [], 0
    for cut in [*cuts, len(text)]:
        piece, new_calls = parser.feed(text[start:cut])
        content, calls, start = content + piece, calls + new_calls, cut
    tail, last = parser.finish()
    return content + tail, calls + last


def test_plain_text_passes_through():
    assert parse_tool_calls("Hello, world.") == ("Hello, world.", [])


def test_one_call():
    content, calls = parse_tool_calls(CALL)
    assert content is None
    assert [c.function.name for c in calls] == ["get_weather"]
    assert json.loads(calls[0].function.arguments) == {"city": "Paris", "unit": "c"}
    assert calls[0].id.startswith("call-") and calls[0].type == "function"


def test_text_and_two_calls():
    second = CALL.replace("Paris", "Oslo")
    content, calls = parse_tool_calls(f"Let me check.\n{CALL}\n{second}\n")
    assert content == "Let me check."
    assert [json.loads(c.function.arguments)["city"] for c in calls] == ["Paris", "Oslo"]
    assert calls[0].id != calls[1].id


def test_string_arguments_and_parameters_alias():
    _, calls = parse_tool_calls('<tool_call>{"name": "f", "arguments": "{\\"x\\": 1}"}</tool_call>')
    assert calls[0].function.arguments == '{"x": 1}'
    _, calls = parse_tool_calls('<tool_call>{"name": "f", "parameters": {"x": 2}}</tool_call>')
    assert json.loads(calls[0].function.arguments) == {"x": 2}


def test_bad_json_stays_content():
    text = "<tool_call>{not json}</tool_call> done"
    assert parse_tool_calls(text) == (text, [])


def test_unclosed_call_at_end():
    content, calls = parse_tool_calls('<tool_call>\n{"name": "f", "arguments": {}}\n')
    assert content is None and calls[0].function.name == "f"
    truncated = '<tool_call>\n{"name": "f", "argu'
    assert parse_tool_calls(truncated) == (truncated, [])


# Code that mentions the closing tag (the bundled model wrote exactly this under the grammar).
TAG_IN_STRING = '<tool_call>{"name": "python", "arguments": {"code": ")(2, 3)}}</tool_call>  # 5"}}</tool_call>'


def test_a_closing_tag_inside_a_string_does_not_cut_the_call():
    content, calls = parse_tool_calls(TAG_IN_STRING)
    assert content is None and json.loads(calls[0].function.arguments) == {"code": ")(2, 3)}}</tool_call>  # 5"}
    unclosed = TAG_IN_STRING.removesuffix("</tool_call>")  # and with the real closing tag never written
    assert parse_tool_calls(unclosed)[1][0].function.arguments == calls[0].function.arguments


def test_a_broken_block_is_content_and_a_call_after_it_still_counts():
    content, calls = parse_tool_calls(f"<tool_call>{{broken</tool_call> then {CALL}")
    assert content == "<tool_call>{broken</tool_call> then" and [c.function.name for c in calls] == ["get_weather"]


def test_lookalike_tag_is_released():
    assert stream("a <tool_cal b", [5, 9]) == ("a <tool_cal b", [])
    assert stream("x <tool", [4]) == ("x <tool", [])


@pytest.mark.parametrize("text", [CALL, f"Sure. {CALL} and more", f"{CALL}\n{CALL}", "no calls here <b>",
                                  TAG_IN_STRING, f"<tool_call>{{broken</tool_call> then {CALL}"])
def test_every_two_cut_split_matches_whole(text):
    whole_content, whole_calls = parse_tool_calls(text)
    whole = (whole_content or "", [(c.function.name, c.function.arguments) for c in whole_calls])
    for a in range(len(text) + 1):
        for b in range(a, len(text) + 1, 7):
            content, calls = stream(text, [a, b])
            got = (content.strip() if calls else content, [(c.function.name, c.function.arguments) for c in calls])
            assert got == whole, (a, b)


def test_streaming_never_shows_part_of_a_tag():
    parser = StreamingToolCallParser()
    shown = ""
    for ch in f"Hi {CALL}":
        shown += parser.feed(ch)[0]
        assert "<" not in shown
    assert shown == "Hi"
