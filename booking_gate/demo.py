"""Demo data for ``carecall serve --demo``: two people and a booking that starts now."""

from __future__ import annotations

from datetime import timedelta

from booking_gate.service import GateService


async def create_demo_booking(service: GateService) -> dict[str, str]:
    """Create (or refresh) the demo people and a new 50-minute booking; return its links."""
    await service.put_professional("demo-professional", {
        "name": "Dr Demo", "email": "professional@example.org", "timezone": "Europe/Oslo",
        "session_minutes": 50, "buffer_minutes": 10,
        "availability": [{"weekday": d, "start": "08:00", "end": "20:00"} for d in range(5)],
    })
    await service.put_client("demo-client", {
        "name": "Demo Client", "email": "client@example.org", "timezone": "Europe/Oslo",
        "hub_id": "demo-hub",
    })
    now = service.clock().replace(second=0, microsecond=0)
    booking_id = f"demo-{now:%Y%m%dT%H%M}"
    credits = await service.get_credits("demo-client")
    funding = "sponsored"
    if credits["balance"] < 1:
        await service.grant_credits("demo-hub", {"client_id": "demo-client", "credits": 5})
    existing = await service.store.get_booking(booking_id)
    if existing is None:
        # An earlier run's demo booking may still be running: cancel it, or this one
        # (which starts now) would be refused as slot_taken and the start would fail.
        for old in await service.store.list_confirmed("demo-professional", now,
                                                      now + timedelta(minutes=50)):
            await service.cancel(old.booking_id, {"by": "professional",
                                                  "reason": "replaced by a new demo booking"})
        await service.put_booking(booking_id, {
            "professional_id": "demo-professional", "client_id": "demo-client",
            "starts_at": now.isoformat(), "ends_at": (now + timedelta(minutes=50)).isoformat(),
            "funding": funding, "source": "hub",
        })
    links = await service.links(booking_id)
    return {role: links[role]["url"] for role in ("professional", "client")}
