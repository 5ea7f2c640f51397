"""The Home page against a real data dir: counts, the last five jobs, the hardware summary on a machine
without NVIDIA GPUs, the self-test button (queues a job and opens it), and the page in Chinese."""

from __future__ import annotations

import pytest
from nicegui.testing import User
from sqlmodel import select

from app.db import session
from app.registry import register_folder
from app.tables import Dataset, Job
from jobs import status as st
from ui import i18n


@pytest.fixture
def chinese():
    i18n.set_language("zh")
    yield
    i18n.set_language("en")


def seed_jobs(root, statuses: list[str]) -> list[Job]:
    with session(root) as s:
        jobs = [Job(kind="selftest", title="Self-test: load and generate", status=status) for status in statuses]
        s.add_all(jobs)
    return jobs


async def test_empty_home(home, user: User):
    await user.open("/")
    await user.should_see("What is here")
    await user.should_see("No jobs yet.")
    await user.should_see("No NVIDIA GPU found")  # no driver on CI machines
    await user.should_see("threads")


async def test_counts_and_recent_jobs(home, user: User, bundled_model_dir):
    register_folder(home, bundled_model_dir, name="smol")
    with session(home) as s:
        s.add(Dataset(name="notes", path=str(home / "notes.jsonl")))
    jobs = seed_jobs(home, [st.FAILED, st.FAILED, st.SUCCEEDED, st.QUEUED, st.QUEUED, st.RUNNING])
    await user.open("/")
    await user.should_see("Failed: 2")
    await user.should_see("Queued: 2")
    await user.should_see("Running: 1")
    await user.should_see("Succeeded: 1")
    for job in jobs[1:]:
        await user.should_see(marker=f"job-row-{job.id}")
    await user.should_not_see(marker=f"job-row-{jobs[0].id}")  # only the last five


async def test_selftest_needs_a_model(home, user: User):
    await user.open("/")
    user.find(marker="run-selftest").click()
    await user.should_see("No model is registered yet")
    with session(home) as s:
        assert s.exec(select(Job)).all() == []


async def test_selftest_queues_and_opens_the_job(home, user: User, bundled_model_dir):
    model = register_folder(home, bundled_model_dir, name="smol")
    await user.open("/")
    user.find(marker="run-selftest").click()
    await user.should_see("Self-test: load and generate", retries=20)  # its job page
    await user.should_see("Model: smol")  # lineage
    with session(home) as s:
        [job] = s.exec(select(Job)).all()
    assert job.kind == "selftest" and job.status == st.QUEUED
    assert job.params == {"model": "smol"} and job.model_id == model.id
    await user.should_see(f"#{job.id} Self-test: load and generate")


async def test_home_in_chinese(home, user: User, chinese):
    await user.open("/")
    await user.should_see("运行自检")
    await user.should_see("最近的任务")
    await user.should_see("未发现 NVIDIA GPU")
