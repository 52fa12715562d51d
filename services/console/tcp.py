"""The plain TCP console (CONSOLE_PORT, 5000): the vrnetlab convention. Every
viewer sees the guest's output from the moment it connects, and what any
viewer types goes to the guest. A viewer that cannot keep up is disconnected
rather than slowing the others down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Awaitable, Callable

from services.console.telnet import TelnetFilter

log = logging.getLogger("tcp")

VIEWER_BUFFER = 8 * 1024 * 1024  # bytes queued for one viewer before it is dropped


class Viewer:
    def __init__(self, writer: asyncio.StreamWriter):
        self.writer = writer
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.queued = 0
        self.closed = False

    def offer(self, data: bytes) -> bool:
        if self.queued + len(data) > VIEWER_BUFFER:
            return False
        self.queued += len(data)
        self.queue.put_nowait(data)
        return True

    async def pump(self) -> None:
        while True:
            data = await self.queue.get()
            self.queued -= len(data)
            self.writer.write(data)
            await self.writer.drain()


class TcpConsole:
    def __init__(self, send_to_guest: Callable[[bytes], Awaitable[None]]):
        self.send_to_guest = send_to_guest
        self.viewers: set[Viewer] = set()
        self.server: asyncio.base_events.Server | None = None

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(self._serve, host, port)
        log.info("TCP console on %s:%d", host, port)

    def broadcast(self, data: bytes) -> None:
        for viewer in list(self.viewers):
            if not viewer.offer(data):
                log.warning("dropping a console viewer that fell %d bytes behind", VIEWER_BUFFER)
                viewer.writer.close()
                self.viewers.discard(viewer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        viewer = Viewer(writer)
        self.viewers.add(viewer)
        peer = writer.get_extra_info("peername")
        log.info("console viewer %s connected (%d now)", peer, len(self.viewers))
        pump = asyncio.create_task(viewer.pump())
        telnet = TelnetFilter()
        try:
            while data := await reader.read(4096):
                typed = telnet.feed(data)
                if typed:
                    await self.send_to_guest(typed)
        except ConnectionError:
            pass
        finally:
            pump.cancel()
            self.viewers.discard(viewer)
            with contextlib.suppress(Exception):
                writer.close()
            log.info("console viewer %s left", peer)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for viewer in list(self.viewers):
            viewer.writer.close()
