"""ToolTalk on the wheel's real easy conversations, with scripted model turns through the real function-calling loop:
replies built from the ground truth score 1 everywhere; a conversation with a wrong action, a search that matches
nothing and then the right call has precision, recall, action precision and bad-action rate known by hand; calls
that could not have run (not logged in, unknown API, arguments outside the schema) are never bad actions."""

from __future__ import annotations

import importlib.util
import json

import jsonschema
import pytest

from engine.agents.bench import tooltalk
from engine.agents.model import Reply, ToolCallRequest
from tests.agents.scripted import ScriptedClient

if importlib.util.find_spec("tooltalk") is None:  # its files are read, never imported
    pytest.skip("the nvidia-tooltalk wheel (data only) is not installed", allow_module_level=True)


def calls(*pairs: tuple[str, dict]) -> Reply:
    return Reply(tool_calls=[ToolCallRequest(name, json.dumps(arguments)) for name, arguments in pairs])


def perfect_script(conversation: dict) -> list[Reply | str]:
    """What a perfect assistant says: each turn's ground-truth calls (without the injected token), then its text."""
    script: list[Reply | str] = []
    for turn in conversation["conversation"]:
        if turn["role"] != "assistant":
            continue
        if turn.get("apis"):
            script.append(calls(*[(a["request"]["api_name"],
                                   {k: v for k, v in a["request"]["parameters"].items() if k != "session_token"})
                                  for a in turn["apis"]]))
        script.append(turn["text"])
    return script


def by_name(name: str) -> dict:
    return next(c for c in tooltalk.load("easy") if c["name"] == name)


def test_api_docs_are_read_from_the_wheel_as_valid_tool_schemas():
    apis, suites = tooltalk.load_apis()
    assert len(apis) == 28 and set(suites) == {"AccountTools", "Alarm", "Calendar", "Email", "Messages",
                                                "Reminder", "Weather"}
    assert apis["SendEmail"].is_action and apis["SendEmail"].requires_auth
    assert not apis["SearchInbox"].is_action and not apis["CurrentWeather"].requires_auth
    for api in apis.values():
        jsonschema.Draft202012Validator.check_schema(api.tool_schema())
    assert apis["SendEmail"].tool_schema()["required"] == ["to", "subject", "body"]
    assert len(tooltalk.load("easy")) == 28


def test_ground_truth_replies_score_one_and_see_the_recorded_history():
    names = ["ChangePassword-easy", "UserLogin-easy", "SendEmail-easy", "AddReminder-easy"]
    conversations = [by_name(n) for n in names]
    client = ScriptedClient(*[r for c in conversations for r in perfect_script(c)])
    results = tooltalk.evaluate(client, conversations)
    assert tooltalk.metrics(results) == {"precision": 1.0, "recall": 1.0, "action_precision": 1.0,
                                         "bad_action_rate": 0.0, "success_rate": 1.0}
    first = client.requests[0]
    assert len(first["tools"]) == 28 and first["messages"][0]["role"] == "system"
    assert "timestamp: 2023-09-11 09:00:00" in first["messages"][0]["content"]
    # ChangePassword's model turn 7: its call is answered with the recorded result.
    change = next(r for r in client.requests if r["messages"][-1]["role"] == "tool")
    assert json.loads(change["messages"][-1]["content"]) == {"response": {"status": "success"}, "exception": None}
    # The user-login conversation has no session at first: the login's recorded token is what later calls carry.
    login = results[1]
    assert login.predictions[0].api == "UserLogin" and login.predictions[0].match


