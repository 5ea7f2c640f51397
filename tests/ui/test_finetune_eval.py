"""Eval in the loop on the Finetune pages: the wizard's "evaluate the base model and the result" option reaches
the job's arguments, and the run page's before/after table shows both scores, the difference in points with its
standard error, and "pending" for a side whose eval job has not run. Eval rows are written through app.evals on a
real data dir; no consumer runs."""

from __future__ import annotations

import json

import pytest
from nicegui.testing import User

from app import evals
from app.registry import register_folder
from jobs import api
from jobs import status as st
from jobs.tasks.finetune import record_evals
from jobs.transitions import finish


@pytest.fixture
def tiny(home, tiny_model_dir):
    return register_folder(home, tiny_model_dir("llama"), name="tiny-llama")


@pytest.fixture
def chat(tmp_path):
    data = tmp_path / "chat.jsonl"
    data.write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n")
    return data


async def test_wizard_asks_for_the_before_after_evaluation(home, tiny, chat, user: User):
    await user.open("/finetune")
    await user.should_see("Evaluate the base model and the result")
    user.find(marker="data-path").type(str(chat))
    user.find(marker="eval-toggle").click()
    user.find(marker="eval-tasks").click()
    user.find("arc_easy — CC BY-SA 4.0 (AI2 ARC)").click()
    user.find(marker="eval-limit").clear().type("7")
    user.find("generation (gen)").click()
    user.find(marker="launch-button").click()
    await user.should_see("Before and after: evaluation of the base model and the result", retries=50)
    [job] = api.list_jobs(home, kind="finetune")
    assert (job.params["eval_tasks"], job.params["eval_limit"], job.params["eval_mode"]) == ("arc_easy", 7, "gen")
    await user.should_see("Base model: pending")  # the run itself is still queued
    await user.should_see("Finetuned model: after training")


async def test_wizard_without_the_option_asks_for_no_evaluation(home, tiny, chat, user: User):
    await user.open("/finetune")
    user.find(marker="data-path").type(str(chat))
    user.find(marker="launch-button").click()
    await user.should_see("Checkpoints and outputs", retries=50)
    [job] = api.list_jobs(home, kind="finetune")
    assert "eval_tasks" not in job.params
    await user.should_not_see("Before and after: evaluation of the base model and the result")


def _store_run(home, eval_job_id: int, scores: dict[str, tuple[float, float]]) -> int:
    """An eval job's stored run, as the eval job writes it: one row per metric of the task arc_easy."""
    run = evals.start_run(home, model_ref="m", tasks="arc_easy", mode="ppl", settings={}, settings_hash="h1",
                          job_id=eval_job_id)
    evals.save_task(home, run.id, "arc_easy", "CC BY-SA 4.0",
                    {m: {"value": v, "stderr": se, "n": 100} for m, (v, se) in scores.items()}, [], "h1")
    evals.finish_run(home, run.id, "done")
    finish(home, eval_job_id, st.SUCCEEDED, result={"eval_run": run.id})
    return run.id


async def test_run_page_shows_before_after_per_task_and_metric(home, tiny, chat, user: User):
    job = api.submit(home, "finetune", {"model": "tiny-llama", "data": str(chat), "eval_tasks": "arc_easy"},
                     enqueue=False)
    side = {"model": "tiny-llama", "tasks": "arc_easy", "limit": 100}
    base = api.submit(home, "eval", side, enqueue=False)
    result = api.submit(home, "eval", {**side, "model": "tiny-chat"}, enqueue=False)
    record_evals(home, job.id, {"tasks": "arc_easy", "settings_hash": "h1", "base_job": base.id, "result_job": None})
    _store_run(home, base.id, {"acc": (0.40, 0.03), "acc_norm": (0.45, 0.04)})

    await user.open(f"/finetune/{job.id}")
    await user.should_see(marker="before-after-table")
    await user.should_see(f"Base model: eval job #{base.id} (done)")
    assert user.find(marker="score-base-arc_easy-acc").elements.pop().text == "40.0"
    assert user.find(marker="score-result-arc_easy-acc").elements.pop().text == "after training"

    record_evals(home, job.id, {"tasks": "arc_easy", "settings_hash": "h1", "base_job": base.id,
                                "result_job": result.id})
    await user.open(f"/finetune/{job.id}")
    await user.should_see(f"Finetuned model: eval job #{result.id} (pending)")
    assert user.find(marker="score-result-arc_easy-acc").elements.pop().text == "pending"

    _store_run(home, result.id, {"acc": (0.50, 0.04), "acc_norm": (0.43, 0.04)})
    await user.open(f"/finetune/{job.id}")
    await user.should_see(marker="delta-arc_easy-acc")
    assert user.find(marker="score-result-arc_easy-acc").elements.pop().text == "50.0"
    assert user.find(marker="delta-arc_easy-acc").elements.pop().text == "+10.0 ± 5.0"  # sqrt(3² + 4²)
    assert user.find(marker="delta-arc_easy-acc_norm").elements.pop().text == "-2.0 ± 5.7"
    user.find(marker="eval-link-result").click()
    await user.should_see(f"#{result.id}")
