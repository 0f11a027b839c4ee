"""The room state machine: two parties, their connections and attendance. Pure.

Invariants:
- a room holds at most one connection per role; a new one replaces the old (4409);
- nobody but the booking's two roles is ever in the room (roles are an enum);
- a party that drops is AWAY for at most ``grace``; coming back in time keeps one
  continuous attendance interval (no LEFT/JOINED pair is reported);
- only ``bye``, the grace running out, or a kick close an attendance interval;
- a party's media report becomes an attendance fact only when it changes something:
  ``media_connected`` (reason ``video`` or ``audio_only``) when the path comes up or,
  while it is up, when the party starts or stops sending video; ``media_disconnected``
  when it goes down; ``media_failed`` (reason: the cause, or none) when it fails, once
  per cause until the path connects again (or a new stay begins);
- connection ids name the node that holds the socket (``node_of``), so a room shared by
  several nodes (a registry in Redis) knows where each party is;
- ``polite`` is never given to a peer that cannot roll back an offer, except between
  two such peers, where the client is marked polite to mean "wait for the offer":
  it never offers, so it never needs a rollback.

Every method takes ``now`` and returns effects for the I/O layer to carry out.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from signalling.errors import CloseCode

GRACE = timedelta(seconds=30)

# ``<node>:<number>``: which signalling node holds the socket, and which one it is there.
ConnectionId = str


def node_of(connection: ConnectionId) -> str:
    """The node that holds ``connection``."""
    return connection.partition(":")[0]


class Role(enum.StrEnum):
    PROFESSIONAL = "professional"
    CLIENT = "client"

    @property
    def other(self) -> Role:
        return Role.CLIENT if self is Role.PROFESSIONAL else Role.PROFESSIONAL


class PartyState(enum.StrEnum):
    ABSENT = "absent"
    PRESENT = "present"
    AWAY = "away"  # connection lost, within the grace period


class Event(enum.StrEnum):
    JOIN = "join"
    DROP = "drop"
    BYE = "bye"
    GRACE_EXPIRED = "grace_expired"
    KICK = "kick"


TRANSITIONS: dict[tuple[PartyState, Event], PartyState] = {
    (PartyState.ABSENT, Event.JOIN): PartyState.PRESENT,
    (PartyState.PRESENT, Event.JOIN): PartyState.PRESENT,  # replaced by a new connection
    (PartyState.AWAY, Event.JOIN): PartyState.PRESENT,  # back within the grace period
    (PartyState.PRESENT, Event.DROP): PartyState.AWAY,
    (PartyState.PRESENT, Event.BYE): PartyState.ABSENT,
    (PartyState.AWAY, Event.GRACE_EXPIRED): PartyState.ABSENT,
    (PartyState.PRESENT, Event.KICK): PartyState.ABSENT,
    (PartyState.AWAY, Event.KICK): PartyState.ABSENT,
}


class IllegalTransition(Exception):
    def __init__(self, event: Event, role: Role, state: PartyState) -> None:
        super().__init__(f"event {event.value} is not allowed for the {role.value} "
                         f"in state {state.value}")
        self.event, self.role, self.state = event, role, state


# -- effects -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    role: Role
    message: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Close:
    """Close a connection, telling it why first (an ``error`` message)."""

    connection: ConnectionId
    code: CloseCode
    error_code: str
    message: str


@dataclass(frozen=True, slots=True)
class Attend:
    """An attendance fact for the gate's event log."""

    role: Role
    kind: str  # joined | left | media_connected | media_disconnected | media_failed
    at: datetime
    reason: str | None = None


Effect = Send | Close | Attend


@dataclass(slots=True)
class Party:
    state: PartyState = PartyState.ABSENT
    connection: ConnectionId | None = None
    session_id: str | None = None
    can_rollback: bool = True
    away_since: datetime | None = None
    media_connected: bool = False
    # While connected: whether this party sends video (its last ``media`` said so).
    video: bool = True
    # Its last report was ``failed`` (with ``cause``): a repeat reports nothing new.
    media_failed: bool = False
    cause: str | None = None


