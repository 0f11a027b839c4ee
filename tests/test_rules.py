"""Attendance rules (booking_gate.rules): outcomes, billing, credits, record shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from booking_gate.model import (
    AttendanceEvent,
    Booking,
    BookingId,
    BookingStatus,
    Cancellation,
    ClientId,
    EventId,
    EventKind,
    Funding,
    HubId,
    Outcome,
    Payer,
    ProfessionalId,
    RecordStatus,
    Role,
    RoomId,
    Source,
)
from booking_gate.rules import (
    FAILURE_SENTENCES,
    RULE_VERSION,
    AttendanceRecord,
    CreditEffect,
    Interval,
    Windows,
    billing_for,
    cancellation_terms,
    credit_effect,
    evaluate,
    explain,
    format_time,
    overridden,
    stored_record,
)

PRO = Role.PROFESSIONAL
CLI = Role.CLIENT
JOINED = EventKind.JOINED
LEFT = EventKind.LEFT
MEDIA = EventKind.MEDIA_CONNECTED

# The booking runs 10:00-10:50; its window is 09:45-11:10.
WINDOWS = Windows(join_early=timedelta(minutes=15), overrun=timedelta(minutes=20))
STARTS = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
ENDS = datetime(2026, 11, 21, 10, 50, tzinfo=UTC)
FINAL_AT = ENDS + WINDOWS.overrun

Step = tuple[Role, EventKind, datetime]


def at(hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2026, 11, 21, hour, minute, second, tzinfo=UTC)


def booking(
    funding: Funding = Funding.SPONSORED,
    source: Source = Source.HUB,
    cancellation: Cancellation | None = None,
) -> Booking:
    return Booking(
        booking_id=BookingId("b1"),
        professional_id=ProfessionalId("p1"),
        client_id=ClientId("c1"),
        hub_id=HubId("acme") if funding is Funding.SPONSORED else None,
        starts_at=STARTS,
        ends_at=ENDS,
        funding=funding,
        source=source,
        status=BookingStatus.CONFIRMED if cancellation is None else BookingStatus.CANCELLED,
        room_id=RoomId("r1"),
        created_at=at(8, 0) - timedelta(days=7),
        changed_at=at(8, 0) - timedelta(days=7),
        cancellation=cancellation,
    )


def timeline(*steps: Step | tuple[Role, EventKind, datetime, str | None],
             booking_id: str = "b1") -> list[AttendanceEvent]:
    """Events in the given order, with event ids that sort in that order."""
    return [
        AttendanceEvent(EventId(f"{booking_id}-e{i:03d}"), BookingId(booking_id), step[0],
                        step[1], step[2], step[3] if len(step) > 3 else None)
        for i, step in enumerate(steps)
    ]


def late(role: Role, minutes: int, when: datetime, event_id: str | None = None
         ) -> AttendanceEvent:
    """A running-late notice as the gate stores it: the minutes in ``reason``."""
    return AttendanceEvent(EventId(event_id or f"late-{role.value}-{when.isoformat()}"),
                           BookingId("b1"), role, EventKind.RUNNING_LATE, when, str(minutes))


def cancelled(by: Role, hours_before: float, funding: Funding = Funding.SPONSORED) -> Booking:
    """A booking cancelled by ``by`` ``hours_before`` its start, terms from the rules."""
    when = STARTS - timedelta(hours=hours_before)
    late, chargeable = cancellation_terms(booking(funding), by, when)
    return booking(funding, cancellation=Cancellation(by, when, late, chargeable, "reason"))


FULL_SESSION = (
    (PRO, JOINED, at(9, 58)),
    (CLI, JOINED, at(10, 0)),
    (PRO, MEDIA, at(10, 0, 5)),
    (CLI, LEFT, at(10, 50)),
    (PRO, LEFT, at(10, 51)),
)


# --- outcomes ---------------------------------------------------------------

OUTCOME_CASES: list[tuple[tuple[Step, ...], Funding, Outcome, bool, Payer | None]] = [
    (FULL_SESSION, Funding.SPONSORED, Outcome.COMPLETED, True, Payer.SPONSOR),
    (FULL_SESSION, Funding.PRIVATE, Outcome.COMPLETED, True, Payer.CLIENT),
    (
        (
            (PRO, JOINED, at(10, 0)),
            (CLI, JOINED, at(10, 30)),
            (CLI, MEDIA, at(10, 30, 2)),
            (CLI, LEFT, at(10, 30, 5)),
        ),
        Funding.SPONSORED,
        Outcome.COMPLETED,
        True,
        Payer.SPONSOR,
    ),
    (
        ((PRO, JOINED, at(10, 0)), (CLI, JOINED, at(10, 30)), (CLI, LEFT, at(10, 30, 5))),
        Funding.SPONSORED,
        Outcome.TECHNICAL_FAILURE,
        False,
        None,
    ),
    (
        ((PRO, JOINED, at(10, 0)), (CLI, JOINED, at(10, 1)), (PRO, LEFT, at(10, 50))),
        Funding.PRIVATE,
        Outcome.TECHNICAL_FAILURE,
        False,
        None,
    ),
    (
        ((PRO, JOINED, at(10, 0)), (PRO, LEFT, at(10, 50))),
        Funding.SPONSORED,
        Outcome.CLIENT_NO_SHOW,
        True,
        Payer.SPONSOR,
    ),
    (
        ((PRO, JOINED, at(10, 0)),),
        Funding.PRIVATE,
        Outcome.CLIENT_NO_SHOW,
        True,
        Payer.CLIENT,
    ),
    (
        ((CLI, JOINED, at(10, 0)), (CLI, LEFT, at(10, 20))),
        Funding.SPONSORED,
        Outcome.PROFESSIONAL_NO_SHOW,
        False,
        None,
    ),
    ((), Funding.SPONSORED, Outcome.BOTH_NO_SHOW, False, None),
    (
        ((PRO, JOINED, at(10, 0)), (CLI, JOINED, at(9, 50)), (CLI, LEFT, at(9, 51))),
        Funding.SPONSORED,
        Outcome.TECHNICAL_FAILURE,
        False,
        None,
    ),
    (
        ((PRO, JOINED, at(10, 0)), (CLI, JOINED, at(10, 45)), (CLI, LEFT, at(10, 45))),
        Funding.SPONSORED,
        Outcome.TECHNICAL_FAILURE,
        False,
        None,
    ),
    (
        ((PRO, JOINED, at(10, 0)), (CLI, JOINED, at(9, 0)), (CLI, LEFT, at(9, 30))),
        Funding.SPONSORED,
        Outcome.CLIENT_NO_SHOW,
        True,
        Payer.SPONSOR,
    ),
    (
        ((PRO, JOINED, at(10, 0)), (CLI, JOINED, at(11, 20)), (CLI, MEDIA, at(11, 20))),
        Funding.SPONSORED,
        Outcome.CLIENT_NO_SHOW,
        True,
        Payer.SPONSOR,
    ),
    (
        ((PRO, JOINED, at(10, 0)), (CLI, JOINED, at(10, 1)), (PRO, MEDIA, at(9, 30))),
        Funding.SPONSORED,
        Outcome.TECHNICAL_FAILURE,
        False,
        None,
    ),
]


@pytest.mark.parametrize(
    ("steps", "funding", "outcome", "billable", "payer"),
    OUTCOME_CASES,
    ids=[
        "completed-sponsored",
        "completed-private",
        "client-5s-with-media-is-completed",
        "client-5s-without-media-is-technical-failure",
        "both-joined-no-media-is-technical-failure",
        "client-no-show-sponsored",
        "client-no-show-private-professional-still-open",
        "professional-no-show",
        "both-no-show",
        "client-only-in-join-early-margin-joined",
        "client-zero-seconds-joined",
        "client-only-before-window-is-no-show",
        "client-only-after-window-is-no-show",
        "media-before-window-ignored",
    ],
)
def test_final_outcome(
    steps: tuple[Step, ...],
    funding: Funding,
    outcome: Outcome,
    billable: bool,
    payer: Payer | None,
) -> None:
    """Pins each attendance outcome and its billing once the window is over."""
    record = evaluate(booking(funding), timeline(*steps), FINAL_AT, WINDOWS)
    assert record.status is RecordStatus.FINAL
    assert (record.outcome, record.billable, record.payer) == (outcome, billable, payer)
    assert record.rule_version == RULE_VERSION
    assert record.explanation == explain(outcome, funding, failures=())


@pytest.mark.parametrize(
    ("steps", "side"),
    [
        (((PRO, JOINED, at(10, 0)), (CLI, JOINED, at(10, 30)), (CLI, LEFT, at(10, 30, 5))), CLI),
        (((PRO, JOINED, at(10, 45)), (PRO, LEFT, at(10, 45)), (CLI, JOINED, at(10, 0))), PRO),
    ],
    ids=["client-5s", "professional-0s"],
)
def test_brief_presence_is_never_a_no_show(steps: tuple[Step, ...], side: Role) -> None:
    """A party present for seconds (or zero) joined and is not that side's no-show."""
    record = evaluate(booking(), timeline(*steps), FINAL_AT, WINDOWS)
    party = record.client if side is CLI else record.professional
    assert party.joined
    assert record.outcome not in (Outcome.CLIENT_NO_SHOW, Outcome.PROFESSIONAL_NO_SHOW)


