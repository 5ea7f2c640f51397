"""The Export page against a real data dir: the form queues an export_gguf job with the chosen model and
types (no consumer runs, so it stays queued and shows in the jobs list), refuses a bad adapter at its field
without queueing anything, and lists exported files with their verification numbers."""

from __future__ import annotations

from nicegui.testing import User
from sqlmodel import select

from app.db import session
from app.registry import register_folder
from app.tables import Export, Job
from jobs import status as st


def jobs_in(root) -> list[Job]:
    with session(root) as s:
        return list(s.exec(select(Job)).all())


async def test_empty_export_page(home, user: User):
    await user.open("/export")
    await user.should_see("Export a model to GGUF")
    await user.should_see("No export jobs yet.")
    await user.should_see("No exported files yet.")
    user.find(marker="export-submit").click()
    await user.should_see("Pick a model (register one on the Models page).")
    assert jobs_in(home) == []


async def test_submit_queues_one_export_job(home, user: User, bundled_model_dir):
    register_folder(home, bundled_model_dir, name="smol")
    await user.open("/export")
    user.find(marker="export-submit").click()
    await user.should_see("Export queued as job #1.")
    [job] = jobs_in(home)
    assert job.kind == "export_gguf" and job.status == st.QUEUED
    assert job.params == {"model": "smol", "quant": "f16,q8_0,q4_k_m", "verify": True}
    await user.should_see(marker=f"export-job-{job.id}")
    await user.should_see("Queued")


async def test_bad_adapter_is_refused_at_its_field(home, user: User, bundled_model_dir, tmp_path):
    register_folder(home, bundled_model_dir, name="smol")
    (tmp_path / "not-an-adapter").mkdir()
    await user.open("/export")
    user.find(marker="export-adapter").type(str(tmp_path / "not-an-adapter"))
    user.find(marker="export-submit").click()
    await user.should_see("is not a PEFT adapter folder (no adapter_config.json)")
    assert jobs_in(home) == []


async def test_exported_files_show_their_verification(home, user: User, bundled_model_dir):
    model = register_folder(home, bundled_model_dir, name="smol")
    with session(home) as s:
        s.add(Export(model_id=model.id, quant="q4_k_m", path="/exports/smol.Q4_K_M.gguf", size_bytes=105 * 2**20,
                     metrics={"ppl_delta_pct": 3.215, "top1_agreement": 0.912, "tokens_per_s": 87.4}))
    await user.open("/export")
    await user.should_see("smol.Q4_K_M.gguf")
    await user.should_see("Q4_K_M")
    await user.should_see("105 MiB")
    await user.should_see("+3.21 %")
    await user.should_see("0.912")
    await user.should_see("87.4")
    user.find(marker="copy-1").click()
    await user.should_see("Copied /exports")
    user.find(marker="download-1").click()  # the row's file was deleted since
    await user.should_see("/exports/smol.Q4_K_M.gguf is no longer there.")
    user.find(marker="chat-1").click()  # the Chat page opens with this file picked
    await user.should_see("smol.Q4_K_M.gguf · llama.cpp", retries=40)  # the Chat page fills in its pick async
