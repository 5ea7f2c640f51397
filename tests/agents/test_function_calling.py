"""The function-calling loop with scripted model turns and real tools: every way a turn can go wrong ends or
continues the run cleanly, with an observation that says what happened."""

from __future__ import annotations

import json
import threading
import time

from engine.agents.loops.base import AgentConfig
from engine.agents.loops.function_calling import FunctionCallingLoop
from engine.agents.model import Reply
from engine.agents.toolbox import Toolbox
from engine.agents.tools.base import tool_from_function
from engine.agents.tools.calculator import calculator_tool
from engine.agents.trace import Trace
from tests.agents.scripted import ScriptedClient, call


def hang(seconds: float) -> str:
    """Sleep for a while.

    Args:
        seconds: How long.
    """
    time.sleep(seconds)
    return "woke up"


def crash(reason: str) -> str:
    """Always fails.

    Args:
        reason: Why.
    """
    raise RuntimeError(reason)


def loop_with(client, config=None, tools=None, **toolbox_kw):
    toolbox = Toolbox(tools or [calculator_tool()], **toolbox_kw)
    return FunctionCallingLoop(client, toolbox, config or AgentConfig())


def test_call_then_answer_keeps_a_conversation_and_a_trace():
    client = ScriptedClient(
        Reply(tool_calls=[call("calculator", '{"expression": "17 * 23"}', "c1")], tokens=30),
        Reply(content="17 × 23 = 391", tokens=40),
    )
    steps = []
    trace = loop_with(client, AgentConfig(tool_choice="required")).run("What is 17*23?", on_step=steps.append)
    assert trace.status == "answered" and trace.answer == "17 × 23 = 391"
    assert [s.kind for s in steps] == ["tool", "answer"] and steps == trace.steps
    assert steps[0].observation == "391" and steps[0].arguments == {"expression": "17 * 23"}
    assert trace.tokens == 70
    first, second = client.requests
    assert first["tool_choice"] == "required" and second["tool_choice"] is None  # forced on the first turn only
    assert first["tools"][0]["function"]["name"] == "calculator"
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": "c1", "content": "391"}
    # The trace survives JSON and becomes an OpenAI conversation with tool_calls.
    again = Trace.from_dict(json.loads(trace.to_json()))
    messages = again.to_messages()
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[1]["tool_calls"][0]["function"] == {"name": "calculator", "arguments": '{"expression": "17 * 23"}'}


def test_malformed_arguments_and_unknown_tool_are_observations_and_the_run_goes_on():
    client = ScriptedClient(
        Reply(tool_calls=[call("calculator", '{"expression": "1+1"')]),
        Reply(tool_calls=[call("search_web", '{"q": "x"}')]),
        Reply(tool_calls=[call("calculator", '{"expression": "1+1"}')]),
        "2",
    )
    trace = loop_with(client).run("1+1?")
    assert trace.status == "answered" and trace.answer == "2"
    bad_json, unknown, good = trace.steps[:3]
    assert "not valid JSON" in bad_json.observation and bad_json.error
    assert "'search_web' does not exist" in unknown.observation and "calculator" in unknown.observation
    assert good.observation == "2" and not good.error
    assert client.requests[1]["messages"][-1]["content"].startswith("Error: the arguments for calculator")


def test_a_call_the_server_could_not_parse_gets_a_hint_not_an_answer():
    client = ScriptedClient('<tool_call>\n{"name": "calculator", "arguments": {"expression": </tool_call>', "4")
    trace = loop_with(client).run("2+2?")
    assert trace.steps[0].kind == "error" and "could not be read" in trace.steps[0].error
    assert trace.answer == "4"


def test_a_hanging_tool_is_abandoned_at_its_limit_and_a_crashing_one_reported():
    client = ScriptedClient(
        Reply(tool_calls=[call("hang", '{"seconds": 30}')]),
        Reply(tool_calls=[call("crash", '{"reason": "disk on fire"}')]),
        "gave up",
    )
    loop = loop_with(
        client, AgentConfig(tool_timeout_s=0.5), tools=[tool_from_function(hang), tool_from_function(crash)]
    )
    started = time.monotonic()
    trace = loop.run("try")
    assert time.monotonic() - started < 10
    assert "did not finish within 0.5 s" in trace.steps[0].observation
    assert trace.steps[1].observation == "Error: tool crash failed: RuntimeError: disk on fire"
    assert trace.status == "answered"


def test_the_same_call_twice_ends_the_run_with_a_message():
    client = ScriptedClient(
        Reply(tool_calls=[call("calculator", '{"expression": "2*3"}')]),
        Reply(tool_calls=[call("calculator", '{ "expression":"2*3" }')]),
        "never reached",
    )
    trace = loop_with(client).run("2*3")
    assert trace.status == "repeated_call" and trace.answer is None
    assert "same arguments as in step 0" in trace.message and trace.steps[-1].kind == "error"
    assert len(client.requests) == 2


def test_max_steps_ends_the_run():
    client = ScriptedClient(
        *[Reply(tool_calls=[call("calculator", json.dumps({"expression": f"{i}+1"}))]) for i in range(5)]
    )
    trace = loop_with(client, AgentConfig(max_steps=3)).run("count")
    assert trace.status == "max_steps" and len(client.requests) == 3
    assert "max_steps=3" in trace.message


def test_total_timeout_and_cancel_stop_a_slow_model():
    trace = loop_with(ScriptedClient("late", delay_s=5), AgentConfig(total_timeout_s=0.3)).run("hurry")
    assert trace.status == "timeout" and trace.finished_at is not None
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    started = time.monotonic()
    trace = loop_with(ScriptedClient("late", delay_s=5)).run("wait", cancel=cancel)
    assert trace.status == "cancelled" and time.monotonic() - started < 3


def test_approval_ask_pauses_for_the_exact_arguments():
    asked = []

    def approver(tool, arguments):
        asked.append((tool, arguments))
        return "deny" if arguments["expression"] == "6*7" else "session"

    client = ScriptedClient(
        Reply(tool_calls=[call("calculator", '{"expression": "6*7"}')]),
        Reply(tool_calls=[call("calculator", '{"expression": "6*8"}')]),
        Reply(tool_calls=[call("calculator", '{"expression": "6*9"}')]),
        "done",
    )
    trace = loop_with(client, policies={"calculator": "ask"}, approver=approver).run("products")
    assert asked == [("calculator", {"expression": "6*7"}), ("calculator", {"expression": "6*8"})]
    assert trace.steps[0].observation == "Error: the user denied this call to calculator"
    assert [s.observation for s in trace.steps[1:3]] == ["48", "54"]  # approved for the session: asked once


def test_never_hides_the_tool_and_refuses_a_call_to_it():
    client = ScriptedClient(Reply(tool_calls=[call("calculator", '{"expression": "1"}')]), "ok")
    trace = loop_with(client, policies={"calculator": "never"}).run("x")
    assert client.requests[0]["tools"] is None
    assert "is not allowed" in trace.steps[0].observation


def test_an_unreachable_model_server_ends_the_run_with_its_address():
    from engine.agents.model import OpenAIClient
    from engine.ports import free_port

    url = f"http://127.0.0.1:{free_port()}"
    trace = loop_with(OpenAIClient(url, "nothing")).run("anyone there?")
    assert trace.status == "error" and f"model server {url}/v1 is not reachable" in trace.message