# --- cancellations ----------------------------------------------------------


@pytest.mark.parametrize(
    ("by", "hours_before", "late", "chargeable"),
    [
        (CLI, 10, True, True),
        (CLI, 24, False, False),
        (CLI, 23.99, True, True),
        (CLI, 48, False, False),
        (CLI, -1, True, True),
        (PRO, 10, True, False),
        (PRO, 48, False, False),
    ],
    ids=[
        "client-late",
        "client-exactly-24h-timely",
        "client-just-under-24h-late",
        "client-timely",
        "client-after-start",
        "professional-late-not-chargeable",
        "professional-timely",
    ],
)
def test_cancellation_terms(by: Role, hours_before: float, late: bool, chargeable: bool) -> None:
    """Pins the 24 h notice and that only the client's late cancellation is chargeable."""
    when = STARTS - timedelta(hours=hours_before)
    assert cancellation_terms(booking(), by, when) == (late, chargeable)


@pytest.mark.parametrize(
    ("by", "hours_before", "funding", "outcome", "billable", "payer", "explanation"),
    [
        (
            CLI,
            10,
            Funding.SPONSORED,
            Outcome.LATE_CANCELLATION,
            True,
            Payer.SPONSOR,
            "The client cancelled less than 24 hours before the start,"
            " so the session is billable to the sponsor and the credit is consumed.",
        ),
        (
            CLI,
            10,
            Funding.PRIVATE,
            Outcome.LATE_CANCELLATION,
            True,
            Payer.CLIENT,
            "The client cancelled less than 24 hours before the start,"
            " so the session is billable to the client.",
        ),
        (
            CLI,
            48,
            Funding.SPONSORED,
            Outcome.CANCELLED,
            False,
            None,
            "The client cancelled 24 hours or more before the start,"
            " so the session is not billable and the credit is released.",
        ),
        (
            PRO,
            10,
            Funding.SPONSORED,
            Outcome.CANCELLED,
            False,
            None,
            "The professional cancelled less than 24 hours before the start, which is never"
            " charged, so the session is not billable and the credit is released.",
        ),
        (
            PRO,
            10,
            Funding.PRIVATE,
            Outcome.CANCELLED,
            False,
            None,
            "The professional cancelled less than 24 hours before the start, which is never"
            " charged, so the session is not billable.",
        ),
    ],
    ids=[
        "client-late-sponsored",
        "client-late-private",
        "client-timely",
        "professional-late-sponsored",
        "professional-late-private",
    ],
)
def test_cancelled_booking(
    by: Role,
    hours_before: float,
    funding: Funding,
    outcome: Outcome,
    billable: bool,
    payer: Payer | None,
    explanation: str,
) -> None:
    """A cancelled booking is final at once with the cancellation's outcome and payer."""
    record = evaluate(cancelled(by, hours_before, funding), [], at(9, 0), WINDOWS)
    assert record.status is RecordStatus.FINAL
    assert (record.outcome, record.billable, record.payer) == (outcome, billable, payer)
    assert record.explanation == explanation


