"""BFCL AST-match scoring on the wheel's real items: replies built from the ground truth score 1.0 (parallel
calls in any order), a wrong value or a missing required argument scores 0, irrelevance wants no call."""

from __future__ import annotations

import json

import jsonschema
import pytest

from engine.agents.bench import bfcl
from engine.agents.model import Reply, ToolCallRequest
from tests.agents.scripted import ScriptedClient

pytest.importorskip("bfcl_eval", reason="the bfcl-eval wheel (data only) is not installed")


def right_calls(item: bfcl.Item, reverse: bool = False) -> Reply:
    calls = []
    for entry in item.answers:
        ((name, accepted),) = entry.items()
        arguments = {k: next(v for v in options if v != "") for k, options in accepted.items() if options != [""]}
        calls.append(ToolCallRequest(bfcl.openai_name(name), json.dumps(arguments)))
    return Reply(tool_calls=calls[::-1] if reverse else calls)


@pytest.mark.parametrize("category", ["simple_python", "multiple", "parallel", "parallel_multiple"])
def test_ground_truth_replies_score_one(category):
    items = bfcl.load(category, limit=6)
    for item in items:
        for tool in bfcl.tools_for(item):
            jsonschema.Draft202012Validator.check_schema(tool["function"]["parameters"])
            assert all(c.isalnum() or c in "_-" for c in tool["function"]["name"])
    client = ScriptedClient(*[right_calls(item, reverse=True) for item in items])
    result = bfcl.evaluate(client, category, limit=6)
    assert (result.total, result.correct, result.failures) == (6, 6, [])
    assert client.requests[0]["tools"][0]["function"]["parameters"]["type"] == "object"


def test_wrong_values_missing_arguments_and_irrelevance():
    item = bfcl.load("simple_python", limit=1)[0]  # calculate_triangle_area(base=10, height=5, unit optional)
    assert bfcl.call_matches("calculate_triangle_area", {"base": 10, "height": 5}, item.answers[0])
    assert bfcl.call_matches("calculate_triangle_area", {"base": 10.0, "height": 5, "unit": "Units"}, item.answers[0])
    assert not bfcl.call_matches("calculate_triangle_area", {"base": 11, "height": 5}, item.answers[0])
    assert not bfcl.call_matches("calculate_triangle_area", {"base": 10}, item.answers[0])
    assert not bfcl.call_matches("calculate_triangle_area", {"base": 10, "height": 5, "color": "red"}, item.answers[0])
    result = bfcl.evaluate(ScriptedClient("I cannot help with that.", right_calls(item)), "irrelevance", limit=2)
    assert (result.total, result.correct) == (2, 1) and result.failures[0]["why"] == "called a tool"
