"""Attendance outcome rules: pure, versioned, no I/O.

Invariants:

- every datetime taken or returned is timezone-aware UTC, and the current time
  is always passed in as ``now``: time is the server's clock, never a peer's;
- the same booking, events, ``now`` and windows always give the same record;
- a party with any interval inside the booking's window joined, however
  briefly or late (even for zero seconds): it is never reported as a no-show;
- a ``pending`` record has no outcome, is not billable and has no payer;
- notices (``running_late``) are carried in the record but are never presence: a party
  who only said they are running late and never joined is a no-show;
- ``video_seconds + audio_only_seconds <= together_seconds``.

How the session was held (rules 2). A moment is *connected* when both parties are in
the room and at least one of them last reported its media path ``media_connected``
(since its last ``joined``; ``media_disconnected``, ``media_failed`` and ``left`` end
it). A connected moment is *audio-only* when any party whose last report is
``media_connected`` said it sends no video (reason ``audio_only``): then at least one
direction carries no picture. Every other connected moment is *video*.
``video_seconds`` and ``audio_only_seconds`` are those moments inside the window, in
whole seconds, rounded down (events at one instant count joined, then media, then
left, as the room makes them). A ``technical_failure`` record's explanation names the
causes the peers gave in ``media_failed`` (``FAILURE_SENTENCES``), or says none did.

Rules (``RULE_VERSION``), for the booking's window
``[starts_at - join_early, ends_at + overrun]``::

    situation                                outcome               billable  sponsored credit
    cancelled by the client < notice ahead   late_cancellation     yes       consumed
    any other cancellation                   cancelled             no        released
    both joined, media connected             completed             yes       consumed
    both joined, media never connected       technical_failure     no        released
    only the professional joined             client_no_show        yes       consumed
    only the client joined                   professional_no_show  no        released
    neither joined                           both_no_show          no        released

The notice (``notice_hours``) is 24 h for hub bookings (``source`` hub, or sponsored:
the hub's terms) and the professional's ``cancellation_notice_hours`` (default 24) for
the others. Outside hubs the professional may waive a late cancellation's charge: an
override to ``cancelled`` whose explanation names who waived it.

A billable session is paid by the sponsor when sponsored and by the client when
private; private bookings hold no credit. A booking that is not cancelled is
``pending`` until ``ends_at + overrun``, or until ``ends_at`` has passed with
both parties joined and gone. While the gate is not ``settled`` (it has just
started, and signalling nodes may still be delivering what they saw while it was
away) the first of those two waits: only both parties' departure makes a record
final then.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from booking_gate.model import (
    AUDIO_ONLY,
    AttendanceEvent,
    Booking,
    BookingId,
    BookingStatus,
    Cancellation,
    EventKind,
    Funding,
    Outcome,
    Payer,
    RecordStatus,
    Role,
    Source,
)

RULE_VERSION = "carecall-rules/2"
HUB_NOTICE_HOURS = 24
LATE_CANCELLATION_NOTICE = timedelta(hours=HUB_NOTICE_HOURS)

_BILLABLE = frozenset({Outcome.COMPLETED, Outcome.CLIENT_NO_SHOW, Outcome.LATE_CANCELLATION})

_ONE_SECOND = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class Windows:
    join_early: timedelta
    overrun: timedelta


@dataclass(frozen=True, slots=True)
class Interval:
    start: datetime
    end: datetime | None  # None: still present

    def to_json(self) -> dict[str, Any]:
        return {
            "from": format_time(self.start),
            "to": None if self.end is None else format_time(self.end),
        }


@dataclass(frozen=True, slots=True)
class PartyAttendance:
    joined: bool
    first_joined_at: datetime | None
    present_seconds: int
    intervals: tuple[Interval, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "joined": self.joined,
            "first_joined_at": (
                None if self.first_joined_at is None else format_time(self.first_joined_at)
            ),
            "present_seconds": self.present_seconds,
            "intervals": [interval.to_json() for interval in self.intervals],
        }


@dataclass(frozen=True, slots=True)
class Notice:
    """A party's "running late" notice: the minutes it said, at the server's clock."""

    by: Role
    minutes: int
    at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"by": self.by.value, "kind": EventKind.RUNNING_LATE.value,
                "minutes": self.minutes, "at": format_time(self.at)}


def notices_of(events: Sequence[AttendanceEvent]) -> tuple[Notice, ...]:
    """The ``running_late`` events among ``events`` as notices, oldest first.

    The minutes are the event's ``reason`` as a decimal string (``model.EventKind``); an
    event whose ``reason`` is not one is skipped (the gate never writes one).
    """
    found = []
    for event in sorted(events, key=lambda event: (event.at, event.event_id)):
        if event.kind is EventKind.RUNNING_LATE and (event.reason or "").isdecimal():
            found.append(Notice(event.role, int(event.reason or "0"), event.at))
    return tuple(found)


@dataclass(frozen=True, slots=True)
class AttendanceRecord:
    booking_id: BookingId
    status: RecordStatus
    outcome: Outcome | None
    billable: bool
    payer: Payer | None
    rule_version: str
    explanation: str
    professional: PartyAttendance
    client: PartyAttendance
    together_seconds: int
    media_connected: bool
    # The parties' notices up to the window's end, oldest first.
    notices: tuple[Notice, ...] = ()
    # Together with the media path connected, with and without video both ways.
    video_seconds: int = 0
    audio_only_seconds: int = 0

    def to_json(self) -> dict[str, Any]:
        """The attendance record exactly as docs/contract.md section 3 shapes it."""
        return {
            "booking_id": self.booking_id,
            "status": self.status.value,
            "outcome": None if self.outcome is None else self.outcome.value,
            "billable": self.billable,
            "payer": None if self.payer is None else self.payer.value,
            "rule_version": self.rule_version,
            "explanation": self.explanation,
            "parties": {
                Role.PROFESSIONAL.value: self.professional.to_json(),
                Role.CLIENT.value: self.client.to_json(),
            },
            "together_seconds": self.together_seconds,
            "media_connected": self.media_connected,
            "video_seconds": self.video_seconds,
            "audio_only_seconds": self.audio_only_seconds,
            "notices": [notice.to_json() for notice in self.notices],
        }


# Fields a stored record finalised under an older ``rule_version`` may lack, and what the
# API shows for them: rules 1 did not measure how the session was held.
STORED_DEFAULTS: dict[str, Any] = {"video_seconds": 0, "audio_only_seconds": 0}


def stored_record(data: dict[str, Any]) -> dict[str, Any]:
    """A stored final record as the API returns it: fields it predates filled in."""
    return {**data, **{key: value for key, value in STORED_DEFAULTS.items()
                       if key not in data}}


class CreditEffect(enum.StrEnum):
    NONE = "none"
    CONSUME = "consume"
    RELEASE = "release"


def format_time(dt: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC ending in ``Z``.

    Fractional seconds appear only when the microseconds are not zero.
    """
    if dt.utcoffset() is None:
        raise ValueError(f"naive datetime {dt.isoformat()} has no time zone")
    utc = dt.astimezone(UTC)
    timespec = "microseconds" if utc.microsecond else "seconds"
    return utc.isoformat(timespec=timespec).removesuffix("+00:00") + "Z"


