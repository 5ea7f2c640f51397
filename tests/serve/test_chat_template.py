"""Chat prompts: the model's template, tools through it or through the fallback system prompt."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from engine.serve.chat_template import build_chat_prompt, template_handles_tools
from engine.serve.protocol import APIError, ChatMessage, Tool

TOOLS = [Tool.model_validate({"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})]

# A minimal tool-aware template in the style of Qwen2.5's: tools rendered by the template itself.
TOOL_AWARE_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTOOLS:{% for t in tools %}{{ t | tojson }}{% endfor %}<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
    "{% for c in m.tool_calls or [] %}CALL {{ c.function.name }} {{ c.function.arguments | tojson }}{% endfor %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer(bundled_model_dir):
    return AutoTokenizer.from_pretrained(str(bundled_model_dir))


def msgs(*pairs):
    return [ChatMessage(role=r, content=c) for r, c in pairs]


def test_model_template_is_used(tokenizer):
    text = build_chat_prompt(tokenizer, msgs(("user", "hi")))
    assert text == tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                                 add_generation_prompt=True)


def test_tools_go_to_the_system_prompt_when_the_template_ignores_them(tokenizer):
    assert not template_handles_tools(tokenizer)  # SmolLM2's template drops `tools`
    text = build_chat_prompt(tokenizer, msgs(("system", "Be brief."), ("user", "Weather in Paris?")), TOOLS)
    assert text.startswith("<|im_start|>system\nBe brief.\n\n# Tools")
    assert json.dumps(TOOLS[0].model_dump(exclude_none=True)) in text
    assert "<tool_call>" in text and text.endswith("<|im_start|>assistant\n")


def test_tool_history_is_rendered_as_hermes_text(tokenizer):
    history = [
        ChatMessage(role="user", content="Weather in Paris?"),
        ChatMessage.model_validate({"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}),
        ChatMessage(role="tool", content='{"temp": 21}', tool_call_id="c1"),
    ]
    text = build_chat_prompt(tokenizer, history, TOOLS)
    call = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    assert f"<|im_start|>assistant\n<tool_call>\n{call}\n</tool_call>" in text
    assert '<|im_start|>user\n<tool_response>\n{"temp": 21}\n</tool_response><|im_end|>' in text


def test_tool_aware_template_gets_tools_and_argument_objects(tokenizer):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    tokenizer.chat_template = TOOL_AWARE_TEMPLATE
    history = [ChatMessage(role="user", content="hi"), ChatMessage.model_validate({
        "role": "assistant", "tool_calls": [{"function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]})]
    text = build_chat_prompt(tokenizer, history, TOOLS)
    assert text.startswith('<|im_start|>system\nTOOLS:{"type": "function"')
    assert 'CALL get_weather {"city": "Oslo"}' in text  # a dict, not a double-encoded string
    assert "# Tools" not in text


def test_fallback_template_when_the_model_has_none(tokenizer):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    tokenizer.chat_template = None
    text = build_chat_prompt(tokenizer, msgs(("developer", "Rules."), ("user", "hi")), prefill="{")
    assert text == "<|im_start|>system\nRules.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n{"


def test_non_text_parts_are_refused(tokenizer):
    message = ChatMessage.model_validate({"role": "user", "content": [
        {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "x"}}]})
    with pytest.raises(APIError) as err:
        build_chat_prompt(tokenizer, [message])
    assert err.value.param == "messages"


def test_template_errors_become_400(tokenizer):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    tokenizer.chat_template = "{{ raise_exception('roles must alternate') }}"
    with pytest.raises(APIError) as err:
        build_chat_prompt(tokenizer, msgs(("user", "hi")))
    assert err.value.status == 400 and "roles must alternate" in err.value.message
