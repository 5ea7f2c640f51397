"""Tool-calling samples train the calls and the answer, never the tool results: with SmolLM2's own template
(which ignores `tools`, so the Hermes text the server also uses is rendered), with a template that renders
`tools`/`tool_calls` itself, with one that rewrites history, and from a real agents export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from app import agents
from engine.agents import AgentConfig, FunctionCallingLoop, Toolbox
from engine.agents.model import Reply
from engine.agents.tools.calculator import calculator_tool
from engine.finetune.data import DataError, load_examples
from engine.finetune.packing import sft_samples
from engine.finetune.template import IGNORE, preview
from engine.serve.chat_template import build_chat_prompt
from engine.serve.protocol import ChatMessage, Tool
from tests.agents.scripted import ScriptedClient, call

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": "18C and sunny"},
    {"role": "assistant", "content": "It is 18C and sunny."},
]
TRAINED = (
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n'
    "It is 18C and sunny.<|im_end|>\n"
)
# ChatML that renders `tools` in its system turn and `tool_calls` in assistant turns itself (Qwen-2.5's shape).
TOOL_AWARE = (
    "{% if tools %}<|im_start|>system\n{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}\n\n"
    "{% endif %}# Functions\n<tools>{% for t in tools %}\n{{ t | tojson }}{% endfor %}\n</tools><|im_end|>\n"
    "{% elif messages[0]['role'] == 'system' %}<|im_start|>system\n{{ messages[0]['content'] }}<|im_end|>\n"
    "{% endif %}"
    "{% for m in messages %}{% if m['role'] == 'system' and loop.first %}"
    "{% elif m['role'] == 'assistant' %}<|im_start|>assistant\n{{ m['content'] }}"
    "{% for c in m['tool_calls'] or [] %}<tool_call>\n"
    '{"name": "{{ c.function.name }}", "arguments": {{ c.function.arguments | tojson }}}\n</tool_call>'
    "{% endfor %}<|im_end|>\n"
    "{% elif m['role'] == 'tool' %}<|im_start|>user\n<tool_response>\n{{ m['content'] }}\n</tool_response>"
    "<|im_end|>\n"
    "{% else %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Tool-aware (it mentions tools) and drops earlier answers, so spans are found by search; the tool-call turn's
# content is empty there.
FORGETFUL_TOOLS = (
    "{# tools are not shown #}{% for m in messages %}{% if m['role'] != 'assistant' or loop.last %}"
    "<{{ m['role'] }}>{{ m['content'] }}</s>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


@pytest.fixture
def tokenizer(bundled_model_dir):
    return AutoTokenizer.from_pretrained(str(bundled_model_dir))


def split(view: list[tuple[str, bool]]) -> tuple[str, str]:
    """(trained text, masked text) of a token mask view."""
    return "".join(t for t, on in view if on), "".join(t for t, on in view if not on)


def test_hermes_tool_turns_train_the_call_and_the_answer(tokenizer):
    trained, masked = split(preview(tokenizer, CONVERSATION, tools=TOOLS))
    assert trained == TRAINED
    assert "<tool_response>\n18C and sunny\n</tool_response>" in masked
    assert "Be brief.\n\n# Tools" in masked and '"name": "get_weather", "description"' in masked
    assert "Weather in Paris?" in masked


def test_training_text_is_the_servers_prompt(tokenizer):
    """A model trained on an exported run is prompted in the same format when served."""
    served = build_chat_prompt(
        tokenizer, [ChatMessage.model_validate(m) for m in CONVERSATION[:-1]], [Tool.model_validate(t) for t in TOOLS]
    )
    rendered = "".join(t for t, _ in preview(tokenizer, CONVERSATION, tools=TOOLS))
    assert rendered.startswith(served)


def test_tool_aware_template_gets_tools_and_calls(tokenizer):
    tokenizer.chat_template = TOOL_AWARE
    trained, masked = split(preview(tokenizer, CONVERSATION, tools=TOOLS))
    assert trained == TRAINED
    assert 'Be brief.\n\n# Functions\n<tools>{"type": "function"' in masked and "You may call" not in masked
    assert "<tool_response>\n18C and sunny\n</tool_response>" in masked


def test_search_fallback_takes_tool_turns_with_no_content(tokenizer):
    tokenizer.chat_template = FORGETFUL_TOOLS
    trained, masked = split(preview(tokenizer, CONVERSATION, tools=TOOLS))
    assert trained == "It is 18C and sunny."
    assert "18C and sunny</s>" in masked


def test_agents_export_trains_its_tool_calls(home: Path, tokenizer):
    trace = FunctionCallingLoop(
        ScriptedClient(Reply(tool_calls=[call("calculator", '{"expression": "12*12"}', "c1")], tokens=20), "144"),
        Toolbox([calculator_tool()]),
        AgentConfig(max_steps=3),
    ).run("12*12?")
    run = agents.save_run(home, trace.to_dict())
    dataset = agents.export_sft_dataset(home, [run.id], "tool-sft")
    _, examples = load_examples(dataset.path)
    assert examples[0].tools[0]["function"]["name"] == "calculator"
    view = preview(tokenizer, examples[0].messages, tools=examples[0].tools)
    trained, masked = split(view)
    assert trained.startswith('<tool_call>\n{"name": "calculator", "arguments": {"expression": "12*12"}}\n</tool_call>')
    assert trained.endswith("144<|im_end|>\n")
    assert '"name": "calculator"' in masked and "<tool_response>" in masked
    (sample,) = sft_samples(tokenizer, examples, 4096)  # training packs the same tokens, tools included
    assert [
        (tokenizer.decode([t]), label != IGNORE) for t, label in zip(sample.input_ids, sample.labels, strict=True)
    ] == view


@pytest.mark.parametrize(
    "record, message",
    [
        ({"tools": {"name": "x"}}, r"field 'tools' must be a list"),
        ({"tools": [{"type": "function"}]}, r"field tools\[0\] must be"),
        ({"tools": "[oops"}, r"field 'tools' is not valid JSON"),
        ({"bad_call": {"function": {"arguments": "{}"}}}, r"field messages\[1\]\.tool_calls\[0\] must be"),
        (
            {"bad_call": {"function": {"name": "f", "arguments": 3}}},
            r"field messages\[1\]\.tool_calls\[0\]\.function\.arguments must",
        ),
    ],
)
def test_bad_tools_and_calls_name_the_field(tmp_path: Path, record: dict, message: str):
    calls = [record.pop("bad_call")] if "bad_call" in record else [CALL]
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "", "tool_calls": calls}]
    path = tmp_path / "tools.jsonl"
    path.write_text(json.dumps({"messages": messages, **record}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"tools.jsonl: line 1: {message}"):
        load_examples(path)