def billing_for(outcome: Outcome, funding: Funding) -> tuple[bool, Payer | None]:
    """Whether ``outcome`` is billable and who pays: ``(billable, payer)``."""
    if outcome not in _BILLABLE:
        return False, None
    return True, Payer.SPONSOR if funding is Funding.SPONSORED else Payer.CLIENT


def credit_effect(outcome: Outcome, funding: Funding) -> CreditEffect:
    """What ``outcome`` does to the sponsored credit the booking reserved."""
    if funding is Funding.PRIVATE:
        return CreditEffect.NONE
    return CreditEffect.CONSUME if outcome in _BILLABLE else CreditEffect.RELEASE


def is_hub_booking(booking: Booking) -> bool:
    """A booking under a hub's terms: booked through the hub, or paid by its credit."""
    return booking.source is Source.HUB or booking.funding is Funding.SPONSORED


def notice_hours(booking: Booking, professional_notice_hours: int) -> int:
    """The notice ``booking`` needs for a cancellation not to be late, in hours.

    Hub bookings always need ``HUB_NOTICE_HOURS`` (24); the others the professional's
    ``cancellation_notice_hours``.
    """
    return HUB_NOTICE_HOURS if is_hub_booking(booking) else professional_notice_hours


def cancellation_terms(booking: Booking, by: Role, at: datetime,
                       notice: int = HUB_NOTICE_HOURS) -> tuple[bool, bool]:
    """``(late, chargeable)`` for ``booking`` cancelled by ``by`` at ``at``.

    ``late`` when less than ``notice`` hours (``notice_hours``) remain before
    ``starts_at``. Only a late cancellation by the client is ``chargeable``.
    This deliberately narrows a literal reading of the contract ("a late
    cancellation of a hub booking is chargeable"): a professional who cancels
    late must never make the client or the sponsor pay.
    """
    _require_aware(at, "at")
    late = booking.starts_at - at < timedelta(hours=notice)
    return late, late and by is Role.CLIENT


