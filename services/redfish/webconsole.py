"""The web console on the Redfish port: a status page, noVNC for the guest's screen
and a serial text view, behind the same sessions as Redfish.

The page logs in with a Redfish session (POST SessionService/Sessions) and keeps
the token in a cookie scoped to /console, so the two WebSockets can be opened by
the browser without putting the token in a URL (URLs end up in logs):
- /console/vnc: binary frames <-> QEMU's VNC port (what websockify does), for noVNC;
- /console/serial: the console history, then live console.out; text typed goes to
  console.in.
Both need the Operator role or more (ConfigureComponents), as a KVM would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Callable

from aiohttp import WSMsgType, web

from bus import Bus, Subjects
from services.redfish.auth import Session, allowed

log = logging.getLogger("webconsole")

STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")
TOKEN_COOKIE = "qemu_bmc_token"
CONSOLE_PRIVILEGE = "ConfigureComponents"
HISTORY_FIRST = 16 * 1024  # what a new serial view shows before live output


class WebConsole:
    def __init__(self, bus: Bus, subjects: Subjects, vnc_port: int, novnc_dir: str,
                 session_for: Callable[[str], Session | None], vnc_host: str = "127.0.0.1"):
        self.bus = bus
        self.subjects = subjects
        self.vnc_host, self.vnc_port = vnc_host, vnc_port
        self.novnc_dir = novnc_dir
        self.session_for = session_for
        self.viewers: set[web.WebSocketResponse] = set()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.redirect)
        app.router.add_get("/console", self.page)
        app.router.add_get("/console/", self.redirect)
        app.router.add_get("/console/app.js", self.script)
        app.router.add_get("/console/vnc", self.vnc)
        app.router.add_get("/console/serial", self.serial)
        if os.path.isdir(self.novnc_dir):
            app.router.add_static("/console/novnc/", self.novnc_dir, follow_symlinks=False)
        else:
            log.warning("noVNC is not at %s (NOVNC_DIR): the web console shows no screen", self.novnc_dir)

    async def redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/console")

    async def page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(os.path.join(STATIC_DIR, "console.html"),
                                headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})

    async def script(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(os.path.join(STATIC_DIR, "console.js"), headers={"Cache-Control": "no-store"})

    def _authorise(self, request: web.Request) -> Session:
        token = request.cookies.get(TOKEN_COOKIE, "") or request.headers.get("X-Auth-Token", "")
        session = self.session_for(token) if token else None
        if session is None:
            raise web.HTTPUnauthorized(text="log in first (a Redfish session)")
        if not allowed(session.role, CONSOLE_PRIVILEGE):
            raise web.HTTPForbidden(text=f"the {session.role} role may not use the console")
        return session

    async def vnc(self, request: web.Request) -> web.WebSocketResponse:
        session = self._authorise(request)
        try:
            reader, writer = await asyncio.open_connection(self.vnc_host, self.vnc_port)
        except OSError as exc:
            raise web.HTTPBadGateway(text=f"the VM's VNC server does not answer: {exc.strerror}") from None
        # noVNC asks for the "binary" subprotocol
        ws = web.WebSocketResponse(protocols=("binary",), max_msg_size=4 * 1024 * 1024)
        await ws.prepare(request)
        log.info("VNC viewer %s (%s) connected", session.user, request.remote)

        async def vnc_to_browser() -> None:
            while data := await reader.read(65536):
                await ws.send_bytes(data)

        pump = asyncio.create_task(vnc_to_browser())
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    writer.write(msg.data)
                    await writer.drain()
                elif msg.type == WSMsgType.ERROR:
                    break
        except ConnectionError:
            pass
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await pump
            writer.close()
            await ws.close()
            log.info("VNC viewer %s (%s) left", session.user, request.remote)
        return ws

    async def serial(self, request: web.Request) -> web.WebSocketResponse:
        self._authorise(request)
        ws = web.WebSocketResponse(max_msg_size=64 * 1024)
        await ws.prepare(request)
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1024)

        async def on_output(msg) -> None:
            with contextlib.suppress(asyncio.QueueFull):  # a stalled browser loses output, not the service
                queue.put_nowait(msg.data)

        sub = await self.bus.subscribe_raw(self.subjects.console_out, on_output)
        try:
            with contextlib.suppress(Exception):  # no history is no reason not to show the live console
                reply = await self.bus.nc.request(self.subjects.console_history,
                                                  b'{"max_bytes": %d}' % HISTORY_FIRST, timeout=3)
                await ws.send_bytes(reply.data)

            async def to_browser() -> None:
                while True:
                    await ws.send_bytes(await queue.get())

            pump = asyncio.create_task(to_browser())
            try:
                async for msg in ws:
                    if msg.type == WSMsgType.TEXT:
                        await self.bus.publish(self.subjects.console_in, msg.data.encode())
                    elif msg.type == WSMsgType.BINARY:
                        await self.bus.publish(self.subjects.console_in, msg.data)
            finally:
                pump.cancel()
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return ws
