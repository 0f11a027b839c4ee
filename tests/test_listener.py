"""The guarded listener in process: timeouts, caps and their metrics on real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from carecall.connections import Limits
from carecall.listener import GuardedListener
from carecall.serve import bind


@dataclass
class Node:
    port: int
    listener: GuardedListener
    registry: CollectorRegistry

    def value(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels or None) or 0.0


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hi")


@pytest.fixture
async def node(request: pytest.FixtureRequest) -> AsyncIterator[Node]:
    limits: Limits = getattr(request, "param", Limits(max_connections=4, max_per_address=2,
                                                      idle_timeout=0.5))
    app = web.Application()
    app.router.add_get("/", hello)
    registry = CollectorRegistry()
    listener = GuardedListener(limits, registry, lambda address: False)
    listener.install(app)
    runner = web.AppRunner(app, handle_signals=False, **listener.runner_options())
    await runner.setup()
    sock = bind("127.0.0.1", 0)
    await listener.start(runner, sock)
    try:
        yield Node(sock.getsockname()[1], listener, registry)
    finally:
        await listener.stop()
        await runner.cleanup()
        sock.close()


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1024), within) == b""
    except (TimeoutError, ConnectionError):
        return False


async def test_a_silent_connection_is_closed_after_the_idle_timeout(node: Node) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    assert await closed_by_server(reader, 3.0)
    writer.close()
    await writer.wait_closed()
    # A slow request head (one byte, then nothing) gets no more time than silence.
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    writer.write(b"G")
    assert await closed_by_server(reader, 3.0)
    writer.close()
    await writer.wait_closed()


async def test_a_third_connection_from_one_address_evicts_the_oldest_idle_one(
        node: Node) -> None:
    first, second, third = [await asyncio.open_connection("127.0.0.1", node.port)
                            for _ in range(3)]
    try:
        assert await closed_by_server(first[0], 0.4)
        third[1].write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"hi" in await asyncio.wait_for(third[0].read(1024), 2)
        assert node.value("carecall_http_connections_refused_total",
                          reason="evicted_idle") == 1
    finally:
        for _, writer in (first, second, third):
            writer.close()
            await writer.wait_closed()


async def test_past_the_node_cap_a_connection_is_closed_on_arrival(node: Node) -> None:
    held = []
    for source in ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"):
        held.append(await asyncio.open_connection("127.0.0.1", node.port,
                                                  local_addr=(source, 0)))
    await asyncio.sleep(0.05)
    assert node.value("carecall_http_connections_open") == 4
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port,
                                                   local_addr=("127.0.0.6", 0))
    assert await closed_by_server(reader, 0.4)
    assert node.value("carecall_http_connections_refused_total", reason="node_full") == 1
    assert node.value("carecall_http_connection_capacity") == 4
    for _, held_writer in [*held, (reader, writer)]:
        held_writer.close()
        await held_writer.wait_closed()


def test_the_soft_descriptor_limit_is_raised_to_the_hard_one() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
        listener = GuardedListener(Limits(), CollectorRegistry(), lambda address: False)
        assert listener.descriptors == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