@dataclass(frozen=True, slots=True)
class CancellationTerms:
    """What cancelling a booking now would mean, and a sentence to show before it."""

    late: bool
    chargeable: bool
    notice_hours: int
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"late": self.late, "chargeable": self.chargeable,
                "notice_hours": self.notice_hours, "message": self.message}


def quote_cancellation(booking: Booking, by: Role, at: datetime,
                       professional_notice_hours: int) -> CancellationTerms:
    """The terms of cancelling ``booking`` by ``by`` at ``at`` (the same rule as cancel)."""
    notice = notice_hours(booking, professional_notice_hours)
    late, chargeable = cancellation_terms(booking, by, at, notice)
    return CancellationTerms(late, chargeable, notice,
                             _terms_message(booking, by, late, chargeable, notice))


def _hours(notice: int) -> str:
    return "1 hour" if notice == 1 else f"{notice} hours"


def _terms_message(booking: Booking, by: Role, late: bool, chargeable: bool,
                   notice: int) -> str:
    if not late:
        return (f"Cancelling now is free of charge: the session is {_hours(notice)} or "
                "more away.")
    if not chargeable:
        return ("Cancelling now is late, but a cancellation by the professional is never "
                "charged.")
    if booking.funding is Funding.SPONSORED:
        return (f"Cancelling now is late (less than {_hours(notice)} before the start): "
                "under your hub's terms the session counts as used.")
    if is_hub_booking(booking):
        return (f"A cancellation fee may apply: cancelling now is less than "
                f"{_hours(notice)} before the start.")
    return (f"A cancellation fee may apply under your professional's terms: cancelling now "
            f"is less than {_hours(notice)} before the start.")


def explain(
    outcome: Outcome | None,
    funding: Funding,
    *,
    cancellation: Cancellation | None = None,
    final_at: datetime | None = None,
    failures: Sequence[tuple[Role, str | None]] | None = None,
) -> str:
    """One human sentence saying why a record has ``outcome`` and what it costs.

    ``outcome`` None is a pending record; ``final_at`` then says when it will be
    final at the latest. ``cancellation`` details the two cancelled outcomes.
    ``failures``, for a technical failure, are the ``(role, cause)`` the peers reported
    (``failures_of``): the sentence names them, or says that nobody reported one when
    empty (None: not known, the sentence is silent about causes).
    """
    if outcome is None:
        if final_at is None:
            return "The outcome is decided after the session."
        return (
            "The outcome is decided after the session; this record becomes final"
            f" at {format_time(final_at)} at the latest."
        )
    if outcome in (Outcome.LATE_CANCELLATION, Outcome.CANCELLED):
        situation = _cancellation_situation(cancellation)
    else:
        situation = _ATTENDANCE_SITUATIONS[outcome]
        if outcome is Outcome.TECHNICAL_FAILURE and failures is not None:
            situation += _failure_clause(failures)
    return f"{situation}, so {_consequence(outcome, funding)}."


