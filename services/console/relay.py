"""The serial relay: QEMU's serial socket <-> the bus, with an in-memory history.

QEMU listens on the serial socket (and writes every byte to the console log
itself); the relay connects whenever QEMU runs and reconnects after each
power-on. Output goes out raw on console.out; console.in is written to the guest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Callable

import msgspec

from bus import Bus, Subjects
from bus.messages import ConsoleHistoryGet

log = logging.getLogger("relay")

HISTORY_BYTES = 64 * 1024
RECONNECT_INTERVAL = 0.1
BURST_WAIT = 0.001


class History:
    """The last `limit` bytes the guest printed, for viewers who arrive late."""

    def __init__(self, limit: int = HISTORY_BYTES):
        self.limit = limit
        self.buffer = bytearray()

    def add(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > self.limit:
            del self.buffer[:len(self.buffer) - self.limit]

    def tail(self, max_bytes: int) -> bytes:
        return bytes(self.buffer[-max_bytes:]) if max_bytes > 0 else b""


class SerialRelay:
    def __init__(self, bus: Bus, subjects: Subjects, serial_socket: str,
                 on_output: Callable[[bytes], None] = lambda data: None, console_log=None):
        self.bus = bus
        self.subjects = subjects
        self.serial_socket = serial_socket
        self.on_output = on_output  # local viewers (the TCP console)
        self.console_log = console_log  # a ConsoleLog, or None
        self.history = History()
        self._writer: asyncio.StreamWriter | None = None
        self.connected = asyncio.Event()

    async def start(self) -> None:
        await self.bus.subscribe_raw(self.subjects.console_in, self._on_input)
        await self.bus.subscribe_raw(self.subjects.console_history, self._on_history)

    async def _on_input(self, msg) -> None:
        await self.to_guest(msg.data)

    async def to_guest(self, data: bytes) -> None:
        """Bytes for the guest's serial port; dropped while QEMU is not running."""
        if self._writer is not None:
            self._writer.write(data)
            with contextlib.suppress(ConnectionError):
                await self._writer.drain()

    async def _on_history(self, msg) -> None:
        try:
            req = msgspec.json.decode(msg.data, type=ConsoleHistoryGet) if msg.data else ConsoleHistoryGet()
        except msgspec.DecodeError:
            req = ConsoleHistoryGet()
        if msg.reply:
            await msg.respond(self.history.tail(min(req.max_bytes, HISTORY_BYTES)))

    @staticmethod
    async def _read_burst(reader: asyncio.StreamReader) -> bytes:
        """One read, plus whatever else arrives within a millisecond (up to 64 KiB):
        a guest printing fast makes a few large messages instead of thousands."""
        data = await reader.read(65536)
        while data and len(data) < 65536:
            try:
                more = await asyncio.wait_for(reader.read(65536 - len(data)), BURST_WAIT)
            except asyncio.TimeoutError:
                break
            if not more:
                break
            data += more
        return data

    async def run(self) -> None:
        """Connect to QEMU's serial port whenever it is there; relay until it goes."""
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(self.serial_socket)
            except OSError:
                await asyncio.sleep(RECONNECT_INTERVAL)
                continue
            log.info("attached to the serial port")
            self._writer = writer
            self.connected.set()
            # the power agent holds a new VM paused until this is said: no first line is missed
            await self.bus.publish(self.subjects.console_attached, b"")
            try:
                while data := await self._read_burst(reader):
                    if self.console_log is not None:
                        self.console_log.write(data)
                    self.history.add(data)
                    self.on_output(data)
                    await self.bus.publish(self.subjects.console_out, data)
            except ConnectionError:
                pass
            finally:
                self._writer = None
                self.connected.clear()
                writer.close()
            log.info("serial port closed (QEMU stopped)")
