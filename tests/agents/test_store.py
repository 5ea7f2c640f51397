"""Agent runs in a real SQLite store: saved, listed, rated, and exported as an SFT dataset that the finetune
data loader reads back with its tool calls, registered with lineage to the runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app import agents
from engine.agents import AgentConfig, FunctionCallingLoop, Toolbox
from engine.agents.model import Reply
from engine.agents.tools.calculator import calculator_tool
from engine.finetune.data import load_examples
from tests.agents.scripted import ScriptedClient, call


def a_trace(question: str, *replies) -> dict:
    loop = FunctionCallingLoop(ScriptedClient(*replies), Toolbox([calculator_tool()]), AgentConfig(max_steps=3))
    return loop.run(question).to_dict()


def test_save_list_rate_and_export(home: Path):
    first_turn = Reply(tool_calls=[call("calculator", '{"expression": "12*12"}', "c1")], tokens=20)
    good = agents.save_run(home, a_trace("12*12?", first_turn, "144"))
    same_call = Reply(tool_calls=[call("calculator", '{"expression": "1"}')])
    looping = agents.save_run(home, a_trace("loop", same_call, same_call, same_call))
    assert (good.status, good.steps, good.tokens, good.tools) == ("answered", 2, 30, ["calculator"])
    assert looping.status == "repeated_call"
    assert [r.id for r in agents.list_runs(home)] == [looping.id, good.id]
    agents.rate_run(home, good.id, 5)
    assert [r.id for r in agents.list_runs(home, min_rating=4)] == [good.id]
    with pytest.raises(ValueError, match="rating"):
        agents.rate_run(home, good.id, 9)
    with pytest.raises(ValueError, match="without an answer"):
        agents.export_sft_dataset(home, [good.id, looping.id], "tool-sft")

    dataset = agents.export_sft_dataset(home, [good.id], "tool-sft")
    assert dataset.rows == 1 and dataset.format == "messages" and dataset.inputs == [f"agent_run:{good.id}"]
    record = json.loads(Path(dataset.path).read_text(encoding="utf-8"))
    assert record["tools"][0]["function"]["name"] == "calculator"
    fmt, examples = load_examples(dataset.path)
    assert fmt == "messages"
    roles = [m["role"] for m in examples[0].messages]
    assert roles == ["user", "assistant", "tool", "assistant"]
    assert examples[0].messages[1]["tool_calls"][0]["function"]["arguments"] == '{"expression": "12*12"}'
    assert examples[0].messages[2]["content"] == "144"
    with pytest.raises(ValueError, match="already exists"):
        agents.export_sft_dataset(home, [good.id], "tool-sft")
    with pytest.raises(LookupError, match="no agent run with id 999"):
        agents.get_run(home, 999)
