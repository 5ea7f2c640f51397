"""The Jobs list and job detail pages against a real SQLite data dir: seeded rows show, cancel and retry write
the database, an unknown id gets a message instead of an error page. No consumer runs: submitted jobs stay
queued, which is all these pages need."""

from __future__ import annotations

import time

from nicegui.testing import User
from sqlmodel import select

from app.db import session
from app.tables import Job, Metric
from jobs import api
from jobs import status as st


def seed_job(root, **fields) -> Job:
    fields.setdefault("kind", "selftest")
    fields.setdefault("title", "Self-test: load and generate")
    with session(root) as s:
        job = Job(**fields)
        s.add(job)
        s.flush()
        job.log_path = str(api.log_path(root, job.id))
    return job


async def test_empty_jobs_page(home, user: User):
    await user.open("/jobs")
    await user.should_see("No jobs yet.")


async def test_running_job_shows_progress_and_status(home, user: User):
    now = time.time()
    job = seed_job(home, status=st.RUNNING, progress=0.42, eta_s=125, message="generated 13/32 tokens",
                   started_at=now - 30)
    await user.open("/jobs")
    await user.should_see(f"#{job.id}")
    await user.should_see("Running")
    await user.should_see("42%")
    await user.should_see("ETA 2m 05s")
    await user.should_see("generated 13/32 tokens")
    await user.should_not_see("No jobs yet.")


async def test_cancel_queued_job_from_list(home, user: User):
    job = seed_job(home, status=st.QUEUED)
    await user.open("/jobs")
    user.find(marker=f"cancel-{job.id}").click()
    await user.should_see("Cancelled")
    assert api.get_job(home, job.id).status == st.CANCELLED
    await user.should_not_see(marker=f"cancel-{job.id}")
    await user.should_see(marker=f"retry-{job.id}")


async def test_kind_filter(home, user: User):
    seed_job(home, status=st.SUCCEEDED, progress=1.0, title="Self-test: load and generate")
    seed_job(home, kind="import_model", title="Import model", status=st.QUEUED)
    await user.open("/jobs")
    await user.should_see("Import model")
    user.find(marker="kind-filter").elements.pop().value = "selftest"
    await user.should_not_see("Import model")
    await user.should_see("Self-test: load and generate")


async def test_new_job_appears_live(home, user: User):
    await user.open("/jobs")
    await user.should_see("No jobs yet.")
    job = seed_job(home, status=st.QUEUED, kind="import_model", title="Import model")
    await user.should_see(f"#{job.id}", retries=30)
    await user.should_see("Queued")


async def test_unknown_job_id_says_so(home, user: User):
    await user.open("/jobs/999")
    await user.should_see("There is no job with id 999.")
    await user.open("/jobs/not-a-number")
    await user.should_see("There is no job with id not-a-number.")


async def test_failed_job_detail_shows_metrics_log_error_and_retries(home, user: User):
    now = time.time()
    job = seed_job(home, status=st.FAILED, progress=0.5, message="generated 16/32 tokens",
                   error="Traceback (most recent call last):\nRuntimeError: out of memory",
                   params={"model": "tiny", "max_new_tokens": 32}, started_at=now - 20, finished_at=now - 5)
    with session(home) as s:
        for step in range(1, 4):
            s.add(Metric(job_id=job.id, step=step, name="tokens_per_s", value=10.0 * step))
    log = api.log_path(home, job.id)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("loading tiny\ngenerated 16/32 tokens\n")

    await user.open(f"/jobs/{job.id}")
    await user.should_see("Failed")
    await user.should_see("RuntimeError: out of memory")
    await user.should_see("max_new_tokens")
    await user.should_see("generated 16/32 tokens")
    await user.should_see("loading tiny")
    chart = user.find(marker="metric-chart").elements.pop()
    series = chart.options["series"]
    assert [s["name"] for s in series] == ["tokens_per_s"]
    assert series[0]["data"] == [[1, 10.0], [2, 20.0], [3, 30.0]]

    user.find(marker=f"retry-{job.id}").click()
    await user.should_see(f"Retry of job #{job.id}", retries=20)
    with session(home) as s:
        retried = s.exec(select(Job).where(Job.retry_of == job.id)).all()
    assert len(retried) == 1
    assert retried[0].status == st.QUEUED and retried[0].params == job.params


async def test_running_job_detail_appends_new_metrics(home, user: User):
    job = seed_job(home, status=st.RUNNING, progress=0.1, started_at=time.time() - 3)
    await user.open(f"/jobs/{job.id}")
    await user.should_see("No metrics recorded yet.")
    with session(home) as s:
        s.add(Metric(job_id=job.id, step=1, name="loss", value=2.5))
        s.add(Metric(job_id=job.id, step=1, name="lr", value=1e-4))
    await user.should_see(marker="metric-chart", retries=30)  # shown once the 1 s poll brings metrics
    await user.should_not_see("No metrics recorded yet.")
    chart = user.find(marker="metric-chart").elements.pop()
    assert {s["name"]: s["data"] for s in chart.options["series"]} == {"loss": [[1, 2.5]], "lr": [[1, 1e-4]]}
