"""Forward migrations: each step takes the schema from version N-1 to N inside one transaction.

Each step creates the tables it introduced (or ALTERs existing ones) and is never edited once released, so
any older database walks up to the current version.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel

from app import tables


def _create(conn: Connection, *models) -> None:
    SQLModel.metadata.create_all(conn, tables=[m.__table__ for m in models])


def _v1_foundation(conn: Connection) -> None:
    _create(conn, tables.SchemaVersion, tables.Model, tables.Dataset, tables.Job, tables.Metric,
            tables.HostSample, tables.GpuSample)


def _v2_chat_history(conn: Connection) -> None:
    _create(conn, tables.ChatSession, tables.ChatMessage)


def _v3_exports(conn: Connection) -> None:
    _create(conn, tables.Export)


def _v4_multi_gpu_jobs(conn: Connection) -> None:
    # A job may hold several GPUs (a multi-process finetune): a count and a list replace the flag and index.
    # Checked column by column, since a database created at v1 by this release already has the new ones.
    columns = {c["name"] for c in inspect(conn).get_columns("job")}
    if "gpus" not in columns:
        conn.execute(text("ALTER TABLE job ADD COLUMN gpus INTEGER NOT NULL DEFAULT 0"))
        conn.execute(text("UPDATE job SET gpus = CASE WHEN needs_gpu THEN 1 ELSE 0 END"))
    if "gpu_indices" not in columns:
        conn.execute(text("ALTER TABLE job ADD COLUMN gpu_indices VARCHAR NOT NULL DEFAULT ''"))
        conn.execute(text("UPDATE job SET gpu_indices = CAST(gpu_index AS TEXT) WHERE gpu_index IS NOT NULL"))
    for old in ("needs_gpu", "gpu_index"):
        if old in columns:
            conn.execute(text(f"ALTER TABLE job DROP COLUMN {old}"))


MIGRATIONS = [_v1_foundation, _v2_chat_history, _v3_exports, _v4_multi_gpu_jobs]
SCHEMA_VERSION = len(MIGRATIONS)


def current_version(conn: Connection) -> int:
    if not inspect(conn).has_table(tables.SchemaVersion.__tablename__):
        return 0
    row = conn.execute(text("SELECT version FROM schema_version WHERE id = 1")).first()
    return row[0] if row else 0


def migrate(engine: Engine, path: Path) -> int:
    from app.db import DatabaseError

    with engine.begin() as conn:
        version = current_version(conn)
        if version > SCHEMA_VERSION:
            raise DatabaseError(
                f"{path}: database schema version {version} is newer than this app supports "
                f"({SCHEMA_VERSION}); update Inkstone or use another --data-dir"
            )
        for step in range(version, SCHEMA_VERSION):
            MIGRATIONS[step](conn)
            conn.execute(
                text(
                    "INSERT INTO schema_version (id, version, updated_at) VALUES (1, :v, strftime('%s','now')) "
                    "ON CONFLICT(id) DO UPDATE SET version = :v, updated_at = strftime('%s','now')"
                ),
                {"v": step + 1},
            )
    return SCHEMA_VERSION
