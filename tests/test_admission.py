"""Admission (signalling.admission): the booking behind a join token, checked at every join."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from signalling.admission import Admission, Admitted, check_booking
from signalling.errors import (
    BadToken,
    CloseCode,
    NotAllowed,
    OutsideWindow,
    SignallingError,
    UnknownRoom,
)
from signalling.gate import AttendanceReport, LockListener, RoomBooking
from signalling.room import Role
from signalling.tokens import AUDIENCE, ISSUER, Claims

KEY = Ed25519PrivateKey.generate()
KID = "key-current"
RETIRED_KEY = Ed25519PrivateKey.generate()
RETIRED_KID = "key-retired"
STARTS = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
BOOKING = RoomBooking(
    room_id="room-1", booking_id="b-1", professional_id="pro-1", client_id="cli-1",
    starts_at=STARTS, ends_at=STARTS + timedelta(minutes=50), cancelled=False,
    changed_at=datetime(2026, 11, 20, 9, 0, tzinfo=UTC),
    opens_at=STARTS - timedelta(minutes=15), closes_at=STARTS + timedelta(minutes=70))


class FakeGate:
    """Stands in for the gate: admission's logic is pure given the booking the gate returns,
    so a dict of bookings is enough here. The real gate is used in the end-to-end tests."""

    def __init__(self, *bookings: RoomBooking) -> None:
        self.rooms = {b.room_id: b for b in bookings}
        self.keys = {KID: KEY.public_key(), RETIRED_KID: RETIRED_KEY.public_key()}

    async def room(self, room_id: str) -> RoomBooking | None:
        return self.rooms.get(room_id)

    async def report(self, events: Sequence[AttendanceReport]) -> None:
        raise AssertionError("admission never reports attendance")

    async def verification_key(self, kid: str) -> Ed25519PublicKey | None:
        return self.keys.get(kid)

    def on_room_locked(self, listener: LockListener) -> None:
        raise AssertionError("admission never listens for locks")


def token(role: Role = Role.CLIENT, key: Ed25519PrivateKey = KEY, kid: str | None = KID,
          **changes: Any) -> str:
    """A join token as the gate issues it for BOOKING, with ``changes`` applied."""
    claims: dict[str, Any] = {
        "iss": ISSUER, "aud": AUDIENCE, "role": role.value, "room": "room-1", "bkg": "b-1",
        "sub": "pro-1" if role is Role.PROFESSIONAL else "cli-1",
        "iat": int(BOOKING.changed_at.timestamp()) + 60,
        "nbf": int(BOOKING.opens_at.timestamp()), "exp": int(BOOKING.closes_at.timestamp()),
        "jti": "j-1",
    }
    return jwt.encode({**claims, **changes}, key, algorithm="EdDSA",
                      headers={"kid": kid} if kid is not None else None)


async def admit(gate: FakeGate, token_: str, hint: str | None, now: datetime) -> Admitted:
    """Both steps, as the handler takes them: verify, then admit."""
    admission = Admission(gate)
    return await admission.admit(await admission.verify(token_), hint, now)


async def refusal(token_: str, *, booking: RoomBooking | None = BOOKING,
                  hint: str | None = "room-1", now: datetime = STARTS) -> SignallingError:
    gate = FakeGate(booking) if booking is not None else FakeGate()
    with pytest.raises(SignallingError) as caught:
        await admit(gate, token_, hint, now)
    return caught.value


@pytest.mark.parametrize("role", list(Role), ids=str)
@pytest.mark.parametrize(("hint", "now"), [
    ("room-1", STARTS),
    (None, STARTS),
    ("room-1", BOOKING.opens_at),
    ("room-1", BOOKING.closes_at - timedelta(seconds=1)),
], ids=["in-session", "no-room-hint", "exactly-at-opening", "last-second"])
async def test_a_party_of_the_booking_is_admitted_inside_the_window(role: Role, hint: str | None,
                                                                    now: datetime) -> None:
    """Either party with a current token, from opens_at until just before closes_at, gets in."""
    admitted = await admit(FakeGate(BOOKING), token(role), hint, now)
    assert admitted == Admitted(Claims(
        sub="pro-1" if role is Role.PROFESSIONAL else "cli-1", role=role, room="room-1",
        booking_id="b-1", iat=int(BOOKING.changed_at.timestamp()) + 60,
        nbf=int(BOOKING.opens_at.timestamp()), exp=int(BOOKING.closes_at.timestamp())),
        BOOKING)


async def test_token_issued_at_the_change_itself_is_current() -> None:
    """iat equal to changed_at is not stale (only strictly earlier tokens are)."""
    current = token(iat=int(BOOKING.changed_at.timestamp()))
    assert (await admit(FakeGate(BOOKING), current, None, STARTS)).booking == BOOKING


async def test_unknown_room() -> None:
    """A valid token for a room the gate does not know is refused with 4404."""
    error = await refusal(token(), booking=None)
    assert isinstance(error, UnknownRoom)
    assert (error.close_code, error.code, error.message) == (
        CloseCode.UNKNOWN_ROOM, "unknown_room", "this room does not exist")


async def test_forged_token_is_refused_before_asking_for_the_room() -> None:
    """A token signed by another key is BadToken (4401), even for a known room."""
    error = await refusal(token(key=Ed25519PrivateKey.generate()))
    assert isinstance(error, BadToken)
    assert error.close_code is CloseCode.UNAUTHORIZED


async def test_a_token_of_the_retired_key_is_admitted_during_a_rotation() -> None:
    """A token whose kid names the retired key, and signed by it, gets in."""
    old = token(key=RETIRED_KEY, kid=RETIRED_KID)
    assert (await admit(FakeGate(BOOKING), old, None, STARTS)).claims.sub == "cli-1"


@pytest.mark.parametrize(("token_", "message"), [
    (token(kid=None), "the join token names no signing key ('kid')"),
    (token(kid=""), "the join token names no signing key ('kid')"),
    (token(kid="key-unknown"), "the join token is signed with an unknown key ('kid')"),
    (token(kid=RETIRED_KID), "the join token is not valid (InvalidSignatureError)"),
    (token(key=RETIRED_KEY, kid=KID), "the join token is not valid (InvalidSignatureError)"),
], ids=["no-kid", "empty-kid", "unknown-kid", "current-key-under-retired-kid",
        "retired-key-under-current-kid"])
async def test_the_key_is_the_one_kid_names(token_: str, message: str) -> None:
    """Without a known kid, or signed by another published key than it names: 4401."""
    error = await refusal(token_)
    assert isinstance(error, BadToken)
    assert (error.close_code, error.code, error.message) == (
        CloseCode.UNAUTHORIZED, "invalid_token", message)


PAST_EXP = int(STARTS.timestamp()) - 60
FUTURE_NBF = int(STARTS.timestamp()) + 3600


@pytest.mark.parametrize(("token_", "booking", "code", "message"), [
    (token(exp=PAST_EXP), BOOKING, "session_over", "this session is over"),
    (token(exp=PAST_EXP), replace(BOOKING, cancelled=True), "session_over",
     "this session is over"),
    (token(exp=PAST_EXP), None, "session_over", "this session is over"),
    (token(nbf=FUTURE_NBF), BOOKING, "too_early",
     "too early: the room opens at 2026-11-23T11:00:00Z"),
    (token(nbf=FUTURE_NBF, sub="stranger"), BOOKING, "too_early",
     "too early: the room opens at 2026-11-23T11:00:00Z"),
    (token(nbf=FUTURE_NBF), None, "too_early",
     "too early: the room opens at 2026-11-23T11:00:00Z"),
], ids=["expired-token-open-booking", "expired-token-cancelled-booking",
        "expired-token-unknown-room", "early-token-open-booking", "early-token-not-a-party",
        "early-token-unknown-room"])
async def test_the_tokens_own_window_comes_before_the_booking(
        token_: str, booking: RoomBooking | None, code: str, message: str) -> None:
    """A verified token outside its own nbf/exp is 4410, whatever the booking says."""
    error = await refusal(token_, booking=booking)
    assert isinstance(error, OutsideWindow)
    assert (error.close_code, error.code, error.message) == (
        CloseCode.OUTSIDE_WINDOW, code, message)


CANCELLED = replace(BOOKING, cancelled=True)
RESCHEDULED = "this booking was rescheduled; ask for a new link"
NOT_A_PARTY = "the join token is not for a party of this booking"


@pytest.mark.parametrize(("token_", "booking", "hint", "code", "message"), [
    (token(), CANCELLED, "room-1", "booking_cancelled", "this booking was cancelled"),
    (token(nbf=int(BOOKING.opens_at.timestamp()) - 3600), BOOKING, "room-1",
     "booking_rescheduled", RESCHEDULED),
    (token(exp=int(BOOKING.closes_at.timestamp()) + 3600), BOOKING, "room-1",
     "booking_rescheduled", RESCHEDULED),
    (token(iat=int(BOOKING.changed_at.timestamp()) - 1), BOOKING, "room-1",
     "booking_rescheduled", RESCHEDULED),
    (token(), BOOKING, "room-2", "wrong_room", "this link is for another room"),
    (token(Role.CLIENT, sub="pro-1"), BOOKING, "room-1", "not_a_party", NOT_A_PARTY),
    (token(Role.PROFESSIONAL, sub="cli-1"), BOOKING, "room-1", "not_a_party", NOT_A_PARTY),
    (token(sub="stranger"), BOOKING, "room-1", "not_a_party", NOT_A_PARTY),
    (token(bkg="b-old"), BOOKING, "room-1", "not_a_party", NOT_A_PARTY),
], ids=["cancelled", "rescheduled-nbf", "rescheduled-exp", "issued-before-change",
        "room-hint-differs", "client-role-with-professional-sub",
        "professional-role-with-client-sub", "stranger", "other-booking"])
async def test_not_allowed(token_: str, booking: RoomBooking, hint: str, code: str,
                           message: str) -> None:
    """Cancelled, rescheduled, other-room and non-party tokens are NotAllowed (4403)."""
    error = await refusal(token_, booking=booking, hint=hint)
    assert isinstance(error, NotAllowed)
    assert (error.close_code, error.code, error.message) == (CloseCode.FORBIDDEN, code, message)


@pytest.mark.parametrize(("now", "code", "message"), [
    (BOOKING.opens_at - timedelta(seconds=1), "too_early",
     "too early: the session starts at 2026-11-23T10:00:00Z and the room opens at "
     "2026-11-23T09:45:00Z"),
    (BOOKING.opens_at - timedelta(days=2), "too_early",
     "too early: the session starts at 2026-11-23T10:00:00Z and the room opens at "
     "2026-11-23T09:45:00Z"),
    (BOOKING.closes_at, "session_over", "this session is over"),
    (BOOKING.closes_at + timedelta(hours=3), "session_over", "this session is over"),
], ids=["a-second-early", "days-early", "exactly-at-closing", "hours-late"])
async def test_outside_the_window(now: datetime, code: str, message: str) -> None:
    """Before opens_at is too_early (naming the start); at or after closes_at is over (4410)."""
    error = await refusal(token(), now=now)
    assert isinstance(error, OutsideWindow)
    assert (error.close_code, error.code, error.message) == (
        CloseCode.OUTSIDE_WINDOW, code, message)


def test_check_booking_refuses_a_non_party_before_telling_it_about_cancellation() -> None:
    """A stranger learns nothing about the booking's state: not_a_party comes first."""
    claims = Claims(sub="stranger", role=Role.CLIENT, room="room-1", booking_id="b-1",
                    iat=0, nbf=0, exp=0)
    with pytest.raises(NotAllowed) as caught:
        check_booking(claims, CANCELLED)
    assert caught.value.code == "not_a_party"


async def test_a_token_issued_more_than_a_minute_ahead_of_the_server_clock_is_4401() -> None:
    """A gate-signed token with ``iat`` 30 days ahead is refused; 50 s ahead is skew."""
    ahead = int((STARTS + timedelta(days=30)).timestamp())
    error = await refusal(token(iat=ahead))
    assert isinstance(error, BadToken) and error.close_code is CloseCode.UNAUTHORIZED
    assert "future" in error.message
    gate = FakeGate(BOOKING)
    admitted = await admit(gate, token(iat=int(STARTS.timestamp()) + 50), "room-1", STARTS)
    assert admitted.booking is BOOKING
