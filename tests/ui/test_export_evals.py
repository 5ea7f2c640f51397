"""The Export page's "evaluate each quant": the form adds the evaluation settings to the export job (and refuses a
task that does not exist at its field), and the table shows each type's score beside the HF model's with the
difference in points, from eval runs stored through app/evals.py; a run still queued shows its state."""

from __future__ import annotations

from nicegui import ElementFilter, ui
from nicegui.testing import User

from app import evals
from app.registry import register_folder
from jobs import status as st
from jobs.api import list_jobs, submit
from jobs.transitions import finish


async def test_evaluate_each_quant_is_added_to_the_export_job(home, user: User, bundled_model_dir):
    register_folder(home, bundled_model_dir, name="smol")
    await user.open("/export")
    user.find(marker="export-evaluate").click()
    tasks = user.find(marker="export-eval-tasks")
    assert tasks.elements.copy().pop().value == "arc_easy,mmlu"
    tasks.clear().type("arc_easy,hellaswag")
    user.find(marker="export-eval-limit").elements.copy().pop().set_value(25)
    user.find(marker="export-eval-mode").elements.copy().pop().set_value("gen")
    user.find(marker="export-submit").click()
    await user.should_see("Export queued as job #1.", retries=100)  # checking the tasks reads their data
    [job] = list_jobs(home)
    assert job.params == {"model": "smol", "quant": "f16,q8_0,q4_k_m", "verify": True,
                          "eval_tasks": "arc_easy,hellaswag", "eval_limit": 25, "eval_mode": "gen"}


async def test_an_unknown_task_is_refused_at_its_field(home, user: User, bundled_model_dir):
    register_folder(home, bundled_model_dir, name="smol")
    await user.open("/export")
    user.find(marker="export-evaluate").click()
    user.find(marker="export-eval-tasks").clear().type("arc_easy,no_such_benchmark")
    user.find(marker="export-submit").click()
    await user.should_see("no_such_benchmark", retries=100)
    assert list_jobs(home) == []
    user.find(marker="export-eval-tasks").clear()
    user.find(marker="export-submit").click()
    await user.should_see("Name at least one task, e.g. arc_easy.")
    assert list_jobs(home) == []


def cells(user: User, marker: str) -> list[str]:
    with user:
        return [e.text for e in ElementFilter(kind=ui.label).within(marker=marker)]


def _eval_run(home, job_id: int, model_ref: str, scores: dict[str, dict[str, float]]) -> None:
    run = evals.start_run(home, model_ref=model_ref, tasks="arc_easy,mmlu", mode="ppl", settings={"limit": 50},
                          settings_hash="abc123", job_id=job_id)
    for task, metrics in scores.items():
        evals.save_task(home, run.id, task, "CC-BY-SA-4.0",
                        {m: {"value": v, "stderr": 0.05, "n": 50} for m, v in metrics.items()}, [], "abc123")
    evals.finish_run(home, run.id, "done")


async def test_quant_table_shows_scores_and_deltas_in_points(home, user: User, bundled_model_dir):
    register_folder(home, bundled_model_dir, name="smol")
    params = {"model": "smol", "quant": "f16,q4_0", "eval_tasks": "arc_easy,mmlu", "eval_limit": 50}
    export = submit(home, "export_gguf", params, enqueue=False)
    eval_jobs = {q: submit(home, "eval", {"model": m, "tasks": "arc_easy,mmlu", "limit": 50}, enqueue=False)
                 for q, m in (("hf", "smol"), ("f16", "smol"), ("q4_0", "smol"))}
    finish(home, export.id, st.SUCCEEDED, result={"output": "/x", "files": [], "evals": [
        {"quant": q, "job_id": j.id} for q, j in eval_jobs.items()]})
    _eval_run(home, eval_jobs["hf"].id, "smol", {"arc_easy": {"acc": 0.46, "acc_norm": 0.42},
                                                "mmlu": {"acc": 0.30}, "mmlu_anatomy": {"acc": 0.25}})
    _eval_run(home, eval_jobs["f16"].id, "/x/smol.F16.gguf", {"arc_easy": {"acc": 0.46, "acc_norm": 0.44},
                                                              "mmlu": {"acc": 0.30}})
    for j in ("hf", "f16"):
        finish(home, eval_jobs[j].id, st.SUCCEEDED)
    await user.open("/export")
    await user.should_see("Quant damage: scores per type beside the HF model")
    await user.should_see(marker=f"quant-evals-{export.id}")
    await user.should_see("smol: arc_easy,mmlu, 50 questions per task, ppl mode")
    row = f"quant-eval-{export.id}-arc_easy-acc_norm"
    await user.should_see(marker=row)
    # task, metric, HF, F16 and its delta, Q4_0 (still queued) and no delta
    assert cells(user, row) == ["arc_easy", "acc_norm", "42.0", "44.0", "+2.0", "Queued", "—"]
    assert cells(user, f"quant-eval-{export.id}-mmlu-acc") == ["mmlu", "acc", "30.0", "30.0", "±0.0", "Queued", "—"]
    # the requested tasks only: MMLU's group score, not each subject
    await user.should_not_see(marker=f"quant-eval-{export.id}-mmlu_anatomy-acc")

    _eval_run(home, eval_jobs["q4_0"].id, "/x/smol.Q4_0.gguf", {"arc_easy": {"acc": 0.405, "acc_norm": 0.39},
                                                                "mmlu": {"acc": 0.27}})
    finish(home, eval_jobs["q4_0"].id, st.SUCCEEDED)
    await user.should_see("−5.5", retries=40)  # the page's timer picks the new run up (arc_easy acc 40.5 − 46.0)
    await user.should_see("−3.0")
