"""Erasure on request (GDPR art. 17): ``DELETE /api/v1/clients/{id}`` and
``/professionals/{id}``, what the billing export keeps, the audit trail, refused links
and joins, and the erased strings gone from the SQLite files' bytes."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, select

from booking_gate import erasure
from booking_gate.app import make_app
from booking_gate.appkeys import SERVICE
from booking_gate.config import GateConfig
from booking_gate.db import schema as t
from booking_gate.erasure import PartyKind, Traces
from booking_gate.webhooks import new_secret
from tests.conftest import API_KEY, AUTH, FakeClock, GateClient, book_now
from tests.test_signalling_server import hello, join, read_until_closed, refused

# Distinctive strings: found in the files only if they really are left there.
CLIENT_ID = "cli-erase-7q"
NAME = "Quillon Zarbetti"
EMAIL = "quillon.zarbetti@erasure.example"
PRO_NAME = "Dr Vesmira Oktrund"
PRO_EMAIL = "vesmira.oktrund@erasure.example"


async def seed(gate: GateClient) -> None:
    response = await gate.put("/api/v1/professionals/pro-e", headers=AUTH, json={
        "name": PRO_NAME, "email": PRO_EMAIL, "timezone": "Europe/Oslo",
        "availability": [{"weekday": d, "start": "08:00", "end": "18:00"} for d in range(5)]})
    assert response.status == 200, await response.text()
    response = await gate.put(f"/api/v1/clients/{CLIENT_ID}", headers=AUTH, json={
        "name": NAME, "email": EMAIL, "timezone": "Europe/Oslo", "hub_id": "acme"})
    assert response.status == 200, await response.text()
    response = await gate.post("/api/v1/hubs/acme/credits", headers=AUTH,
                               json={"client_id": CLIENT_ID, "credits": 2})
    assert response.status == 200, await response.text()


async def held_session(gate: GateClient, clock: FakeClock, booking_id: str = "b-e1"
                       ) -> dict[str, Any]:
    """A sponsored booking an hour from now that both parties attend, then its end."""
    start = clock.now + timedelta(hours=1)
    response = await gate.put(f"/api/v1/bookings/{booking_id}", headers=AUTH, json={
        "professional_id": "pro-e", "client_id": CLIENT_ID, "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(minutes=50)).isoformat(), "funding": "sponsored",
        "source": "hub"})
    assert response.status == 201, await response.text()
    booking: dict[str, Any] = await response.json()
    events = [{"event_id": f"{booking_id}-{role}-{kind}", "booking_id": booking_id,
               "role": role, "kind": kind, "at": (start + timedelta(minutes=minute)).isoformat()}
              for role in ("professional", "client")
              for kind, minute in (("joined", 1), ("media_connected", 2), ("left", 50))]
    response = await gate.post("/api/v1/attendance/events", headers=AUTH,
                               json={"events": events})
    assert response.status == 200, await response.text()
    clock.advance(hours=3)
    return booking


async def export_rows(gate: GateClient, clock: FakeClock) -> list[dict[str, str]]:
    response = await gate.get("/api/v1/attendance", headers={**AUTH, "Accept": "text/csv"},
                              params={"from": (clock.now - timedelta(days=1)).isoformat(),
                                      "to": (clock.now + timedelta(days=1)).isoformat()})
    assert response.status == 200, await response.text()
    return list(csv.DictReader(io.StringIO(await response.text())))


async def test_an_erased_clients_session_still_counts_in_the_billing_export(
        gate: GateClient, clock: FakeClock) -> None:
    """After erasure the CSV still has the session, billable, under a pseudonym; the
    erasure is audited with no personal data; the old id is 404 everywhere, a second
    DELETE included."""
    await seed(gate)
    await held_session(gate, clock)
    before = await export_rows(gate, clock)
    assert [(r["client_id"], r["outcome"], r["billable"]) for r in before] == [
        (CLIENT_ID, "completed", "true")]

    response = await gate.delete(f"/api/v1/clients/{CLIENT_ID}", headers=AUTH)
    assert response.status == 204, await response.text()

    after = await export_rows(gate, clock)
    assert len(after) == 1
    row = after[0]
    assert row["client_id"].startswith(erasure.PSEUDONYM_PREFIX)
    assert {k: v for k, v in row.items() if k != "client_id"} == {
        k: v for k, v in before[0].items() if k != "client_id"}
    trail = await gate.app[SERVICE].erasures.erasures()
    assert [(e["pseudonym"], e["kind"], e["erased_at"]) for e in trail] == [
        (row["client_id"], "client", clock.now)]
    assert set(trail[0]) == {"erasure_id", "pseudonym", "kind", "erased_at"}

    listed = await (await gate.get("/api/v1/bookings", headers=AUTH,
                                   params={"client_id": CLIENT_ID})).json()
    assert listed["items"] == []
    credits = await gate.get(f"/api/v1/clients/{CLIENT_ID}/credits", headers=AUTH)
    assert credits.status == 404
    again = await gate.delete(f"/api/v1/clients/{CLIENT_ID}", headers=AUTH)
    assert again.status == 404
    assert (await again.json())["error"]["code"] == "not_found"
    # The pseudonym is no new way in: it cannot be booked, rewritten or erased again.
    pseudonym = row["client_id"]
    rewrite = await gate.put(f"/api/v1/clients/{pseudonym}", headers=AUTH, json={
        "name": "X", "email": "x@example.org", "timezone": "UTC", "hub_id": None})
    assert rewrite.status == 409 and (await rewrite.json())["error"]["code"] == "party_erased"
    assert (await gate.delete(f"/api/v1/clients/{pseudonym}", headers=AUTH)).status == 404


async def test_erasure_needs_the_api_key_and_a_valid_id(gate: GateClient) -> None:
    """No key: 401; an id outside the contract's form: 422 invalid_id; unknown: 404."""
    await seed(gate)
    assert (await gate.delete(f"/api/v1/clients/{CLIENT_ID}")).status == 401
    bad = await gate.delete("/api/v1/clients/a%20b", headers=AUTH)
    assert bad.status == 422 and (await bad.json())["error"]["code"] == "invalid_id"
    unknown = await gate.delete("/api/v1/professionals/nobody", headers=AUTH)
    assert unknown.status == 404
    assert (await unknown.json())["error"] == {
        "code": "not_found", "message": "unknown professional 'nobody'",
        "field": "professional_id"}
    assert (await gate.get(f"/api/v1/clients/{CLIENT_ID}/credits", headers=AUTH)).status == 200


