"""The Datasets pages against a real data dir: a finished run (made by the real runner) shows its funnel,
drop reasons, histograms, samples and clusters; the form previews a file, refuses a bad recipe at the form and
queues a good run (no consumer runs, so it stays queued); an unknown id gets a message."""

from __future__ import annotations

from nicegui import ui
from nicegui.testing import User
from sqlmodel import select

from app.db import session
from app.tables import Dataset, Job
from engine.data.recipe import load_recipe
from engine.data.runner import RunOptions, run_recipe
from tests.data.test_pipeline import write_corpus


def finished_run(home, tmp_path) -> Dataset:
    write_corpus(tmp_path / "in.jsonl")
    out = home / "datasets" / "web"
    manifest = run_recipe(load_recipe("default"), RunOptions([str(tmp_path / "in.jsonl")], out, workers=1))
    with session(home) as s:
        ds = Dataset(name="web", path=str(out), format="jsonl:text", rows=manifest["rows_written"], size_bytes=1234,
                     recipe=manifest["recipe"], inputs=[str(tmp_path / "in.jsonl")])
        s.add(ds)
        s.flush()
        return ds


async def test_empty_datasets_page(home, user: User):
    await user.open("/datasets")
    await user.should_see("No datasets yet. Run a recipe to make one.")
    await user.should_see(marker="recipe-editor")
    await user.should_see("Datasets")


async def test_finished_run_shows_funnel_and_reasons(home, tmp_path, user: User):
    ds = finished_run(home, tmp_path)
    await user.open("/datasets")
    await user.should_see("web")
    await user.open(f"/datasets/{ds.id}")
    await user.should_see(marker="dataset-title")
    await user.should_see("Read 65 records")
    await user.should_see("Kept 60")
    funnel = user.find(marker="funnel").elements.pop()
    assert isinstance(funnel, ui.echart)
    bars = funnel.options["series"][0]["data"][::-1]
    labels = funnel.options["yAxis"]["data"][::-1]
    assert labels[0] == "read" and labels[-1] == "format" and bars[0] == 65 and bars[-1] == 60
    table = user.find(marker="drop-table").elements.pop()
    reasons = {row["reason"]: row["count"] for row in table.rows}
    assert reasons == {"too_short": 1, "language_not_wanted": 1, "exact_duplicate": 2, "near_duplicate": 1,
                       "broken_json": 1}
    await user.should_see(marker="hist-chars")
    await user.should_see(marker="languages")
    await user.should_see("Skipped input (1)")


async def test_preview_and_submit_a_run(home, tmp_path, user: User):
    write_corpus(tmp_path / "in.jsonl", n=8)
    await user.open("/datasets")
    user.find(marker="data-input").type(str(tmp_path / "in.jsonl"))
    user.find(marker="preview").click()
    await user.should_see("in.jsonl: format jsonl")
    user.find(marker="recipe-editor").elements.pop().set_value('{"steps": [{"step": "length", "min_chars": "x"}]}')
    user.find(marker="run").click()
    await user.should_see("step 1 (length): min_chars")
    with session(home) as s:
        assert s.exec(select(Job)).all() == []
    user.find(marker="preset").elements.pop().set_value("sft-clean")
    user.find(marker="run").click()
    await user.should_see("Queued data run")
    with session(home) as s:
        job = s.exec(select(Job)).one()
    assert job.kind == "data_prep" and job.params["recipe"] == "sft-clean"
    await user.should_see(f"#{job.id}")


async def test_unknown_dataset_id(home, user: User):
    await user.open("/datasets/999")
    await user.should_see("There is no dataset with id 999.")


def test_every_datasets_string_has_a_chinese_translation():
    import ast
    from pathlib import Path

    from ui.locales.zh_datasets import ZH

    repo = Path(__file__).resolve().parents[2]
    texts = set()
    for path in (repo / "ui/pages/datasets.py", repo / "ui/components/dataset_report.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "t" and node.args \
                    and isinstance(node.args[0], ast.Constant):
                texts.add(node.args[0].value)
    assert sorted(texts - ZH.keys()) == []
