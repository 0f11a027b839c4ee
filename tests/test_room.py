"""The room state machine (signalling.room): transitions, effects, attendance, politeness."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from signalling.errors import CloseCode
from signalling.room import (
    GRACE,
    TRANSITIONS,
    Attend,
    Close,
    Effect,
    Event,
    IllegalTransition,
    PartyState,
    Role,
    Room,
    Send,
)

PRO, CLI = Role.PROFESSIONAL, Role.CLIENT
ABSENT, PRESENT, AWAY = PartyState.ABSENT, PartyState.PRESENT, PartyState.AWAY
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
REPLACED = Close(1, CloseCode.REPLACED, "replaced", "this party connected again elsewhere")

LEGAL = {
    (ABSENT, Event.JOIN): PRESENT,
    (PRESENT, Event.JOIN): PRESENT,
    (AWAY, Event.JOIN): PRESENT,
    (PRESENT, Event.DROP): AWAY,
    (PRESENT, Event.BYE): ABSENT,
    (AWAY, Event.GRACE_EXPIRED): ABSENT,
    (PRESENT, Event.KICK): ABSENT,
    (AWAY, Event.KICK): ABSENT,
}
ILLEGAL = [pair for pair in itertools.product(PartyState, Event) if pair not in LEGAL]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def join(room: Room, role: Role, connection: int, *, can_rollback: bool = True,
         resumed: bool = False, now: datetime = T0) -> list[Effect]:
    return room.join(role, connection, f"session-{connection}", can_rollback, resumed, now)


def peer_left(to: Role, reason: str) -> Send:
    return Send(to, {"type": "peer-left", "role": to.other.value, "reason": reason})


# -- the transition table ------------------------------------------------------------------


def test_transition_table_is_exactly_the_documented_one() -> None:
    """TRANSITIONS holds the eight legal (state, event) pairs and nothing else."""
    assert TRANSITIONS == LEGAL


@pytest.mark.parametrize("role", list(Role), ids=str)
@pytest.mark.parametrize(("state", "event"), list(LEGAL),
                         ids=[f"{s}-{e}" for s, e in LEGAL])
def test_legal_transition_moves_to_the_table_state(state: PartyState, event: Event,
                                                   role: Role) -> None:
    """Every legal pair moves the party to the state the table names, for either role."""
    room = Room("r1")
    room.parties[role].state = state
    assert room._move(role, event) is state
    assert room.state(role) is LEGAL[(state, event)]
    assert room.state(role.other) is ABSENT


@pytest.mark.parametrize("role", list(Role), ids=str)
@pytest.mark.parametrize(("state", "event"), ILLEGAL, ids=[f"{s}-{e}" for s, e in ILLEGAL])
def test_illegal_transition_raises_naming_event_role_and_state(state: PartyState, event: Event,
                                                               role: Role) -> None:
    """Every pair outside the table raises IllegalTransition and leaves the state alone."""
    room = Room("r1")
    room.parties[role].state = state
    with pytest.raises(IllegalTransition) as caught:
        room._move(role, event)
    assert str(caught.value) == (f"event {event.value} is not allowed for the {role.value} "
                                 f"in state {state.value}")
    assert (caught.value.event, caught.value.role, caught.value.state) == (event, role, state)
    assert room.state(role) is state


# -- join, replace, drop, rejoin, expire -----------------------------------------------------


def test_first_join_reports_joined_and_nothing_else() -> None:
    """Joining an empty room emits only Attend joined at ``now``."""
    room = Room("r1")
    assert join(room, CLI, 1, now=at(5)) == [Attend(CLI, "joined", at(5))]
    assert room.state(CLI) is PRESENT
    assert room.connection(CLI) == 1
    assert room.role_of(1) is CLI
    assert room.parties[CLI].session_id == "session-1"


@pytest.mark.parametrize(("resumed", "can_rollback"), [(False, True), (True, False)],
                         ids=["fresh-browser", "resumed-aiortc"])
def test_join_with_the_other_present_tells_the_other(resumed: bool, can_rollback: bool) -> None:
    """A join next to a present peer sends it peer-joined with its polite flag and resumed."""
    room = Room("r1")
    join(room, PRO, 1)
    effects = join(room, CLI, 2, can_rollback=can_rollback, resumed=resumed, now=at(1))
    assert effects == [
        Attend(CLI, "joined", at(1)),
        Send(PRO, {"type": "peer-joined", "role": "client", "polite": room.polite(PRO),
                   "resumed": resumed}),
    ]


def test_second_join_of_a_role_replaces_the_first_without_a_new_interval() -> None:
    """A second join of the same role closes the old connection with 4409 and emits no Attend."""
    room = Room("r1")
    join(room, CLI, 1)
    assert join(room, CLI, 2, now=at(10)) == [REPLACED]
    assert room.connection(CLI) == 2
    assert room.role_of(1) is None
    assert room.role_of(2) is CLI


def test_drop_makes_the_party_away_and_tells_the_other() -> None:
    """drop → AWAY, no Attend, peer-left dropped to the other, grace deadline set."""
    room = Room("r1")
    join(room, PRO, 1)
    join(room, CLI, 2)
    assert room.drop(CLI, 2, at(3)) == [peer_left(PRO, "dropped")]
    assert room.state(CLI) is AWAY
    assert room.connection(CLI) is None
    assert room.role_of(2) is None
    assert room.next_deadline() == at(3) + GRACE


def test_drop_with_nobody_else_tells_nobody() -> None:
    """A drop in an otherwise empty room emits nothing but still leaves the party AWAY."""
    room = Room("r1")
    join(room, CLI, 1)
    assert room.drop(CLI, 1, at(3)) == []
    assert room.state(CLI) is AWAY
    assert not room.is_empty()


@pytest.mark.parametrize("stale", [1, 99], ids=["replaced", "never-joined"])
def test_drop_of_a_stale_connection_is_ignored(stale: int) -> None:
    """Dropping a connection that was replaced (or never held the role) changes nothing."""
    room = Room("r1")
    join(room, PRO, 10)
    join(room, CLI, 1)
    join(room, CLI, 2)
    assert room.drop(CLI, stale, at(3)) == []
    assert room.state(CLI) is PRESENT
    assert room.connection(CLI) == 2
    assert room.next_deadline() is None


@pytest.mark.parametrize("back_after", [0, 15, 29.999], ids=["at-once", "15s", "just-in-time"])
def test_rejoin_within_grace_keeps_one_interval(back_after: float) -> None:
    """Coming back within grace emits no Attend, and a later expire emits nothing."""
    room = Room("r1")
    join(room, CLI, 1)
    room.drop(CLI, 1, at(10))
    assert join(room, CLI, 2, resumed=True, now=at(10 + back_after)) == []
    assert room.state(CLI) is PRESENT
    assert room.next_deadline() is None
    assert room.expire(at(10) + GRACE + timedelta(hours=1)) == []


def test_join_emits_joined_only_from_absent() -> None:
    """Across absent → present → replaced → away → back → left → again, joined is emitted twice."""
    room = Room("r1")
    kinds = [[e.kind for e in join(room, CLI, 1) if isinstance(e, Attend)]]
    kinds.append([e.kind for e in join(room, CLI, 2) if isinstance(e, Attend)])
    room.drop(CLI, 2, at(1))
    kinds.append([e.kind for e in join(room, CLI, 3, now=at(2)) if isinstance(e, Attend)])
    room.bye(CLI, 3, at(3))
    kinds.append([e.kind for e in join(room, CLI, 4, now=at(4)) if isinstance(e, Attend)])
    assert kinds == [["joined"], [], [], ["joined"]]


@pytest.mark.parametrize(("after", "expired"),
                         [(GRACE - timedelta(microseconds=1), False), (GRACE, True),
                          (GRACE + timedelta(minutes=5), True)],
                         ids=["just-before", "exactly-grace", "long-after"])
def test_expire_ends_the_interval_at_the_drop_time(after: timedelta, expired: bool) -> None:
    """After grace, expire reports left at the drop time with reason timeout; not before."""
    room = Room("r1")
    join(room, PRO, 1)
    join(room, CLI, 2)
    room.drop(CLI, 2, at(60))
    effects = room.expire(at(60) + after)
    if expired:
        assert effects == [Attend(CLI, "left", at(60), "timeout"), peer_left(PRO, "timeout")]
        assert room.state(CLI) is ABSENT
        assert room.next_deadline() is None
    else:
        assert effects == []
        assert room.state(CLI) is AWAY


def test_expire_of_both_parties_empties_the_room() -> None:
    """Two away parties each get left at their own drop time; the room is then empty."""
    room = Room("r1", grace=timedelta(seconds=10))
    join(room, PRO, 1)
    join(room, CLI, 2)
    room.drop(PRO, 1, at(1))
    room.drop(CLI, 2, at(4))
    assert room.next_deadline() == at(11)
    assert room.expire(at(20)) == [Attend(PRO, "left", at(1), "timeout"),
                                   Attend(CLI, "left", at(4), "timeout")]
    assert room.is_empty()


# -- bye, kick, media ---------------------------------------------------------------------------


def test_bye_closes_the_interval_at_once_and_tells_the_other() -> None:
    """bye → Attend left reason bye at ``now`` and peer-left bye to the other."""
    room = Room("r1")
    join(room, PRO, 1)
    join(room, CLI, 2)
    assert room.bye(PRO, 1, at(7)) == [Attend(PRO, "left", at(7), "bye"), peer_left(CLI, "bye")]
    assert room.state(PRO) is ABSENT
    assert room.connection(PRO) is None


def test_bye_from_a_replaced_connection_is_ignored() -> None:
    """A bye sent on an old, replaced connection does not end the party's interval."""
    room = Room("r1")
    join(room, CLI, 1)
    join(room, CLI, 2)
    assert room.bye(CLI, 1, at(7)) == []
    assert room.state(CLI) is PRESENT


