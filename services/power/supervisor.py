"""Start/stop the `qemu` program through supervisord's XML-RPC interface.

QEMU is supervisord's child, not ours: restarting the power agent never kills
the VM. Calls are blocking XML-RPC, so they run in a thread.
"""

from __future__ import annotations

import asyncio
import xmlrpc.client
from dataclasses import dataclass

from supervisor.xmlrpc import SupervisorTransport

QEMU_PROGRAM = "qemu"


class SupervisorError(Exception):
    pass


@dataclass(frozen=True)
class ProcessInfo:
    state: str  # RUNNING, STOPPED, EXITED, STARTING, BACKOFF, FATAL, STOPPING
    pid: int
    exitstatus: int

    @property
    def running(self) -> bool:
        return self.state in ("RUNNING", "STARTING", "STOPPING")


class SupervisorControl:
    def __init__(self, socket_path: str):
        self.url = f"unix://{socket_path}"

    def _proxy(self):
        transport = SupervisorTransport(None, None, serverurl=self.url)
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    async def _call(self, method: str, *args):
        def call():
            try:
                return getattr(self._proxy().supervisor, method)(*args)
            except xmlrpc.client.Fault as fault:
                raise SupervisorError(f"supervisord {method}: {fault.faultString}") from None
            except OSError as exc:
                raise SupervisorError(f"supervisord at {self.url} unreachable: {exc}") from None
        return await asyncio.to_thread(call)

    async def info(self, name: str = QEMU_PROGRAM) -> ProcessInfo:
        raw = await self._call("getProcessInfo", name)
        return ProcessInfo(state=raw["statename"], pid=raw["pid"], exitstatus=raw["exitstatus"])

    async def start(self, name: str = QEMU_PROGRAM) -> None:
        try:
            await self._call("startProcess", name, True)
        except SupervisorError as exc:
            if "ALREADY_STARTED" not in str(exc):
                raise

    async def stop(self, name: str = QEMU_PROGRAM) -> None:
        try:
            await self._call("stopProcess", name, True)
        except SupervisorError as exc:
            if "NOT_RUNNING" not in str(exc):
                raise

    async def state(self) -> str:
        """supervisord's own state: RUNNING, or SHUTDOWN while it stops everything
        (it then refuses every call with SHUTDOWN_STATE, which says the same)."""
        try:
            return (await self._call("getState"))["statename"]
        except SupervisorError as exc:
            if "SHUTDOWN_STATE" in str(exc):
                return "SHUTDOWN"
            raise

    async def all_processes(self) -> list[dict]:
        return await self._call("getAllProcessInfo")