def test_cancelled_booking_still_reports_attendance() -> None:
    """Intervals of a cancelled booking are reported; they do not change its outcome."""
    events = timeline((PRO, JOINED, at(10, 0)), (PRO, LEFT, at(10, 5)))
    record = evaluate(cancelled(CLI, 1), events, FINAL_AT, WINDOWS)
    assert record.outcome is Outcome.LATE_CANCELLATION
    assert record.professional.intervals == (Interval(at(10, 0), at(10, 5)),)
    assert record.professional.present_seconds == 300


# --- pending and final ------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "now", "status", "outcome"),
    [
        (
            ((PRO, JOINED, at(10, 0)), (CLI, JOINED, at(10, 0))),
            at(10, 30),
            RecordStatus.PENDING,
            None,
        ),
        ((), at(9, 0), RecordStatus.PENDING, None),
        (
            ((PRO, JOINED, at(10, 0)), (CLI, JOINED, at(10, 0)), (CLI, LEFT, at(10, 51))),
            at(10, 55),
            RecordStatus.PENDING,
            None,
        ),
        (
            ((PRO, JOINED, at(10, 0)), (PRO, LEFT, at(10, 40))),
            at(11, 0),
            RecordStatus.PENDING,
            None,
        ),
        (
            (
                (PRO, JOINED, at(10, 0)),
                (CLI, JOINED, at(10, 0)),
                (PRO, MEDIA, at(10, 0)),
                (CLI, LEFT, at(10, 51)),
                (PRO, LEFT, at(10, 52)),
            ),
            at(10, 52),
            RecordStatus.FINAL,
            Outcome.COMPLETED,
        ),
        (
            ((PRO, JOINED, at(10, 0)), (CLI, JOINED, at(10, 0)), (CLI, LEFT, at(10, 51))),
            FINAL_AT - timedelta(seconds=1),
            RecordStatus.PENDING,
            None,
        ),
        (
            ((PRO, JOINED, at(10, 0)), (CLI, JOINED, at(10, 0)), (CLI, LEFT, at(10, 51))),
            FINAL_AT,
            RecordStatus.FINAL,
            Outcome.TECHNICAL_FAILURE,
        ),
        ((), FINAL_AT, RecordStatus.FINAL, Outcome.BOTH_NO_SHOW),
    ],
    ids=[
        "during-session",
        "before-window",
        "after-end-professional-still-in",
        "after-end-only-one-joined",
        "final-early-when-both-left-after-end",
        "one-second-before-overrun-ends",
        "final-at-end-plus-overrun",
        "nobody-final-at-end-plus-overrun",
    ],
)
def test_status(
    steps: tuple[Step, ...], now: datetime, status: RecordStatus, outcome: Outcome | None
) -> None:
    """Pins when a record turns final: at ends_at+overrun, or once both left after ends_at."""
    record = evaluate(booking(), timeline(*steps), now, WINDOWS)
    assert (record.status, record.outcome) == (status, outcome)


def test_an_unsettled_gate_waits_for_late_reports_but_not_for_departures() -> None:
    """Not settled (just started): a window that has ended leaves the record pending (a
    node may still deliver what it saw), while both parties gone after the end is final."""
    one_left = timeline((PRO, JOINED, at(10, 0)), (CLI, JOINED, at(10, 0)),
                        (PRO, MEDIA, at(10, 1)), (CLI, LEFT, at(10, 50)))
    late = at(12, 0)
    assert evaluate(booking(), one_left, late, WINDOWS).status is RecordStatus.FINAL
    waiting = evaluate(booking(), one_left, late, WINDOWS, settled=False)
    assert (waiting.status, waiting.outcome) == (RecordStatus.PENDING, None)
    both_left = evaluate(booking(), timeline(*FULL_SESSION), late, WINDOWS, settled=False)
    assert (both_left.status, both_left.outcome) == (RecordStatus.FINAL, Outcome.COMPLETED)


def test_pending_record_has_no_outcome_and_says_when_final() -> None:
    """A pending record is not billable, has no payer and names its latest final time."""
    events = timeline((PRO, JOINED, at(10, 0)), (CLI, JOINED, at(10, 0)), (PRO, MEDIA, at(10, 0)))
    record = evaluate(booking(), events, at(10, 30), WINDOWS)
    assert (record.status, record.outcome, record.billable, record.payer) == (
        RecordStatus.PENDING,
        None,
        False,
        None,
    )
    assert record.explanation == (
        "The outcome is decided after the session;"
        " this record becomes final at 2026-11-21T11:10:00Z at the latest."
    )