@pytest.mark.parametrize(("code", "error_code"),
                         [(CloseCode.FORBIDDEN, "booking_cancelled"),
                          (CloseCode.OUTSIDE_WINDOW, "session_over")],
                         ids=["cancelled", "over"])
def test_kick_closes_present_connections_and_reports_left(code: CloseCode,
                                                          error_code: str) -> None:
    """kick closes every present connection with the code and reports left for each party."""
    room = Room("r1")
    join(room, PRO, 1)
    join(room, CLI, 2)
    assert room.kick(code, error_code, "bye now", at(9)) == [
        Attend(PRO, "left", at(9), error_code), Close(1, code, error_code, "bye now"),
        Attend(CLI, "left", at(9), error_code), Close(2, code, error_code, "bye now"),
    ]
    assert room.is_empty()


def test_kick_reports_an_away_party_left_at_its_drop_time_without_a_close() -> None:
    """An away party has no connection to close; its interval ends when it dropped."""
    room = Room("r1")
    join(room, PRO, 1)
    join(room, CLI, 2)
    room.drop(CLI, 2, at(4))
    assert room.kick(CloseCode.FORBIDDEN, "booking_rescheduled", "moved", at(9)) == [
        Attend(PRO, "left", at(9), "booking_rescheduled"),
        Close(1, CloseCode.FORBIDDEN, "booking_rescheduled", "moved"),
        Attend(CLI, "left", at(4), "booking_rescheduled"),
    ]
    assert room.is_empty()
    assert room.next_deadline() is None


