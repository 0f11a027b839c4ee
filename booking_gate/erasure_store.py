"""Making data gone: erasure of one person, and the retention purge. The storage side of
``erasure.py``.

An erasure is one transaction: a pseudonymised copy of the person's row is inserted
(no name, no email, ``erased_at`` set), every reference is moved to it, the stored
messages are scrubbed, the old row is deleted and the erasure is written to the
``erasures`` audit trail. A crash leaves either everything or nothing.

Deleted data must be gone from the files as well, not only from query results:
- SQLite runs with ``secure_delete`` on (``db.engine``), so freed cells and pages are
  overwritten with zeros; after the commit the WAL, which still holds the old page images,
  is checkpointed into the database and truncated (``PRAGMA wal_checkpoint(TRUNCATE)``);
- PostgreSQL keeps the old row versions as dead tuples until ``VACUUM`` (autovacuum, or
  an operator's, docs/security.md); that cannot run inside a transaction, so it is left
  to the operator.

Logs name pseudonyms and counts only, never the erased id, name or email.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from booking_gate.db import schema as t
from booking_gate.erasure import (
    PartyKind,
    Traces,
    addressed_to,
    new_pseudonym,
    scrub,
    scrub_order_key,
)
from booking_gate.notify import EMAIL

logger = logging.getLogger(__name__)


class ErasureStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def erase(self, kind: PartyKind, party_id: str, now: datetime) -> str | None:
        """Erase the client or professional ``party_id``; its pseudonym, or None when no
        such person exists (never did, or already erased: the id is gone either way)."""
        async with self.engine.begin() as conn:
            table, key = _table(kind)
            row = (await conn.execute(select(table).where(
                table.c[key] == party_id).with_for_update())).first()
            if row is None or row.erased_at is not None:
                return None
            traces = Traces(party_id, row.name, row.email, new_pseudonym())
            values = {**row._mapping, key: traces.pseudonym, "name": "", "email": "",
                      "erased_at": now}
            if kind is PartyKind.PROFESSIONAL:
                values["availability"] = "[]"  # nothing left to book
            await conn.execute(table.insert().values(**values))
            if kind is PartyKind.CLIENT:
                await self._move_client(conn, party_id, traces.pseudonym)
            else:
                await self._move_professional(conn, party_id, traces.pseudonym)
            await self._scrub_billing_texts(conn, kind, traces)
            scrubbed, dropped = await self._scrub_outbox(conn, traces)
            await conn.execute(delete(table).where(table.c[key] == party_id))
            await conn.execute(t.erasures.insert().values(
                pseudonym=traces.pseudonym, kind=kind.value, erased_at=now))
        logger.info("erased a %s as %s (%d stored messages scrubbed, %d deleted)",
                    kind.value, traces.pseudonym, scrubbed, dropped)
        await self.checkpoint()
        return traces.pseudonym

    @staticmethod
    async def _move_client(conn: AsyncConnection, old: str, new: str) -> None:
        await conn.execute(update(t.bookings).where(t.bookings.c.client_id == old)
                           .values(client_id=new))
        await conn.execute(update(t.credit_accounts).where(
            t.credit_accounts.c.client_id == old).values(client_id=new))
        await conn.execute(update(t.credit_ledger).where(
            t.credit_ledger.c.client_id == old).values(client_id=new))
        # A request's note is free text about the person: gone with them.
        await conn.execute(update(t.credit_requests).where(
            t.credit_requests.c.client_id == old).values(client_id=new, note=None))

    @staticmethod
    async def _move_professional(conn: AsyncConnection, old: str, new: str) -> None:
        await conn.execute(update(t.bookings).where(t.bookings.c.professional_id == old)
                           .values(professional_id=new))
        await conn.execute(update(t.credit_requests).where(
            t.credit_requests.c.professional_id == old).values(professional_id=new, note=None))
        # Blocks are the professional's diary (their reasons free text), not billing.
        await conn.execute(delete(t.blocks).where(t.blocks.c.professional_id == old))

    @staticmethod
    async def _scrub_billing_texts(conn: AsyncConnection, kind: PartyKind, traces: Traces
                                   ) -> None:
        """The free texts of the person's billing records (a cancellation's reason, an
        override's author and reason, a record's explanation naming who waived a charge)
        lose the name and email; the records themselves stay."""
        b = t.bookings.c
        party = b.client_id if kind is PartyKind.CLIENT else b.professional_id
        theirs = select(b.booking_id).where(party == traces.pseudonym)
        rows = (await conn.execute(select(b.booking_id, b.cancel_reason).where(
            party == traces.pseudonym, b.cancel_reason.is_not(None)))).all()
        for row in rows:
            if row.cancel_reason and traces.replace(row.cancel_reason) != row.cancel_reason:
                await conn.execute(update(t.bookings).where(b.booking_id == row.booking_id)
                                   .values(cancel_reason=traces.replace(row.cancel_reason)))
        o = t.attendance_overrides.c
        for entry in (await conn.execute(select(o.override_id, o.by, o.reason).where(
                o.booking_id.in_(theirs)))).all():
            by, reason = traces.replace(entry.by), traces.replace(entry.reason)
            if (by, reason) != (entry.by, entry.reason):
                await conn.execute(update(t.attendance_overrides).where(
                    o.override_id == entry.override_id).values(by=by, reason=reason))
        r = t.attendance_records.c
        for record in (await conn.execute(select(r.booking_id, r.record).where(
                r.booking_id.in_(theirs)))).all():
            stored = json.loads(record.record)
            cleaned = scrub(stored, traces)
            if cleaned != stored:
                await conn.execute(update(t.attendance_records).where(
                    r.booking_id == record.booking_id).values(record=json.dumps(cleaned)))

    @staticmethod
    async def _scrub_outbox(conn: AsyncConnection, traces: Traces) -> tuple[int, int]:
        """Scrub every stored message that holds a trace; delete emails to the person."""
        o = t.outbox.c
        holds = or_(*(o.payload.contains(fragment, autoescape=True)
                      for fragment in traces.fragments()))
        rows = (await conn.execute(select(o.message_id, o.kind, o.payload, o.order_key)
                                   .where(holds))).all()
        scrubbed = dropped = 0
        for row in rows:
            payload = json.loads(row.payload)
            if row.kind == EMAIL and addressed_to(payload, traces):
                await conn.execute(delete(t.outbox).where(o.message_id == row.message_id))
                dropped += 1
                continue
            cleaned = scrub(payload, traces)
            order_key = scrub_order_key(row.order_key, traces)
            if cleaned == payload and order_key == row.order_key:
                continue  # a fragment matched by chance (an id inside another)
            await conn.execute(update(t.outbox).where(o.message_id == row.message_id).values(
                payload=json.dumps(cleaned, default=str), order_key=order_key))
            scrubbed += 1
        return scrubbed, dropped

    async def checkpoint(self) -> None:
        """SQLite: copy the WAL into the database file and truncate it, so the page images
        it holds from before a deletion are gone from disk too. No-op on PostgreSQL."""
        if self.engine.dialect.name != "sqlite":
            return
        async with self.engine.connect() as conn:
            # On the driver's connection, outside any transaction: a checkpoint cannot
            # run inside one, and every SQLAlchemy transaction here is BEGIN IMMEDIATE.
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None  # a live connection, checked out
            cursor = await raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            busy, _, _ = await cursor.fetchone()
            await cursor.close()
        if busy:
            # A reader held an old snapshot; the next checkpoint (SQLite's automatic one,
            # or the next erasure or purge) completes it.
            logger.warning("the WAL checkpoint after an erasure was blocked by a reader")

    async def erasures(self, limit: int = 500) -> list[dict[str, Any]]:
        """The audit trail, oldest first."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(t.erasures).order_by(
                t.erasures.c.erasure_id).limit(limit))).all()
        return [dict(row._mapping) for row in rows]

    async def purge_delivered(self, before: datetime) -> int:
        """The retention purge: delete messages delivered before ``before`` (emails with
        their bodies, webhook events); how many. Undelivered ones are kept whatever their
        age: they still have to go out (failed webhook events: an operator may retry)."""
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(t.outbox).where(
                t.outbox.c.sent_at.is_not(None), t.outbox.c.sent_at < before))
        purged = int(result.rowcount)
        if purged:
            await self.checkpoint()
        return purged


def _table(kind: PartyKind) -> tuple[Any, str]:
    if kind is PartyKind.CLIENT:
        return t.clients, "client_id"
    return t.professionals, "professional_id"