# --- intervals --------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "now", "intervals", "present_seconds", "first_joined_at"),
    [
        (
            ((PRO, JOINED, at(9, 30)), (PRO, LEFT, at(11, 30))),
            at(12, 0),
            (Interval(at(9, 45), at(11, 10)),),
            85 * 60,
            at(9, 45),
        ),
        (((PRO, JOINED, at(10, 0)),), at(10, 30), (Interval(at(10, 0), None),), 30 * 60, at(10, 0)),
        (((PRO, JOINED, at(10, 0)),), at(12, 0), (Interval(at(10, 0), None),), 70 * 60, at(10, 0)),
        (((PRO, JOINED, at(9, 0)),), at(10, 0), (Interval(at(9, 45), None),), 15 * 60, at(9, 45)),
        (
            ((PRO, JOINED, at(10, 0)), (PRO, JOINED, at(10, 5)), (PRO, LEFT, at(10, 20))),
            at(12, 0),
            (Interval(at(10, 0), at(10, 20)),),
            20 * 60,
            at(10, 0),
        ),
        (
            ((PRO, LEFT, at(9, 59)), (PRO, JOINED, at(10, 0)), (PRO, LEFT, at(10, 10))),
            at(12, 0),
            (Interval(at(10, 0), at(10, 10)),),
            10 * 60,
            at(10, 0),
        ),
        (
            (
                (PRO, JOINED, at(10, 0)),
                (PRO, LEFT, at(10, 10)),
                (PRO, LEFT, at(10, 11)),
                (PRO, JOINED, at(10, 20)),
                (PRO, LEFT, at(10, 30, 30)),
            ),
            at(12, 0),
            (Interval(at(10, 0), at(10, 10)), Interval(at(10, 20), at(10, 30, 30))),
            20 * 60 + 30,
            at(10, 0),
        ),
        (
            ((PRO, JOINED, at(9, 0)), (PRO, LEFT, at(9, 30)), (PRO, JOINED, at(11, 30))),
            at(12, 0),
            (),
            0,
            None,
        ),
        (
            ((PRO, JOINED, at(10, 0)), (PRO, LEFT, at(10, 0, 0) + timedelta(milliseconds=900))),
            at(12, 0),
            (Interval(at(10, 0), at(10, 0) + timedelta(milliseconds=900)),),
            0,
            at(10, 0),
        ),
    ],
    ids=[
        "clipped-to-window",
        "open-counted-to-now",
        "open-counted-to-window-end",
        "open-from-before-window-clipped",
        "duplicate-joined-ignored",
        "left-while-absent-ignored",
        "rejoin-makes-two-intervals",
        "entirely-outside-window-dropped",
        "sub-second-stay-truncated",
    ],
)
def test_professional_intervals(
    steps: tuple[Step, ...],
    now: datetime,
    intervals: tuple[Interval, ...],
    present_seconds: int,
    first_joined_at: datetime | None,
) -> None:
    """Pins interval building, clipping to the window and how presence is counted."""
    party = evaluate(booking(), timeline(*steps), now, WINDOWS).professional
    assert party.intervals == intervals
    assert party.present_seconds == present_seconds
    assert party.first_joined_at == first_joined_at
    assert party.joined is bool(intervals)


def test_events_are_replayed_in_time_order() -> None:
    """Events given out of order are sorted by (at, event_id) before replay."""
    events = timeline((PRO, LEFT, at(10, 20)), (PRO, JOINED, at(10, 0)))
    party = evaluate(booking(), events, at(12, 0), WINDOWS).professional
    assert party.intervals == (Interval(at(10, 0), at(10, 20)),)


def test_events_of_other_bookings_are_ignored() -> None:
    """Another booking's joins and media never count for this one."""
    ours = timeline((PRO, JOINED, at(10, 0)))
    theirs = timeline(
        (CLI, JOINED, at(10, 0)), (PRO, MEDIA, at(10, 1)), (PRO, LEFT, at(10, 2)), booking_id="b2"
    )
    record = evaluate(booking(), ours + theirs, FINAL_AT, WINDOWS)
    assert not record.client.joined
    assert not record.media_connected
    assert record.professional.intervals == (Interval(at(10, 0), None),)
    assert record.outcome is Outcome.CLIENT_NO_SHOW


@pytest.mark.parametrize(
    ("steps", "now", "together_seconds"),
    [
        (
            (
                (PRO, JOINED, at(10, 0)),
                (CLI, JOINED, at(10, 10)),
                (CLI, LEFT, at(10, 20)),
                (CLI, JOINED, at(10, 30)),
                (PRO, LEFT, at(10, 50)),
                (CLI, LEFT, at(11, 0)),
            ),
            at(12, 0),
            30 * 60,
        ),
        (((PRO, JOINED, at(10, 0)), (CLI, JOINED, at(10, 5))), at(10, 25), 20 * 60),
        (((PRO, JOINED, at(10, 0)), (CLI, JOINED, at(10, 5))), at(12, 0), 65 * 60),
        (
            ((PRO, JOINED, at(10, 0)), (PRO, LEFT, at(10, 5)), (CLI, JOINED, at(10, 5))),
            at(12, 0),
            0,
        ),
    ],
    ids=["two-overlaps", "open-to-now", "open-to-window-end", "touching-only"],
)
def test_together_seconds(steps: tuple[Step, ...], now: datetime, together_seconds: int) -> None:
    """Pins together_seconds as the overlap of both parties' intervals."""
    record = evaluate(booking(), timeline(*steps), now, WINDOWS)
    assert record.together_seconds == together_seconds


@pytest.mark.parametrize(
    ("when", "connected"),
    [
        (at(9, 44), False),
        (at(9, 45), True),
        (at(10, 30), True),
        (at(11, 10), True),
        (at(11, 11), False),
    ],
    ids=["before-window", "window-start", "inside", "window-end", "after-window"],
)
def test_media_connected_only_inside_window(when: datetime, connected: bool) -> None:
    """A MEDIA_CONNECTED event counts only when it lies in the booking's window."""
    record = evaluate(booking(), timeline((CLI, MEDIA, when)), at(12, 0), WINDOWS)
    assert record.media_connected is connected


# --- billing and credits ----------------------------------------------------

BILLABLE_OUTCOMES = {Outcome.COMPLETED, Outcome.CLIENT_NO_SHOW, Outcome.LATE_CANCELLATION}
ALL_PAIRS = [(outcome, funding) for outcome in Outcome for funding in Funding]
PAIR_IDS = [f"{outcome.value}-{funding.value}" for outcome, funding in ALL_PAIRS]


