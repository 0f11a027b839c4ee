"""Erasure on request (GDPR art. 17): what an erased person's traces become. Pure.

The store (``erasure_store.py``) applies this in one transaction; this module decides:

- the person's id is replaced by a **pseudonym**, ``erased-`` and 16 random hex digits.
  Random, not a hash of the id: a booking system's ids are often guessable (``c-1042``),
  and a hash of a guessable id is no pseudonym at all. The billing records (bookings,
  attendance, credits) keep counting under it, so an invoice of the month still adds up;
  the ``erasures`` audit trail names the pseudonym, the kind and the time, nothing else;
- the name and email become empty strings (the columns are NOT NULL);
- in a stored message (an email or a webhook event), the name and the email are cut out
  of every text, and a value that *is* the old id becomes the pseudonym. An email
  addressed to the erased person is deleted instead: there is nobody left to send it to.

Invariants: ``scrub`` never adds data, only removes or replaces it; it is idempotent.
"""

from __future__ import annotations

import enum
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PSEUDONYM_PREFIX = "erased-"
# What a cut-out name reads as in an email's text ("Your session with (erased) ...").
REDACTED = "(erased)"


class PartyKind(enum.StrEnum):
    CLIENT = "client"
    PROFESSIONAL = "professional"


def new_pseudonym() -> str:
    """A fresh pseudonym, 64 random bits: an id of the contract's form."""
    return f"{PSEUDONYM_PREFIX}{secrets.token_hex(8)}"


@dataclass(frozen=True, slots=True)
class Traces:
    """What identifies the erased person in stored text."""

    party_id: str
    name: str
    email: str
    pseudonym: str

    def fragments(self) -> list[str]:
        """Substrings a stored JSON payload holding any trace must contain (JSON escapes
        non-ASCII, so each is searched for as JSON writes it too)."""
        found: list[str] = []
        for value in (self.party_id, self.name, self.email):
            if value:
                for form in (value, _json_form(value)):
                    if form not in found:
                        found.append(form)
        return found

    def replace(self, text: str) -> str:
        """``text`` with the email and the name cut out (case-insensitive)."""
        for value, by in ((self.email, ""), (self.name, REDACTED)):
            if value:
                text = re.sub(re.escape(value), by, text, flags=re.IGNORECASE)
        return text


def _json_form(value: str) -> str:
    return json.dumps(value)[1:-1]


def addressed_to(payload: Mapping[str, Any], traces: Traces) -> bool:
    """Whether an email ``payload`` goes to the erased person."""
    to = payload.get("to")
    return isinstance(to, str) and bool(traces.email) and to.lower() == traces.email.lower()


def scrub(value: Any, traces: Traces) -> Any:
    """``value`` (decoded JSON) without the person: ids pseudonymised, texts cut."""
    if isinstance(value, str):
        return traces.pseudonym if value == traces.party_id else traces.replace(value)
    if isinstance(value, list):
        return [scrub(item, traces) for item in value]
    if isinstance(value, dict):
        return {key: scrub(item, traces) for key, item in value.items()}
    return value


def scrub_order_key(order_key: str | None, traces: Traces) -> str | None:
    """A webhook ``order_key`` naming the person's credits (``credits:<id>``)."""
    if order_key is not None and order_key.partition(":")[2] == traces.party_id:
        return f"{order_key.partition(':')[0]}:{traces.pseudonym}"
    return order_key
