"""The Agent playground with NiceGUI's User: a run against a scripted model server pauses for approval with the
exact arguments, streams its step cards and answer, is stored and rated, and is exported as a dataset."""

from __future__ import annotations

import ast

from nicegui.testing import User
from sqlmodel import select

from app import agents
from app.db import session
from app.tables import Dataset
from tests.helpers import REPO, one, until


async def test_run_with_approval_then_rate_and_export(home, scripted_server, user: User):
    url, requests = scripted_server
    await user.open("/agents")
    await user.should_see("No runs yet.")
    one(user, "agent-url").value = url
    one(user, "policy-calculator").value = "ask"
    one(user, "agent-question").value = "What is 6*7?"
    user.find(marker="agent-run").click()
    await user.should_see(marker="approval", retries=50)
    assert '"expression": "6*7"' in one(user, "approval-arguments").content
    user.find(marker="approve-once").click()
    await user.should_see(marker="answer", retries=50)
    assert one(user, "observation-0").text == "42"
    (run,) = await until(lambda: agents.list_runs(home), 10, "the run stored")
    assert run.status == "answered" and run.answer == "6 × 7 = 42"
    await user.should_see(marker=f"run-{run.id}", retries=30)

    one(user, f"rate-run-{run.id}").value = 5
    await until(lambda: agents.get_run(home, run.id).rating == 5, 10, "the rating saved")
    one(user, f"select-run-{run.id}").value = True
    one(user, "export-name").value = "good-agent-runs"
    user.find(marker="export-runs").click()
    await user.should_see("Dataset good-agent-runs written with 1 runs.", retries=30)
    with session(home) as s:
        dataset = s.exec(select(Dataset).where(Dataset.name == "good-agent-runs")).one()
    assert dataset.inputs == [f"agent_run:{run.id}"]
    assert len(requests) == 2


def test_every_playground_string_has_a_chinese_translation():
    from ui.locales.zh_agents import ZH

    texts = set()
    for node in ast.walk(ast.parse((REPO / "ui/pages/agents.py").read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "t"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            texts.add(node.args[0].value)
    assert sorted(texts - ZH.keys()) == []


def test_images_the_python_tool_wrote_are_shown_from_the_workspace_only(tmp_path):
    from ui.pages.agents import _images

    workspace = (tmp_path / "ws").resolve()
    workspace.mkdir()
    (workspace / "plot.png").write_bytes(b"\x89PNG")
    (workspace / "data.csv").write_text("x")
    (tmp_path / "outside.png").write_bytes(b"\x89PNG")
    observation = "Out: 1\nFiles written: data.csv, plot.png, ../outside.png, missing.png"
    assert _images(workspace, observation) == [workspace / "plot.png"]


async def test_start_its_server_submits_a_serve_job(home, bundled_model_dir, user: User):
    from app.registry import register_folder
    from jobs.servers import server_for

    register_folder(home, bundled_model_dir, name="smol")
    await user.open("/agents")
    assert one(user, "agent-model").value == "smol"
    user.find(marker="agent-serve").click()
    job = await until(lambda: server_for(home, "smol"), 10, "the serve job")
    assert job.params["model"] == "smol"
    await user.should_see(f"Server of smol: job {job.id} (queued); run once it is running.")