# What each cause a peer reports means, in words that blame nobody; ``{role}`` is the
# party whose device reported it.
FAILURE_SENTENCES = {
    "no_relay_candidate": ("the {role}'s device could connect only through a relay server "
                           "(Hide my IP) and no relay server was available"),
    "no_candidate_pair": ("the {role}'s device found no network path to the other device: "
                          "the networks between them blocked a direct connection and no "
                          "relay server got through"),
    "dtls_failed": ("the {role}'s device reached the other device but the encrypted media "
                    "connection could not be set up"),
    "permission_denied": "the {role}'s device was not allowed to use the camera or microphone",
    "unknown": "the {role}'s device reported a failure without knowing its cause",
}


def failures_of(events: Sequence[AttendanceEvent], window_start: datetime,
                window_end: datetime) -> tuple[tuple[Role, str], ...]:
    """The distinct ``(role, cause)`` of the ``media_failed`` events in the window, in
    the order first reported; a missing or unrecognised cause is ``unknown``, and a
    role's ``unknown`` is left out when that role also named a cause."""
    found: list[tuple[Role, str]] = []
    for event in sorted(events, key=lambda event: (event.at, event.event_id)):
        if event.kind is EventKind.MEDIA_FAILED and window_start <= event.at <= window_end:
            cause = event.reason if event.reason in FAILURE_SENTENCES else "unknown"
            if (event.role, cause) not in found:
                found.append((event.role, cause))
    named = {role for role, cause in found if cause != "unknown"}
    return tuple((role, cause) for role, cause in found
                 if cause != "unknown" or role not in named)


def _failure_clause(failures: Sequence[tuple[Role, str | None]]) -> str:
    if not failures:
        return " and neither device reported why"
    sentences = [FAILURE_SENTENCES.get(cause or "unknown", FAILURE_SENTENCES["unknown"])
                 .format(role=role.value) for role, cause in failures]
    return ": " + "; ".join(sentences)


def evaluate(
    booking: Booking,
    events: Sequence[AttendanceEvent],
    now: datetime,
    windows: Windows,
    *,
    settled: bool = True,
) -> AttendanceRecord:
    """The attendance record of ``booking`` from its ``events``, as of ``now``.

    Events of other bookings are ignored; the rest are replayed in
    ``(at, event_id)`` order, so the order they are given in does not matter.
    ``settled`` False keeps a record pending that only the window's end would make
    final (see the module's rules).
    """
    _require_aware(now, "now")
    window_start = booking.starts_at - windows.join_early
    window_end = booking.ends_at + windows.overrun
    # Someone still in the room counts until now, but never beyond the window.
    horizon = min(now, window_end)
    ordered = sorted(
        (event for event in events if event.booking_id == booking.booking_id),
        key=lambda event: (event.at, event.event_id),
    )
    professional = _party(ordered, Role.PROFESSIONAL, window_start, window_end, horizon)
    client = _party(ordered, Role.CLIENT, window_start, window_end, horizon)
    together = sum(
        (
            _overlap(mine, theirs, horizon)
            for mine in professional.intervals
            for theirs in client.intervals
        ),
        timedelta(),
    )
    media_connected = any(
        event.kind is EventKind.MEDIA_CONNECTED and window_start <= event.at <= window_end
        for event in ordered
    )
    video, audio_only = _media_split(ordered, professional, client, window_start, horizon)

    status = RecordStatus.FINAL
    outcome: Outcome | None
    if booking.status is BookingStatus.CANCELLED or booking.cancellation is not None:
        chargeable = booking.cancellation is not None and booking.cancellation.chargeable
        outcome = Outcome.LATE_CANCELLATION if chargeable else Outcome.CANCELLED
    elif (settled and now >= window_end) or (
        now >= booking.ends_at
        and professional.joined
        and client.joined
        and not _still_present(professional)
        and not _still_present(client)
    ):
        outcome = _attendance_outcome(professional.joined, client.joined, media_connected)
    else:
        status = RecordStatus.PENDING
        outcome = None

    billable, payer = (False, None) if outcome is None else billing_for(outcome, booking.funding)
    return AttendanceRecord(
        booking_id=booking.booking_id,
        status=status,
        outcome=outcome,
        billable=billable,
        payer=payer,
        rule_version=RULE_VERSION,
        explanation=explain(
            outcome, booking.funding, cancellation=booking.cancellation, final_at=window_end,
            failures=failures_of(ordered, window_start, window_end),
        ),
        professional=professional,
        client=client,
        together_seconds=_whole_seconds(together),
        media_connected=media_connected,
        video_seconds=_whole_seconds(video),
        audio_only_seconds=_whole_seconds(audio_only),
        # A notice may come before the room opens ("I'll be late" an hour ahead); none
        # can come after it closes.
        notices=tuple(notice for notice in notices_of(ordered) if notice.at <= window_end),
    )