def test_kick_of_an_empty_room_does_nothing() -> None:
    """Nobody in the room, nothing to close or report."""
    assert Room("r1").kick(CloseCode.FORBIDDEN, "booking_cancelled", "x", T0) == []


def test_media_is_reported_only_on_change() -> None:
    """Repeated media states are swallowed; each change is one Attend at ``now``."""
    room = Room("r1")
    join(room, CLI, 1)
    reported = [room.media(CLI, state, at(i)) for i, state in enumerate(
        ["disconnected", "connected", "connected", "disconnected", "disconnected",
         "connected"])]
    assert reported == [[], [Attend(CLI, "media_connected", at(1), "video")], [],
                        [Attend(CLI, "media_disconnected", at(3))], [],
                        [Attend(CLI, "media_connected", at(5), "video")]]


def test_media_is_ignored_unless_present_and_reset_by_a_new_interval() -> None:
    """No media facts while absent or away; a fresh interval starts disconnected."""
    room = Room("r1")
    assert room.media(CLI, "connected", T0) == []
    join(room, CLI, 1)
    room.media(CLI, "connected", at(1), video=False)
    room.drop(CLI, 1, at(2))
    assert room.media(CLI, "disconnected", at(3)) == []
    room.expire(at(100))
    join(room, CLI, 2, now=at(101))
    assert room.media(CLI, "connected", at(102)) == [
        Attend(CLI, "media_connected", at(102), "video")]


def test_a_change_of_video_while_connected_is_an_attendance_fact() -> None:
    """Connected audio-only, then video, then audio-only: three media_connected facts
    whose reason says which; the same flag again says nothing."""
    room = Room("r1")
    join(room, PRO, 1)
    reported = [room.media(PRO, "connected", at(i), video=video)
                for i, video in enumerate([False, False, True, True, False])]
    assert reported == [[Attend(PRO, "media_connected", at(0), "audio_only")], [],
                        [Attend(PRO, "media_connected", at(2), "video")], [],
                        [Attend(PRO, "media_connected", at(4), "audio_only")]]


