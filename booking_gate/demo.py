"""Demo data for ``carecall serve --demo``: two people and a booking running now.

A demo never cancels or moves a booking. When a demo booking of an earlier start is
still running, a new start reuses it and prints fresh links for it (the links printed
before keep working too); otherwise it books the next 50 minutes. If the demo
professional is busy then with anything else (a booking made through the API, a
block), the demo is refused with ``Conflict`` ``slot_taken`` and nothing is booked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from booking_gate.errors import Conflict
from booking_gate.model import Booking
from booking_gate.rules import format_time
from booking_gate.service import GateService

PROFESSIONAL_ID = "demo-professional"
CLIENT_ID = "demo-client"
HUB_ID = "demo-hub"
BOOKING_PREFIX = "demo-"
SESSION = timedelta(minutes=50)


@dataclass(frozen=True, slots=True)
class DemoBooking:
    """The demo booking and a fresh join link for each party."""

    booking_id: str
    professional: str
    client: str


def _is_demo(booking: Booking) -> bool:
    return (booking.booking_id.startswith(BOOKING_PREFIX)
            and booking.professional_id == PROFESSIONAL_ID and booking.client_id == CLIENT_ID)


async def _free_id(service: GateService, now: datetime) -> str:
    """``demo-YYYYMMDDTHHMM``, with a suffix if that id is taken (a cancelled demo)."""
    base = f"{BOOKING_PREFIX}{now:%Y%m%dT%H%M}"
    candidate, n = base, 1
    while await service.store.get_booking(candidate) is not None:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


async def _book(service: GateService, now: datetime) -> str:
    credits = await service.get_credits(CLIENT_ID)
    if credits["balance"] < 1:
        await service.grant_credits(HUB_ID, {"client_id": CLIENT_ID, "credits": 5})
    booking_id = await _free_id(service, now)
    await service.put_booking(booking_id, {
        "professional_id": PROFESSIONAL_ID, "client_id": CLIENT_ID,
        "starts_at": now.isoformat(), "ends_at": (now + SESSION).isoformat(),
        "funding": "sponsored", "source": "hub",
    })
    return booking_id


async def create_demo_booking(service: GateService) -> DemoBooking:
    """Refresh the demo people; reuse the running demo booking or book one from now."""
    await service.put_professional(PROFESSIONAL_ID, {
        "name": "Dr Demo", "email": "professional@example.org", "timezone": "Europe/Oslo",
        "session_minutes": 50, "buffer_minutes": 10,
        "availability": [{"weekday": d, "start": "08:00", "end": "20:00"} for d in range(5)],
    })
    await service.put_client(CLIENT_ID, {
        "name": "Demo Client", "email": "client@example.org", "timezone": "Europe/Oslo",
        "hub_id": HUB_ID,
    })
    now = service.clock().replace(second=0, microsecond=0)
    busy = await service.store.list_confirmed(PROFESSIONAL_ID, now, now + SESSION)
    running = [b for b in busy if _is_demo(b) and b.starts_at <= now < b.ends_at]
    booking_id: str
    if running:
        booking_id = running[-1].booking_id
    elif busy:
        other = busy[0]
        raise Conflict(
            f"the demo professional has booking '{other.booking_id}' from "
            f"{format_time(other.starts_at)} to {format_time(other.ends_at)}, and a demo "
            f"needs the next {SESSION.seconds // 60} minutes free",
            code="slot_taken", field=None)
    else:
        booking_id = await _book(service, now)
    links = await service.links(booking_id)
    return DemoBooking(booking_id, links["professional"]["url"], links["client"]["url"])