async def test_free_texts_of_billing_records_lose_the_name(
        gate: GateClient, clock: FakeClock) -> None:
    """An override authored under the professional's name keeps its outcome, and its
    author, reason and explanation lose the name once the professional is erased."""
    await seed(gate)
    booking = await held_session(gate, clock)
    response = await gate.post(f"/api/v1/bookings/{booking['booking_id']}/attendance/override",
                               headers=AUTH, json={"outcome": "technical_failure",
                                                   "reason": f"{PRO_NAME} lost the line",
                                                   "by": PRO_NAME})
    assert response.status == 200, await response.text()
    assert PRO_NAME in await response.text()
    assert (await gate.delete("/api/v1/professionals/pro-e", headers=AUTH)).status == 204
    after = await gate.get(f"/api/v1/bookings/{booking['booking_id']}/attendance",
                           headers=AUTH)
    text = await after.text()
    assert after.status == 200 and PRO_NAME not in text
    record = json.loads(text)
    assert record["outcome"] == "technical_failure"
    assert record["overrides"][0]["by"] == erasure.REDACTED
    assert record["overrides"][0]["reason"] == f"{erasure.REDACTED} lost the line"


async def test_no_new_links_for_a_booking_with_an_erased_party(
        gate: GateClient, clock: FakeClock) -> None:
    """Links of a booking whose professional was erased are refused, party_erased."""
    await seed(gate)
    start = clock.now + timedelta(days=1)
    response = await gate.put("/api/v1/bookings/b-e2", headers=AUTH, json={
        "professional_id": "pro-e", "client_id": CLIENT_ID, "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(minutes=50)).isoformat(), "funding": "private",
        "source": "direct"})
    assert response.status == 201
    assert (await gate.post("/api/v1/bookings/b-e2/links", headers=AUTH)).status == 200
    assert (await gate.delete("/api/v1/professionals/pro-e", headers=AUTH)).status == 204
    links = await gate.post("/api/v1/bookings/b-e2/links", headers=AUTH)
    assert links.status == 409
    assert (await links.json())["error"]["code"] == "party_erased"
    booking = await (await gate.get("/api/v1/bookings/b-e2", headers=AUTH)).json()
    assert booking["professional_id"].startswith(erasure.PSEUDONYM_PREFIX)
    # The booking can still be cancelled (its credit and billing settled).
    cancel = await gate.post("/api/v1/bookings/b-e2/cancel", headers=AUTH,
                             json={"by": "client"})
    assert cancel.status == 200, await cancel.text()


