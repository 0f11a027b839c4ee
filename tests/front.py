"""A TCP front for tests: what a load balancer in TCP mode does, in a few lines.

Each connection goes to the first backend that accepts it, in the front's order, so a
front that lists node A first sends its clients to A while A lives, and to B once A is
gone. Bytes are copied both ways untouched (WebSocket upgrades included).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence


class Front:
    def __init__(self, backends: Sequence[tuple[str, int]]) -> None:
        self.backends = list(backends)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self.chosen: list[int] = []  # the backend port of each connection, in order

    async def start(self) -> Front:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        for task in list(self._pipes):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for host, port in self.backends:
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port), 2)
            except (OSError, TimeoutError):
                continue
            self.chosen.append(port)
            for source, sink in ((reader, up_writer), (up_reader, writer)):
                task = asyncio.create_task(self._pipe(source, sink))
                self._pipes.add(task)
                task.add_done_callback(self._pipes.discard)
            return
        writer.close()

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (OSError, ConnectionError):
            pass
        finally:
            with contextlib.suppress(Exception):
                sink.close()
