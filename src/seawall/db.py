"""Database plumbing: the declarative base, engines with per-dialect settings, sessions."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

# Stable constraint names, so Alembic migrations are identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _make_private(database: str | None) -> None:
    """The database file and its WAL and shared-memory files readable by this user only. SQLite gives
    -wal and -shm the main file's mode, so doing this before WAL is switched on covers new ones too."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):  # absent yet, or another user's file: not ours to change
            os.chmod(database + suffix, 0o600)


def _configure_sqlite(engine: Engine) -> None:
    first = [True]

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        if first[0]:
            first[0] = False
            _make_private(engine.url.database)
        # Take over transaction control from pysqlite so BEGIN is emitted when SQLAlchemy begins.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A transaction that reads and then writes must hold the write lock from its start: a
        # deferred one fails at once with "database is locked" when another writer got in first.
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` with Seawall's settings (SQLite: WAL, foreign keys, busy timeout)."""
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
        if ":memory:" not in url and url.rstrip("/") not in ("sqlite:", "sqlite+pysqlite:"):
            # Enough pooled connections for a server's thread pool: opening one runs the PRAGMAs.
            kwargs.setdefault("pool_size", 20)
            kwargs.setdefault("max_overflow", 20)
        engine = create_engine(url, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def make_sessionmaker(engine: Engine, *, writes: bool = True) -> sessionmaker[Session]:
    """Sessions on ``engine``. With ``writes`` (the default) a SQLite transaction takes the write lock
    when it begins, so read-then-write logic never fails midway; ``writes=False`` is for hot paths
    that only read (they then run alongside each other and alongside a writer, as WAL allows)."""
    if writes and engine.dialect.name == "sqlite":
        return sessionmaker(bind=engine.execution_options(sqlite_immediate=True), expire_on_commit=False)
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits together, or rolls back together on any error."""
    with factory() as session, session.begin():
        yield session


_default_engine: Engine | None = None


def default_engine() -> Engine:
    """The engine for the configured database (CLI and worker; the web app keeps its own)."""
    global _default_engine
    from seawall.config import get_settings

    settings = get_settings()
    if _default_engine is None or str(_default_engine.url) != settings.effective_database_url:
        if settings.effective_database_url.startswith("sqlite"):
            settings.ensure_home()
        _default_engine = make_engine(settings.effective_database_url)
    return _default_engine


def default_sessionmaker(*, writes: bool = True) -> sessionmaker[Session]:
    return make_sessionmaker(default_engine(), writes=writes)


class _WriterTurn:
    """One process's side of a file lock shared by the processes writing to one SQLite file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.threads = threading.Lock()  # this process's writers queue here, without touching the file
        self.fd: int | None = None
        self.pid = os.getpid()

    @contextmanager
    def held(self) -> Iterator[None]:
        with self.threads:
            if self.fd is None:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self.fd, fcntl.LOCK_UN)


_writer_turns: dict[str, _WriterTurn] = {}
_writer_turns_lock = threading.Lock()


@contextmanager
def writer_turn(session: Session) -> Iterator[None]:
    """Queue for the SQLite write lock on a file lock beside the database (``<file>-writelock``).

    SQLite admits one writer and its busy handler sleeps and polls (1, 2, 5 … 100 ms), so under
    load a short write can wait tens of milliseconds for a lock that was free for most of that
    time; the kernel hands a file lock to the next waiter the moment it is released. For short,
    frequent writes from several processes (the match log). PostgreSQL queues writers on row
    locks itself, and a private in-memory SQLite has no other writer: both pass straight through."""
    url = session.get_bind().engine.url
    database = url.database if url.get_backend_name() == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    path = os.path.abspath(database) + "-writelock"
    with _writer_turns_lock:
        turn = _writer_turns.get(path)
        if turn is None or turn.pid != os.getpid():  # a forked child needs a lock of its own
            turn = _writer_turns[path] = _WriterTurn(path)
    with turn.held():
        yield
