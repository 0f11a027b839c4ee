"""Retention: delivered outbox messages older than CARECALL_RETENTION_DAYS are purged by
the gate's background task, by the server's (here a fake) clock; nothing else is."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from booking_gate.appkeys import RETENTION, SERVICE
from booking_gate.config import retention_from_env
from booking_gate.db import schema as t
from tests.conftest import AUTH, FakeClock, GateClient, booking_body, seed_people


async def outbox_ids(gate: GateClient) -> list[int]:
    async with gate.app[SERVICE].store.engine.connect() as conn:
        return list((await conn.execute(select(t.outbox.c.message_id).order_by(
            t.outbox.c.message_id))).scalars())


async def test_delivered_messages_go_after_the_retention_period(
        gate: GateClient, clock: FakeClock) -> None:
    """A message delivered 90 days ago stays, one delivered 90 days and a second ago
    goes; an undelivered one stays however old (both backends)."""
    await seed_people(gate)
    start = clock.now + timedelta(days=2)
    response = await gate.put("/api/v1/bookings/b-r1", headers=AUTH, json=booking_body(start))
    assert response.status == 201, await response.text()
    delivered, queued = await outbox_ids(gate)  # one email per party, no SMTP host
    store = gate.app[SERVICE].store
    assert await store.mark_sent(delivered, clock.now)
    purge = gate.app[RETENTION]
    assert purge.retention == timedelta(days=90)

    clock.advance(days=90)
    assert await purge.purge_due() == 0
    assert await outbox_ids(gate) == [delivered, queued]
    clock.advance(seconds=1)
    assert await purge.purge_due() == 1
    assert await outbox_ids(gate) == [queued]
    clock.advance(days=400)
    assert await purge.purge_due() == 0
    assert await outbox_ids(gate) == [queued]
    async with store.engine.connect() as conn:
        bookings = (await conn.execute(select(func.count()).select_from(t.bookings))
                    ).scalar_one()
    assert bookings == 1  # billing records are not the purge's business


@pytest.mark.parametrize(("raw", "days"), [(None, 90), ("", 90), ("30", 30), (" 7 ", 7)])
def test_retention_days_are_read_from_the_environment(raw: str | None, days: int) -> None:
    """Unset or empty: 90 days; otherwise the whole number given."""
    env = {} if raw is None else {"CARECALL_RETENTION_DAYS": raw}
    assert retention_from_env(env) == timedelta(days=days)


@pytest.mark.parametrize("raw", ["0", "-5", "1.5", "ninety", "36501", "9" * 40])
def test_a_bad_retention_is_refused_in_one_line(raw: str) -> None:
    """Anything but a whole number of days from 1 to 36500 is a ValueError naming the
    variable, quoting at most 20 characters of the value."""
    with pytest.raises(ValueError) as caught:
        retention_from_env({"CARECALL_RETENTION_DAYS": raw})
    message = str(caught.value)
    assert message.startswith("CARECALL_RETENTION_DAYS must be a whole number of days "
                              "from 1 to 36500")
    assert "\n" not in message and len(message) < 120
