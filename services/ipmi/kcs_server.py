"""The asyncio edge of in-band IPMI: a unix socket QEMU's `ipmi-bmc-extern`
chardev connects to (QEMU is the client and reconnects), the sans-IO
`SystemInterface` per connection, and the shared command core.

Requests run at administrator privilege: the system interface has no sessions
(IPMI 2.0 6.12.2), and the guest's root is who can open /dev/ipmi0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from services.ipmi.commands import CC_UNSPECIFIED, CommandCore
from services.ipmi.session import PRIV_ADMIN
from services.ipmi.vm_protocol import Dispatch, MachineReset, PeerHello, SystemInterface, VmRequest, Write

log = logging.getLogger("kcs")

CONTROL_GAP = 0.05  # seconds after a control before the next write (QEMU drops the rest of a read)


class KcsConnection:
    """One QEMU connection: reads frames, runs requests one at a time in order
    (QEMU sends the next only after the answer), writes answers."""

    def __init__(self, core: CommandCore, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.core = core
        self.reader = reader
        self.writer = writer
        self.interface = SystemInterface()
        self._work: asyncio.Queue = asyncio.Queue()

    async def run(self) -> None:
        worker = asyncio.create_task(self._worker())
        try:
            while True:
                data = await self.reader.read(4096)
                if not data:
                    break
                try:
                    actions = self.interface.receive(data)
                except Exception:  # a bug must cost these bytes, never the service
                    log.exception("in-band bytes crashed the system interface; dropped")
                    continue
                for action in actions:
                    self._work.put_nowait(action)
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            self.writer.close()

    async def _worker(self) -> None:
        while True:
            action = await self._work.get()
            if isinstance(action, Write):
                await self._write(action)
            elif isinstance(action, Dispatch):
                await self._write(self.interface.respond(action.request, *await self._run(action.request)))
            elif isinstance(action, PeerHello):
                log.info("QEMU connected: protocol version %s, capabilities %s", action.version,
                         ",".join(action.capabilities) or "none")
            elif isinstance(action, MachineReset):
                log.debug("QEMU reports a machine reset")

    async def _run(self, req: VmRequest) -> tuple[int, bytes]:
        try:
            result = self.core.handle_now(req.netfn, req.cmd, req.data, PRIV_ADMIN)
            if result is None:
                result = await self.core.handle(req.netfn, req.cmd, req.data, PRIV_ADMIN)
            return result
        except Exception:
            log.exception("in-band command netfn %#x cmd %#x failed", req.netfn, req.cmd)
            return CC_UNSPECIFIED, b""

    async def _write(self, write: Write) -> None:
        self.writer.write(write.data)
        await self.writer.drain()
        if write.control:
            await asyncio.sleep(CONTROL_GAP)


class KcsServer:
    """Listens on `path` (a stale socket file from an earlier run is replaced)."""

    def __init__(self, core: CommandCore, path: str):
        self.core = core
        self.path = path
        self.connections: set[KcsConnection] = set()
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._server = await asyncio.start_unix_server(self._accept, path=self.path)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = KcsConnection(self.core, reader, writer)
        self.connections.add(connection)
        try:
            await connection.run()
        except (ConnectionError, OSError) as exc:
            log.info("QEMU connection ended: %s", exc)
        finally:
            self.connections.discard(connection)
            log.info("QEMU disconnected (%d requests, %d bad frames)", connection.interface.requests,
                     connection.interface.frame_errors)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for connection in list(self.connections):
                connection.writer.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
