"""Plan-then-execute: plan parsing, evidence references, and the solver seeing every observation."""

from __future__ import annotations

from engine.agents.loops.base import AgentConfig
from engine.agents.loops.plan_execute import PlanExecuteLoop, parse_plan
from engine.agents.toolbox import Toolbox
from engine.agents.tools.calculator import calculator_tool
from tests.agents.scripted import ScriptedClient

PLAN = """Plan: multiply the boxes
#E1 = calculator[{"expression": "12 * 4"}]
Plan: add the spare ones
#E2 = calculator[#E1 + 5]"""


def test_parse_plan_reads_calls_and_their_purposes():
    plan = parse_plan(PLAN)
    assert [(c.label, c.tool, c.arguments, c.purpose) for c in plan] == [
        ("#E1", "calculator", '{"expression": "12 * 4"}', "multiply the boxes"),
        ("#E2", "calculator", "#E1 + 5", "add the spare ones"),
    ]


def run(*replies, max_steps=8, language="en"):
    client = ScriptedClient(*replies)
    loop = PlanExecuteLoop(client, Toolbox([calculator_tool()]), AgentConfig(max_steps=max_steps, language=language))
    return loop.run("How many?"), client


def test_plan_workers_and_solver():
    trace, client = run(PLAN, "53")
    assert [s.kind for s in trace.steps] == ["plan", "tool", "tool", "answer"]
    assert trace.steps[2].arguments == {"expression": "48 + 5"} and trace.steps[2].observation == "53"
    assert trace.answer == "53" and trace.status == "answered"
    solver = client.requests[1]["messages"][0]["content"]
    assert "Evidence: 48" in solver and "Evidence: 53" in solver


def test_missing_evidence_and_tool_errors_reach_the_solver():
    trace, client = run("Plan: x\n#E1 = calculator[#E3 * 2]\nPlan: y\n#E2 = calculator[1/0]", "cannot tell")
    assert "refers to #E3" in trace.steps[1].observation
    assert "divides by zero" in trace.steps[2].observation
    assert "divides by zero" in client.requests[1]["messages"][0]["content"]


def test_no_plan_and_too_long_a_plan_end_the_run():
    trace, _ = run("I would just answer 5.")
    assert trace.status == "error" and "#E1 = tool[arguments]" in trace.message
    trace, _ = run(PLAN, max_steps=1)
    assert trace.status == "max_steps" and [s.kind for s in trace.steps] == ["plan", "tool", "error"]


def test_chinese_planner_prompt():
    _, client = run(PLAN, "53", language="zh")
    assert "计划" in client.requests[0]["messages"][0]["content"]
