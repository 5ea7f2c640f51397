"""ReAct: tolerant parsing of English and Chinese replies, and the loop driven by scripted turns."""

from __future__ import annotations

from engine.agents.loops.base import AgentConfig
from engine.agents.loops.react import ReActLoop, parse_react
from engine.agents.toolbox import Toolbox
from engine.agents.tools.calculator import calculator_tool
from tests.agents.scripted import ScriptedClient


def test_parse_english_with_json_input_and_a_self_written_observation():
    parsed = parse_react(
        'Thought: I need to multiply.\nAction: calculator\nAction Input: {"expression": "3*4"}\n'
        "Observation: 12\nFinal Answer: 12"
    )
    assert (parsed.thought, parsed.action, parsed.action_input, parsed.final) == (
        "I need to multiply.",
        "calculator",
        '{"expression": "3*4"}',
        None,
    )


def test_parse_chinese_full_width_colons_bold_labels_and_fences():
    parsed = parse_react('思考：先算一下。\n**行动**：calculator\n行动输入：\n```json\n{"expression": "2+5"}\n```')
    assert (parsed.thought, parsed.action, parsed.action_input) == ("先算一下。", "calculator", '{"expression": "2+5"}')
    assert parse_react("思考：知道了\n最终答案：七").final == "七"
    assert parse_react("final answer: 42").final == "42"


def test_parse_inline_call_and_final_answer_before_action():
    parsed = parse_react("Thought: easy\nAction: calculator[2 + 2]")
    assert (parsed.action, parsed.action_input) == ("calculator", "2 + 2")
    parsed = parse_react("Final Answer: 5\nAction: calculator")
    assert parsed.final == "5" and parsed.action == ""


def run(*replies, language="en", max_steps=8):
    client = ScriptedClient(*replies)
    loop = ReActLoop(client, Toolbox([calculator_tool()]), AgentConfig(language=language, max_steps=max_steps))
    return loop.run("question"), client


def test_loop_runs_a_plain_text_input_answers_and_stops_at_observation():
    trace, client = run(
        "Thought: multiply\nAction: calculator\nAction Input: 6*7", "Thought: I know it\nFinal Answer: 42"
    )
    assert trace.status == "answered" and trace.answer == "42"
    assert trace.steps[0].arguments == {"expression": "6*7"} and trace.steps[0].observation == "42"
    assert client.requests[1]["messages"][-1]["content"] == "Observation: 42"
    assert "\nObservation:" in client.requests[0]["stop"]
    system = client.requests[0]["messages"][0]["content"]
    assert "calculator" in system and "Final Answer" in system


def test_chinese_prompt_and_a_reply_without_format_gets_a_reminder():
    trace, client = run(
        "我觉得答案可能是七", "思考：用工具\n行动：calculator\n行动输入：3+4", "最终答案：7", language="zh"
    )
    assert trace.steps[0].kind == "error" and "最终答案" in trace.steps[0].error
    assert trace.steps[1].observation == "7" and trace.answer == "7"
    assert "尽你所能" in client.requests[0]["messages"][0]["content"]
    assert client.requests[2]["messages"][-1]["content"] == "观察：7"


def test_unknown_tool_and_repeats_end_cleanly():
    trace, _ = run(
        "Action: browser\nAction Input: {}",
        "Action: calculator\nAction Input: 1+1",
        "Action: calculator\nAction Input: 1+1",
    )
    assert "'browser' does not exist" in trace.steps[0].observation
    assert trace.status == "repeated_call"


def test_max_steps_on_a_model_that_never_follows_the_format():
    trace, client = run("hmm", "hmm?", "hmm!", max_steps=3)
    assert trace.status == "max_steps" and len(client.requests) == 3
