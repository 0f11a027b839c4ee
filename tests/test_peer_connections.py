"""peer.connections: every peer connection is closed to the end, even by a cancelled caller."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from aiortc import RTCConfiguration, RTCPeerConnection

from peer.connections import Connections
from peer.media import SyntheticVideoTrack, ToneAudioTrack


def decoder_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.endswith("-decoder") and t.is_alive()]


async def finish_closing(pc: RTCPeerConnection) -> None:
    """Test cleanup: stop what a cut-short close left running (threads, sockets)."""
    for transceiver in pc.getTransceivers():
        await transceiver.receiver.stop()
        await transceiver.sender.stop()
        dtls = transceiver.receiver.transport
        await dtls.stop()
        await dtls.transport.stop()


async def connected_pair(connections: Connections, theirs: Connections | None = None
                         ) -> tuple[RTCPeerConnection, ...]:
    """A connection of ``connections`` and one of ``theirs`` (default: the same owner),
    with audio and video flowing both ways."""
    pcs = (connections.open(RTCConfiguration()),
           (theirs or connections).open(RTCConfiguration()))
    for pc in pcs:
        pc.addTrack(SyntheticVideoTrack())
        pc.addTrack(ToneAudioTrack())
    offerer, answerer = pcs
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)
    async with asyncio.timeout(20):
        while not all(pc.connectionState == "connected" for pc in pcs) \
                or len(decoder_threads()) < 4:
            await asyncio.sleep(0.05)
    return pcs


async def test_a_close_whose_caller_is_cancelled_still_stops_every_decoder_thread() -> None:
    """Cancelling the task that closes a connection (as leaving cancels the signalling
    task) does not stop the close half-way: no decoder thread is left waiting."""
    connections = Connections()
    before = set(decoder_threads())
    pcs = await connected_pair(connections)
    try:
        closer = asyncio.create_task(connections.close(pcs[0]))
        await asyncio.sleep(0)  # the close is under way, inside aiortc's transceiver loop
        closer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await closer
        assert closer.cancelled()
        assert connections.open_count == 2  # the first close has not finished yet
        assert await connections.close_all(10)
        assert connections.open_count == 0
        async with asyncio.timeout(5):
            while set(decoder_threads()) - before:
                await asyncio.sleep(0.05)
        assert all(pc.connectionState == "closed" for pc in pcs)
    finally:
        # Should the rule break, do not leave threads that keep pytest from exiting.
        for pc in pcs:
            await finish_closing(pc)


async def test_nothing_is_opened_after_close_all() -> None:
    """Once the peer is closing, a late restart cannot create a connection nobody closes."""
    connections = Connections()
    pc = connections.open(RTCConfiguration())
    assert await connections.close_all(5)
    assert pc.connectionState == "closed"
    try:
        connections.open(RTCConfiguration())
    except RuntimeError as error:
        assert "closing" in str(error)
    else:
        raise AssertionError("a connection was opened after close_all")
    assert connections.opened == 1


async def test_close_all_stops_the_decoders_of_a_connection_that_aiortc_half_closed() -> None:
    """A connection whose aiortc close() was cut short (the leak seen in the field: its
    audio decoder thread waits forever and a second close() never returns): close_all
    gives up on it after its timeout, yet none of its decoder threads is left."""
    ours, theirs = Connections(), Connections()
    before = set(decoder_threads())
    pc, other = await connected_pair(ours, theirs)
    try:
        raw = asyncio.create_task(pc.close())  # not through Connections: unprotected
        await asyncio.sleep(0)
        raw.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await raw
        # The other side's two threads, and what the cut-short close left of ours.
        assert len(set(decoder_threads()) - before) > 2
        assert not await ours.close_all(1)  # it can never finish closing
        assert len(set(decoder_threads()) - before) == 2  # only the other side's
    finally:
        await theirs.close_all(5)
        for each in (pc, other):
            await finish_closing(each)
