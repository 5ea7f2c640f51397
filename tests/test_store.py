"""The SQLite store and settings: WAL, newer schemas refused, bad files named with their field.

Migrating an older database forward: tests/test_migrations.py.
"""

from __future__ import annotations

import json
import sqlite3

import pytest
from sqlmodel import select

from app import db, migrations
from app.db import get_engine, session
from app.errors import DatabaseError
from app.settings import Settings, SettingsError, data_dir, load_settings, save_settings
from app.tables import Dataset, Job, Metric, Model


def test_fresh_database_is_wal_and_versioned(home):
    get_engine(home)
    con = sqlite3.connect(home / db.DB_FILE)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT version FROM schema_version").fetchone()[0] == migrations.SCHEMA_VERSION
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"model", "dataset", "job", "metric", "host_sample", "gpu_sample"} <= tables


def test_lineage_links_and_rollback(home):
    with session(home) as s:
        job = Job(kind="selftest")
        s.add(job)
        s.flush()
        data = Dataset(name="d", path="/x", job_id=job.id)
        s.add(data)
        s.flush()
        s.add(Model(name="m", path="/m", source="finetune", dataset_id=data.id, job_id=job.id))
    with pytest.raises(RuntimeError), session(home) as s:
        s.add(Metric(job_id=job.id, step=1, name="loss", value=1.0))
        raise RuntimeError("boom")  # nothing of this transaction may land
    with session(home) as s:
        model = s.exec(select(Model)).one()
        assert s.get(Dataset, model.dataset_id).job_id == job.id
        assert s.exec(select(Metric)).all() == []


def test_newer_database_is_refused_untouched(home):
    get_engine(home)
    db._engines.clear()
    con = sqlite3.connect(home / db.DB_FILE)
    con.execute("UPDATE schema_version SET version = 999")
    con.commit()
    con.close()
    with pytest.raises(DatabaseError, match="schema version 999 is newer"):
        get_engine(home)
    con = sqlite3.connect(home / db.DB_FILE)
    assert con.execute("SELECT version FROM schema_version").fetchone()[0] == 999


def test_settings_round_trip_and_bad_files(home):
    assert load_settings(home) == Settings()
    save_settings(home, Settings(port=9000, language="zh"))
    assert load_settings(home).port == 9000
    (home / "settings.json").write_text(json.dumps({"port": 70000}))
    with pytest.raises(SettingsError, match="field 'port'"):
        load_settings(home)
    (home / "settings.json").write_text("{oops")
    with pytest.raises(SettingsError, match="settings.json: line 1"):
        load_settings(home)


def test_data_dir_that_is_a_file_is_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SettingsError, match=str(blocker)):
        data_dir(blocker / "home")


def test_many_processes_and_threads_open_a_new_database_at_once(home):
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from tests.helpers import REPO

    code = "from pathlib import Path; import sys; from app.db import get_engine; get_engine(Path(sys.argv[1]))"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(home)], cwd=REPO, stderr=subprocess.PIPE)
             for _ in range(3)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: get_engine(home), range(4)))
    for p in procs:
        assert p.wait(60) == 0, p.stderr.read().decode()
