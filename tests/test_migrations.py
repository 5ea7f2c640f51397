"""Migrations are frozen SQL: a database from the first release and a new one end with the same schema, and
the models in app.tables match that schema column for column."""

from __future__ import annotations

import re
import sqlite3

from sqlalchemy import create_engine
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlmodel import SQLModel

from app import db, migrations, tables  # noqa: F401 - tables registers the models in SQLModel.metadata
from app.db import get_engine

# The job table as the first release created it (v4 replaced needs_gpu and gpu_index).
FIRST_RELEASE_JOB_COLUMNS = [
    "id", "kind", "title", "status", "params", "result", "progress", "message", "eta_s", "error", "needs_gpu",
    "gpu_index", "pid", "log_path", "cancel_requested", "retry_of", "model_id", "dataset_id", "created_at",
    "started_at", "finished_at",
]


def _normalized(sql: str | None) -> str:
    """CREATE statements compared without layout or identifier quoting (ALTER TABLE rewrites both)."""
    return re.sub(r"\s+", " ", re.sub(r"\s*([(),])\s*", r"\1", (sql or "").replace('"', ""))).strip()


def schema(path) -> dict:
    """Everything SQLite knows of a database's schema: sqlite_master, and each table's columns, indexes, keys."""
    con = sqlite3.connect(path)
    master = sorted((t, n, tbl, _normalized(sql)) for t, n, tbl, sql in
                    con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"))
    detail = {}
    for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        detail[name] = {
            "columns": con.execute(f"PRAGMA table_info({name})").fetchall(),
            "indexes": sorted(con.execute(f"PRAGMA index_list({name})").fetchall()),
            "foreign_keys": sorted(con.execute(f"PRAGMA foreign_key_list({name})").fetchall()),
        }
    con.close()
    return {"master": master, "tables": detail}


def test_a_first_release_database_and_a_new_one_end_identical(tmp_path):
    old_root, new_root = tmp_path / "old", tmp_path / "new"
    old_root.mkdir()
    new_root.mkdir()
    # The first release: schema version 1, written by its frozen DDL, with rows in it.
    old = create_engine(f"sqlite:///{old_root / db.DB_FILE}")
    with old.begin() as conn:
        migrations.MIGRATIONS[0](conn)
        conn.exec_driver_sql("INSERT INTO schema_version (id, version, updated_at) VALUES (1, 1, 0)")
        conn.exec_driver_sql("INSERT INTO job (kind, title, status, params, result, progress, message, error, "
                             "needs_gpu, gpu_index, log_path, cancel_requested, created_at) VALUES "
                             "('serve', '', 'succeeded', '{}', '{}', 1, '', '', 1, 0, '', 0, 0)")
    old.dispose()
    con = sqlite3.connect(old_root / db.DB_FILE)
    assert [r[1] for r in con.execute("PRAGMA table_info(job)")] == FIRST_RELEASE_JOB_COLUMNS, "v1 is not frozen"
    con.close()
    get_engine(old_root)  # migrates v1 → now
    get_engine(new_root)  # created now
    old_schema, new_schema = schema(old_root / db.DB_FILE), schema(new_root / db.DB_FILE)
    assert old_schema["master"] == new_schema["master"]
    assert old_schema["tables"] == new_schema["tables"]
    con = sqlite3.connect(old_root / db.DB_FILE)
    assert con.execute("SELECT kind, gpus, gpu_indices FROM job").fetchall() == [("serve", 1, "0")]


def test_the_models_match_the_migrated_schema(home):
    get_engine(home)
    con = sqlite3.connect(home / db.DB_FILE)
    in_db = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert set(SQLModel.metadata.tables) == in_db, "a table without a migration, or a migration without a model"
    for name, table in SQLModel.metadata.tables.items():
        rows = con.execute(f"PRAGMA table_info({name})").fetchall()
        db_columns = {r[1]: (r[2].upper(), bool(r[3]) or bool(r[5]), bool(r[5])) for r in rows}
        model_columns = {c.name: (c.type.compile(dialect=sqlite_dialect.dialect()).upper(),
                                  not c.nullable or c.primary_key, c.primary_key) for c in table.columns}
        assert model_columns == db_columns, f"table {name}: (type, not null, primary key) differ"
        db_indexes = {}
        for _, index, unique, *_ in con.execute(f"PRAGMA index_list({name})"):
            if not index.startswith("sqlite_autoindex"):
                cols = tuple(r[2] for r in con.execute(f"PRAGMA index_info({index})"))
                db_indexes[index] = (bool(unique), cols)
        model_indexes = {ix.name: (bool(ix.unique), tuple(c.name for c in ix.columns)) for ix in table.indexes}
        assert model_indexes == db_indexes, f"table {name}: indexes differ"
        db_keys = {(r[3], r[2], r[4]) for r in con.execute(f"PRAGMA foreign_key_list({name})")}
        model_keys = {(fk.parent.name, fk.column.table.name, fk.column.name) for fk in table.foreign_keys}
        assert model_keys == db_keys, f"table {name}: foreign keys differ"
