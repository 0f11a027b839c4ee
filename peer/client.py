"""The headless peer: joins with a link, sends media, receives the other party's.

It speaks the ``/ws`` protocol as an ``aiortc`` agent (``can_rollback: false``): aiortc
cannot roll back an offer and never trickles, so the server never makes it polite
opposite a browser. Negotiation rule (docs/protocol.md): once both parties are present,
the impolite one offers. When the signalling socket drops it reconnects with ``resume``
and backoff while media keeps flowing; when the media path fails the impolite side
builds a new peer connection and offers again.

Every peer connection comes from one owner, ``peer.connections.Connections``, which closes
each one completely even when the task that asked for the close is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaPlayer, MediaRecorder, MediaRelay
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import RTCDtlsTransport, certificate_digest
from aiortc.sdp import candidate_from_sdp
from av import VideoFrame

from peer import channel
from peer.connections import Connections
from peer.media import FrameClock, SyntheticVideoTrack, ToneAudioTrack, read_counter
from peer.verification import COMMIT, REVEAL, VerificationError, Verifier
from signalling import messages
from signalling.errors import CloseCode
from signalling.messages import MAX_MESSAGE_BYTES

logger = logging.getLogger(__name__)

# Close codes after which trying again cannot help.
FATAL_CLOSE_CODES = frozenset({
    CloseCode.POLICY_VIOLATION, CloseCode.MESSAGE_TOO_BIG, CloseCode.MALFORMED,
    CloseCode.UNAUTHORIZED, CloseCode.FORBIDDEN, CloseCode.UNKNOWN_ROOM,
    CloseCode.HELLO_TIMEOUT, CloseCode.REPLACED, CloseCode.OUTSIDE_WINDOW,
    CloseCode.RATE_LIMITED})
# How long leaving may wait for the peer connections to close.
CLOSE_TIMEOUT = 5.0
# How long leaving waits for a signalling socket that is coming back, to say bye on it.
BYE_WAIT = 2.0
# Seconds between the media connecting and each unasked keyframe (_early_keyframes).
EARLY_KEYFRAMES = (0.02, 0.05)
# Reconnection backoff: first delay, and the longest.
BACKOFF_FIRST, BACKOFF_MAX = 0.25, 4.0


class PeerError(Exception):
    """Why the peer gave up, as one line (``refused: 4403 booking_cancelled``)."""


class SessionEnded(PeerError):
    """The server closed the room at its scheduled end (4410 after admission).

    A normal end of the session, not a failure: the caller decides by what it received.
    """


def _now() -> datetime:
    return datetime.now(UTC)


def _rfc3339(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value else None


@dataclass
class PeerStats:
    admitted_at: datetime | None = None
    connected_at: datetime | None = None
    first_frame_at: datetime | None = None
    # When the peer began to leave (diagnostic: the process exits within 10 s of it).
    left_at: datetime | None = None
    frames_received: int = 0
    frames_sent: int = 0
    audio_frames_received: int = 0
    verification_code: str | None = None
    # Longest wall-clock pause between two received video frames after the first.
    max_frame_gap: float = 0.0
    # Frames missing according to the sender's counter.
    frames_lost: int = 0
    reconnects: int = 0
    connections: int = 0
    events: list[str] = field(default_factory=list)
    # From the call's data channel: the other side's last state and grade, our own last
    # grade, how many chat messages arrived (never their text).
    remote_state: channel.State | None = None
    remote_quality: channel.Quality | None = None
    quality: channel.Quality | None = None
    chat_received: int = 0
    # [width, height] of the last video frame received: a shared screen differs from
    # the camera.
    last_frame_size: tuple[int, int] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "admitted_at": _rfc3339(self.admitted_at),
            "connected_at": _rfc3339(self.connected_at),
            "first_frame_at": _rfc3339(self.first_frame_at),
            "left_at": _rfc3339(self.left_at),
            "frames_received": self.frames_received, "frames_sent": self.frames_sent,
            "audio_frames_received": self.audio_frames_received,
            "verification_code": self.verification_code,
            "max_frame_gap_seconds": round(self.max_frame_gap, 3),
            "frames_lost": self.frames_lost, "reconnects": self.reconnects,
            "remote_state": None if self.remote_state is None else asdict(self.remote_state),
            "remote_quality": self.remote_quality and str(self.remote_quality),
            "quality": self.quality and str(self.quality),
            "chat_received": self.chat_received,
            "last_frame_size": self.last_frame_size and list(self.last_frame_size),
        }


def parse_link(link: str) -> tuple[str, str, str]:
    """``{public_url}/s/{room}#t={token}`` → (WebSocket URL, room id, token)."""
    parts = urlsplit(link.strip())
    token = parts.fragment.removeprefix("t=") if parts.fragment.startswith("t=") else ""
    segments = parts.path.rstrip("/").split("/")
    if parts.scheme not in ("http", "https") or len(segments) < 2 or segments[-2] != "s" \
            or not token:
        raise PeerError("invalid link: expected {public_url}/s/{room_id}#t={token}")
    room = segments[-1]
    base = "/".join(segments[:-2])
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}{base}/ws?room={quote(room)}", room, token