def test_a_failure_is_reported_with_its_cause_once_per_cause() -> None:
    """failed with a cause is media_failed with the cause as reason; the same cause
    again is swallowed (a disconnect between changes nothing), a new one is reported,
    and after a connection the same one is news again."""
    room = Room("r1")
    join(room, CLI, 1)
    reported = [room.media(CLI, "failed", at(i), cause=cause) for i, cause in enumerate(
        ["no_relay_candidate", "no_relay_candidate", None, "no_candidate_pair"])]
    assert reported == [[Attend(CLI, "media_failed", at(0), "no_relay_candidate")], [],
                        [Attend(CLI, "media_failed", at(2))],
                        [Attend(CLI, "media_failed", at(3), "no_candidate_pair")]]
    assert room.media(CLI, "disconnected", at(4)) == []
    assert room.media(CLI, "failed", at(5), cause="no_candidate_pair") == []
    room.media(CLI, "connected", at(6))
    assert room.media(CLI, "failed", at(7), cause="no_candidate_pair") == [
        Attend(CLI, "media_failed", at(7), "no_candidate_pair")]


def test_a_failure_while_connected_ends_the_connection() -> None:
    """connected, then failed: the failure is the fact (no separate disconnect), and the
    next connected is reported again."""
    room = Room("r1")
    join(room, CLI, 1)
    room.media(CLI, "connected", at(1))
    assert room.media(CLI, "failed", at(2), cause="dtls_failed") == [
        Attend(CLI, "media_failed", at(2), "dtls_failed")]
    assert room.media(CLI, "disconnected", at(3)) == []
    assert room.media(CLI, "connected", at(4)) == [
        Attend(CLI, "media_connected", at(4), "video")]


def test_media_state_survives_the_registry_round_trip_and_old_states() -> None:
    """to_state/from_state keep video and the failure; a state an older node wrote
    (without them) reads with the defaults."""
    room = Room("r1")
    join(room, PRO, 1)
    join(room, CLI, 2)
    room.media(PRO, "connected", at(1), video=False)
    room.media(CLI, "failed", at(1), cause="no_relay_candidate")
    again = Room.from_state(room.to_state())
    assert again.media(PRO, "connected", at(2), video=False) == []
    assert again.media(CLI, "failed", at(2), cause="no_relay_candidate") == []
    old = room.to_state()
    for raw in old["parties"].values():
        del raw["video"], raw["media_failed"], raw["cause"]
    legacy = Room.from_state(old)
    assert (legacy.parties[PRO].video, legacy.parties[CLI].media_failed,
            legacy.parties[CLI].cause) == (True, False, None)


# -- politeness -----------------------------------------------------------------------------

POLITE_TABLE = [
    # (professional can roll back, client can roll back, professional polite, client polite)
    (True, True, False, True),
    (True, False, True, False),
    (False, True, False, True),
    (False, False, False, True),
]
POLITE_IDS = ["browser-browser", "browser-aiortc", "aiortc-browser", "aiortc-aiortc"]


@pytest.mark.parametrize("first", list(Role), ids=lambda r: f"{r}-first")
@pytest.mark.parametrize(("pro_rollback", "cli_rollback", "pro_polite", "cli_polite"),
                         POLITE_TABLE, ids=POLITE_IDS)
def test_polite_table(pro_rollback: bool, cli_rollback: bool, pro_polite: bool,
                      cli_polite: bool, first: Role) -> None:
    """Exactly one side is polite; never one that cannot roll back unless both cannot."""
    room = Room("r1")
    rollback = {PRO: pro_rollback, CLI: cli_rollback}
    join(room, first, 1, can_rollback=rollback[first])
    effects = join(room, first.other, 2, can_rollback=rollback[first.other])
    assert (room.polite(PRO), room.polite(CLI)) == (pro_polite, cli_polite)
    told = [e.message["polite"] for e in effects if isinstance(e, Send)]
    assert told == [room.polite(first)]


@pytest.mark.parametrize(("role", "can_rollback", "polite"),
                         [(PRO, True, False), (CLI, True, True),
                          (PRO, False, False), (CLI, False, False)],
                         ids=["browser-pro", "browser-client", "aiortc-pro", "aiortc-client"])
def test_polite_when_alone(role: Role, can_rollback: bool, polite: bool) -> None:
    """Alone, a peer that cannot roll back is never polite; a lone browser client yields."""
    room = Room("r1")
    join(room, role, 1, can_rollback=can_rollback)
    assert room.polite(role) is polite