BILLING_CASES: list[tuple[Outcome, Funding, tuple[bool, Payer | None]]] = [
    (Outcome.COMPLETED, Funding.SPONSORED, (True, Payer.SPONSOR)),
    (Outcome.COMPLETED, Funding.PRIVATE, (True, Payer.CLIENT)),
    (Outcome.CLIENT_NO_SHOW, Funding.SPONSORED, (True, Payer.SPONSOR)),
    (Outcome.CLIENT_NO_SHOW, Funding.PRIVATE, (True, Payer.CLIENT)),
    (Outcome.LATE_CANCELLATION, Funding.SPONSORED, (True, Payer.SPONSOR)),
    (Outcome.LATE_CANCELLATION, Funding.PRIVATE, (True, Payer.CLIENT)),
    (Outcome.PROFESSIONAL_NO_SHOW, Funding.SPONSORED, (False, None)),
    (Outcome.PROFESSIONAL_NO_SHOW, Funding.PRIVATE, (False, None)),
    (Outcome.BOTH_NO_SHOW, Funding.SPONSORED, (False, None)),
    (Outcome.BOTH_NO_SHOW, Funding.PRIVATE, (False, None)),
    (Outcome.TECHNICAL_FAILURE, Funding.SPONSORED, (False, None)),
    (Outcome.TECHNICAL_FAILURE, Funding.PRIVATE, (False, None)),
    (Outcome.CANCELLED, Funding.SPONSORED, (False, None)),
    (Outcome.CANCELLED, Funding.PRIVATE, (False, None)),
]


@pytest.mark.parametrize(
    ("outcome", "funding", "expected"),
    BILLING_CASES,
    ids=[f"{outcome.value}-{funding.value}" for outcome, funding, _ in BILLING_CASES],
)
def test_billing_for(
    outcome: Outcome, funding: Funding, expected: tuple[bool, Payer | None]
) -> None:
    """Pins which outcomes are billable and who pays for each funding."""
    assert billing_for(outcome, funding) == expected


def test_billing_table_covers_every_pair() -> None:
    """The billing table lists every outcome x funding pair exactly once."""
    pairs = [(outcome, funding) for outcome, funding, _ in BILLING_CASES]
    assert sorted(pairs) == sorted(ALL_PAIRS)


@pytest.mark.parametrize(("outcome", "funding"), ALL_PAIRS, ids=PAIR_IDS)
def test_credit_effect(outcome: Outcome, funding: Funding) -> None:
    """Private bookings hold no credit; sponsored ones consume it only when billable."""
    if funding is Funding.PRIVATE:
        expected = CreditEffect.NONE
    elif outcome in BILLABLE_OUTCOMES:
        expected = CreditEffect.CONSUME
    else:
        expected = CreditEffect.RELEASE
    assert credit_effect(outcome, funding) is expected


@pytest.mark.parametrize(
    ("outcome", "funding", "sentence"),
    [
        (
            Outcome.COMPLETED,
            Funding.SPONSORED,
            "Both parties joined and the media connected,"
            " so the session is billable to the sponsor and the credit is consumed.",
        ),
        (
            Outcome.COMPLETED,
            Funding.PRIVATE,
            "Both parties joined and the media connected,"
            " so the session is billable to the client.",
        ),
        (
            Outcome.TECHNICAL_FAILURE,
            Funding.SPONSORED,
            "Both parties joined but the media never connected,"
            " so the session is not billable and the credit is released.",
        ),
        (
            Outcome.CLIENT_NO_SHOW,
            Funding.SPONSORED,
            "The professional joined but the client never did,"
            " so the session is billable to the sponsor and the credit is consumed.",
        ),
        (
            Outcome.PROFESSIONAL_NO_SHOW,
            Funding.SPONSORED,
            "The client joined but the professional never did,"
            " so the session is not billable and the credit is released.",
        ),
        (
            Outcome.PROFESSIONAL_NO_SHOW,
            Funding.PRIVATE,
            "The client joined but the professional never did, so the session is not billable.",
        ),
        (
            Outcome.BOTH_NO_SHOW,
            Funding.PRIVATE,
            "Neither party joined, so the session is not billable.",
        ),
        (
            Outcome.CANCELLED,
            Funding.SPONSORED,
            "The booking was cancelled, so the session is not billable and the credit is released.",
        ),
        (None, Funding.SPONSORED, "The outcome is decided after the session."),
    ],
    ids=[
        "completed-sponsored",
        "completed-private",
        "technical-failure-sponsored",
        "client-no-show-sponsored",
        "professional-no-show-sponsored",
        "professional-no-show-private",
        "both-no-show-private",
        "cancelled-without-details",
        "pending-without-time",
    ],
)
def test_explain(outcome: Outcome | None, funding: Funding, sentence: str) -> None:
    """Pins the one-sentence explanation, accurate to the funding."""
    assert explain(outcome, funding) == sentence


# --- override ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("funding", "outcome", "billable", "payer"),
    [
        (Funding.SPONSORED, Outcome.COMPLETED, True, Payer.SPONSOR),
        (Funding.PRIVATE, Outcome.CLIENT_NO_SHOW, True, Payer.CLIENT),
        (Funding.SPONSORED, Outcome.TECHNICAL_FAILURE, False, None),
    ],
    ids=["to-completed-sponsored", "to-client-no-show-private", "to-technical-failure"],
)
def test_overridden(
    funding: Funding, outcome: Outcome, billable: bool, payer: Payer | None
) -> None:
    """An override makes the record final with the new outcome, billing and reason."""
    pending = evaluate(booking(funding), timeline((PRO, JOINED, at(10, 0))), at(10, 5), WINDOWS)
    record = overridden(pending, outcome, funding, "Verified with both parties by phone.")
    assert (record.status, record.outcome, record.billable, record.payer) == (
        RecordStatus.FINAL,
        outcome,
        billable,
        payer,
    )
    assert record.explanation == (
        f"Outcome set to {outcome.value} by an override: Verified with both parties by phone."
    )
    assert record.professional == pending.professional


