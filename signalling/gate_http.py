"""The gate over HTTP: the ``GateLink`` of signalling nodes that run apart from the gate.

``carecall signalling --gate-url URL`` asks the gate with its API key:

- ``GET /api/v1/signalling/rooms/{room_id}`` when a party joins (``room``), and
  ``POST /api/v1/signalling/rooms`` for the periodic revalidation of open rooms
  (``rooms``, batches of at most ``ROOM_BATCH``);
- ``POST /api/v1/attendance/events`` to report attendance (``report``, batches of at
  most ``EVENT_BATCH`` events and ``EVENT_BATCH_BYTES``: the gate takes 64 KiB bodies);
- ``GET /.well-known/jwks.json`` (no key) for the keys that verify join tokens.

While the gate cannot be reached (refused or reset connections, timeouts, 5xx), a node
keeps serving the rooms it already knows: ``room`` answers from a bounded cache of the
last good answer per room, and raises ``GateUnavailable`` only for a room it never saw.
The verification keys stay cached by ``kid``; they are fetched again when the JWKS
answer's ``Cache-Control: max-age`` runs out, and on a ``kid`` the node does not know (a
rotation), but at most once per ``refetch_interval``: anyone can send a token naming a
made-up ``kid``. A failed fetch keeps the keys cached before it.

A 4xx answer is not retried: ``report`` raises ``GateRefused``; the other methods raise
``GateUnavailable`` (the interface's one error for them) after logging the refusal,
which is a misconfiguration (a wrong API key, most likely). Nothing here logs a token,
the API key or a URL; failures are logged by their class, when the gate stops or starts
answering, not once per request.

The pure parts (``parse_max_age``, ``parse_jwks``, ``parse_room``, ``room_batches``,
``report_bodies``, ``RoomCache``, ``KeySchedule``) take their input and the time as arguments.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from yarl import URL

from signalling.errors import GateRefused, GateUnavailable
from signalling.gate import AttendanceReport, GateLink, LockListener, RoomBooking

logger = logging.getLogger(__name__)

ROOM_BATCH = 1000  # room ids per revalidation request (the gate's limit)
ROOM_BATCH_BYTES = 48 * 1024  # ... and their size: the gate takes bodies up to 64 KiB
EVENT_BATCH = 500  # attendance events per report (the gate's limit)
EVENT_BATCH_BYTES = 60 * 1024  # ... and their size: 500 events can pass 64 KiB
MAX_ANSWER_BYTES = 4 * 1024 * 1024
DEFAULT_JWKS_MAX_AGE = 300.0
MAX_JWKS_MAX_AGE = 24 * 3600.0
COMPLAINT_INTERVAL = 60.0  # seconds between two log lines about the same refusal
_ROOM_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?([0-9]{1,10})\"?\s*(?:,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-cache|no-store)\s*(?:,|$)", re.IGNORECASE)
UNAVAILABLE = "the booking service cannot be reached now; try again shortly"


# -- pure parts ----------------------------------------------------------------------


def is_room_id(room_id: str) -> bool:
    """Whether ``room_id`` can name a room the gate made (never a bare dot segment)."""
    return bool(_ROOM_ID.fullmatch(room_id)) and room_id not in {".", ".."}


def parse_max_age(cache_control: str | None) -> float | None:
    """The seconds a ``Cache-Control`` header allows keeping the answer (0 for
    ``no-cache``/``no-store``), or None when it says nothing about that."""
    if not cache_control:
        return None
    if _NO_CACHE.search(cache_control):
        return 0.0
    match = _MAX_AGE.search(cache_control)
    return float(match.group(1)) if match else None


def _b64url(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def parse_jwks(data: object) -> dict[str, Ed25519PublicKey]:
    """The Ed25519 verification keys of a JWKS (RFC 7517, RFC 8037) by ``kid``; keys of
    other types, for other uses or algorithms, or malformed, are left out."""
    keys: dict[str, Ed25519PublicKey] = {}
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return keys
    for jwk in entries:
        if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue
        kid, x = jwk.get("kid"), jwk.get("x")
        if (not isinstance(kid, str) or not kid or not isinstance(x, str)
                or jwk.get("use", "sig") != "sig" or jwk.get("alg", "EdDSA") != "EdDSA"):
            continue
        try:
            raw = _b64url(x)
            if len(raw) != 32:
                continue
            keys[kid] = Ed25519PublicKey.from_public_bytes(raw)
        except (ValueError, binascii.Error):
            continue
    return keys


def _time(data: dict[str, Any], name: str) -> datetime:
    value = data.get(name)
    if not isinstance(value, str):
        raise ValueError(f"'{name}' is not a time")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"'{name}' is not an RFC 3339 time") from None
    if parsed.utcoffset() is None:
        raise ValueError(f"'{name}' has no offset")
    return parsed.astimezone(UTC)


def parse_room(data: object) -> RoomBooking:
    """A room as ``GET /api/v1/signalling/rooms/{room_id}`` answers it; ValueError if not."""
    if not isinstance(data, dict):
        raise ValueError("a room is not an object")
    texts = {name: data.get(name) for name in ("room_id", "booking_id", "professional_id",
                                                "client_id")}
    if not all(isinstance(value, str) for value in texts.values()):
        raise ValueError("a room lacks an id")
    cancelled = data.get("cancelled")
    if not isinstance(cancelled, bool):
        raise ValueError("'cancelled' is not a boolean")
    # Absent from a gate older than "Hide my IP": nobody asked for it then.
    relay_only = data.get("client_relay_only", False)
    if not isinstance(relay_only, bool):
        raise ValueError("'client_relay_only' is not a boolean")
    return RoomBooking(
        room_id=str(texts["room_id"]), booking_id=str(texts["booking_id"]),
        professional_id=str(texts["professional_id"]), client_id=str(texts["client_id"]),
        starts_at=_time(data, "starts_at"), ends_at=_time(data, "ends_at"),
        cancelled=cancelled, changed_at=_time(data, "changed_at"),
        opens_at=_time(data, "opens_at"), closes_at=_time(data, "closes_at"),
        client_relay_only=relay_only)


def _event_json(e: AttendanceReport) -> bytes:
    at = e.at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return json.dumps({"event_id": e.event_id, "booking_id": e.booking_id, "role": e.role,
                       "kind": e.kind, "at": at, "reason": e.reason},
                      separators=(",", ":")).encode()


def report_bodies(events: Sequence[AttendanceReport]) -> Iterator[bytes]:
    """The bodies of ``POST /api/v1/attendance/events`` that carry ``events``, in order:
    each at most ``EVENT_BATCH`` events and ``EVENT_BATCH_BYTES`` (times to the
    microsecond, UTC)."""
    batch: list[bytes] = []
    size = 0
    for event in events:
        line = _event_json(event)
        if batch and (len(batch) == EVENT_BATCH or size + len(line) + 1 > EVENT_BATCH_BYTES):
            yield b'{"events":[' + b",".join(batch) + b"]}"
            batch, size = [], 0
        batch.append(line)
        size += len(line) + 1
    if batch:
        yield b'{"events":[' + b",".join(batch) + b"]}"


def room_batches(room_ids: Sequence[str]) -> Iterator[list[str]]:
    """``room_ids`` in batches of at most ``ROOM_BATCH`` ids and about ``ROOM_BATCH_BYTES``."""
    batch: list[str] = []
    size = 0
    for room_id in room_ids:
        if batch and (len(batch) == ROOM_BATCH or size + len(room_id) + 3 > ROOM_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(room_id)
        size += len(room_id) + 3  # quotes and comma
    if batch:
        yield batch


class RoomCache:
    """The last good answer for up to ``size`` rooms, least recently used out first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._rooms: OrderedDict[str, RoomBooking] = OrderedDict()

    def __len__(self) -> int:
        return len(self._rooms)

    def get(self, room_id: str) -> RoomBooking | None:
        booking = self._rooms.get(room_id)
        if booking is not None:
            self._rooms.move_to_end(room_id)
        return booking

    def put(self, room_id: str, booking: RoomBooking | None) -> None:
        """Remember ``booking``; None (the gate knows no such room) forgets the room."""
        if booking is None:
            self._rooms.pop(room_id, None)
            return
        self._rooms[room_id] = booking
        self._rooms.move_to_end(room_id)
        while len(self._rooms) > self._size:
            self._rooms.popitem(last=False)