def test_polite_stays_with_the_away_peer_in_view() -> None:
    """While the other party is away its agent still decides who is polite."""
    room = Room("r1")
    join(room, PRO, 1, can_rollback=False)
    join(room, CLI, 2, can_rollback=True)
    room.drop(PRO, 1, at(1))
    assert room.polite(CLI) is True
    room.drop(CLI, 2, at(2))
    join(room, CLI, 3, can_rollback=False, now=at(3))
    assert (room.polite(PRO), room.polite(CLI)) == (False, True)


# -- any sequence of events -----------------------------------------------------------------


class RoomMachine(RuleBasedStateMachine):
    """Random joins, drops, byes, media, expiries and kicks against the room's invariants."""

    def __init__(self) -> None:
        super().__init__()
        self.room = Room("r1", grace=timedelta(seconds=30))
        self.now = T0
        self.ids = itertools.count(1)
        self.issued: dict[Role, list[int]] = {r: [] for r in Role}
        # Connections the I/O layer holds open for a role: joined and neither closed by the
        # room (Close) nor gone on their own (drop, bye).
        self.live: dict[Role, set[int]] = {r: set() for r in Role}
        self.attended: dict[Role, list[Attend]] = {r: [] for r in Role}

    def _pick(self, role: Role, index: int) -> int:
        issued = self.issued[role]
        return issued[index % len(issued)] if issued else 10_000 + index

    def _apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Close):
                for live in self.live.values():
                    live.discard(effect.connection)
            elif isinstance(effect, Attend):
                assert effect.at <= self.now
                self.attended[effect.role].append(effect)
            else:
                # Messages only ever go to a party that is there to receive them.
                assert self.room.state(effect.role) is PRESENT

    @rule(role=st.sampled_from(list(Role)), can_rollback=st.booleans(), resumed=st.booleans())
    def join(self, role: Role, can_rollback: bool, resumed: bool) -> None:
        connection = next(self.ids)
        self.issued[role].append(connection)
        self.live[role].add(connection)
        self._apply(self.room.join(role, connection, "s", can_rollback, resumed, self.now))

    @rule(role=st.sampled_from(list(Role)), index=st.integers(0, 20))
    def drop(self, role: Role, index: int) -> None:
        connection = self._pick(role, index)
        self.live[role].discard(connection)
        self._apply(self.room.drop(role, connection, self.now))

    @rule(role=st.sampled_from(list(Role)), index=st.integers(0, 20))
    def bye(self, role: Role, index: int) -> None:
        connection = self._pick(role, index)
        self.live[role].discard(connection)
        self._apply(self.room.bye(role, connection, self.now))

    @rule(role=st.sampled_from(list(Role)),
          state=st.sampled_from(["connected", "disconnected", "failed"]),
          video=st.booleans(), cause=st.sampled_from([None, "no_candidate_pair"]))
    def media(self, role: Role, state: str, video: bool, cause: str | None) -> None:
        self._apply(self.room.media(role, state, self.now, video=video, cause=cause))

    @rule(seconds=st.integers(0, 45))
    def tick(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        self._apply(self.room.expire(self.now))

    @rule(code=st.sampled_from([CloseCode.FORBIDDEN, CloseCode.OUTSIDE_WINDOW]))
    def kick(self, code: CloseCode) -> None:
        self._apply(self.room.kick(code, "kicked", "kicked", self.now))

    @invariant()
    def one_connection_per_role(self) -> None:
        for role in Role:
            assert len(self.live[role]) <= 1
            assert self.live[role] == {self.room.connection(role)} - {None}
            holders = [c for c in itertools.chain(*self.issued.values())
                       if self.room.role_of(c) is role]
            assert len(holders) <= 1

    @invariant()
    def joined_and_left_alternate(self) -> None:
        for role in Role:
            interval_open, opened_at = False, T0
            last_media: tuple[str, str | None] | None = None
            for fact in self.attended[role]:
                if fact.kind == "joined":
                    assert not interval_open, "two joined without a left between"
                    interval_open, opened_at, last_media = True, fact.at, None
                elif fact.kind == "left":
                    assert interval_open, "left without a joined"
                    assert fact.at >= opened_at
                    interval_open = False
                else:
                    assert interval_open, "media fact outside an interval"
                    # A media fact always says something new about the party.
                    assert (fact.kind, fact.reason) != last_media, "repeated media fact"
                    last_media = (fact.kind, fact.reason)
            assert interval_open is (self.room.state(role) is not ABSENT)


RoomMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow])
TestRoomSequences = RoomMachine.TestCase
TestRoomSequences.__doc__ = (
    "After any event sequence: one connection per role, joined/left alternate, media "
    "facts only inside an interval and never twice the same in a row.")