async def test_stored_emails_and_webhook_events_lose_the_person(
        gate_config: GateConfig, clock: FakeClock, aiohttp_client: Callable[..., Any]
) -> None:
    """Emails to the erased client are deleted; the professional's keep their text with
    the name cut out; webhook events carry the pseudonym, not the id (both backends)."""
    config = dataclasses.replace(gate_config, webhook_url="http://127.0.0.1:9/hooks",
                                 webhook_secret=new_secret())
    gate: GateClient = await aiohttp_client(make_app(config, clock=clock))
    await seed(gate)
    await held_session(gate, clock)
    engine = gate.app[SERVICE].store.engine

    async def payloads() -> list[tuple[str, str]]:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(t.outbox.c.kind, t.outbox.c.payload)
                                       .order_by(t.outbox.c.message_id))).all()
        return [(row.kind, row.payload) for row in rows]

    stored = await payloads()
    assert any(EMAIL in p for _, p in stored) and any(NAME in p for _, p in stored)
    assert any(kind == "webhook" and CLIENT_ID in p for kind, p in stored)

    assert (await gate.delete(f"/api/v1/clients/{CLIENT_ID}", headers=AUTH)).status == 204
    left = await payloads()
    pseudonym = (await gate.app[SERVICE].erasures.erasures())[0]["pseudonym"]
    for _, payload in left:
        assert EMAIL not in payload and NAME not in payload and CLIENT_ID not in payload
    emails = [json.loads(p) for kind, p in left if kind == "email"]
    assert emails and {e["to"] for e in emails} == {PRO_EMAIL}
    assert all(erasure.REDACTED in e["text"] for e in emails)
    hooks = [json.loads(p) for kind, p in left if kind == "webhook"]
    assert any(pseudonym in json.dumps(h) for h in hooks)


def test_scrub_replaces_ids_and_cuts_texts_case_insensitively() -> None:
    """The pure scrub: an exact id becomes the pseudonym; the email and name go from any
    text, whatever their case; other values are untouched; it is idempotent."""
    traces = Traces("c-1", "Ann Example", "ann@example.org", "erased-00")
    value = {"client_id": "c-1", "other": "c-10", "n": 3,
             "text": ["Hello ANN EXAMPLE,", "write to Ann@Example.org"]}
    once = erasure.scrub(value, traces)
    assert once == {"client_id": "erased-00", "other": "c-10", "n": 3,
                    "text": ["Hello (erased),", "write to "]}
    assert erasure.scrub(once, traces) == once
    assert erasure.scrub_order_key("credits:c-1", traces) == "credits:erased-00"
    assert erasure.scrub_order_key("booking:c-1x", traces) == "booking:c-1x"


async def sqlite_gate(database: Path, clock: FakeClock, aiohttp_client: Callable[..., Any]
                      ) -> GateClient:
    """The gate on an SQLite file of the test's own, whose bytes it reads."""
    config = GateConfig(db_url=f"sqlite:///{database}", public_url="https://care.example",
                        api_key=API_KEY, var_dir=database.parent / "var")
    gate: GateClient = await aiohttp_client(make_app(config, clock=clock))
    return gate


