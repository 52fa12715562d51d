"""The console relay between a serial socket and a real nats-server. The serial
port here is a real unix socket served by the test, standing in for QEMU's."""

from __future__ import annotations

import asyncio

import msgspec

from bus import Subjects, connect
from bus.messages import ConsoleHistoryGet
from services.console.relay import HISTORY_BYTES, SerialRelay

S = Subjects("n1")


async def test_relay_publishes_output_takes_input_and_keeps_history(nats_server, tmp_path):
    sock = str(tmp_path / "serial.sock")
    guest_input: asyncio.Queue = asyncio.Queue()
    writers = []

    async def fake_qemu(reader, writer):
        writers.append(writer)
        writer.write(b"boot line 1\r\n")
        await writer.drain()
        while data := await reader.read(100):
            await guest_input.put(data)

    bus = await connect(nats_server, "console")
    relay = SerialRelay(bus, S, sock)
    await relay.start()
    task = asyncio.create_task(relay.run())
    viewer = await connect(nats_server, "viewer")
    seen: asyncio.Queue = asyncio.Queue()

    async def on_out(msg):
        await seen.put(msg.data)
    await viewer.subscribe_raw(S.console_out, on_out)

    server = await asyncio.start_unix_server(fake_qemu, sock)  # QEMU starts after the relay
    assert await asyncio.wait_for(seen.get(), 5) == b"boot line 1\r\n"
    await viewer.publish(S.console_in, b"echo hi\n")
    assert await asyncio.wait_for(guest_input.get(), 5) == b"echo hi\n"

    # QEMU goes away and comes back (a power cycle): the relay re-attaches
    writers[0].close()
    server.close()
    await server.wait_closed()
    await asyncio.wait_for(_until(lambda: not relay.connected.is_set()), 5)
    server = await asyncio.start_unix_server(fake_qemu, sock)
    assert await asyncio.wait_for(seen.get(), 5) == b"boot line 1\r\n"

    reply = await viewer.nc.request(S.console_history, msgspec.json.encode(ConsoleHistoryGet()), timeout=2)
    assert reply.data == b"boot line 1\r\nboot line 1\r\n"
    task.cancel()
    server.close()
    await viewer.close()
    await bus.close()


async def _until(predicate):
    while not predicate():
        await asyncio.sleep(0.02)


def test_history_keeps_only_the_last_64_kib():
    from services.console.relay import History
    h = History()
    h.add(b"a" * HISTORY_BYTES)
    h.add(b"tail")
    assert len(h.tail(10**6)) == HISTORY_BYTES and h.tail(4) == b"tail"
