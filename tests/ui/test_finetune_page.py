"""The Finetune wizard and run page against a real data dir: it renders, previews the token mask, estimates
memory, refuses bad input with the file/line/field message, and a run page shows its tools. No consumer runs;
the previews run in the worker process (app/worker_pool.py)."""

from __future__ import annotations

import json

import pytest
from nicegui.testing import User

from app.db import session
from app.registry import register_folder
from app.tables import Metric
from jobs import api


@pytest.fixture
def tiny(home, tiny_model_dir):
    return register_folder(home, tiny_model_dir("llama"), name="tiny-llama")


async def test_wizard_previews_mask_and_estimates(home, tiny, user: User, tmp_path):
    data = tmp_path / "chat.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"},
                                             {"role": "assistant", "content": "Hello"}]}) + "\n")
    await user.open("/finetune")
    await user.should_see("Base model")
    user.find(marker="data-path").type(str(data))
    user.find(marker="preview-button").click()
    # Tokenized in the worker process: the first preview waits for it to start and import transformers.
    await user.should_see("1 rows, format messages", retries=600)
    user.find(marker="estimate-button").click()
    await user.should_see("Peak GPU memory", retries=50)


async def test_wizard_reports_bad_data_with_line_and_field(home, tiny, user: User, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "x", "output": "y"}\n{"instruction": "x"}\n')
    await user.open("/finetune")
    user.find(marker="data-path").type(str(bad))
    user.find(marker="preview-button").click()
    await user.should_see("bad.jsonl: line 2: field 'output' is missing", retries=600)
    user.find(marker="launch-button").click()
    await user.should_see("data: ", retries=50)
    good = tmp_path / "good.jsonl"
    good.write_text('{"instruction": "x", "output": "y"}\n')
    user.find(marker="data-path").clear().type(str(good))
    user.find(marker="hp-lr").clear().type("-1")
    user.find(marker="launch-button").click()
    await user.should_see("field 'lr'", retries=50)
    assert not api.list_jobs(home)


async def test_run_page_shows_tools_and_compare(home, tiny, user: User, tmp_path):
    data = tmp_path / "chat.jsonl"
    data.write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n")
    job = api.submit(home, "finetune", {"model": "tiny-llama", "data": str(data)}, enqueue=False)
    with session(home) as s:
        s.add_all([Metric(job_id=job.id, step=i, name="loss", value=3.0 - i * 0.1) for i in range(1, 4)])
    await user.open(f"/finetune/{job.id}")
    await user.should_see("Compare runs")
    await user.should_see("Merge and register")
    await user.should_see("No checkpoint yet.")
    await user.open("/finetune/9999")
    await user.should_see("There is no finetune run with id 9999.")
