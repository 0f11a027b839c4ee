"""A WebSocket client built for load, and the processes that run many of them.

A load generator written with a full client library spends more CPU per message than
the server it measures, and on a 2-core machine that CPU is taken from the server.
``RawSocket`` does only what a load needs: the HTTP upgrade, text frames written from
prepared bytes (masked with the all-zero key, which RFC 6455 allows and servers accept,
so masking costs nothing), and incoming frames parsed just far enough to hand their
payload on. It answers the server's pings, so idle sockets stay open.

Each client binds one of 5,000 source addresses within 127.0.0.0/8 (``source_address``):
carecall limits connections per address, as it should for real clients, and thousands
of clients at the top of the hour come from thousands of addresses.
"""

from __future__ import annotations

import asyncio
import base64
import multiprocessing
import os
import resource
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any

OPEN_FILES = 20_000


def raise_open_files() -> None:
    """Allow this process as many descriptors as the hard limit (at most OPEN_FILES)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, OPEN_FILES) if hard != resource.RLIM_INFINITY else OPEN_FILES
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


ADDRESSES = 5000


def source_address(index: int) -> str:
    """The loopback address client ``index`` connects from: one of ``ADDRESSES``
    addresses 127.1.x.y, in turn (clients joining together come from different ones)."""
    block = index % ADDRESSES
    return f"127.1.{block // 250}.{block % 250 + 1}"


def frame(text: bytes) -> bytes:
    """A masked client text frame (mask key 0: the payload is sent as it is)."""
    length = len(text)
    if length < 126:
        header = struct.pack("!BB", 0x81, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 0x80 | 127, length)
    return header + b"\0\0\0\0" + text


_CLOSE = struct.pack("!BB", 0x88, 0x82) + b"\0\0\0\0" + struct.pack("!H", 1000)
_PONG_EMPTY = struct.pack("!BB", 0x8A, 0x80) + b"\0\0\0\0"


class RawSocket(asyncio.Protocol):
    """One client connection. ``on_text(socket, payload)`` gets each text message."""

    def __init__(self, path: str, host: str, on_text: Callable[[RawSocket, bytes], None]
                 ) -> None:
        self._request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                         f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                         f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}"
                         f"\r\n\r\n").encode()
        self.on_text = on_text
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._buffer = bytearray()
        self._upgraded = False
        self.state: Any = None  # the load script's own per-socket state

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self._request)

    def send(self, prepared_frame: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(prepared_frame)

    def send_text(self, text: bytes) -> None:
        self.send(frame(text))

    def close(self) -> None:
        """Send a close frame and drop the connection (no waiting for the answer)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_CLOSE)
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if not self._upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buffer[:12])
            del buffer[:end + 4]
            if not status.startswith(b"HTTP/1.1 101"):
                self._finish(None)
                return
            self._upgraded = True
            self.opened.set_result(None)
        offset = 0
        size = len(buffer)
        while size - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1]
            length, start = second & 0x7F, offset + 2
            if length == 126:
                if size - offset < 4:
                    break
                length, start = struct.unpack_from("!H", buffer, offset + 2)[0], offset + 4
            elif length == 127:
                if size - offset < 10:
                    break
                length, start = struct.unpack_from("!Q", buffer, offset + 2)[0], offset + 10
            if size < start + length:
                break
            opcode = first & 0x0F
            if opcode == 0x1:
                self.on_text(self, bytes(buffer[start:start + length]))
            elif opcode == 0x9:  # ping: answer with its payload
                payload = bytes(buffer[start:start + length])
                self.send(struct.pack("!BB", 0x8A, 0x80 | len(payload)) + b"\0\0\0\0"
                          + payload if payload else _PONG_EMPTY)
            elif opcode == 0x8:
                code = struct.unpack_from("!H", buffer, start)[0] if length >= 2 else None
                self._finish(code)
            offset = start + length
        del buffer[:offset]

    def _finish(self, code: int | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"refused (close {code})"))
        if not self.closed.done():
            self.closed.set_result(code)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(None)


async def connect(url: str, index: int, on_text: Callable[[RawSocket, bytes], None],
                  timeout: float = 30.0) -> RawSocket:
    """Open ``url`` (``http://host:port/path``) from client ``index``'s source address."""
    rest = url.split("://", 1)[1]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    loop = asyncio.get_running_loop()
    _, protocol = await asyncio.wait_for(loop.create_connection(
        lambda: RawSocket("/" + path, hostport, on_text), host, int(port),
        local_addr=(source_address(index), 0)), timeout)
    await asyncio.wait_for(protocol.opened, timeout)
    return protocol


def hello(token: str) -> bytes:
    """A browser's hello with ``token``, as a prepared frame."""
    return frame(b'{"type":"hello","agent":"browser","can_rollback":true,"token":"'
                 + token.encode() + b'"}')


# -- worker processes --------------------------------------------------------------------


def cpu_now() -> float:
    usage = os.times()
    return usage.user + usage.system


def _run_worker(target: Callable[..., Any], args: tuple[Any, ...], out: Any) -> None:
    raise_open_files()
    started = cpu_now()
    try:
        result = target(*args)
    except Exception as error:  # reported to the parent, which says which worker failed
        out.put({"error": f"{type(error).__name__}: {error}"})
        return
    result["cpu"] = cpu_now() - started
    out.put(result)


def spawn(target: Callable[..., Any], jobs: Sequence[tuple[Any, ...]],
          timeout: float = 300.0) -> list[dict[str, Any]]:
    """Run ``target(*job)`` for each job in a process of its own; their results (each a
    dict, with the CPU seconds the process used added as ``cpu``)."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    procs = [context.Process(target=_run_worker, args=(target, job, out), daemon=True)
             for job in jobs]
    for proc in procs:
        proc.start()
    deadline = time.monotonic() + timeout
    try:
        results = [out.get(timeout=max(1.0, deadline - time.monotonic())) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
    failed = [r["error"] for r in results if "error" in r]
    if failed:
        raise RuntimeError(f"a load process failed: {failed[0]}")
    return results
