"""Credit requests: a professional asks a client's hub for more sponsored sessions.

The request names the client by email (as the professional knows them); the hub sees
that a professional recommends more credits and how many, never who the client is. An
approval grants the credits to the right client, found again from the stored request.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from booking_gate.errors import InvalidRequest, NotFound
from booking_gate.rules import format_time
from booking_gate.service import GateService
from booking_gate.validation import Body, parse_id

logger = logging.getLogger(__name__)

STATUSES = ("pending", "approved", "declined")


def hub_view(row: dict[str, Any]) -> dict[str, Any]:
    """What the hub sees of a request: no client id, name or email."""
    return {
        "request_id": row["request_id"], "hub_id": row["hub_id"],
        "professional": {"name": row.get("professional_name")},
        "credits": row["credits"], "note": row["note"], "status": row["status"],
        "created_at": format_time(row["created_at"]),
        "decided_at": format_time(row["decided_at"]) if row["decided_at"] else None,
        "granted": row["granted"],
    }


class CreditRequests:
    def __init__(self, gate: GateService) -> None:
        self.gate = gate

    async def create(self, hub_id: str, data: object) -> dict[str, Any]:
        hub = parse_id(hub_id, "hub_id")
        body = Body(data, {"client_email", "professional_email", "credits", "note"})
        client_email = body.email("client_email")
        professional_email = body.email("professional_email")
        credits = body.integer("credits", low=1, high=100, default=1)
        note = body.text("note", required=False)
        store = self.gate.store
        professional = await store.find_professional(professional_email)
        if professional is None:
            raise NotFound("no professional has that email", field="professional_email")
        client = await store.find_client(hub, client_email)
        if client is None:
            raise NotFound("no client of this hub has that email", field="client_email")
        row = await store.add_credit_request({
            "request_id": f"cr-{secrets.token_hex(8)}", "hub_id": hub,
            "client_id": client.client_id, "professional_id": professional.professional_id,
            "credits": credits, "note": note, "status": "pending",
            "created_at": self.gate.clock(), "decided_at": None, "granted": None,
        })
        logger.info("credit request created", extra={"request_id": row["request_id"]})
        return hub_view({**row, "professional_name": professional.name})

    async def list(self, hub_id: str, query: dict[str, str]) -> dict[str, Any]:
        hub = parse_id(hub_id, "hub_id")
        status = query.get("status") or None
        if status is not None and status not in STATUSES:
            raise InvalidRequest(f"'status' must be one of {', '.join(STATUSES)}",
                                 field="status")
        rows = await self.gate.store.credit_requests(hub, status, limit=200)
        return {"items": [hub_view(row) for row in rows]}

    async def decide(self, hub_id: str, request_id: str, data: object, *, approve: bool
                     ) -> dict[str, Any]:
        hub = parse_id(hub_id, "hub_id")
        body = Body(data or {}, {"credits"} if approve else set())
        credits = body.integer("credits", low=1, high=100, default=0) if approve else None
        row = await self.gate.store.decide_credit_request(
            hub, parse_id(request_id, "request_id"), approve, credits or None,
            self.gate.clock())
        self.gate.outbox_changed()  # an approval's grant is a credits.changed event
        return hub_view(row)

    async def history(self, client_id: str) -> dict[str, Any]:
        client = await self.gate.require_client(client_id)
        entries = await self.gate.store.credit_history(client.client_id)
        account = await self.gate.store.get_credits(client)
        return {"client_id": client.client_id, "hub_id": account.hub_id,
                "balance": account.balance, "reserved": account.reserved,
                "entries": [{"kind": e["kind"], "amount": e["amount"],
                             "booking_id": e["booking_id"], "at": format_time(e["at"]),
                             "note": e["note"]} for e in entries]}