# --- JSON -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dt", "text"),
    [
        (datetime(2026, 11, 21, 10, 0, tzinfo=UTC), "2026-11-21T10:00:00Z"),
        (datetime(2026, 11, 21, 10, 0, 0, 250000, tzinfo=UTC), "2026-11-21T10:00:00.250000Z"),
        (
            datetime(2026, 11, 21, 11, 30, tzinfo=timezone(timedelta(hours=1, minutes=30))),
            "2026-11-21T10:00:00Z",
        ),
    ],
    ids=["whole-seconds", "fraction", "offset-converted"],
)
def test_format_time(dt: datetime, text: str) -> None:
    """Pins RFC 3339 UTC with a Z and fractional seconds only when non-zero."""
    assert format_time(dt) == text


def test_format_time_refuses_naive_datetimes() -> None:
    """A naive datetime is a bug, never silently read as UTC."""
    with pytest.raises(ValueError, match="naive datetime"):
        format_time(datetime(2026, 11, 21, 10, 0))  # noqa: DTZ001


def test_to_json_has_the_contract_shape() -> None:
    """Pins the attendance record's JSON exactly as docs/contract.md section 3 gives it."""
    events = [*timeline(
        (PRO, JOINED, at(9, 58)),
        (CLI, JOINED, at(10, 0, 0) + timedelta(microseconds=500)),
        (PRO, MEDIA, at(10, 1)),
        (CLI, LEFT, at(10, 20)),
    ), late(CLI, 10, at(9, 50))]
    record: AttendanceRecord = evaluate(booking(), events, FINAL_AT, WINDOWS)
    assert record.to_json() == {
        "booking_id": "b1",
        "status": "final",
        "outcome": "completed",
        "billable": True,
        "payer": "sponsor",
        "rule_version": RULE_VERSION,
        "explanation": explain(Outcome.COMPLETED, Funding.SPONSORED),
        "parties": {
            "professional": {
                "joined": True,
                "first_joined_at": "2026-11-21T09:58:00Z",
                "present_seconds": 72 * 60,
                "intervals": [{"from": "2026-11-21T09:58:00Z", "to": None}],
            },
            "client": {
                "joined": True,
                "first_joined_at": "2026-11-21T10:00:00.000500Z",
                "present_seconds": 19 * 60 + 59,
                "intervals": [
                    {"from": "2026-11-21T10:00:00.000500Z", "to": "2026-11-21T10:20:00Z"}
                ],
            },
        },
        "together_seconds": 19 * 60 + 59,
        "media_connected": True,
        "video_seconds": 19 * 60,
        "audio_only_seconds": 0,
        "notices": [{"by": "client", "kind": "running_late", "minutes": 10,
                     "at": "2026-11-21T09:50:00Z"}],
    }


def test_to_json_of_a_record_nobody_attended() -> None:
    """Absent parties serialise with nulls and empty lists, a pending outcome as null."""
    data = evaluate(booking(), [], at(9, 0), WINDOWS).to_json()
    assert (data["status"], data["outcome"], data["payer"]) == ("pending", None, None)
    assert data["parties"]["client"] == {
        "joined": False,
        "first_joined_at": None,
        "present_seconds": 0,
        "intervals": [],
    }


def test_notices_are_the_running_late_events_up_to_the_windows_end_oldest_first() -> None:
    """Notices come from running_late events only, ordered by time whatever the input
    order, those sent before the room opens too, none after the window's end."""
    events = [
        late(PRO, 15, at(10, 5)),
        late(CLI, 5, at(9, 46)),
        late(CLI, 10, at(9, 0)),  # before the window opens at 09:45: kept
        late(CLI, 5, at(11, 11)),  # after it closes at 11:10
        *timeline((PRO, JOINED, at(9, 58))),
    ]
    record = evaluate(booking(), events, at(10, 30), WINDOWS)
    assert [n.to_json() for n in record.notices] == [
        {"by": "client", "kind": "running_late", "minutes": 10, "at": "2026-11-21T09:00:00Z"},
        {"by": "client", "kind": "running_late", "minutes": 5, "at": "2026-11-21T09:46:00Z"},
        {"by": "professional", "kind": "running_late", "minutes": 15,
         "at": "2026-11-21T10:05:00Z"},
    ]
    assert evaluate(booking(), timeline((PRO, JOINED, at(9, 58))), at(10, 30),
                    WINDOWS).to_json()["notices"] == []


def test_a_running_late_notice_is_not_presence() -> None:
    """A client who only sent running-late notices and never joined is a no-show; the
    outcome and the parties are those of the same events without the notices."""
    joined = timeline((PRO, JOINED, at(9, 58)), (PRO, LEFT, at(10, 50)))
    with_notices = [*joined, late(CLI, 5, at(9, 55)), late(CLI, 15, at(10, 10))]
    record = evaluate(booking(), with_notices, FINAL_AT, WINDOWS)
    assert record.outcome is Outcome.CLIENT_NO_SHOW
    assert not record.client.joined and record.client.intervals == ()
    plain = evaluate(booking(), joined, FINAL_AT, WINDOWS)
    assert record.to_json() == {**plain.to_json(), "notices": [
        n.to_json() for n in record.notices]}
    assert len(record.notices) == 2


# --- property ---------------------------------------------------------------

WINDOW_START = STARTS - WINDOWS.join_early
WINDOW_END = FINAL_AT
WINDOW_SECONDS = int((WINDOW_END - WINDOW_START).total_seconds())
ORIGIN = at(8, 0)  # well before the window
SPAN = 5 * 3600  # events and "now" fall in 08:00-13:00

step_strategy = st.tuples(
    st.sampled_from([PRO, CLI]),
    st.sampled_from([JOINED, LEFT, MEDIA, EventKind.MEDIA_DISCONNECTED]),
    st.integers(min_value=0, max_value=SPAN).map(lambda s: ORIGIN + timedelta(seconds=s)),
)


