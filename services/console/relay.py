"""The serial relay: QEMU's serial socket <-> the bus, with an in-memory history.

QEMU listens on the serial socket (and writes every byte to the console log
itself); the relay connects whenever QEMU runs and reconnects after each
power-on. Output goes out raw on console.out; console.in is written to the guest.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

import msgspec

from bus import Bus, Subjects
from bus.messages import ConsoleHistoryGet

log = logging.getLogger("relay")

HISTORY_BYTES = 64 * 1024
RECONNECT_INTERVAL = 0.1
# QEMU's UART hands the socket one byte per write while the guest prints. Reading
# every byte as it comes costs a trip round the event loop per byte (about 11
# CPU-seconds per MiB); pausing this long after each read lets the kernel collect
# them, so a read takes whatever arrived meanwhile. It is also the most it adds
# to a keystroke's echo.
BATCH_INTERVAL = 0.005
READ_SIZE = 64 * 1024
OUTBOX_HIGH = 1024 * 1024  # stop reading QEMU while this much waits for the bus ...
OUTBOX_LOW = 256 * 1024  # ... and go on once it is down to this


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


class SerialPort(asyncio.BufferedProtocol):
    """QEMU's serial socket, read in batches: after each read, reading pauses for
    BATCH_INTERVAL; what arrived meanwhile comes in the next read. Each batch goes
    to `deliver` in order; `closed` resolves when QEMU closes the socket. Reads go
    into one reused buffer (a fresh 256 KiB bytes per read costs more than the read)."""

    def __init__(self, deliver: Callable[[bytes], None]):
        self.deliver = deliver
        self._buffer = bytearray(READ_SIZE)
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self._resume_at: asyncio.TimerHandle | None = None
        self._held = False  # paused by the owner (the bus is behind), not by the batching

    def connection_made(self, transport) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int) -> bytearray:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.deliver(bytes(self._buffer[:nbytes]))
        if self._resume_at is None and self.transport is not None:
            self.transport.pause_reading()
            self._resume_at = asyncio.get_running_loop().call_later(BATCH_INTERVAL, self._resume)

    def _resume(self) -> None:
        self._resume_at = None
        if not self._held and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def hold(self, held: bool) -> None:
        """Stop reading (QEMU then waits, and so does the guest) or go on."""
        if held == self._held:
            return  # asked after every publish: only a change does anything
        self._held = held
        if not held and self._resume_at is None:
            self._resume()
        elif held and self._resume_at is None and self.transport is not None:
            self.transport.pause_reading()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def connection_lost(self, exc) -> None:
        if self._resume_at is not None:
            self._resume_at.cancel()
            self._resume_at = None
        self.transport = None
        if not self.closed.done():
            self.closed.set_result(None)


class SerialRelay:
    def __init__(self, bus: Bus, subjects: Subjects, serial_socket: str,
                 on_output: Callable[[bytes], None] = lambda data: None, console_log=None):
        self.bus = bus
        self.subjects = subjects
        self.serial_socket = serial_socket
        self.on_output = on_output  # local viewers (the TCP console)
        self.console_log = console_log  # a ConsoleLog, or None
        self.history = History()
        self._port: SerialPort | None = None
        self.connected = asyncio.Event()
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._outbox_bytes = 0

    async def start(self) -> None:
        await self.bus.subscribe_raw(self.subjects.console_in, self._on_input)
        await self.bus.subscribe_raw(self.subjects.console_history, self._on_history)

    async def _on_input(self, msg) -> None:
        await self.to_guest(msg.data)

    async def to_guest(self, data: bytes) -> None:
        """Bytes for the guest's serial port; dropped while QEMU is not running."""
        if self._port is not None:
            self._port.write(data)

    async def _on_history(self, msg) -> None:
        try:
            req = msgspec.json.decode(msg.data, type=ConsoleHistoryGet) if msg.data else ConsoleHistoryGet()
        except msgspec.DecodeError:
            req = ConsoleHistoryGet()
        if msg.reply:
            await msg.respond(self.history.tail(min(req.max_bytes, HISTORY_BYTES)))

    def _take(self, data: bytes) -> None:
        """One batch from the serial port: the log, the history and local viewers
        at once; the bus in order, from the publisher task."""
        if self.console_log is not None:
            self.console_log.write(data)
        self.history.add(data)
        self.on_output(data)
        self._outbox.put_nowait(data)
        self._outbox_bytes += len(data)
        if self._outbox_bytes > OUTBOX_HIGH and self._port is not None:
            self._port.hold(True)

    async def _publish_output(self) -> None:
        while True:
            data = await self._outbox.get()
            # whatever else queued up meanwhile goes in the same message
            while not self._outbox.empty() and len(data) < 65536:
                data += self._outbox.get_nowait()
            await self.bus.publish(self.subjects.console_out, data)
            self._outbox_bytes -= len(data)
            if self._outbox_bytes < OUTBOX_LOW and self._port is not None:
                self._port.hold(False)

    async def run(self) -> None:
        """Connect to QEMU's serial port whenever it is there; relay until it goes."""
        loop = asyncio.get_running_loop()
        publisher = asyncio.create_task(self._publish_output())
        try:
            while True:
                try:
                    _, port = await loop.create_unix_connection(lambda: SerialPort(self._take), self.serial_socket)
                except OSError:
                    await asyncio.sleep(RECONNECT_INTERVAL)
                    continue
                log.info("attached to the serial port")
                self._port = port
                self.connected.set()
                # the power agent holds a new VM paused until this is said: no first line is missed
                await self.bus.publish(self.subjects.console_attached, b"")
                try:
                    await port.closed
                finally:
                    self._port = None
                    self.connected.clear()
                    if port.transport is not None:
                        port.transport.close()
                log.info("serial port closed (QEMU stopped)")
        finally:
            publisher.cancel()
