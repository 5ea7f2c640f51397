"""The Evaluate page's later controls against a real data dir: data-parallel workers, a contamination dataset and
an LLM judge in the form; a task picker built from the task registry; a chat-style prompt preview rendered by
the model's own template in the worker process; the contamination panel running a real `contamination` job
through a real consumer; and judge verdicts, contamination marks and clean scores in the result views."""

from __future__ import annotations

import json

import pytest
from nicegui.testing import User

from app import evals
from app.db import session
from app.registry import register_folder
from app.tables import Dataset
from jobs import api
from jobs import status as st
from tests.helpers import start_consumer
from tests.ui.test_evaluate_page import jobs_in, one, until
from ui.pages.evaluate import JUDGE_FIELDS, task_catalogue

QUESTIONS = [
    "Which gas do green plants absorb from the air during photosynthesis in bright sunlight",
    "Which metal is liquid at room temperature and was once used inside glass thermometers",
    "Which organ of the human body pumps blood through the arteries and the veins all day",
    "Which ocean lies between the continents of Africa and Australia on most world maps",
]


def _dataset(home, tmp_path, texts, name="sft") -> None:
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    with session(home) as s:
        s.add(Dataset(name=name, path=str(path), format="jsonl", rows=len(texts)))


def _run(home, tmp_path, detail_extra=None, settings=None) -> tuple[int, str]:
    """A finished run on a four-item custom set; items on lines 2 and 4 right, 3 and 5 wrong."""
    from engine.eval.runner import score

    path = tmp_path / "science.csv"
    path.write_text("question,A,B,C,answer\n" + "".join(f"{q},x,y,z,A\n" for q in QUESTIONS), encoding="utf-8")
    task = str(path)
    samples = [{"doc_id": str(i), "prompt": f"Question {i}", "answer": "x", "extracted": "A", "gold": "A",
                "correct": i % 2 == 0, "scores": {"acc": float(i % 2 == 0)}, **(detail_extra or {})}
               for i in range(2, 6)]
    run = evals.start_run(home, model_ref="model-a", tasks=task, mode="ppl",
                          settings={"tasks": task, **(settings or {})}, settings_hash="h")
    evals.save_task(home, run.id, task, "own", score(samples, False), samples, "h")
    evals.finish_run(home, run.id, "done")
    return run.id, task


async def test_form_sends_workers_and_a_contamination_dataset(home, user: User, bundled_model_dir, tmp_path):
    register_folder(home, bundled_model_dir, name="smol")
    _dataset(home, tmp_path, ["some training text"])
    await user.open("/evaluate")
    await until(lambda: "sft" in one(user, "eval-contamination").options)
    one(user, "eval-models").value = ["smol"]
    one(user, "eval-workers").value = 2
    one(user, "eval-contamination").value = "sft"
    user.find(marker="eval-submit").click()
    await until(lambda: jobs_in(home))
    [job] = jobs_in(home)
    assert job.params["workers"] == 2 and job.params["contamination"] == "sft"
    assert not set(JUDGE_FIELDS) & set(job.params)  # optional settings travel only when set


async def test_form_sends_a_judge_and_names_the_field_of_a_bad_one(home, user: User, bundled_model_dir):
    register_folder(home, bundled_model_dir, name="smol")
    await user.open("/evaluate")
    await until(lambda: one(user, "eval-models").options)
    one(user, "eval-models").value = ["smol"]
    one(user, "eval-against").value = "other"
    user.find(marker="eval-submit").click()
    await until(lambda: one(user, "eval-against").error)
    assert "needs a judge" in one(user, "eval-against").error and jobs_in(home) == []
    one(user, "eval-against").value = ""
    one(user, "eval-tasks").value = ["gsm8k"]
    one(user, "eval-mode").value = "gen"
    one(user, "eval-judge").value = "smol"
    one(user, "eval-judge_tasks").value = "gsm8k"
    user.find(marker="eval-submit").click()
    await until(lambda: jobs_in(home))
    [job] = jobs_in(home)
    assert (job.params["judge"], job.params["judge_tasks"]) == ("smol", "gsm8k") and "against" not in job.params


async def test_task_picker_lists_every_registered_task_with_its_licence(home, user: User):
    from engine.eval.tasks import GROUPS, builtin_tasks

    catalogue = task_catalogue()
    assert list(catalogue)[0] == "mmlu" and set(GROUPS) | {t.name for t in builtin_tasks()} == set(catalogue)
    agent_tasks = [t for t in builtin_tasks() if t.kind == "agent"]
    await user.open("/evaluate")
    await until(lambda: one(user, "eval-tasks").options)
    options = one(user, "eval-tasks").options
    assert set(options) == set(catalogue)
    assert options["gsm8k"] == f"gsm8k · {catalogue['gsm8k']}"
    for task in agent_tasks:  # agent benchmarks registered by their modules show up with their licence
        assert options[task.name].endswith(task.licence)
    if agent_tasks:
        one(user, "eval-tasks").value = [agent_tasks[0].name]
        await user.should_see(f"{agent_tasks[0].name}: licence {agent_tasks[0].licence}")