@settings(database=None, deadline=None)
@given(steps=st.lists(step_strategy, max_size=30), now_offset=st.integers(0, SPAN))
def test_presence_invariants(steps: list[Step], now_offset: int) -> None:
    """Presence fits the window, together fits each stay, an in-window join is never a no-show."""
    now = ORIGIN + timedelta(seconds=now_offset)
    record = evaluate(booking(), timeline(*steps), now, WINDOWS)
    for role, party in ((PRO, record.professional), (CLI, record.client)):
        assert 0 <= party.present_seconds <= WINDOW_SECONDS
        assert record.together_seconds <= party.present_seconds
        in_window_join = any(
            r is role and k is JOINED and WINDOW_START <= t <= WINDOW_END for r, k, t in steps
        )
        if in_window_join:
            assert party.joined
            no_show = Outcome.CLIENT_NO_SHOW if role is CLI else Outcome.PROFESSIONAL_NO_SHOW
            assert record.outcome not in (no_show, Outcome.BOTH_NO_SHOW)
        for interval in party.intervals:
            assert WINDOW_START <= interval.start <= WINDOW_END
            assert interval.end is None or interval.start <= interval.end <= WINDOW_END
    if record.status is RecordStatus.PENDING:
        assert (record.outcome, record.billable, record.payer) == (None, False, None)
    if now >= WINDOW_END:
        assert record.status is RecordStatus.FINAL


# --- how the session was held (rules 2) --------------------------------------

DOWN = EventKind.MEDIA_DISCONNECTED
FAILED = EventKind.MEDIA_FAILED
BOTH_IN = ((PRO, JOINED, at(10, 0)), (CLI, JOINED, at(10, 0)))


@pytest.mark.parametrize(
    ("steps", "video_seconds", "audio_only_seconds"),
    [
        ((*BOTH_IN, (PRO, MEDIA, at(10, 1), "video"), (CLI, MEDIA, at(10, 1), "video"),
          (PRO, LEFT, at(10, 11))), 600, 0),
        ((*BOTH_IN, (PRO, MEDIA, at(10, 1), "video"), (CLI, MEDIA, at(10, 1), "audio_only"),
          (CLI, MEDIA, at(10, 5), "video"), (PRO, LEFT, at(10, 11))), 360, 240),
        ((*BOTH_IN, (PRO, MEDIA, at(10, 1), "audio_only"), (PRO, LEFT, at(10, 11))), 0, 600),
        ((*BOTH_IN, (PRO, MEDIA, at(10, 1)), (PRO, DOWN, at(10, 3)),
          (PRO, MEDIA, at(10, 5)), (PRO, LEFT, at(10, 6))), 180, 0),
        ((*BOTH_IN, (CLI, MEDIA, at(10, 1), "video"), (CLI, FAILED, at(10, 2), "dtls_failed"),
          (PRO, LEFT, at(10, 30))), 60, 0),
        (((PRO, JOINED, at(10, 0)), (PRO, MEDIA, at(10, 0), "video"),
          (CLI, JOINED, at(10, 10)), (PRO, LEFT, at(10, 20))), 600, 0),
        ((*BOTH_IN, (CLI, MEDIA, at(10, 1), "audio_only"), (CLI, LEFT, at(10, 2)),
          (CLI, JOINED, at(10, 3)), (PRO, LEFT, at(10, 13))), 0, 60),
        (((PRO, JOINED, at(9, 30)), (CLI, JOINED, at(9, 30)), (PRO, MEDIA, at(9, 31), "video"),
          (PRO, LEFT, at(9, 50))), 300, 0),
        (BOTH_IN, 0, 0),
    ],
    ids=["video-throughout", "audio-only-then-video", "one-side-audio-only-is-audio-only",
         "disconnect-pauses", "failure-ends-it", "alone-connected-counts-from-together",
         "a-new-stay-starts-disconnected", "clipped-to-window", "never-connected"],
)
def test_video_and_audio_only_seconds(steps: tuple[Step, ...], video_seconds: int,
                                      audio_only_seconds: int) -> None:
    """Pins the split of connected together-time into video and audio-only seconds."""
    record = evaluate(booking(), timeline(*steps), FINAL_AT, WINDOWS)
    assert (record.video_seconds, record.audio_only_seconds) == (
        video_seconds, audio_only_seconds)
    data = record.to_json()
    assert (data["video_seconds"], data["audio_only_seconds"]) == (
        video_seconds, audio_only_seconds)


@pytest.mark.parametrize("ids", [("a", "b", "c", "d"), ("d", "c", "b", "a")],
                         ids=["joined-id-first", "media-id-first"])
def test_same_instant_events_count_in_causal_order_whatever_their_ids(
        ids: tuple[str, str, str, str]) -> None:
    """A join and a media report at one instant (event ids are hashes): the join comes
    first, and a report and a left at one instant: the report counts until the left."""
    def ev(event_id: str, role: Role, kind: EventKind, when: datetime,
           reason: str | None = None) -> AttendanceEvent:
        return AttendanceEvent(EventId(event_id), BookingId("b1"), role, kind, when, reason)
    events = [ev("p", PRO, JOINED, at(10, 0)), ev(ids[0], CLI, JOINED, at(10, 0)),
              ev(ids[1], CLI, MEDIA, at(10, 0), "audio_only"),
              ev(ids[2], PRO, MEDIA, at(10, 1), "video"),
              ev(ids[3], PRO, LEFT, at(10, 1)), ev("z", PRO, JOINED, at(10, 1)),
              ev("zz", PRO, LEFT, at(10, 2))]
    record = evaluate(booking(), events, FINAL_AT, WINDOWS)
    assert (record.video_seconds, record.audio_only_seconds) == (0, 120)


