"""The database itself refuses double booking, and its set-up is idempotent and durable.

These tests write rows with raw SQLAlchemy Core, past the application's own checks in
``store.Store``, so only the schema (PostgreSQL's exclusion constraint, SQLite's triggers)
stands between them and an overlap.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from booking_gate.db import schema as t
from booking_gate.db.engine import create_engine, migrate


def _script_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "booking_gate:migrations")
    return config


START = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated engine on the backend under test, with one professional and one client."""
    engine = create_engine(db_url)
    try:
        await migrate(engine)
        async with engine.begin() as conn:
            await conn.execute(t.professionals.insert().values(
                professional_id="pro-1", name="Dr Pro", email="pro@example.org",
                timezone="Europe/Oslo", session_minutes=50, buffer_minutes=10,
                availability="[]", updated_at=NOW))
            await conn.execute(t.clients.insert().values(
                client_id="cli-1", name="Cli Ent", email="client@example.org",
                timezone="Europe/Oslo", hub_id=None, updated_at=NOW))
        yield engine
    finally:
        await engine.dispose()


def booking_row(booking_id: str, start: datetime, minutes: int = 50, *,
                status: str = "confirmed", professional_id: str = "pro-1") -> dict[str, Any]:
    return {"booking_id": booking_id, "professional_id": professional_id, "client_id": "cli-1",
            "hub_id": None, "starts_at": start, "ends_at": start + timedelta(minutes=minutes),
            "funding": "private", "source": "direct", "status": status,
            "room_id": f"room-{booking_id}", "created_at": NOW, "changed_at": NOW,
            "credit_state": "none"}


async def insert(engine: AsyncEngine, **row: Any) -> None:
    async with engine.begin() as conn:
        await conn.execute(t.bookings.insert().values(**row))


async def booking_ids(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(t.bookings.c.booking_id)
                                   .order_by(t.bookings.c.booking_id))).all()
    return [row.booking_id for row in rows]


async def test_overlapping_confirmed_insert_is_refused_by_the_database(
        engine: AsyncEngine) -> None:
    """A raw INSERT of a confirmed booking overlapping another one raises IntegrityError."""
    await insert(engine, **booking_row("b-1", START))
    for booking_id, start, minutes in (("inside", START + timedelta(minutes=10), 20),
                                       ("straddles-start", START - timedelta(minutes=30), 40),
                                       ("straddles-end", START + timedelta(minutes=49), 50),
                                       ("covers", START - timedelta(hours=1), 180),
                                       ("same", START, 50)):
        with pytest.raises(IntegrityError):
            await insert(engine, **booking_row(booking_id, start, minutes))
    assert await booking_ids(engine) == ["b-1"]


async def test_cancelled_overlap_adjacent_and_other_professional_are_accepted(
        engine: AsyncEngine) -> None:
    """Only confirmed bookings of the same professional that really overlap are refused."""
    await insert(engine, **booking_row("b-1", START))
    await insert(engine, **booking_row("cancelled", START + timedelta(minutes=10),
                                       status="cancelled"))
    await insert(engine, **booking_row("after", START + timedelta(minutes=50)))
    await insert(engine, **booking_row("before", START - timedelta(minutes=50)))
    async with engine.begin() as conn:
        await conn.execute(t.professionals.insert().values(
            professional_id="pro-2", name="Dr Two", email="two@example.org",
            timezone="Europe/Oslo", session_minutes=50, buffer_minutes=10,
            availability="[]", updated_at=NOW))
    await insert(engine, **booking_row("other-pro", START, professional_id="pro-2"))
    assert await booking_ids(engine) == ["after", "b-1", "before", "cancelled", "other-pro"]


async def test_updates_into_an_overlap_are_refused_by_the_database(engine: AsyncEngine) -> None:
    """Moving a booking onto another, or re-confirming a cancelled overlap, raises too."""
    await insert(engine, **booking_row("b-1", START))
    await insert(engine, **booking_row("b-2", START + timedelta(hours=2)))
    await insert(engine, **booking_row("cancelled", START, status="cancelled"))
    bookings = t.bookings.c
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(update(t.bookings).where(bookings.booking_id == "b-2").values(
                starts_at=START + timedelta(minutes=30), ends_at=START + timedelta(minutes=80)))
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(update(t.bookings).where(bookings.booking_id == "cancelled")
                               .values(status="confirmed"))
    async with engine.connect() as conn:
        rows = {row.booking_id: (row.starts_at, row.status) for row in (await conn.execute(
            select(bookings.booking_id, bookings.starts_at, bookings.status))).all()}
    assert rows == {"b-1": (START, "confirmed"),
                    "b-2": (START + timedelta(hours=2), "confirmed"),
                    "cancelled": (START, "cancelled")}


async def test_a_booking_must_end_after_it_starts(engine: AsyncEngine) -> None:
    """The schema refuses ends_at <= starts_at even when the app is bypassed."""
    with pytest.raises(IntegrityError):
        await insert(engine, **{**booking_row("empty", START), "ends_at": START})
    assert await booking_ids(engine) == []


async def test_migrations_are_idempotent(engine: AsyncEngine) -> None:
    """Migrating an up-to-date database again changes nothing and keeps the data."""
    await insert(engine, **booking_row("b-1", START))
    async with engine.connect() as conn:
        before = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
    await migrate(engine)
    await migrate(engine)
    async with engine.connect() as conn:
        after = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
        count = (await conn.execute(select(func.count()).select_from(t.bookings))).scalar_one()
    assert len(before) == 1 and after == before
    assert count == 1
    with pytest.raises(IntegrityError):  # the constraint survived the second run
        await insert(engine, **booking_row("b-2", START + timedelta(minutes=5)))


async def test_sqlite_runs_in_wal_mode_with_full_sync(tmp_path: Any) -> None:
    """SQLite connections use journal_mode=WAL and synchronous=FULL (2) for durability."""
    engine = create_engine(f"sqlite:///{tmp_path / 'durable.db'}")
    try:
        await migrate(engine)
        async with engine.connect() as conn:
            journal = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar_one()
            synchronous = (await conn.exec_driver_sql("PRAGMA synchronous")).scalar_one()
            foreign_keys = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar_one()
    finally:
        await engine.dispose()
    assert (str(journal).lower(), synchronous, foreign_keys) == ("wal", 2, 1)


@pytest.mark.postgres
async def test_gates_starting_together_migrate_one_database_once(postgres_url: str) -> None:
    """Four engines migrating a fresh PostgreSQL database at once all succeed (one migrates,
    the others wait on the advisory lock) and the schema ends at the newest revision."""
    engines = [create_engine(postgres_url) for _ in range(4)]
    try:
        await asyncio.gather(*(migrate(engine) for engine in engines))
        async with engines[0].connect() as conn:
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))
                        ).scalars().all()
    finally:
        for engine in engines:
            await engine.dispose()
    heads = ScriptDirectory.from_config(_script_config()).get_heads()
    assert list(versions) == heads
