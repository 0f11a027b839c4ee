"""Database engines for the two backends, and migrations applied on start.

SQLite (the embedded default) runs in WAL mode with ``synchronous=FULL`` so an
acknowledged write survives a power cut, and every transaction starts with
``BEGIN IMMEDIATE`` so writers queue instead of failing half-way; ``secure_delete`` is
on, so deleted content is overwritten. Its folder must
exist: a mistyped path is refused, not created.

Errors: ``DatabaseUrlError`` for a URL that cannot work (bad form, missing folder),
``DatabaseUnavailable`` for a database that cannot be opened or migrated now
(unreachable, refusing the login, missing); both carry one line for the operator,
never a password.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Executable, Row, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

logger = logging.getLogger(__name__)

# How long a PostgreSQL connection attempt may take (asyncpg's default is 60 s).
CONNECT_TIMEOUT = 10.0


class DatabaseError(Exception):
    """A database that cannot be used; the message is one line for the operator."""


class DatabaseUrlError(DatabaseError, ValueError):
    pass


class DatabaseUnavailable(DatabaseError):
    pass


def _parse(full: str) -> URL:
    try:
        return make_url(full)
    except ValueError:  # e.g. a port that is not a number
        raise DatabaseUrlError(
            "the database URL must look like sqlite:///PATH or postgresql://USER@HOST:PORT/DB"
        ) from None


def async_url(url: str) -> str:
    """Map the contract's ``sqlite:///PATH`` / ``postgresql://...`` to async drivers."""
    if url.startswith("sqlite:///"):
        if url == "sqlite:///":
            raise DatabaseUrlError("sqlite:/// needs the path of the database file")
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    for prefix in ("postgresql://", "postgres://", "postgresql+asyncpg://"):
        if url.startswith(prefix):
            full = "postgresql+asyncpg://" + url.removeprefix(prefix)
            _parse(full)
            return full
    raise DatabaseUrlError(
        "the database URL must look like sqlite:///PATH or postgresql://USER@HOST:PORT/DB"
    )


def _shown(url: URL) -> str:
    """``url`` in the contract's form, with any password replaced by ``***``."""
    return url.set(drivername=url.get_backend_name()).render_as_string(hide_password=True)


def sqlite_path(url: str) -> Path | None:
    """The database file of an ``sqlite:///PATH`` URL; None for PostgreSQL and ``:memory:``."""
    full = async_url(url)
    if not full.startswith("sqlite"):
        return None
    database = _parse(full).database
    if not database or database == ":memory:":
        return None
    return Path(database)


def check_sqlite_folder(url: str) -> None:
    """Refuse an SQLite path whose folder does not exist (a typo must not grow a tree)."""
    path = sqlite_path(url)
    if path is not None and not path.parent.is_dir():
        raise DatabaseUrlError(f"the folder of the SQLite database {path} does not exist")


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would defer it).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # secure_delete: freed cells and pages are zeroed, so an erased name or a purged
    # email is gone from the file, not merely unlinked (erasure_store.py).
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON",
                   "busy_timeout=15000", "secure_delete=ON"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(url: str) -> AsyncEngine:
    full = async_url(url)
    if full.startswith("sqlite"):
        check_sqlite_folder(url)
        engine = create_async_engine(full, pool_size=8, max_overflow=0, pool_timeout=60)
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
        return engine
    return create_async_engine(full, pool_size=10, max_overflow=10, pool_pre_ping=True,
                               connect_args={"timeout": CONNECT_TIMEOUT})


class Reader:
    """Runs one read-only query and returns its rows: the hot reads (a join's room
    lookup) take this path.

    On SQLite through aiosqlite every step of a query (cursor, execute, fetch, close,
    the transaction's BEGIN and ROLLBACK) is a hop to the connection's thread and back,
    about nine per lookup and 3 ms of CPU here; and our BEGIN IMMEDIATE makes each read
    queue for the write lock. A file database is therefore read here in one hop, on a
    connection of a synchronous engine opened read-only (``mode=ro``): in WAL mode a
    read sees the last committed state and never waits for a writer. PostgreSQL (asyncpg,
    no threads) and in-memory SQLite read through the main engine.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sync: sqlalchemy.Engine | None = None
        database = engine.url.database
        if engine.dialect.name == "sqlite" and database and database != ":memory:":
            self._sync = sqlalchemy.create_engine(
                f"sqlite:///file:{Path(database).resolve()}?mode=ro&uri=true",
                connect_args={"check_same_thread": False}, pool_size=4, max_overflow=0,
                pool_timeout=60)
            event.listen(self._sync, "connect", _sqlite_on_connect_reader)

    async def all(self, query: Executable, params: dict[str, Any] | None = None
                  ) -> Sequence[Row[Any]]:
        if self._sync is None:
            async with self._engine.connect() as conn:
                return (await conn.execute(query, params)).all()
        return await asyncio.to_thread(self._all, self._sync, query, params)

    @staticmethod
    def _all(engine: sqlalchemy.Engine, query: Executable, params: dict[str, Any] | None
             ) -> Sequence[Row[Any]]:
        with engine.connect() as conn:
            return conn.execute(query, params).all()

    def close(self) -> None:
        if self._sync is not None:
            self._sync.dispose()


def _sqlite_on_connect_reader(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA busy_timeout=15000")  # a checkpoint may hold a lock


def _alembic_config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "booking_gate:migrations")
    cfg.attributes["connection"] = connection
    return cfg


# Any fixed 64-bit number, the same in every gate process: "carecall" in ASCII.
MIGRATION_LOCK = 0x6361726563616C6C


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Several gate processes may start at once on one database: one migrates, the
        # others wait here and then find the schema at head. A transaction-level lock,
        # released by the commit that ends the migration (or by a crash).
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
    command.upgrade(_alembic_config(connection), "head")


def _reason(error: BaseException) -> str:
    """What went wrong, in one line and without the driver's decoration."""
    if isinstance(error, DBAPIError) and error.orig is not None:
        # The driver's own message (asyncpg's 'database "x" does not exist', sqlite3's
        # 'unable to open database file'), not SQLAlchemy's multi-line wrapping.
        text = str(error.orig.__cause__ or error.orig)
    elif isinstance(error, socket.gaierror):
        text = f"cannot resolve the host ({error.strerror})"
    elif isinstance(error, OSError) and error.errno is not None:
        text = os.strerror(error.errno).lower()
    elif isinstance(error, TimeoutError):
        text = f"no answer within {CONNECT_TIMEOUT:g} s"
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision (idempotent, and safe to run concurrently).

    Raises ``DatabaseUnavailable`` when the database cannot be reached, refuses the
    login, does not exist or cannot be written.
    """
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade)
    except (DBAPIError, OSError) as error:  # OSError includes TimeoutError
        raise DatabaseUnavailable(f"cannot open the database {_shown(engine.url)}: "
                                  f"{_reason(error)}") from error
    logger.info("database schema is up to date")
