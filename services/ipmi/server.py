"""The asyncio edge of the IPMI front end: a UDP socket, the sans-IO endpoint,
and tasks that run commands. Nothing protocol-specific happens here."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from services.ipmi.commands import CC_UNSPECIFIED, CommandCore
from services.ipmi.lan import ConsoleInput, Dispatch, LanEndpoint, Send, SerialBreak, SessionNote

log = logging.getLogger("server")


class IpmiDatagramServer(asyncio.DatagramProtocol):
    def __init__(self, endpoint: LanEndpoint, core: CommandCore,
                 on_note: Callable[[SessionNote], None] = lambda note: None,
                 on_console_input: Callable[[bytes], None] = lambda data: None,
                 on_break: Callable[[], None] = lambda: None):
        self.endpoint = endpoint
        self.core = core
        self.on_note = on_note
        self.on_console_input = on_console_input
        self.on_break = on_break
        self._sol_wakeup = asyncio.Event()
        self.transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task] = set()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            actions = self.endpoint.datagram(data, addr, time.monotonic())
        except Exception:  # a bug must cost one datagram, never the service
            log.exception("datagram from %s crashed the endpoint; dropped", addr)
            self.endpoint.dropped["internal-error"] += 1
            return
        self._perform(actions)

    def _perform(self, actions: list) -> None:
        for action in actions:
            if isinstance(action, Send):
                self.transport.sendto(action.data, action.peer)
            elif isinstance(action, Dispatch):
                self._dispatch(action)
            elif isinstance(action, SessionNote):
                self.on_note(action)
            elif isinstance(action, ConsoleInput):
                self.on_console_input(action.data)
            elif isinstance(action, SerialBreak):
                self.on_break()
        if self.endpoint.sol is not None:
            self._sol_wakeup.set()

    def console_output(self, data: bytes) -> None:
        """Guest output from the bus: on to the active SOL console, if any."""
        try:
            self._perform(self.endpoint.sol_output(data, time.monotonic()))
        except Exception:
            log.exception("SOL output failed")

    async def sol_loop(self) -> None:
        """Retransmit unacknowledged SOL data on time; sleeps while no SOL is active."""
        while True:
            if self.endpoint.sol is None:
                self._sol_wakeup.clear()
                await self._sol_wakeup.wait()
                continue
            deadline = self.endpoint.sol.next_deadline()
            delay = 0.05 if deadline is None else max(0.0, deadline - time.monotonic())
            await asyncio.sleep(min(delay, 0.05))
            try:
                self._perform(self.endpoint.sol_tick(time.monotonic()))
            except Exception:
                log.exception("SOL tick failed")

    def _dispatch(self, dispatch: Dispatch) -> None:
        """Most commands never wait on anything: answer those in place, and give a
        task only to the ones that do (a bus request, a persisted change)."""
        req = dispatch.request
        try:
            result = self.core.handle_now(req.netfn, req.cmd, req.data, dispatch.privilege)
        except Exception:
            log.exception("command netfn %#x cmd %#x failed", req.netfn, req.cmd)
            result = (CC_UNSPECIFIED, b"")
        if result is not None:
            self._answer(dispatch, *result)
            return
        task = asyncio.create_task(self._run(dispatch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _answer(self, dispatch: Dispatch, completion: int, data: bytes) -> None:
        send = self.endpoint.respond(dispatch, completion, data, time.monotonic())
        if send is not None and self.transport is not None:
            self.transport.sendto(send.data, send.peer)

    async def _run(self, dispatch: Dispatch) -> None:
        req = dispatch.request
        try:
            completion, data = await self.core.handle(req.netfn, req.cmd, req.data, dispatch.privilege)
        except Exception:
            log.exception("command netfn %#x cmd %#x failed", req.netfn, req.cmd)
            completion, data = CC_UNSPECIFIED, b""
        send = self.endpoint.respond(dispatch, completion, data, time.monotonic())
        if send is not None and self.transport is not None:
            self.transport.sendto(send.data, send.peer)

    def error_received(self, exc: Exception) -> None:
        log.debug("socket error: %s", exc)

    async def expire_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for note in self.endpoint.expire(time.monotonic()):
                self.on_note(note)
