"""The SQLite database: one file in the data dir, WAL mode, opened the same way by every process.

WAL lets the web app read progress rows while the consumer and job workers write them. Schema changes are
forward migrations keyed by version (app.migrations); a database newer than this app is refused with a clear
message rather than touched.
"""

from __future__ import annotations

import fcntl
import threading
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, create_engine

from app.errors import DatabaseError
from app.migrations import migrate

DB_FILE = "inkstone.db"
_engines: dict[Path, Engine] = {}
_engines_lock = threading.Lock()


def _on_connect(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def get_engine(root: Path) -> Engine:
    """The SQLAlchemy engine for the data dir at root, migrated to the current schema on first use."""
    path = (root / DB_FILE).resolve()
    with _engines_lock:
        if path not in _engines:
            engine = create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False, "timeout": 10})
            event.listen(engine, "connect", _on_connect)
            _migrate_once(engine, path)
            _engines[path] = engine
        return _engines[path]


def _migrate_once(engine: Engine, path: Path) -> None:
    """Migrate under a file lock: the web app, the consumer and the CLI may all open a new database at once."""
    with open(path.with_name(path.name + ".migrate-lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            migrate(engine, path)
        except OperationalError as e:
            raise DatabaseError(f"{path}: cannot open the database ({e.orig})") from None


@contextmanager
def session(root: Path):
    """A session that commits on success and rolls back on error: writes are all-or-nothing."""
    with Session(get_engine(root), expire_on_commit=False) as s:
        try:
            yield s
            s.commit()
        except Exception:
            s.rollback()
            raise