def _file_bytes(database: Path) -> dict[str, bytes]:
    found = {}
    for suffix in ("", "-wal", "-shm"):
        path = database.with_name(database.name + suffix)
        if path.exists():
            found[path.name] = path.read_bytes()
    return found


def _holding(files: dict[str, bytes], needles: list[bytes]) -> dict[str, list[str]]:
    return {name: [n.decode() for n in needles if n in data]
            for name, data in files.items() if any(n in data for n in needles)}


async def test_the_erased_strings_are_gone_from_the_sqlite_files(
        tmp_path: Path, clock: FakeClock, aiohttp_client: Callable[..., Any]) -> None:
    """Before: name, email and id are in the database file's bytes. After the erasure:
    in none of the .db, -wal and -shm files (secure_delete zeroes the freed space in the
    file, the WAL checkpoint removes the old page images from the log)."""
    database = tmp_path / "gate.db"
    gate = await sqlite_gate(database, clock, aiohttp_client)
    await seed(gate)
    await held_session(gate, clock)
    await export_rows(gate, clock)  # the record is final, stored as JSON
    needles = [NAME.encode(), EMAIL.encode(), CLIENT_ID.encode()]
    # Into the database file itself (not only the WAL): what secure_delete must zero.
    await gate.app[SERVICE].erasures.checkpoint()
    before = _holding(_file_bytes(database), needles)
    assert set(before["gate.db"]) == {n.decode() for n in needles}

    assert (await gate.delete(f"/api/v1/clients/{CLIENT_ID}", headers=AUTH)).status == 204

    assert _holding(_file_bytes(database), needles) == {}
    assert len(await export_rows(gate, clock)) == 1


async def test_the_byte_search_finds_what_secure_delete_off_leaves_behind(
        tmp_path: Path, clock: FakeClock, aiohttp_client: Callable[..., Any]) -> None:
    """The control of the test above: with secure_delete forced off (this SQLite build
    defaults to on), the erased name stays in the database file's free space, so the
    search above does detect leftovers; the engine itself has it on."""
    database = tmp_path / "gate.db"
    gate = await sqlite_gate(database, clock, aiohttp_client)
    engine = gate.app[SERVICE].store.engine
    async with engine.connect() as conn:
        assert (await conn.exec_driver_sql("PRAGMA secure_delete")).scalar_one() == 1

    def insecure(dbapi_connection: Any, *_: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA secure_delete=OFF")
        cursor.close()

    event.listen(engine.sync_engine, "checkout", insecure)
    await seed(gate)
    await held_session(gate, clock)
    await gate.app[SERVICE].erasures.checkpoint()
    assert (await gate.delete(f"/api/v1/clients/{CLIENT_ID}", headers=AUTH)).status == 204
    assert NAME in _holding(_file_bytes(database), [NAME.encode()]).get("gate.db", [])


async def test_a_join_by_an_erased_client_is_refused(service: GateClient) -> None:
    """The client's link issued before the erasure is refused at admission (4403
    not_a_party): the booking names the pseudonym now."""
    room = await book_now(service)
    assert (await service.delete("/api/v1/clients/cli-1", headers=AUTH)).status == 204
    code, errors = await refused(service, hello(room["client"]))
    assert (code, errors) == (4403, ["not_a_party"])


async def test_an_erasure_ends_the_session_in_progress(service: GateClient) -> None:
    """A client in the room when it is erased is disconnected at once: 4403
    not_a_party, as a late join of theirs would be."""
    room = await book_now(service)
    ws, _ = await join(service, room["client"])
    assert (await service.delete("/api/v1/clients/cli-1", headers=AUTH)).status == 204
    received = await read_until_closed(ws)
    assert ws.close_code == 4403
    assert [m["code"] for m in received if m.get("type") == "error"] == ["not_a_party"]


async def test_partytraces_fragments_name_the_json_forms() -> None:
    """A non-ASCII name is searched for as JSON stores it (\\u escapes) too."""
    traces = Traces("c-1", "Zoë", "", "erased-00")
    assert traces.fragments() == ["c-1", "Zoë", "Zo\\u00eb"]
    assert PartyKind("client") is PartyKind.CLIENT
