"""The one owner of every ``RTCPeerConnection`` the peer makes: each is closed, fully, once.

Invariants:

- every connection the peer uses comes from ``Connections.open`` and is listed until its
  close has finished;
- a close, once begun, runs to its end in a task of its own. Cancelling whoever awaits it
  (the signalling task is cancelled when the peer leaves) never stops it half-way. That
  matters because aiortc's ``close()`` stops the transceivers one after another: cut
  between two, the later receivers keep their decoder threads. Those threads are not
  daemons, so the process cannot exit, and a second ``close()`` waits forever on the first
  one's unfinished future;
- when a close ends, however it ends, and again at the end of ``close_all`` (whose wait
  is bounded: a ``close()`` that aiortc once cut short waits forever on its own future),
  no receiver of any connection keeps a decoder thread (``_stop_decoders``);
- after ``close_all`` nothing new is opened.
"""

from __future__ import annotations

import asyncio
import logging

from aiortc import RTCConfiguration, RTCPeerConnection

logger = logging.getLogger(__name__)


class Connections:
    """Opens peer connections and closes them; ``close_all`` on leaving."""

    def __init__(self) -> None:
        self._open: set[RTCPeerConnection] = set()
        self._all: list[RTCPeerConnection] = []
        self._closing: dict[RTCPeerConnection, asyncio.Task[None]] = {}
        self._shut = False
        self.opened = 0

    def open(self, configuration: RTCConfiguration) -> RTCPeerConnection:
        if self._shut:
            raise RuntimeError("the peer is closing: no new peer connection")
        pc = RTCPeerConnection(configuration)
        self._open.add(pc)
        self._all.append(pc)
        self.opened += 1
        return pc

    async def warm_up(self) -> None:
        """Make an offer on a throwaway connection and close it, before joining.

        The first connection of a process pays for aiortc's first use: OpenSSL's backend
        loaded for the DTLS certificate, the first ICE gathering, the SDP code; about 25 ms
        here, which would otherwise fall between the other party's arrival and our
        offer. Its candidates go nowhere.
        """
        pc = self.open(RTCConfiguration(iceServers=[]))
        try:
            pc.addTransceiver("video")
            pc.addTransceiver("audio")
            pc.createDataChannel("warm-up")
            await pc.setLocalDescription(await pc.createOffer())
        finally:
            await self.close(pc)

    def _close_task(self, pc: RTCPeerConnection) -> asyncio.Task[None]:
        task = self._closing.get(pc)
        if task is None:
            task = asyncio.create_task(self._close(pc), name=f"close-pc-{id(pc):x}")
            self._closing[pc] = task
        return task

    async def _close(self, pc: RTCPeerConnection) -> None:
        try:
            await pc.close()
        except Exception as error:  # a library failure must not keep the others open
            logger.warning("closing a peer connection failed: %s", type(error).__name__)
        finally:
            _stop_decoders(pc)
            self._open.discard(pc)  # the task stays in _closing: a second close is a no-op

    async def close(self, pc: RTCPeerConnection) -> None:
        """Close ``pc``; if the caller is cancelled meanwhile, the close still finishes."""
        await asyncio.shield(self._close_task(pc))

    @property
    def open_count(self) -> int:
        """Connections not yet closed to the end."""
        return len(self._open)

    async def close_all(self, timeout: float) -> bool:
        """Refuse new connections and close every open one; whether all closed in time.

        Whatever the answer, no decoder thread of any connection is left running.
        """
        self._shut = True
        tasks = {self._close_task(pc) for pc in list(self._open)}
        pending: set[asyncio.Task[None]] = set()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=timeout)
        if pending:
            logger.warning("%d peer connection(s) still closing after %g s",
                           len(pending), timeout)
        for pc in self._all:
            _stop_decoders(pc)
        return not pending


def _stop_decoders(pc: RTCPeerConnection) -> None:
    """Stop any decoder thread a receiver of ``pc`` still has (a no-op after a full close).

    Seen once in 600 runs: aiortc's ``close()`` ended by a ``CancelledError`` from inside,
    between two transceivers, leaving the second receiver's thread waiting forever; and a
    ``close()`` cut short never finishes when called again.
    ``_handle_disconnect`` is what aiortc itself calls when DTLS goes away: it only stops
    the decoder thread, and does nothing when there is none.
    """
    for transceiver in pc.getTransceivers():
        transceiver.receiver._handle_disconnect()