async def test_chat_style_preview_is_rendered_with_the_models_template(home, user: User, bundled_model_dir):
    register_folder(home, bundled_model_dir, name="smol")
    await user.open("/evaluate")
    await until(lambda: one(user, "eval-models").options)
    one(user, "eval-tasks").value = ["arc_easy"]
    one(user, "eval-style").value = "chat"
    user.find(marker="eval-preview").click()  # no model chosen: the turns, and what picking a model would add
    await until(lambda: one(user, "eval-preview-text").content)
    assert one(user, "eval-preview-text").content.startswith("[user]\nQuestion: ")
    await user.should_see("Pick a model to see the exact text.")
    one(user, "eval-models").value = ["smol"]
    user.find(marker="eval-preview").click()
    # Rendered in the worker process: the first call waits for it to start and import transformers.
    await until(lambda: "<|im_start|>" in one(user, "eval-preview-text").content, timeout=180)
    text = one(user, "eval-preview-text").content
    assert "<|im_start|>user\nQuestion: " in text and "<|im_start|>assistant\n\n\n── scored continuations" in text
    await user.should_see("Rendered with smol's own chat template: exactly what the model reads.")


async def test_contamination_panel_runs_a_job_and_shows_full_and_clean_scores(home, user: User, tmp_path):
    run_id, task = _run(home, tmp_path)
    _dataset(home, tmp_path, [f"Flashcards: {QUESTIONS[0]}?"])  # line 2 (answered right) leaked
    consumer = start_consumer(home, tmp_path / "consumer.log")
    try:
        await user.open("/evaluate")
        await until(lambda: run_id in one(user, "contam-run").options and "sft" in one(user, "contam-dataset").options)
        user.find(marker="contam-submit").click()
        await user.should_see("Pick a run.")
        one(user, "contam-run").value = run_id
        await user.should_see("This run has not been checked for contamination yet.")
        one(user, "contam-dataset").value = "sft"
        user.find(marker="contam-submit").click()
        await until(lambda: api.list_jobs(home, kind="contamination"))
        [job] = api.list_jobs(home, kind="contamination")
        assert job.params == {"run": run_id, "dataset": "sft", "n": 13}
        await until(lambda: one(user, "contam-table").rows, timeout=180)
    finally:
        consumer.terminate()
        consumer.wait(30)
    assert api.get_job(home, job.id).status == st.SUCCEEDED
    [row] = one(user, "contam-table").rows
    assert row == {"task": task, "metric": "acc", "full": "50.00", "clean": "33.33", "delta": "-16.67",
                   "contaminated": "25.0% (1/4)"}
    await user.should_see("Checked against sft with 13-grams.")


async def test_samples_show_judge_verdicts_and_contamination_marks(home, user: User, tmp_path):
    from app.contamination import check_run

    judge = {"judge": {"verdict": "B", "reply": "The answer is wrong. B", "invalid": False}, "rule_correct": True,
             "trace": {"calls": [{"name": "get_weather", "arguments": {"city": "北京"}}]}}
    run_id, task = _run(home, tmp_path, judge, settings={"judge": "smol", "judge_prompt": "p1"})
    _dataset(home, tmp_path, [QUESTIONS[1]])  # line 3 leaked
    check_run(home, run_id, "sft")
    await user.open("/evaluate")
    one(user, "eval-sample-run").value = run_id
    one(user, "eval-wrong-only").value = False
    one(user, "eval-sample-contam").value = "contaminated"
    user.find(marker="eval-samples-show").click()
    await until(lambda: user.find(content="#3").elements)
    await user.should_see("judge: B")
    await user.should_see("Judge's verdict: B · rule-based check: ✓")
    await user.should_see("Shares this n-gram with the training data: which metal is liquid")
    await user.should_see("Agent trace")
    assert '"city": "北京"' in one(user, "eval-sample-trace-2").content  # sample row 2 is item #3
    await user.should_not_see(f"{task} #2")  # clean items are filtered out
    # the results table carries the clean rows beside the full ones, and notes who judged and what *_clean means
    await until(lambda: one(user, "eval-runs").rows)
    row = next(r for r in one(user, "eval-runs").rows if r["id"] == run_id)
    user.find(marker="eval-runs").trigger("selection", {"added": True, "rows": [row], "keys": [run_id]})
    await until(lambda: one(user, "eval-results").rows)
    metrics = {r["metric"]: r for r in one(user, "eval-results").rows}
    assert set(metrics) == {"acc", "acc_clean", "contaminated_fraction"}
    assert metrics["acc_clean"][f"#{run_id} model-a"] == pytest.approx(66.67)
    await user.should_see(f"#{run_id} model-a: judged by smol · judge prompt p1")
    await user.should_see("*_clean rows are scores on the items that share no 13-gram with sft")


async def test_the_new_controls_speak_chinese(home, user: User):
    from ui import i18n

    i18n.set_language("zh")
    try:
        await user.open("/evaluate")
        await user.should_see("污染检查")
        await user.should_see("引擎进程数（数据并行）")
        assert one(user, "eval-sample-contam").options["contaminated"] == "只看已污染"
        user.find(marker="contam-submit").click()
        await user.should_see("请选择一次评测。")
    finally:
        i18n.set_language("en")


async def test_a_link_opens_two_runs_results_and_compares_them(home, user: User, tmp_path):
    first, task = _run(home, tmp_path)
    second, _ = _run(home, tmp_path)
    await user.open(f"/evaluate?compare={first},{second}")
    await until(lambda: one(user, "eval-compare-table").rows)
    assert one(user, "eval-run-a").value == first and one(user, "eval-run-b").value == second
    assert {r["id"] for r in one(user, "eval-runs").selected} == {first, second}
    [row] = one(user, "eval-results").rows
    assert (row["dataset"], row["metric"]) == (task, "acc")
    [delta] = one(user, "eval-compare-table").rows
    assert delta["delta"] == "+0.00"