def test_a_connected_record_still_open_counts_up_to_now() -> None:
    """While both are still in, the split counts up to now, like together_seconds."""
    steps = (*BOTH_IN, (PRO, MEDIA, at(10, 0), "audio_only"), (CLI, MEDIA, at(10, 0), "video"),
             (PRO, MEDIA, at(10, 10), "video"))
    record = evaluate(booking(), timeline(*steps), at(10, 15), WINDOWS)
    assert record.status is RecordStatus.PENDING
    assert (record.video_seconds, record.audio_only_seconds, record.together_seconds) == (
        300, 600, 900)


media_step = st.tuples(
    st.sampled_from([PRO, CLI]),
    st.sampled_from([JOINED, LEFT, MEDIA, DOWN, FAILED]),
    st.integers(min_value=0, max_value=SPAN).map(lambda s: ORIGIN + timedelta(seconds=s)),
    st.sampled_from([None, "video", "audio_only", "no_candidate_pair"]),
)


@settings(database=None, deadline=None)
@given(steps=st.lists(media_step, max_size=30), now_offset=st.integers(0, SPAN))
def test_video_and_audio_only_never_exceed_together(
        steps: list[tuple[Role, EventKind, datetime, str | None]], now_offset: int) -> None:
    """Whatever the events and now: 0 <= video + audio_only <= together_seconds, and
    both are 0 without a media_connected."""
    record = evaluate(booking(), timeline(*steps), ORIGIN + timedelta(seconds=now_offset),
                      WINDOWS)
    assert record.video_seconds >= 0 and record.audio_only_seconds >= 0
    assert record.video_seconds + record.audio_only_seconds <= record.together_seconds
    if not any(kind is MEDIA for _, kind, _, _ in steps):
        assert record.video_seconds == record.audio_only_seconds == 0


TECHNICAL = "Both parties joined but the media never connected"
RELEASED = ", so the session is not billable and the credit is released."


@pytest.mark.parametrize(
    ("failures", "sentence"),
    [
        ((), f"{TECHNICAL} and neither device reported why{RELEASED}"),
        (((CLI, FAILED, at(10, 1), "no_relay_candidate"),),
         f"{TECHNICAL}: the client's device could connect only through a relay server "
         f"(Hide my IP) and no relay server was available{RELEASED}"),
        (((PRO, FAILED, at(10, 1), "no_candidate_pair"),),
         f"{TECHNICAL}: the professional's device found no network path to the other "
         "device: the networks between them blocked a direct connection and no relay "
         f"server got through{RELEASED}"),
        (((CLI, FAILED, at(10, 1), "dtls_failed"),),
         f"{TECHNICAL}: the client's device reached the other device but the encrypted "
         f"media connection could not be set up{RELEASED}"),
        (((CLI, FAILED, at(10, 1), "permission_denied"),),
         f"{TECHNICAL}: the client's device was not allowed to use the camera or "
         f"microphone{RELEASED}"),
        (((CLI, FAILED, at(10, 1), None),),
         f"{TECHNICAL}: the client's device reported a failure without knowing its "
         f"cause{RELEASED}"),
        (((CLI, FAILED, at(10, 1), "gremlins"), (CLI, FAILED, at(10, 2), "unknown")),
         f"{TECHNICAL}: the client's device reported a failure without knowing its "
         f"cause{RELEASED}"),
        (((CLI, FAILED, at(10, 1), None), (CLI, FAILED, at(10, 2), "no_relay_candidate"),
          (CLI, FAILED, at(10, 3), "no_relay_candidate"),
          (PRO, FAILED, at(10, 4), "no_candidate_pair")),
         f"{TECHNICAL}: " + FAILURE_SENTENCES["no_relay_candidate"].format(role="client")
         + "; " + FAILURE_SENTENCES["no_candidate_pair"].format(role="professional")
         + RELEASED),
        (((CLI, FAILED, at(9, 0), "dtls_failed"),),
         f"{TECHNICAL} and neither device reported why{RELEASED}"),
    ],
    ids=["none-reported", "no-relay-from-client", "no-pair-from-professional", "dtls",
         "permission-denied", "failed-without-cause", "unrecognised-is-unknown-once",
         "distinct-causes-in-order-unknown-dropped", "failure-before-window-ignored"],
)
def test_a_technical_failure_names_the_reported_causes(
        failures: tuple[tuple[Role, EventKind, datetime, str | None], ...],
        sentence: str) -> None:
    """The technical_failure explanation names each cause the peers reported, once."""
    steps = (*BOTH_IN, *failures, (PRO, LEFT, at(10, 30)), (CLI, LEFT, at(10, 30)))
    record = evaluate(booking(), timeline(*steps), FINAL_AT, WINDOWS)
    assert record.outcome is Outcome.TECHNICAL_FAILURE
    assert record.explanation == sentence


def test_reported_failures_do_not_change_a_completed_outcome() -> None:
    """A failure followed by a connection is a completed session, explained as before."""
    steps = (*BOTH_IN, (CLI, FAILED, at(10, 1), "no_candidate_pair"),
             (CLI, MEDIA, at(10, 2), "video"), (PRO, LEFT, at(10, 30)))
    record = evaluate(booking(), timeline(*steps), FINAL_AT, WINDOWS)
    assert record.outcome is Outcome.COMPLETED
    assert record.explanation == explain(Outcome.COMPLETED, Funding.SPONSORED)


def test_a_stored_record_from_rules_1_gets_zero_media_seconds() -> None:
    """A record finalised before rules 2 lacks the fields: it reads with 0, a newer one
    keeps its own."""
    old = {"booking_id": "b1", "rule_version": "carecall-rules/1", "together_seconds": 60}
    assert stored_record(old) == {**old, "video_seconds": 0, "audio_only_seconds": 0}
    new = {**old, "video_seconds": 30, "audio_only_seconds": 20}
    assert stored_record(new) == new
    assert RULE_VERSION == "carecall-rules/2"