def overridden(
    record: AttendanceRecord,
    outcome: Outcome,
    funding: Funding,
    reason: str,
    *,
    by: str | None = None,
    cancellation: Cancellation | None = None,
) -> AttendanceRecord:
    """``record`` with ``outcome`` imposed by a person, final, billed accordingly.

    A late cancellation overridden to ``cancelled`` is a waiver of its charge: the
    explanation says so and names who waived it (``by``).
    """
    billable, payer = billing_for(outcome, funding)
    reason = reason.strip().rstrip(".")
    suffix = f": {reason}." if reason else "."
    if record.outcome is Outcome.LATE_CANCELLATION and outcome is Outcome.CANCELLED:
        situation = _cancellation_situation(cancellation)
        explanation = (f"{situation}; the charge was waived by {_who(by)}, so "
                       f"{_consequence(outcome, funding)}{suffix}")
    else:
        explanation = f"Outcome set to {outcome.value} by an override"
        if by:
            explanation += f" of {_who(by)}"
        explanation += suffix
    return replace(
        record,
        status=RecordStatus.FINAL,
        outcome=outcome,
        billable=billable,
        payer=payer,
        explanation=explanation,
    )


def _who(by: str | None) -> str:
    if not by:
        return "an override"
    return f"the {by}" if by in (Role.PROFESSIONAL.value, Role.CLIENT.value) else by


_ATTENDANCE_SITUATIONS = {
    Outcome.COMPLETED: "Both parties joined and the media connected",
    Outcome.TECHNICAL_FAILURE: "Both parties joined but the media never connected",
    Outcome.CLIENT_NO_SHOW: "The professional joined but the client never did",
    Outcome.PROFESSIONAL_NO_SHOW: "The client joined but the professional never did",
    Outcome.BOTH_NO_SHOW: "Neither party joined",
}


def _cancellation_situation(cancellation: Cancellation | None) -> str:
    if cancellation is None:
        return "The booking was cancelled"
    who = f"The {cancellation.by.value}"
    hours = _hours(cancellation.notice_hours)
    if cancellation.chargeable:
        return f"{who} cancelled less than {hours} before the start"
    if not cancellation.late:
        return f"{who} cancelled {hours} or more before the start"
    if cancellation.by is Role.PROFESSIONAL:
        return f"{who} cancelled less than {hours} before the start, which is never charged"
    return f"{who} cancelled without charge"


def _consequence(outcome: Outcome, funding: Funding) -> str:
    billable, payer = billing_for(outcome, funding)
    billing = (
        f"the session is billable to the {payer}" if billable else "the session is not billable"
    )
    effect = credit_effect(outcome, funding)
    if effect is CreditEffect.CONSUME:
        return f"{billing} and the credit is consumed"
    if effect is CreditEffect.RELEASE:
        return f"{billing} and the credit is released"
    return billing


def _attendance_outcome(professional: bool, client: bool, media_connected: bool) -> Outcome:
    if professional and client:
        return Outcome.COMPLETED if media_connected else Outcome.TECHNICAL_FAILURE
    if professional:
        return Outcome.CLIENT_NO_SHOW
    if client:
        return Outcome.PROFESSIONAL_NO_SHOW
    return Outcome.BOTH_NO_SHOW