def test_a_wrong_action_a_search_that_matches_nothing_and_the_right_call():
    conversation = by_name("SendEmail-easy")  # assistant turns 1, 3, 5; the SendEmail call belongs to turn 5
    client = ScriptedClient(
        calls(("SendEmail", {"to": ["someone@else.com"], "subject": "hi", "body": ""})),
        "Sent.",  # turn 1: a wrong action that would have run -> a bad action
        calls(("SearchInbox", {"query": "colleague"})),
        "What should the subject be?",  # turn 3: a read-only call that matches nothing
        calls(("SendEmail", {"to": ["olivieisme@somail.com"], "subject": "test", "body": ""})),
        "Done.",  # turn 5: the right call
    )
    (result,) = tooltalk.evaluate(client, [conversation])
    last = [r["messages"][-1] for r in client.requests]
    observations = [json.loads(m["content"]) for m in last if m["role"] == "tool"]
    assert observations[0]["response"] is None and observations[0]["exception"].startswith("No such record")
    assert observations[2] == {"response": {"email_id": "5b-dd80-9f8a27ab"}, "exception": None}
    assert [(p.api, p.match, p.bad_action) for p in result.predictions] == [
        ("SendEmail", False, True), ("SearchInbox", False, False), ("SendEmail", True, False)]
    assert result.counts() == {"predictions": 3, "ground_truths": 1, "matches": 1, "actions": 2,
                               "valid_actions": 1, "bad_actions": 1, "success": False}
    assert tooltalk.metrics([result]) == {"precision": 1 / 3, "recall": 1.0, "action_precision": 0.5,
                                          "bad_action_rate": 0.5, "success_rate": 0.0}


def test_calls_that_could_not_have_run_are_not_bad_actions():
    conversation = by_name("UserLogin-easy")  # nobody is logged in; the login belongs to turn 5
    client = ScriptedClient(
        calls(("SendEmail", {"to": ["a@b.com"], "subject": "x", "body": ""})),  # needs a login
        calls(("LaunchRocket", {})),  # no such API
        calls(("UserLogin", {"username": 42})),  # outside the schema
        "What's your username?",
        "And your password?",
        calls(("UserLogin", {"username": "justinkool", "password": "wrong"})),  # would have run: a bad action
        "Still not in.",
    )
    (result,) = tooltalk.evaluate(client, [conversation])
    observations = [r["messages"][-1]["content"] for r in client.requests if r["messages"][-1]["role"] == "tool"]
    assert "User is not logged in" in observations[0]
    assert "does not exist" in observations[1] and "schema" in observations[2]
    assert [(p.api, p.exception is None, p.bad_action) for p in result.predictions] == [
        ("SendEmail", False, False), ("LaunchRocket", False, False), ("UserLogin", False, False),
        ("UserLogin", True, True)]
    metrics = tooltalk.metrics([result])
    assert metrics["recall"] == 0.0 and metrics["bad_action_rate"] == 1 / 3 and metrics["success_rate"] == 0.0


def test_free_text_and_dates_match_as_toolTalk_checks_them():
    truth = {"session_token": "t", "task": "Buy milk and eggs", "due_date": "2023-09-12 09:00:00"}
    assert tooltalk.parameters_match("AddReminder", {**truth, "task": "buy milk and eggs.",
                                                      "due_date": "2023-09-12 18:00:00"}, truth)
    assert not tooltalk.parameters_match("AddReminder", {**truth, "due_date": "2023-09-13 09:00:00"}, truth)
    assert not tooltalk.parameters_match("AddReminder", {**truth, "task": "walk the dog"}, truth)
    assert not tooltalk.parameters_match("SendEmail", {"session_token": "t", "to": ["X@y.com"]},
                                         {"session_token": "t", "to": ["x@y.com"]})
    with pytest.raises(ValueError, match="api_mode"):
        tooltalk.offered_apis(by_name("SendEmail-easy"), "some", *tooltalk.load_apis())
    assert [a.name for a in tooltalk.offered_apis(by_name("SendEmail-easy"), "suite", *tooltalk.load_apis())] == [
        "SendEmail", "SearchInbox"]


def test_agent_bench_cli_scores_tooltalk_against_a_server(scripted_server, home, capsys):
    import cli

    url, requests = scripted_server  # it calls a calculator ToolTalk does not have, then answers in words
    assert cli.main(["--data-dir", str(home), "agent-bench", url, "--bench", "tooltalk", "--limit", "1"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == {"bench": "tooltalk", "model": url, "precision": 0.0, "recall": 0.0,
                               "action_precision": 1.0, "bad_action_rate": 0.0, "success_rate": 0.0,
                               "conversations": 1}
    assert "MIT" in err and len(requests) == 2 and len(requests[0]["tools"]) == 28
