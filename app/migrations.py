"""Forward migrations: each step takes the schema from version N-1 to N inside one transaction.

Each step is the SQL it ran when it was released, written out (CREATE TABLE as the tables were at that
version, then ALTERs), never generated from today's models in app.tables: a database created now walks the
same steps as one created by the first release, so both end with the same schema (tests/test_migrations.py
compares them, and app.tables with the result). A released step is never edited; a change is a new step.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from app.errors import DatabaseError


def _run(conn: Connection, *statements: str) -> None:
    for sql in statements:
        conn.execute(text(sql))


def _v1_foundation(conn: Connection) -> None:
    _run(
        conn,
        """CREATE TABLE schema_version (
            id INTEGER NOT NULL,
            version INTEGER NOT NULL,
            updated_at FLOAT NOT NULL,
            PRIMARY KEY (id))""",
        """CREATE TABLE model (
            id INTEGER NOT NULL,
            name VARCHAR NOT NULL,
            path VARCHAR NOT NULL,
            source VARCHAR NOT NULL,
            source_path VARCHAR NOT NULL,
            arch VARCHAR NOT NULL,
            params INTEGER NOT NULL,
            context_len INTEGER NOT NULL,
            dtype VARCHAR NOT NULL,
            size_bytes INTEGER NOT NULL,
            has_chat_template BOOLEAN NOT NULL,
            managed BOOLEAN NOT NULL,
            parent_model_id INTEGER,
            dataset_id INTEGER,
            job_id INTEGER,
            created_at FLOAT NOT NULL,
            PRIMARY KEY (id),
            FOREIGN KEY(parent_model_id) REFERENCES model (id),
            FOREIGN KEY(dataset_id) REFERENCES dataset (id),
            FOREIGN KEY(job_id) REFERENCES job (id))""",
        "CREATE UNIQUE INDEX ix_model_name ON model (name)",
        """CREATE TABLE dataset (
            id INTEGER NOT NULL,
            name VARCHAR NOT NULL,
            path VARCHAR NOT NULL,
            format VARCHAR NOT NULL,
            rows INTEGER NOT NULL,
            size_bytes INTEGER NOT NULL,
            recipe JSON,
            inputs JSON,
            job_id INTEGER,
            created_at FLOAT NOT NULL,
            PRIMARY KEY (id),
            FOREIGN KEY(job_id) REFERENCES job (id))""",
        "CREATE UNIQUE INDEX ix_dataset_name ON dataset (name)",
        """CREATE TABLE job (
            id INTEGER NOT NULL,
            kind VARCHAR NOT NULL,
            title VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            params JSON,
            result JSON,
            progress FLOAT NOT NULL,
            message VARCHAR NOT NULL,
            eta_s FLOAT,
            error VARCHAR NOT NULL,
            needs_gpu BOOLEAN NOT NULL,
            gpu_index INTEGER,
            pid INTEGER,
            log_path VARCHAR NOT NULL,
            cancel_requested BOOLEAN NOT NULL,
            retry_of INTEGER,
            model_id INTEGER,
            dataset_id INTEGER,
            created_at FLOAT NOT NULL,
            started_at FLOAT,
            finished_at FLOAT,
            PRIMARY KEY (id),
            FOREIGN KEY(retry_of) REFERENCES job (id),
            FOREIGN KEY(model_id) REFERENCES model (id),
            FOREIGN KEY(dataset_id) REFERENCES dataset (id))""",
        "CREATE INDEX ix_job_created_at ON job (created_at)",
        "CREATE INDEX ix_job_kind ON job (kind)",
        "CREATE INDEX ix_job_status ON job (status)",
        """CREATE TABLE metric (
            id INTEGER NOT NULL,
            job_id INTEGER NOT NULL,
            step INTEGER NOT NULL,
            name VARCHAR NOT NULL,
            value FLOAT NOT NULL,
            t FLOAT NOT NULL,
            PRIMARY KEY (id),
            FOREIGN KEY(job_id) REFERENCES job (id))""",
        "CREATE INDEX ix_metric_job_id ON metric (job_id)",
        """CREATE TABLE host_sample (
            id INTEGER NOT NULL,
            t FLOAT NOT NULL,
            cpu_pct FLOAT NOT NULL,
            ram_used INTEGER NOT NULL,
            ram_total INTEGER NOT NULL,
            disk_used INTEGER NOT NULL,
            disk_total INTEGER NOT NULL,
            PRIMARY KEY (id))""",
        "CREATE INDEX ix_host_sample_t ON host_sample (t)",
        """CREATE TABLE gpu_sample (
            id INTEGER NOT NULL,
            t FLOAT NOT NULL,
            gpu INTEGER NOT NULL,
            name VARCHAR NOT NULL,
            util_pct FLOAT NOT NULL,
            mem_used INTEGER NOT NULL,
            mem_total INTEGER NOT NULL,
            temp_c FLOAT NOT NULL,
            power_w FLOAT NOT NULL,
            sm_clock_mhz FLOAT NOT NULL,
            PRIMARY KEY (id))""",
        "CREATE INDEX ix_gpu_sample_t ON gpu_sample (t)",
    )


def _v2_chat_history(conn: Connection) -> None:
    _run(
        conn,
        """CREATE TABLE chat_session (
            id INTEGER NOT NULL,
            title VARCHAR NOT NULL,
            system_prompt VARCHAR NOT NULL,
            models JSON,
            params JSON,
            created_at FLOAT NOT NULL,
            updated_at FLOAT NOT NULL,
            PRIMARY KEY (id))""",
        "CREATE INDEX ix_chat_session_updated_at ON chat_session (updated_at)",
        """CREATE TABLE chat_message (
            id INTEGER NOT NULL,
            session_id INTEGER NOT NULL,
            pane INTEGER NOT NULL,
            role VARCHAR NOT NULL,
            content VARCHAR NOT NULL,
            model_name VARCHAR NOT NULL,
            completion_tokens INTEGER NOT NULL,
            prompt_tokens INTEGER NOT NULL,
            cached_tokens INTEGER NOT NULL,
            tokens_per_s FLOAT NOT NULL,
            finish_reason VARCHAR NOT NULL,
            created_at FLOAT NOT NULL,
            PRIMARY KEY (id),
            FOREIGN KEY(session_id) REFERENCES chat_session (id))""",
        "CREATE INDEX ix_chat_message_session_id ON chat_message (session_id)",
    )


def _v3_exports(conn: Connection) -> None:
    _run(
        conn,
        """CREATE TABLE export (
            id INTEGER NOT NULL,
            model_id INTEGER,
            job_id INTEGER,
            adapter_path VARCHAR NOT NULL,
            format VARCHAR NOT NULL,
            quant VARCHAR NOT NULL,
            path VARCHAR NOT NULL,
            size_bytes INTEGER NOT NULL,
            metrics JSON,
            created_at FLOAT NOT NULL,
            PRIMARY KEY (id),
            FOREIGN KEY(model_id) REFERENCES model (id),
            FOREIGN KEY(job_id) REFERENCES job (id))""",
        "CREATE INDEX ix_export_model_id ON export (model_id)",
    )


def _v4_multi_gpu_jobs(conn: Connection) -> None:
    # A job may hold several GPUs (a multi-process finetune): a count and a list replace the flag and index.
    # Checked column by column: a database created by the release that added this step got them at v1.
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


def _v5_evaluation(conn: Connection) -> None:
    # Frozen DDL: the evaluation tables as released, independent of later edits to app/tables.py.
    _run(
        conn,
        """CREATE TABLE eval_run (
            id INTEGER NOT NULL PRIMARY KEY,
            model_ref VARCHAR NOT NULL DEFAULT '',
            model_id INTEGER REFERENCES model (id),
            export_id INTEGER REFERENCES export (id),
            dataset_id INTEGER REFERENCES dataset (id),
            job_id INTEGER REFERENCES job (id),
            tasks VARCHAR NOT NULL DEFAULT '',
            mode VARCHAR NOT NULL DEFAULT '',
            settings JSON,
            settings_hash VARCHAR NOT NULL DEFAULT '',
            status VARCHAR NOT NULL DEFAULT 'running',
            created_at FLOAT NOT NULL,
            finished_at FLOAT)""",
        "CREATE INDEX ix_eval_run_model_id ON eval_run (model_id)",
        "CREATE INDEX ix_eval_run_job_id ON eval_run (job_id)",
        "CREATE INDEX ix_eval_run_settings_hash ON eval_run (settings_hash)",
        "CREATE INDEX ix_eval_run_created_at ON eval_run (created_at)",
        """CREATE TABLE eval_result (
            id INTEGER NOT NULL PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES eval_run (id),
            task VARCHAR NOT NULL,
            metric VARCHAR NOT NULL,
            value FLOAT NOT NULL,
            stderr FLOAT,
            n INTEGER NOT NULL DEFAULT 0,
            settings_hash VARCHAR NOT NULL DEFAULT '',
            licence VARCHAR NOT NULL DEFAULT '')""",
        "CREATE INDEX ix_eval_result_run_id ON eval_result (run_id)",
        "CREATE INDEX ix_eval_result_task ON eval_result (task)",
        """CREATE TABLE eval_sample (
            id INTEGER NOT NULL PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES eval_run (id),
            task VARCHAR NOT NULL,
            doc_id VARCHAR NOT NULL DEFAULT '',
            rotation INTEGER NOT NULL DEFAULT 0,
            prompt VARCHAR NOT NULL DEFAULT '',
            answer VARCHAR NOT NULL DEFAULT '',
            extracted VARCHAR NOT NULL DEFAULT '',
            gold VARCHAR NOT NULL DEFAULT '',
            correct BOOLEAN NOT NULL DEFAULT 0,
            logprobs JSON,
            outcome VARCHAR NOT NULL DEFAULT '',
            detail JSON)""",
        "CREATE INDEX ix_eval_sample_run_id ON eval_sample (run_id)",
        "CREATE INDEX ix_eval_sample_task ON eval_sample (task)",
        """CREATE TABLE eval_cache (
            "key" VARCHAR NOT NULL PRIMARY KEY,
            value JSON,
            created_at FLOAT NOT NULL)""",
    )


def _v6_agents(conn: Connection) -> None:
    # Frozen DDL: the agent-run table as released, independent of later edits to app/tables.py.
    for ddl in (
        """CREATE TABLE agent_run (
            id INTEGER NOT NULL PRIMARY KEY,
            title VARCHAR NOT NULL DEFAULT '',
            question VARCHAR NOT NULL DEFAULT '',
            loop VARCHAR NOT NULL DEFAULT '',
            model VARCHAR NOT NULL DEFAULT '',
            tools JSON,
            status VARCHAR NOT NULL DEFAULT 'running',
            answer VARCHAR NOT NULL DEFAULT '',
            steps INTEGER NOT NULL DEFAULT 0,
            tokens INTEGER NOT NULL DEFAULT 0,
            rating INTEGER NOT NULL DEFAULT 0,
            trace JSON,
            created_at FLOAT NOT NULL,
            finished_at FLOAT)""",
        "CREATE INDEX ix_agent_run_status ON agent_run (status)",
        "CREATE INDEX ix_agent_run_rating ON agent_run (rating)",
        "CREATE INDEX ix_agent_run_created_at ON agent_run (created_at)",
    ):
        conn.execute(text(ddl))


MIGRATIONS = [_v1_foundation, _v2_chat_history, _v3_exports, _v4_multi_gpu_jobs, _v5_evaluation, _v6_agents]
SCHEMA_VERSION = len(MIGRATIONS)


def current_version(conn: Connection) -> int:
    if not inspect(conn).has_table("schema_version"):
        return 0
    row = conn.execute(text("SELECT version FROM schema_version WHERE id = 1")).first()
    return row[0] if row else 0


def migrate(engine: Engine, path: Path) -> int:
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