def describe_failure(error: BaseException) -> str:
    """Why a signalling connection could not be made, in a few words (no addresses)."""
    if isinstance(error, aiohttp.WSServerHandshakeError):
        return f"HTTP {error.status} instead of a WebSocket"
    if isinstance(error, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return "TLS handshake failed"
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return "host name not found"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(error, TimeoutError | aiohttp.ServerTimeoutError):
        return "timed out"
    cause = error.os_error if isinstance(error, aiohttp.ClientConnectorError) else error
    if isinstance(cause, OSError) and isinstance(cause.errno, int) and cause.errno > 0:
        # os.strerror, not the exception's text: that one names the address.
        return os.strerror(cause.errno).lower()
    return type(error).__name__


def _fingerprints(pc: RTCPeerConnection) -> tuple[str, str] | None:
    """(local, remote) SHA-256 fingerprints of the DTLS certificates used on the wire."""
    for transceiver in pc.getTransceivers():
        dtls: RTCDtlsTransport | None = transceiver.sender.transport
        ssl = getattr(dtls, "_ssl", None)
        if dtls is None or ssl is None or dtls.state != "connected":
            continue
        local = next(f.value for f in dtls.getLocalParameters().fingerprints
                     if f.algorithm == "sha-256")
        remote = certificate_digest(ssl.get_peer_certificate(as_cryptography=True), "sha-256")
        return local, remote
    return None


# Why a relay-only peer (--relay-only/--hide-ip, or the welcome's ice_transport_policy
# "relay") does not connect when the server offers no TURN server.
NO_RELAY = ("relay only: the server offers no TURN server; Hide my IP needs a relay "
            "server, which this service has not configured, so this peer does not connect "
            "rather than show its address")


def failure_cause(ice_state: str, relay_only: bool, local_sdp: str | None) -> str:
    """The ``media`` ``cause`` (``signalling.messages.MEDIA_CAUSES``) of a peer connection
    whose ``connectionState`` is ``failed``.

    aiortc fails the connection when its ICE transport or its DTLS transport fails: ICE
    still ``failed`` means no candidate pair worked, and a relay-only peer that offered no
    relay candidate (aiortc puts every gathered candidate in its SDP: it never trickles)
    never had one to try; otherwise ICE had connected and DTLS failed.
    """
    if ice_state != "failed":
        return "dtls_failed"
    if relay_only and not any(line.startswith("a=candidate") and " typ relay" in line
                              for line in (local_sdp or "").splitlines()):
        return "no_relay_candidate"
    return "no_candidate_pair"


class Peer:
    """One party of a room. ``async with Peer(link) as peer: await peer.wait_connected()``."""

    def __init__(self, link: str, *, video: str = "synthetic", audio: bool = True,
                 record: str | None = None, notify: Callable[[str], None] | None = None,
                 relay_only: bool = False, audio_only: bool = False,
                 chat: Sequence[str] = ()) -> None:
        self.ws_url, self.room_id, self.token = parse_link(link)
        scheme, _, rest = self.ws_url.partition("://")
        # The server's origin, safe to print: the token is never part of it.
        self.origin = f"{'https' if scheme == 'wss' else 'http'}://{rest.split('/', 1)[0]}"
        self._notify = notify or logger.info
        self._stats = PeerStats()
        self.role: str | None = None
        self.polite = False
        self._video, self._audio, self._record = video, audio, record
        # Send no video track (still receive the other party's); ``media`` says video false.
        # True also while the other side has asked for audio-only (``set_audio_only``).
        self.audio_only = audio_only
        # Started audio-only: no video sender at all, so video cannot be turned back on.
        self._no_video = audio_only
        # Offer only TURN relay candidates: the other party never learns our address.
        self.relay_only = relay_only
        self._frame_clock = FrameClock()
        self._player: MediaPlayer | None = None
        self._relay = MediaRelay()
        self._recorder: MediaRecorder | None = None
        self._connections = Connections()
        self._pc: RTCPeerConnection | None = None
        self._pending_candidates: list[dict[str, Any]] = []
        self._verifier: Verifier | None = None
        self._ice: list[RTCIceServer] = []
        self._resume: str | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._lock = asyncio.Lock()
        self.failure: PeerError | None = None
        # Why the last signalling connection attempt failed, while it keeps failing.
        self._unreachable: str | None = None
        self._admitted = asyncio.Event()
        # Set while the current signalling socket has been welcomed (bye can be said).
        self._welcomed = asyncio.Event()
        self._connected = asyncio.Event()
        self._done = asyncio.Event()
        self._last_frame: float | None = None
        self._last_counter: int | None = None
        # The call's data channel of the current connection, and what came over it.
        self._channel: RTCDataChannel | None = None
        self._channel_task: asyncio.Task[None] | None = None
        self._video_sender: RTCRtpSender | None = None
        self._video_source: MediaStreamTrack | None = None
        for text in chat:
            channel.check_chat_text(text)  # ValueError now rather than when it opens
        self._chat_on_open = list(chat)
        self.remote_state: channel.State | None = None
        self.remote_stats: channel.Stats | None = None
        self.chats: list[tuple[str, str, datetime]] = []
        self.booked: list[channel.Booked] = []

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Peer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._video != "synthetic":
            self._player = MediaPlayer(self._video)
        # No overall deadline on the WebSocket (it lives for the whole session), but a
        # bounded connect, so an unreachable server is reported and retried.
        await self._connections.warm_up()
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=10.0))
        self._task = asyncio.create_task(self._signalling_loop())
        self._task.add_done_callback(self._signalling_ended)

    def _signalling_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            return
        # The type and where, not the text: an SDP parse error may quote the SDP.
        where = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
        logger.error("signalling failed: %s at %s:%s", type(error).__name__,
                     where.name if where else "?", where.lineno if where else "?")
        if self.failure is None:
            self.failure = PeerError(f"signalling failed: {type(error).__name__}")
        self._done.set()

    async def _wait(self, event: asyncio.Event, timeout: float, what: str,
                    stop: asyncio.Event | None) -> None:
        waiters = {asyncio.create_task(event.wait()), asyncio.create_task(self._done.wait())}
        if stop is not None:
            waiters.add(asyncio.create_task(stop.wait()))
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if self.failure is not None:
            raise self.failure
        if not event.is_set():
            if stop is not None and stop.is_set():
                raise PeerError(f"stopped while waiting for {what}")
            if self._unreachable is not None:
                raise PeerError(self._unreachable)
            raise PeerError(f"timed out after {timeout:g} s waiting for {what}")

    async def wait_admitted(self, timeout: float = 30.0, *,
                            stop: asyncio.Event | None = None) -> None:
        await self._wait(self._admitted, timeout, "admission", stop)

    async def wait_connected(self, timeout: float = 60.0, *,
                             stop: asyncio.Event | None = None) -> None:
        await self._wait(self._connected, timeout, "the media connection", stop)

    async def wait_for(self, predicate: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.failure is not None:
                raise self.failure
            if time.monotonic() > deadline:
                raise PeerError(f"timed out after {timeout:g} s waiting for {what}")
            await asyncio.sleep(0.05)

    async def stay(self, seconds: float, stop: asyncio.Event | None = None) -> None:
        """Stay in the call for ``seconds`` (or until ``stop``); raise if the peer fails."""
        waiters = [asyncio.create_task(self._done.wait())]
        if stop is not None:
            waiters.append(asyncio.create_task(stop.wait()))
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if self.failure is not None:
            raise self.failure

    async def leave(self) -> None:
        """Say ``bye`` (closing the attendance interval at once) and close everything."""
        if self._stats.left_at is None:
            self._stats.left_at = _now()
        reconnecting = self._task is not None and not self._task.done() \
            and self._admitted.is_set() and not self._closing
        if reconnecting and not self._welcomed.is_set():
            # Without bye the attendance interval stays open for the 30 s grace.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(BYE_WAIT):
                    await self._welcomed.wait()
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._ws.send_str(json.dumps({"type": "bye"}))
        await self.close()

    async def close(self) -> None:
        """Close the socket, every peer connection and every task; safe to call twice."""
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # Closes that the signalling task had begun go on to their end (Connections).
        self._pc = None
        self._verifier = None
        self._end_channel()
        await self._connections.close_all(CLOSE_TIMEOUT)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT)
        if self._recorder is not None:
            await self._recorder.stop()
            self._recorder = None
        if self._player is not None:
            for track in (self._player.video, self._player.audio):
                if track is not None:
                    track.stop()
        if self._session is not None:
            await self._session.close()
        self._done.set()

    def drop_signalling(self) -> None:
        """Test hook: lose the signalling socket abruptly (as a network fault would)."""
        if self._ws is not None:
            transport = self._ws._response.connection
            if transport is not None and transport.transport is not None:
                transport.transport.abort()

    # -- signalling ----------------------------------------------------------------------

    async def _send(self, message: dict[str, Any]) -> None:
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._ws.send_str(json.dumps(message))

    async def _signalling_loop(self) -> None:
        assert self._session is not None
        backoff = BACKOFF_FIRST
        last_error: dict[str, Any] = {}
        while not self._closing:
            close_code: int | None = None
            unreachable: str | None = None
            try:
                async with self._session.ws_connect(
                        self.ws_url, heartbeat=10.0, max_msg_size=MAX_MESSAGE_BYTES,
                        autoclose=True, timeout=aiohttp.ClientWSTimeout(ws_close=2.0)) as ws:
                    self._ws = ws
                    self._unreachable = None
                    hello: dict[str, Any] = {"type": "hello", "token": self.token,
                                             "agent": "aiortc", "can_rollback": False}
                    if self._resume and self._media_alive():
                        hello["resume"] = self._resume
                    await ws.send_str(json.dumps(hello))
                    async for msg in ws:
                        if msg.type is not aiohttp.WSMsgType.TEXT:
                            continue
                        data = json.loads(msg.data)
                        if data.get("type") == "error":
                            last_error = data
                        if data.get("type") == "welcome":
                            backoff = BACKOFF_FIRST
                        await self._on_message(data)
                    close_code = ws.close_code
            except (TimeoutError, aiohttp.ClientError, OSError) as error:
                unreachable = f"cannot reach {self.origin}: {describe_failure(error)}"
            finally:
                self._ws = None
                self._welcomed.clear()
            if self._closing:
                return
            if close_code in FATAL_CLOSE_CODES:
                reason = last_error.get("code", "closed")
                if not self._admitted.is_set():
                    self.failure = PeerError(f"refused: {close_code} {reason}")
                elif close_code == CloseCode.OUTSIDE_WINDOW:
                    self.failure = SessionEnded(f"closed: {close_code} {reason}")
                else:
                    self.failure = PeerError(f"closed: {close_code} {reason}")
                self._done.set()
                return
            if unreachable is not None:
                self._unreachable = unreachable
                self._notify(f"{unreachable}; retrying in {backoff:g} s")
            if self._admitted.is_set():
                self._stats.reconnects += 1
            self._stats.events.append(f"signalling lost ({close_code}); reconnecting")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _on_message(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        async with self._lock:
            match kind:
                case "welcome":
                    await self._on_welcome(msg)
                case "peer-joined":
                    self.polite = bool(msg.get("polite", self.polite))
                    if not (msg.get("resumed") and self._media_alive()):
                        await self._restart(offer=not self.polite)
                case "peer-left":
                    if msg.get("reason") != "dropped":
                        await self._close_pc()
                case "signal":
                    await self._on_signal(msg)
                case "error":
                    if msg.get("code") != "peer_absent":
                        logger.info("server error: %s", msg.get("code"))
                case _ if kind in (COMMIT, REVEAL):
                    await self._on_verification(msg)
                case _:
                    logger.debug("ignoring message of type %s", kind)

    async def _on_welcome(self, msg: dict[str, Any]) -> None:
        if self._stats.admitted_at is None:
            self._stats.admitted_at = _now()
        self._admitted.set()
        self._welcomed.set()
        self.role, self.polite = msg["role"], bool(msg["polite"])
        self._resume = msg.get("resume")
        self._ice = [RTCIceServer(urls=s["urls"], username=s.get("username"),
                                  credential=s.get("credential"))
                     for s in msg.get("ice_servers", [])]
        if msg.get("ice_transport_policy") == "relay":
            # Hide my IP, asked by the gate for this client: as if --relay-only, for the
            # rest of this peer's life (a later welcome cannot turn it off).
            self.relay_only = True
        if self.relay_only and not any(
                str(url).startswith(("turn:", "turns:")) for server in self._ice
                for url in ([server.urls] if isinstance(server.urls, str) else server.urls)):
            self.failure = PeerError(NO_RELAY)
            # For attendance: this party's media path could not be set up, and why.
            await self._send(messages.media("failed", video=not self.audio_only,
                                            cause="no_relay_candidate"))
            self._done.set()
            return
        if msg.get("peer_present") and not self._media_alive() and not self.polite:
            await self._restart(offer=True)

    # -- media -----------------------------------------------------------------------

    def _media_alive(self) -> bool:
        return self._pc is not None and self._pc.connectionState in ("new", "connecting",
                                                                     "connected")

    def _video_track(self) -> MediaStreamTrack:
        if self._player is not None and self._player.video is not None:
            return self._relay.subscribe(self._player.video)
        return SyntheticVideoTrack(self._frame_clock)

    async def _close_pc(self) -> None:
        pc, self._pc = self._pc, None
        self._verifier = None
        self._end_channel()
        if pc is not None:
            await self._connections.close(pc)

    async def _restart(self, *, offer: bool) -> None:
        await self._close_pc()
        if self._closing:
            return
        policy = RTCIceTransportPolicy.RELAY if self.relay_only else RTCIceTransportPolicy.ALL
        pc = self._connections.open(RTCConfiguration(iceServers=self._ice,
                                                     iceTransportPolicy=policy))
        self._pc = pc
        self._pending_candidates.clear()
        self._stats.connections += 1
        assert self.role is not None
        self._verifier = Verifier(self.role)
        # Before any offer or answer, so the first offer has its m=application line.
        self._open_channel(pc)
        self._video_sender = self._video_source = None
        if self._no_video:
            # No video of ours, but an m-line to receive the other party's (an offer
            # without one would get no video back; JSEP 5.2.1).
            pc.addTransceiver("video", direction="recvonly")
        else:
            self._video_source = self._video_track()
            self._video_sender = pc.addTrack(self._video_source)
            if self.audio_only:  # asked for on an earlier connection: still so
                self._video_sender.replaceTrack(None)
        if self._audio:
            if self._player is not None and self._player.audio is not None:
                pc.addTrack(self._relay.subscribe(self._player.audio))
            else:
                pc.addTrack(ToneAudioTrack())

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._spawn(self._consume(self._relay.subscribe(track)))
            if self._record and self._stats.connections == 1:
                if self._recorder is None:
                    self._recorder = MediaRecorder(self._record)
                self._recorder.addTrack(self._relay.subscribe(track))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc is not self._pc:
                return
            state = pc.connectionState
            self._stats.events.append(f"media {state}")
            if state == "connected":
                if self._stats.connected_at is None:
                    self._stats.connected_at = _now()
                self._connected.set()
                self._spawn(self._early_keyframes(pc))
                if self._recorder is not None and self._stats.connections == 1:
                    await self._recorder.start()
                await self._send(messages.media("connected", video=not self.audio_only))
                if self._verifier is not None:
                    await self._send(self._verifier.commit_message())
                    await self._maybe_reveal()
            elif state == "failed":
                local = pc.localDescription
                cause = failure_cause(pc.iceConnectionState, self.relay_only,
                                      None if local is None else local.sdp)
                self._stats.events.append(f"media failed: {cause}")
                await self._send(messages.media("failed", video=not self.audio_only,
                                                cause=cause))
                if not self.polite:
                    self._spawn(self._recover())

        if offer:
            await pc.setLocalDescription(await pc.createOffer())
            await self._send_description(pc)

    async def _early_keyframes(self, pc: RTCPeerConnection) -> None:
        """Send a keyframe again shortly after the media path comes up.

        aiortc starts sending as soon as its own DTLS handshake ends, and the first frame
        is a keyframe; the other side drops the packets that arrive before its receiver
        runs, and then shows nothing until a keyframe it asks for (PLI) arrives, a round
        trip and an encode later. A keyframe or two unasked costs a few kilobytes.
        """
        for delay in EARLY_KEYFRAMES:
            await asyncio.sleep(delay)
            sender = self._video_sender
            if pc is not self._pc or sender is None or sender.track is None:
                return
            # aiortc's own PLI handler (private: if a release renames it, nothing is sent).
            send_keyframe = getattr(sender, "_send_keyframe", None)
            if send_keyframe is None:
                return
            send_keyframe()

    async def _recover(self) -> None:
        await asyncio.sleep(0.5)
        async with self._lock:
            if self._pc is not None and self._pc.connectionState == "failed":
                logger.info("media path failed; renegotiating on a new connection")
                await self._restart(offer=True)

    async def _send_description(self, pc: RTCPeerConnection) -> None:
        description = pc.localDescription
        await self._send({"type": "signal",
                          "description": {"type": description.type, "sdp": description.sdp}})

    async def _on_signal(self, msg: dict[str, Any]) -> None:
        description = msg.get("description")
        if isinstance(description, dict):
            if description.get("type") == "offer":
                pc = self._pc
                if pc is not None and pc.signalingState == "have-local-offer" \
                        and not self.polite:
                    return  # glare: the impolite side keeps its own offer
                if pc is None or pc.remoteDescription is not None \
                        or pc.signalingState != "stable":
                    # A fresh negotiation from the other side: start a new connection.
                    await self._restart(offer=False)
                pc = self._pc
                if pc is None:
                    return  # closing
                await pc.setRemoteDescription(RTCSessionDescription(description["sdp"], "offer"))
                await self._flush_candidates()
                await pc.setLocalDescription(await pc.createAnswer())
                await self._send_description(pc)
            elif description.get("type") == "answer":
                pc = self._pc
                if pc is not None and pc.signalingState == "have-local-offer":
                    await pc.setRemoteDescription(
                        RTCSessionDescription(description["sdp"], "answer"))
                    await self._flush_candidates()
            return
        candidate = msg.get("candidate")
        if isinstance(candidate, dict) and candidate.get("candidate"):
            self._pending_candidates.append(candidate)
            await self._flush_candidates()

    async def _flush_candidates(self) -> None:
        pc = self._pc
        if pc is None or pc.remoteDescription is None:
            return
        pending, self._pending_candidates = self._pending_candidates, []
        for raw in pending:
            try:
                candidate = candidate_from_sdp(raw["candidate"].removeprefix("candidate:"))
            except (ValueError, IndexError):
                continue
            candidate.sdpMid = raw.get("sdpMid")
            candidate.sdpMLineIndex = raw.get("sdpMLineIndex")
            with contextlib.suppress(Exception):
                await pc.addIceCandidate(candidate)

    # -- verification --------------------------------------------------------------------

    async def _on_verification(self, msg: dict[str, Any]) -> None:
        if self._verifier is None:
            return
        try:
            if msg["type"] == COMMIT:
                self._verifier.on_commit(msg)
                await self._maybe_reveal()
            else:
                self._verifier.on_reveal(msg)
                self._update_code()
        except VerificationError as error:
            logger.warning("verification failed: %s", error)
            self._stats.verification_code = None

    async def _maybe_reveal(self) -> None:
        if self._verifier is not None:
            reveal = self._verifier.reveal_message()
            if reveal is not None:
                await self._send(reveal)
            self._update_code()

    def _update_code(self) -> None:
        if self._verifier is None or self._pc is None:
            return
        prints = _fingerprints(self._pc)
        if prints is not None:
            code = self._verifier.code(*prints)
            if code is not None:
                self._stats.verification_code = code

    # -- receiving -------------------------------------------------------------------------

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _consume(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if track.kind == "audio":
                self._stats.audio_frames_received += 1
                continue
            now = time.monotonic()
            if self._stats.first_frame_at is None:
                self._stats.first_frame_at = _now()
            elif self._last_frame is not None:
                self._stats.max_frame_gap = max(self._stats.max_frame_gap, now - self._last_frame)
            self._last_frame = now
            self._stats.frames_received += 1
            if isinstance(frame, VideoFrame):
                self._stats.last_frame_size = (frame.width, frame.height)
            counter = read_counter(frame) if isinstance(frame, VideoFrame) else None
            if counter is not None:
                if self._last_counter is not None and counter > self._last_counter + 1:
                    self._stats.frames_lost += counter - self._last_counter - 1
                self._last_counter = counter

    @property
    def stats(self) -> PeerStats:
        self._stats.frames_sent = self._frame_clock.frames_sent
        return self._stats

    # -- the call's data channel (docs/protocol.md; frames in peer.channel) ---------------

    @property
    def channel_open(self) -> bool:
        return self._channel is not None and self._channel.readyState == "open"

    def _open_channel(self, pc: RTCPeerConnection) -> None:
        # Negotiated: aiortc opens it on both sides when the SCTP association is up.
        dc = pc.createDataChannel(channel.LABEL, negotiated=True, id=channel.CHANNEL_ID,
                                  ordered=True)
        self._channel = dc

        @dc.on("open")
        def on_open() -> None:
            if dc is self._channel:
                self._send_state()
                for text in self._chat_on_open:
                    self._send_chat_now(text)
                self._chat_on_open.clear()
                self._channel_task = asyncio.create_task(self._report_path(pc),
                                                         name="channel-stats")

        @dc.on("message")
        def on_message(data: str | bytes) -> None:
            if dc is self._channel:
                message = channel.parse_frame(data)
                if message is not None:
                    self._on_channel_message(message)

    def _end_channel(self) -> None:
        self._channel = None
        task, self._channel_task = self._channel_task, None
        if task is not None:
            task.cancel()
            self._tasks.add(task)  # close() waits for it
            task.add_done_callback(self._tasks.discard)

    def _channel_send(self, message: channel.ChannelMessage) -> bool:
        if not self.channel_open:
            return False
        assert self._channel is not None
        self._channel.send(channel.encode(message))
        return True

    def _send_state(self) -> None:
        self._channel_send(channel.State(mic=self._audio, camera=not self.audio_only,
                                         video=not self.audio_only, screen=False))

    def _send_chat_now(self, text: str) -> bool:
        return self._channel_send(channel.chat(uuid.uuid4().hex, text, _now()))

    async def send_chat(self, text: str) -> None:
        """Send a chat message to the other party, peer to peer (the server never sees
        it); ``PeerError`` if the data channel is not open, ``ValueError`` if ``text`` is
        empty or longer than the limit."""
        if not self._send_chat_now(text):
            raise PeerError("the data channel is not open: chat not sent")

    async def set_audio_only(self, on: bool, *, ask_other: bool = True) -> None:
        """Stop (``on``) or resume sending video, without renegotiating; with
        ``ask_other``, ask the other side to do the same (``audio-only`` request)."""
        if ask_other and not self._channel_send(channel.AudioOnly(on)):
            raise PeerError("the data channel is not open: audio-only not asked")
        if on == self.audio_only:
            return
        if not on and (self._no_video or self._video_sender is None):
            self._notify("started --audio-only: no video to send again")
            return
        self.audio_only = on
        if self._video_sender is not None:
            # aiortc's sender keeps its RTP task and idles while it has no track.
            self._video_sender.replaceTrack(None if on else self._video_source)
        if self._pc is not None and self._pc.connectionState == "connected":
            # For attendance: this party sends video, or not, from now on.
            await self._send(messages.media("connected", video=not on))
        self._send_state()

    def _on_channel_message(self, message: channel.ChannelMessage) -> None:
        match message:
            case channel.State():
                self.remote_state = self._stats.remote_state = message
            case channel.Stats():
                self.remote_stats = message
                self._stats.remote_quality = message.quality
            case channel.AudioOnly():
                self._spawn(self.set_audio_only(message.on, ask_other=False))
            case channel.Chat():
                sender = "client" if self.role == "professional" else "professional"
                self.chats.append((sender, message.text, message.at))
                self._stats.chat_received += 1
                self._notify(f"chat from {sender}: {channel.one_line(message.text)}")
            case channel.Booked():
                self.booked.append(message)
                self._notify("the professional booked the next session: "
                             f"{message.starts_at.isoformat()}")

    async def _report_path(self, pc: RTCPeerConnection) -> None:
        """Every ``STATS_INTERVAL``, send ``stats`` with our view of the path; ends with
        the connection (cancelled by ``_end_channel``, or when ``pc`` is no longer ours)."""
        before = await self._sample(pc)
        while pc is self._pc and pc.connectionState not in ("closed", "failed"):
            await asyncio.sleep(channel.STATS_INTERVAL)
            if pc is not self._pc or not self.channel_open:
                return
            now = await self._sample(pc)
            remote = self.remote_state
            stats = channel.path_stats(
                before, now, sending_video=not self.audio_only,
                remote_camera_on=remote is not None and remote.camera and remote.video)
            before = now
            self._stats.quality = stats.quality
            self._channel_send(stats)

    async def _sample(self, pc: RTCPeerConnection) -> channel.Sample:
        report = await pc.getStats()
        return channel.sample_from_report(report, at=time.monotonic(),
                                          frames_received=self._stats.frames_received)
