"""GSM8K with the Python tool, scored on real items with scripted turns and the real sandboxed Python tool:
a run that computes and answers right, one that answers without the tool and wrongly, one whose code fails."""

from __future__ import annotations

import json

from engine.agents.bench import gsm8k_tool
from engine.agents.model import Reply, ToolCallRequest
from engine.eval.tasks import get_task
from tests.agents.scripted import ScriptedClient


def python_call(code: str) -> Reply:
    return Reply(tool_calls=[ToolCallRequest("python", json.dumps({"code": code}))])


def test_answer_action_code_and_follow_metrics(tmp_path):
    items = get_task("gsm8k_tool").docs("test")[:3]
    assert len(items) == 3 and all(gsm8k_tool.last_number(i["answer"]) is not None for i in items)
    first = items[0]["answer"]
    client = ScriptedClient(
        python_call(f"print({first})"),
        f"The answer is {first}.",  # computes, answers right
        "The answer is 123456789.",  # no tool, wrong
        python_call("1/0"),
        python_call("raise ValueError('still wrong')"),  # broken code, then out of steps
    )
    scores = gsm8k_tool.evaluate(client, tmp_path, items, max_steps=2)
    assert [r["status"] for r in scores.runs] == ["answered", "answered", "max_steps"]
    assert scores.metrics() == {
        "answer_accuracy": 1 / 3,
        "action_rate": 2 / 3,
        "code_accuracy": 1 / 2,
        "follow_rate": 2 / 3,
    }
    assert gsm8k_tool.last_number("so 1,234.5 in total.") == 1234.5
