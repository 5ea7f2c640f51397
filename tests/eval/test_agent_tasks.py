"""Agent benchmarks as evaluation tasks: the runner hands them its backend and stores what they return.

A model server on loopback answers from a script (it replaces only the model): BFCL, GSM8K with the sandboxed
Python tool and ToolTalk run through the real Evaluator and OpenAIBackend, with metrics known by hand. Then
`inkstone eval` runs BFCL and ToolTalk on the bundled model, offline, and the results land in the store."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from engine.eval.config import EvalConfig
from engine.eval.openai_backend import OpenAIBackend
from engine.eval.runner import Evaluator
from engine.eval.tasks import get_task
from engine.eval.tasks.agent import client_for
from tests.helpers import REPO, child_env, scripted_chat_server

pytest.importorskip("bfcl_eval", reason="the bfcl-eval wheel (data only) is not installed")
if importlib.util.find_spec("tooltalk") is None:  # its files are read, never imported
    pytest.skip("the nvidia-tooltalk wheel (data only) is not installed", allow_module_level=True)


def tool_call(name: str, arguments: dict) -> dict:
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": f"call_{name}", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}]}


def text(content: str) -> dict:
    return {"role": "assistant", "content": content}


@pytest.fixture
def scripted_server():
    """An OpenAI-compatible chat server that answers each request with the next scripted message."""
    state = {"replies": []}
    with scripted_chat_server(lambda requests: state["replies"][len(requests) - 1]) as (url, requests):
        state["requests"] = requests
        yield f"{url}/v1", state


def test_agent_tasks_run_through_the_evaluator_with_metrics_known_by_hand(scripted_server):
    url, state = scripted_server
    gsm8k = get_task("gsm8k_tool").docs("test")[:2]
    state["replies"] = [
        # bfcl_simple: the first item's call is right, the second answers in words
        tool_call("calculate_triangle_area", {"base": 10, "height": 5}),
        text("The factorial of 5 is 120."),
        # gsm8k_tool: computes in the sandbox (showing where it runs) and answers right; then a wrong guess
        tool_call("python", {"code": "import os\nopen('probe.txt', 'w').write('x')\nprint(os.getcwd())"}),
        text(f"The answer is {gsm8k[0]['answer']}."),
        text("The answer is 123456789."),
        # tooltalk_easy: AddAlarm-easy gets its call right, AddReminder-easy answers without calling
        tool_call("AddAlarm", {"time": "18:30:00"}),
        text("Your alarm is set for 6:30 PM."),
        text("Sure, I will remember that."),
    ]
    cfg = EvalConfig(model=url, tasks="bfcl_simple,gsm8k_tool,tooltalk_easy", limit=2)
    run = Evaluator(cfg, OpenAIBackend(url, model="scripted")).run()
    results = {r.task: r for r in run["tasks"]}
    assert len(state["requests"]) == 8

    bfcl = results["bfcl_simple"]
    assert bfcl.metrics["accuracy"] == {"value": 0.5, "stderr": 0.5, "n": 2}
    assert [s["correct"] for s in bfcl.samples] == [True, False]
    assert bfcl.samples[0]["prompt"].startswith("Find the area of a triangle")
    assert json.loads(bfcl.samples[0]["answer"]) == [{"name": "calculate_triangle_area",
                                                      "arguments": {"base": 10, "height": 5}}]
    assert bfcl.samples[1]["answer"] == "The factorial of 5 is 120." and "Apache-2.0" in bfcl.licence

    gsm = results["gsm8k_tool"]
    assert {k: m["value"] for k, m in gsm.metrics.items()} == {
        "answer_accuracy": 0.5, "action_rate": 0.5, "code_accuracy": 1.0, "follow_rate": 1.0}
    assert gsm.metrics["code_accuracy"]["n"] == 1
    [call] = gsm.samples[0]["trace"]["calls"]
    workspace = Path(next(line for line in call["observation"].splitlines() if line.startswith("/")))
    assert workspace.is_relative_to(tempfile.gettempdir()) and "inkstone-gsm8k-tool-" in str(workspace)
    assert not workspace.exists()  # the temporary workspace is gone after the run

    talk = results["tooltalk_easy"]
    values = {k: m["value"] for k, m in talk.metrics.items()}
    assert values == {"precision": 1.0, "recall": 0.5, "action_precision": 1.0, "bad_action_rate": 0.0,
                      "success_rate": 0.5}
    assert talk.metrics["success_rate"]["n"] == 2 and talk.metrics["precision"]["n"] == 1
    assert [s["doc_id"] for s in talk.samples] == ["AddAlarm-easy", "AddReminder-easy"]
    assert [s["correct"] for s in talk.samples] == [True, False]
    assert len(state["requests"][5]["tools"]) == 28  # ToolTalk's default: every API's docs


def test_a_backend_with_neither_an_engine_nor_a_url_is_refused_clearly():
    class ManyProcesses:  # what a data-parallel backend offers: no engine here, no URL
        identity = "x"

    with pytest.raises(ValueError, match="agent benchmarks need the model in this process"):
        client_for(ManyProcesses())


@pytest.mark.slow
def test_eval_runs_agent_tasks_on_the_bundled_model_and_stores_them(home, bundled_model_dir, tmp_path):
    from app import evals

    out = tmp_path / "results.json"
    cmd = [sys.executable, "-m", "cli", "eval", str(bundled_model_dir), "--tasks", "bfcl_simple,tooltalk_easy",
           "--limit", "1", "--dtype", "float32", "--device", "cpu", "--output", str(out)]
    env = child_env(home, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert set(doc["results"]["tooltalk_easy"]) >= {"precision", "recall", "bad_action_rate", "success_rate"}
    assert 0.0 <= doc["results"]["bfcl_simple"]["accuracy"] <= 1.0
    [run] = evals.list_runs(home)
    assert run.status == "done"
    rows = evals.results(home, [run.id])
    assert {(r.task, r.metric) for r in rows} >= {("bfcl_simple", "accuracy"), ("tooltalk_easy", "recall")}
    assert all("MIT" in r.licence for r in rows if r.task == "tooltalk_easy")
    [sample] = evals.samples(home, run.id, "tooltalk_easy")
    assert sample.doc_id == "AddAlarm-easy" and "AddAlarm" in sample.gold
    assert len(evals.samples(home, run.id, "bfcl_simple")) == 1
