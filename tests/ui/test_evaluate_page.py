"""The Evaluate page against a real data dir: the form queues one eval job per model with the chosen settings
(no consumer runs, so it stays queued), shows the exact prompt of an item before launch, refuses a malformed
custom set at its field, and shows stored results as a table, a leaderboard, a comparison and samples."""

from __future__ import annotations

import asyncio
import time

from nicegui.testing import User
from sqlmodel import select

from app import evals
from app.db import session
from app.registry import register_folder
from app.tables import Job


async def until(predicate, timeout: float = 30.0):
    """Handlers run their work in threads: on a loaded machine that takes longer than should_see's retries."""
    deadline = time.monotonic() + timeout
    while not _holds(predicate):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


def _holds(predicate) -> bool:
    try:
        return bool(predicate())
    except AssertionError:  # User.find raises while the element is not on the page yet
        return False


def one(user: User, marker: str):
    return next(iter(user.find(marker=marker).elements))


def jobs_in(root) -> list[Job]:
    with session(root) as s:
        return list(s.exec(select(Job)).all())


async def test_submit_queues_an_eval_job_per_model(home, user: User, bundled_model_dir):
    register_folder(home, bundled_model_dir, name="smol")
    await user.open("/evaluate")
    await user.should_see("Evaluate models")
    user.find(marker="eval-submit").click()
    await user.should_see("Pick a model (register one on the Models page).")
    assert jobs_in(home) == []
    one(user, "eval-models").value = ["smol"]
    one(user, "eval-tasks").value = ["arc_easy", "mmlu"]
    one(user, "eval-shots").value = 5
    one(user, "eval-circular").value = True
    user.find(marker="eval-submit").click()
    await until(lambda: jobs_in(home))
    await user.should_see("Evaluation queued as job #1.")
    [job] = jobs_in(home)
    assert job.kind == "eval"
    assert job.params == {"model": "smol", "tasks": "arc_easy,mmlu", "mode": "ppl", "shots": 5, "style": "base",
                          "circular": True, "cot": False, "limit": 0, "dtype": "auto", "workers": 1}
    await user.should_see("CC BY-SA 4.0 (AI2 ARC)")  # licence line of a chosen task


async def test_prompt_preview_and_bad_custom_set(home, user: User, tmp_path):
    await user.open("/evaluate")
    one(user, "eval-tasks").value = ["arc_easy"]
    user.find(marker="eval-preview").click()
    await until(lambda: one(user, "eval-preview-text").content)
    await user.should_see("Exactly what the model reads.")
    assert one(user, "eval-preview-text").content.startswith("Question: ")
    bad = tmp_path / "bad.csv"
    bad.write_text("question,A,B,answer\n问题,甲,乙,C\n", encoding="utf-8")
    one(user, "eval-tasks").value = []
    one(user, "eval-custom").value = str(bad)
    user.find(marker="eval-preview").click()
    await until(lambda: one(user, "eval-tasks").error)
    await user.should_see("line 2: field 'answer'")


async def test_results_leaderboard_compare_and_samples(home, user: User):
    runs = []
    for name, acc in (("model-a", 0.5), ("model-b", 0.75)):
        run = evals.start_run(home, model_ref=name, tasks="arc_easy", mode="ppl", settings={}, settings_hash="abc")
        evals.save_task(home, run.id, "arc_easy", "CC", {"acc": {"value": acc, "stderr": 0.1, "n": 4}},
                        [{"doc_id": "7", "prompt": "Question: 天空是什么颜色？\nAnswer:", "answer": "green",
                          "extracted": "B", "gold": "A", "correct": False}], "abc")
        evals.finish_run(home, run.id, "done")
        runs.append(run.id)
    await user.open("/evaluate")
    await until(lambda: {r["model"] for r in one(user, "eval-runs").rows} == {"model-a", "model-b"})
    one(user, "eval-lb-task").value = "arc_easy"
    user.find(marker="eval-lb-show").click()
    await until(lambda: one(user, "eval-leaderboard").rows)
    assert [(r["model"], r["score"]) for r in one(user, "eval-leaderboard").rows] == [("model-b", "75.00"),
                                                                                     ("model-a", "50.00")]
    one(user, "eval-run-a").value = runs[0]
    one(user, "eval-run-b").value = runs[1]
    user.find(marker="eval-compare").click()
    await until(lambda: one(user, "eval-compare-table").rows)
    [row] = one(user, "eval-compare-table").rows
    assert (row["delta"], row["stderr"]) == ("+25.00", "±14.14")
    one(user, "eval-sample-run").value = runs[0]
    user.find(marker="eval-samples-show").click()
    await until(lambda: user.find(content="arc_easy #7").elements)


async def test_the_page_says_which_code_sandbox_is_active(home, user: User):
    from engine.sandbox import isolation

    expected = {"namespaces": "own network, file and process namespaces", "seccomp": "seccomp network filter",
                "none": "a Python audit hook only"}[isolation().mode]
    await user.open("/evaluate")
    await user.should_see(marker="sandbox-status")
    await user.should_see(expected, retries=300)  # the probe starts one real sandbox: up to 30 s on busy cores


async def test_exported_ggufs_are_offered_beside_registered_models(home, user: User, bundled_model_dir, tmp_path):
    from app.tables import Export

    register_folder(home, bundled_model_dir, name="smol")
    gguf = tmp_path / "smol-q8_0.gguf"
    gguf.write_bytes(b"GGUF")
    with session(home) as s:
        s.add(Export(quant="q8_0", path=str(gguf)))
        s.add(Export(quant="f16", path=str(tmp_path / "deleted-f16.gguf")))  # gone from disk: not offered
    await user.open("/evaluate")
    await until(lambda: one(user, "eval-models").options)
    assert one(user, "eval-models").options == {"smol": "smol", str(gguf): "smol-q8_0.gguf (GGUF)"}
    one(user, "eval-models").value = [str(gguf)]
    one(user, "eval-adapter").value = str(tmp_path)  # an adapter cannot go onto a GGUF: said at its field
    user.find(marker="eval-submit").click()
    await until(lambda: one(user, "eval-adapter").error)
    assert "adapter: applies to an HF model" in one(user, "eval-adapter").error and jobs_in(home) == []
    one(user, "eval-adapter").value = ""
    user.find(marker="eval-submit").click()
    await until(lambda: jobs_in(home))
    assert jobs_in(home)[0].params["model"] == str(gguf)
    one(user, "eval-models").value = ["smol"]
    one(user, "eval-adapter").value = str(tmp_path)
    user.find(marker="eval-submit").click()
    await until(lambda: len(jobs_in(home)) == 2)
    assert jobs_in(home)[1].params["adapter"] == str(tmp_path)