@dataclass(slots=True)
class Room:
    room_id: str
    grace: timedelta = GRACE
    parties: dict[Role, Party] = field(default_factory=lambda: {r: Party() for r in Role})

    # -- queries ---------------------------------------------------------------------

    def state(self, role: Role) -> PartyState:
        return self.parties[role].state

    def connection(self, role: Role) -> ConnectionId | None:
        party = self.parties[role]
        return party.connection if party.state is PartyState.PRESENT else None

    def role_of(self, connection: ConnectionId) -> Role | None:
        for role, party in self.parties.items():
            if party.connection == connection and party.state is PartyState.PRESENT:
                return role
        return None

    def is_empty(self) -> bool:
        return all(p.state is PartyState.ABSENT for p in self.parties.values())

    def polite(self, role: Role) -> bool:
        me, other = self.parties[role], self.parties[role.other]
        known = other.state is not PartyState.ABSENT
        if not known:
            # Provisional until the other party arrives: a peer that cannot roll back is
            # never polite; between browsers the client yields.
            return me.can_rollback and role is Role.CLIENT
        if me.can_rollback != other.can_rollback:
            return me.can_rollback
        return role is Role.CLIENT

    def next_deadline(self) -> datetime | None:
        """When the earliest grace period runs out, if any party is away."""
        times = [p.away_since + self.grace for p in self.parties.values()
                 if p.state is PartyState.AWAY and p.away_since is not None]
        return min(times) if times else None

    def nodes(self) -> set[str]:
        """The nodes holding a connection of this room."""
        return {node_of(p.connection) for p in self.parties.values()
                if p.state is PartyState.PRESENT and p.connection is not None}

    # -- state, for a registry shared by nodes -------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Everything the room knows, as JSON-ready data (``from_state`` reads it back)."""
        return {"room_id": self.room_id, "grace": self.grace.total_seconds(),
                "parties": {role.value: {
                    "state": p.state.value, "connection": p.connection,
                    "session_id": p.session_id, "can_rollback": p.can_rollback,
                    "away_since": None if p.away_since is None else p.away_since.isoformat(),
                    "media_connected": p.media_connected, "video": p.video,
                    "media_failed": p.media_failed, "cause": p.cause,
                } for role, p in self.parties.items()}}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> Room:
        parties = {}
        for role in Role:
            raw = data["parties"][role.value]
            away = raw["away_since"]
            parties[role] = Party(
                state=PartyState(raw["state"]), connection=raw["connection"],
                session_id=raw["session_id"], can_rollback=bool(raw["can_rollback"]),
                away_since=None if away is None else datetime.fromisoformat(away),
                media_connected=bool(raw["media_connected"]),
                # Absent from the state an older node wrote: its defaults.
                video=bool(raw.get("video", True)),
                media_failed=bool(raw.get("media_failed", False)), cause=raw.get("cause"))
        return cls(data["room_id"], timedelta(seconds=data["grace"]), parties)

    # -- transitions -----------------------------------------------------------------

    def _move(self, role: Role, event: Event) -> PartyState:
        party = self.parties[role]
        try:
            new = TRANSITIONS[(party.state, event)]
        except KeyError:
            raise IllegalTransition(event, role, party.state) from None
        old, party.state = party.state, new
        return old

    def join(self, role: Role, connection: ConnectionId, session_id: str, can_rollback: bool,
             resumed: bool, now: datetime) -> list[Effect]:
        party = self.parties[role]
        previous_connection = party.connection
        old = self._move(role, Event.JOIN)
        effects: list[Effect] = []
        if old is PartyState.PRESENT and previous_connection is not None:
            effects.append(Close(previous_connection, CloseCode.REPLACED, "replaced",
                                 "this party connected again elsewhere"))
        if old is PartyState.ABSENT:
            effects.append(Attend(role, "joined", now))
            party.media_connected, party.video = False, True
            party.media_failed, party.cause = False, None
        party.connection, party.session_id = connection, session_id
        party.can_rollback, party.away_since = can_rollback, None
        if self.state(role.other) is PartyState.PRESENT:
            effects.append(Send(role.other, {
                "type": "peer-joined", "role": role.value, "polite": self.polite(role.other),
                "resumed": resumed}))
        return effects

    def drop(self, role: Role, connection: ConnectionId, now: datetime) -> list[Effect]:
        """The connection was lost without a ``bye``; ignored if already replaced."""
        party = self.parties[role]
        if party.connection != connection or party.state is not PartyState.PRESENT:
            return []
        self._move(role, Event.DROP)
        party.away_since, party.connection = now, None
        return self._tell_other(role, "dropped")

    def drop_node(self, node: str, since: datetime) -> list[Effect]:
        """Every connection held by ``node`` was lost at ``since`` (the node died)."""
        effects: list[Effect] = []
        for role, party in self.parties.items():
            if (party.state is PartyState.PRESENT and party.connection is not None
                    and node_of(party.connection) == node):
                effects += self.drop(role, party.connection, since)
        return effects

    def bye(self, role: Role, connection: ConnectionId, now: datetime) -> list[Effect]:
        party = self.parties[role]
        if party.connection != connection:
            return []
        self._move(role, Event.BYE)
        party.connection = None
        return [Attend(role, "left", now, "bye"), *self._tell_other(role, "bye")]

    def expire(self, now: datetime) -> list[Effect]:
        """End the grace period of every party away for longer than ``grace``."""
        effects: list[Effect] = []
        for role, party in self.parties.items():
            if (party.state is PartyState.AWAY and party.away_since is not None
                    and now >= party.away_since + self.grace):
                self._move(role, Event.GRACE_EXPIRED)
                # The interval ends when the connection was lost, not when we gave up.
                effects.append(Attend(role, "left", party.away_since, "timeout"))
                party.away_since = None
                effects += self._tell_other(role, "timeout")
        return effects

    def kick(self, code: CloseCode, error_code: str, message: str, now: datetime
             ) -> list[Effect]:
        """Close everyone (booking cancelled or rescheduled, or the window is over)."""
        effects: list[Effect] = []
        for role, party in self.parties.items():
            if party.state is PartyState.ABSENT:
                continue
            was_present, connection = party.state is PartyState.PRESENT, party.connection
            self._move(role, Event.KICK)
            left_at = now if was_present or party.away_since is None else party.away_since
            effects.append(Attend(role, "left", left_at, error_code))
            if was_present and connection is not None:
                effects.append(Close(connection, code, error_code, message))
            party.connection, party.away_since = None, None
        return effects

    def media(self, role: Role, state: str, now: datetime, *, video: bool = True,
              cause: str | None = None) -> list[Effect]:
        """The party reports its media path ``connected``, ``disconnected`` or ``failed``
        (``messages.MEDIA_STATES``), whether it sends ``video``, and a failure's
        ``cause``; the attendance fact it makes, if it changes anything."""
        party = self.parties[role]
        if party.state is not PartyState.PRESENT:
            return []
        if state == "connected":
            if party.media_connected and party.video == video:
                return []
            party.media_connected, party.video = True, video
            party.media_failed, party.cause = False, None
            return [Attend(role, "media_connected", now, "video" if video else "audio_only")]
        if state == "failed":
            if party.media_failed and party.cause == cause:
                return []
            party.media_connected, party.media_failed, party.cause = False, True, cause
            return [Attend(role, "media_failed", now, cause)]
        # A failure stays the last word until the path connects or a new stay begins.
        if not party.media_connected:
            return []
        party.media_connected = False
        return [Attend(role, "media_disconnected", now)]

    def _tell_other(self, role: Role, reason: str) -> list[Effect]:
        if self.state(role.other) is not PartyState.PRESENT:
            return []
        return [Send(role.other, {"type": "peer-left", "role": role.value, "reason": reason})]