def _party(
    events: Sequence[AttendanceEvent],
    role: Role,
    window_start: datetime,
    window_end: datetime,
    horizon: datetime,
) -> PartyAttendance:
    raw: list[Interval] = []
    opened: datetime | None = None
    for event in events:
        if event.role is not role:
            continue
        if event.kind is EventKind.JOINED and opened is None:
            opened = event.at
        elif event.kind is EventKind.LEFT and opened is not None:
            raw.append(Interval(opened, event.at))
            opened = None
    if opened is not None:
        raw.append(Interval(opened, None))

    intervals = tuple(
        clipped
        for interval in raw
        if (clipped := _clip(interval, window_start, window_end)) is not None
    )
    present = sum((_length(interval, horizon) for interval in intervals), timedelta())
    return PartyAttendance(
        joined=bool(intervals),
        first_joined_at=intervals[0].start if intervals else None,
        present_seconds=_whole_seconds(present),
        intervals=intervals,
    )


def _media_split(
    events: Sequence[AttendanceEvent],
    professional: PartyAttendance,
    client: PartyAttendance,
    window_start: datetime,
    horizon: datetime,
) -> tuple[timedelta, timedelta]:
    """``(video, audio_only)``: the connected time both were together, by the module's
    definition, from ``events`` up to ``horizon``.

    Events at the same instant are taken joined first, then media, then left: the order
    signalling's room makes them in (media only while present), whatever their ids say.
    """
    # Each role's last media report: None (not connected) or whether it sends video.
    sends_video: dict[Role, bool | None] = {role: None for role in Role}
    video = audio_only = timedelta()
    cursor = window_start
    causal = sorted(events, key=lambda event: (event.at, _SAME_INSTANT_RANK.get(event.kind, 1),
                                               event.event_id))
    for event in [*causal, None]:
        until = horizon if event is None else min(max(event.at, window_start), horizon)
        if until > cursor:
            reports = [flag for flag in sends_video.values() if flag is not None]
            if reports:
                span = _together_within(professional, client, cursor, until)
                if all(reports):
                    video += span
                else:
                    audio_only += span
            cursor = until
        if event is None:
            break
        if event.kind is EventKind.MEDIA_CONNECTED:
            sends_video[event.role] = event.reason != AUDIO_ONLY
        elif event.kind in (EventKind.MEDIA_DISCONNECTED, EventKind.MEDIA_FAILED,
                            EventKind.LEFT, EventKind.JOINED):
            sends_video[event.role] = None
    return video, audio_only


_SAME_INSTANT_RANK = {EventKind.JOINED: 0, EventKind.LEFT: 2}


def _together_within(professional: PartyAttendance, client: PartyAttendance,
                     start: datetime, end: datetime) -> timedelta:
    """How long both parties were present within ``[start, end)``."""
    total = timedelta()
    for mine in professional.intervals:
        for theirs in client.intervals:
            lo = max(mine.start, theirs.start, start)
            hi = min(end if mine.end is None else mine.end,
                     end if theirs.end is None else theirs.end, end)
            total += max(hi - lo, timedelta())
    return total


def _clip(interval: Interval, window_start: datetime, window_end: datetime) -> Interval | None:
    # Inclusive bounds: a zero-length stay at either edge of the window counts.
    if interval.start > window_end or (interval.end is not None and interval.end < window_start):
        return None
    end = None if interval.end is None else min(interval.end, window_end)
    return Interval(max(interval.start, window_start), end)


def _length(interval: Interval, horizon: datetime) -> timedelta:
    end = horizon if interval.end is None else interval.end
    return max(end - interval.start, timedelta())


def _overlap(a: Interval, b: Interval, horizon: datetime) -> timedelta:
    a_end = horizon if a.end is None else a.end
    b_end = horizon if b.end is None else b.end
    return max(min(a_end, b_end) - max(a.start, b.start), timedelta())


def _still_present(party: PartyAttendance) -> bool:
    return any(interval.end is None for interval in party.intervals)


def _whole_seconds(duration: timedelta) -> int:
    return duration // _ONE_SECOND


def _require_aware(dt: datetime, name: str) -> None:
    if dt.utcoffset() is None:
        raise ValueError(f"'{name}' must be timezone-aware (got {dt.isoformat()})")