@dataclass(slots=True)
class KeySchedule:
    """The cached verification keys and when to fetch the JWKS again. ``now`` is a
    monotonic time in seconds.

    A fetch is due when the cached set expired (its ``max-age``, clamped to at least
    ``refetch_interval``), and allowed early for a ``kid`` not in the set, but never
    sooner than ``refetch_interval`` after the previous attempt, whatever its outcome.
    """

    refetch_interval: float = 10.0
    keys: dict[str, Ed25519PublicKey] = field(default_factory=dict)
    expires_at: float = -math.inf
    last_attempt: float = -math.inf

    def wants_fetch(self, kid: str, now: float) -> bool:
        if now - self.last_attempt < self.refetch_interval:
            return False
        return now >= self.expires_at or kid not in self.keys

    def fetched(self, now: float, keys: dict[str, Ed25519PublicKey],
                max_age: float | None) -> None:
        age = DEFAULT_JWKS_MAX_AGE if max_age is None else max_age
        self.keys = keys
        self.last_attempt = now
        self.expires_at = now + min(max(age, self.refetch_interval), MAX_JWKS_MAX_AGE)

    def failed(self, now: float) -> None:
        """A fetch failed: keep the keys, and wait ``refetch_interval`` before the next."""
        self.last_attempt = now


