"""End to end with the bundled model (SmolLM2-135M) on our engine: a forced calculator call answers arithmetic.

The model runs in our server on loopback and the loop talks to it with the real `openai` client, exactly as the
playground and the CLI do; the same call is made once more in-process through LocalEngineClient. The tool call
is forced with `tool_choice` naming the calculator and decoded under the server's grammar (issue 14), so the
135M model writes a valid arguments object (without the grammar it wrote `"arguments": 37, "type": ...`).
About 1.5 minutes on two shared cores: slow.
"""

from __future__ import annotations

import pytest

from engine.agents import AgentConfig, FunctionCallingLoop, LocalEngineClient, OpenAIClient, Toolbox
from engine.agents.tools.calculator import calculator_tool
from tests.serve.conftest import SERVED_NAME, start_server, tiny_engine

QUESTION = "Use the calculator: what is 37 * 43?"
FORCED = {"type": "function", "function": {"name": "calculator"}}
CONFIG = AgentConfig(tool_choice=FORCED, max_steps=2, max_tokens=48, total_timeout_s=300)


@pytest.fixture(scope="module")
def bundled_server(bundled_model_dir):
    thread, served = start_server(bundled_model_dir, max_model_len=2048, num_kv_blocks=512)
    yield served
    thread.stop()


def check_forced_call(trace) -> None:
    call = trace.steps[0]
    assert call.kind == "tool" and call.tool == "calculator", trace.to_dict()
    assert not call.error, call.error
    assert call.observation == "1591", (call.arguments, call.observation)


@pytest.mark.slow
def test_forced_calculator_call_through_the_server(bundled_server):
    client = OpenAIClient(bundled_server.base_url, SERVED_NAME)
    steps = []
    trace = FunctionCallingLoop(client, Toolbox([calculator_tool()]), CONFIG).run(QUESTION, on_step=steps.append)
    check_forced_call(trace)
    assert steps == trace.steps and trace.tokens > 0
    assert trace.status in ("answered", "repeated_call", "max_steps")  # what the 135M model does next varies


@pytest.mark.slow
def test_forced_calculator_call_in_process(bundled_model_dir):
    engine = tiny_engine(bundled_model_dir, max_model_len=2048, num_kv_blocks=512)
    trace = FunctionCallingLoop(LocalEngineClient(engine, "smollm2"), Toolbox([calculator_tool()]), CONFIG).run(
        QUESTION
    )
    check_forced_call(trace)