# -- the adapter ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    data: Any
    cache_control: str | None


class HttpGate(GateLink):
    """``GateLink`` over HTTP to the gate at ``base_url``, authenticated with ``api_key``.

    One ``aiohttp.ClientSession``, opened by ``start()`` or the first request and closed
    by ``close()``; every request ends within ``timeout`` seconds.
    """

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 5.0,
                 cache_size: int = 10_000, refetch_interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        url = URL(base_url)
        if url.scheme not in {"http", "https"} or not url.host:
            raise ValueError("the gate URL must be an http:// or https:// URL with a host")
        if url.user or url.password or url.query_string or url.fragment:
            raise ValueError("the gate URL must not carry credentials, a query or a fragment")
        if not api_key:
            raise ValueError("the API key is required to reach the gate")
        self._base = url
        self._auth = {"Authorization": f"Bearer {api_key}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._cache = RoomCache(cache_size)
        self._keys = KeySchedule(refetch_interval)
        self._keys_lock = asyncio.Lock()
        self._reachable = True
        self._complaints: dict[tuple[str, int, str], float] = {}

    async def start(self) -> None:
        """Open the session now (else the first request opens it)."""
        self._open()

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def on_room_locked(self, listener: LockListener) -> None:
        """Nothing to hear over HTTP: nodes learn of cancellations by revalidation."""

    # -- rooms -----------------------------------------------------------------------

    async def room(self, room_id: str) -> RoomBooking | None:
        if not is_room_id(room_id):
            return None  # the gate made no such id: not worth a request
        try:
            answer = await self._request("GET", ("api", "v1", "signalling", "rooms", room_id))
        except GateUnavailable:
            cached = self._cache.get(room_id)
            if cached is None:
                raise
            return cached
        if answer.status == 404 and _error_code(answer) == "not_found":
            # (A proxy's own 404 page is no word of the gate's: refused below.)
            self._cache.put(room_id, None)
            return None
        if answer.status != 200:
            raise self._refused("room", answer)
        booking = self._parsed(parse_room, answer.data, "room")
        if booking.room_id != room_id:
            raise self._malformed("room", "another room")
        self._cache.put(room_id, booking)
        return booking

    async def rooms(self, room_ids: Sequence[str]) -> dict[str, RoomBooking | None]:
        found: dict[str, RoomBooking | None] = {}
        for batch in room_batches([r for r in dict.fromkeys(room_ids) if is_room_id(r)]):
            answer = await self._request("POST", ("api", "v1", "signalling", "rooms"),
                                         body={"room_ids": batch})
            if answer.status != 200:
                raise self._refused("rooms", answer)
            rooms = answer.data.get("rooms") if isinstance(answer.data, dict) else None
            if not isinstance(rooms, dict):
                raise self._malformed("rooms", "no 'rooms' object")
            for room_id in batch:
                if room_id not in rooms:
                    # Not "unknown": revalidation would close a room the gate never denied.
                    raise self._malformed("rooms", "a room left out")
                value = rooms[room_id]
                booking = None if value is None else self._parsed(parse_room, value, "rooms")
                if booking is not None and booking.room_id != room_id:
                    raise self._malformed("rooms", "another room")
                found[room_id] = booking
        for room_id, booking in found.items():
            self._cache.put(room_id, booking)
        return {room_id: found.get(room_id) for room_id in room_ids}

    # -- attendance --------------------------------------------------------------------

    async def report(self, events: Sequence[AttendanceReport]) -> None:
        for body in report_bodies(events):
            answer = await self._request("POST", ("api", "v1", "attendance", "events"),
                                         body=body)
            if 400 <= answer.status < 500:
                raise GateRefused(answer.status, _error_code(answer))
            if answer.status != 200:
                raise self._refused("report", answer)

    # -- verification keys ---------------------------------------------------------------

    async def verification_key(self, kid: str) -> Ed25519PublicKey | None:
        if self._keys.wants_fetch(kid, self._clock()):
            async with self._keys_lock:  # one fetch at a time; the others wait for it
                now = self._clock()
                if self._keys.wants_fetch(kid, now):
                    await self._fetch_keys(now)
        if not self._keys.keys:
            raise GateUnavailable(UNAVAILABLE)
        return self._keys.keys.get(kid)

    async def _fetch_keys(self, now: float) -> None:
        try:
            answer = await self._request("GET", (".well-known", "jwks.json"), auth=False)
            if answer.status != 200:
                raise self._refused("jwks", answer)
            keys = parse_jwks(answer.data)
            if not keys:
                raise self._malformed("jwks", "no Ed25519 key")
        except GateUnavailable:
            self._keys.failed(now)
            if self._keys.keys:
                logger.warning("could not refresh the gate's verification keys; keeping "
                               "the %d cached", len(self._keys.keys))
            return
        self._keys.fetched(now, keys, parse_max_age(answer.cache_control))

    # -- HTTP --------------------------------------------------------------------------

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise GateUnavailable(UNAVAILABLE)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _request(self, method: str, path: tuple[str, ...], *, body: Any = None,
                       auth: bool = True) -> _Answer:
        """The gate's answer below 500; GateUnavailable when there is none. ``body`` is
        JSON: encoded here, or already (bytes)."""
        session = self._open()
        headers = {"Accept": "application/json", **(self._auth if auth else {})}
        if body is not None:
            headers["Content-Type"] = "application/json"
            if not isinstance(body, bytes):
                body = json.dumps(body, separators=(",", ":")).encode()
        try:
            async with session.request(method, self._base.joinpath(*path), data=body,
                                       headers=headers, allow_redirects=False) as response:
                if response.status >= 500:
                    raise _NoAnswer(f"HTTP {response.status}")
                raw = await response.content.read(MAX_ANSWER_BYTES + 1)
                if len(raw) > MAX_ANSWER_BYTES:
                    raise _NoAnswer("an answer too large")
                cache_control = response.headers.get("Cache-Control")
                status = response.status
        except _NoAnswer as error:
            self._unreachable(error.cause)
            raise GateUnavailable(UNAVAILABLE) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            self._unreachable(type(error).__name__)
            raise GateUnavailable(UNAVAILABLE) from None
        if not self._reachable:
            self._reachable = True
            logger.info("the gate answers again")
        try:
            data = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError):
            data = None  # the callers find no room, keys or error code in it
        return _Answer(status, data, cache_control)

    def _unreachable(self, cause: str) -> None:
        if self._reachable:
            self._reachable = False
            logger.warning("the gate cannot be reached (%s); serving known rooms from the "
                           "cache", cause)

    def _complain(self, what: str, status: int, code: str, message: str) -> None:
        """Log a refusal or a malformed answer, once a minute for the same one."""
        key, now = (what, status, code), self._clock()
        if now - self._complaints.get(key, -math.inf) >= COMPLAINT_INTERVAL:
            self._complaints[key] = now
            logger.error(message, what, status, code)

    def _refused(self, what: str, answer: _Answer) -> GateUnavailable:
        self._complain(what, answer.status, _error_code(answer),
                       "the gate refused the %s request (%d %s): check the gate URL and "
                       "the API key")
        return GateUnavailable(UNAVAILABLE)

    def _malformed(self, what: str, why: str) -> GateUnavailable:
        self._complain(what, 200, why, "the gate's answer to the %s request was malformed "
                                       "(%d, %s)")
        return GateUnavailable(UNAVAILABLE)

    def _parsed(self, parse: Callable[[object], RoomBooking], data: object,
                what: str) -> RoomBooking:
        try:
            return parse(data)
        except ValueError as error:
            raise self._malformed(what, str(error)) from None


class _NoAnswer(Exception):
    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


def _error_code(answer: _Answer) -> str:
    """The ``{"error": {"code"}}`` of an error answer, or ``http_<status>``."""
    error = answer.data.get("error") if isinstance(answer.data, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    if isinstance(code, str) and re.fullmatch(r"[a-z][a-z0-9_]{0,63}", code):
        return code
    return f"http_{answer.status}"
