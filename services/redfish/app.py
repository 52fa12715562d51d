"""The aiohttp edge: routes, authentication, and the bus requests behind each resource.

Handlers stay thin: they gather bus state into a Snapshot, call the pure builders
(resources.py, changes.py) and turn RedfishError into Redfish error bodies.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import json
import logging
import time
from typing import Awaitable, Callable

from aiohttp import web

from bus import Bus, BusError, BusTimeout, BusUnavailable, RemoteError, Subjects
from bus.messages import (BootGet, BootStatus, MediaEject, MediaGet, MediaInsert, MediaStatus, NicPlan, NicsGet,
                          PowerChanged, PowerGet, PowerSet, PowerStatus, UserCheck, UserCheckResult, UserList,
                          UserPasswordSet, UsersGet)
from services.redfish import changes, resources as rs
from services.redfish.auth import SessionTable, allowed, role_of
from services.redfish.events import SSE_KEEPALIVE, EventBuilder, sse_frame
from services.redfish.registry import RedfishError, error_body

log = logging.getLogger("redfish")

PUBLIC = {("GET", "/redfish"), ("GET", f"{rs.V1}"), ("GET", f"{rs.V1}/odata"), ("GET", f"{rs.V1}/$metadata"),
          ("POST", rs.SESSIONS)}
GRACEFUL_RESTART_WAIT = 120.0  # seconds GracefulRestart waits for the guest to power off before giving up
SSE_QUEUE = 256  # events buffered per SSE client; a client this far behind is disconnected
SSE_KEEPALIVE_SECONDS = 15.0
BUS_TIMEOUT = 5.0

MediaFetcher = Callable[[str], Awaitable[str]]  # image (URL or path) -> local path (raises RedfishError)


def _json(body: dict, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json",
                        headers=headers or {})


class RedfishService:
    """Holds the bus, the session table and the SSE clients; builds the aiohttp app."""

    def __init__(self, bus: Bus, subjects: Subjects, info: rs.ServiceInfo, fetch_media: MediaFetcher):
        self.bus = bus
        self.subjects = subjects
        self.info = info
        self.sessions = SessionTable(timeout=info.session_timeout)
        self.events = EventBuilder()
        self.sse_clients: set[asyncio.Queue] = set()
        self.last_power: PowerStatus | None = None
        self.fetch_media = fetch_media
        self.background: set[asyncio.Task] = set()

    # --- bus events -> SSE ------------------------------------------------------

    async def attach(self) -> None:
        await self.bus.subscribe(self.subjects.power_changed, PowerChanged, self._on_power)
        await self.bus.subscribe(self.subjects.media_changed, MediaStatus, self._on_media)
        await self.bus.subscribe(self.subjects.users_changed, UserList, self._on_users)

    async def _on_power(self, event: PowerChanged) -> None:
        self.broadcast(self.events.power_changed(event, time.time()))

    async def _on_media(self, status: MediaStatus) -> None:
        self.broadcast(self.events.media_changed(status, time.time()))

    async def _on_users(self, _users: UserList) -> None:
        self.broadcast(self.events.accounts_changed(time.time()))

    def broadcast(self, event: dict) -> None:
        for queue in list(self.sse_clients):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self.sse_clients.discard(queue)  # too slow: its stream ends, it reconnects afresh

    # --- bus requests -------------------------------------------------------------

    async def _request(self, subject: str, message, reply_type, timeout: float = BUS_TIMEOUT):
        try:
            return await self.bus.request(subject, message, reply_type, timeout)
        except RemoteError as exc:
            raise RedfishError(400, "GeneralError", detail=exc.reply.message) from None
        except (BusUnavailable, BusTimeout) as exc:
            log.warning("%s", exc)
            raise RedfishError(503, "ServiceTemporarilyUnavailable", 5, headers={"Retry-After": "5"},
                               detail=str(exc)) from None
        except BusError as exc:
            raise RedfishError(500, "InternalError", detail=str(exc)) from None

    async def _optional(self, subject: str, message, reply_type, timeout: float = 2.0):
        """State a resource can be shown without (its owner may be restarting)."""
        try:
            return await self.bus.request(subject, message, reply_type, timeout)
        except BusError as exc:
            log.debug("%s: %s", subject, exc)
            return None

    async def power(self) -> PowerStatus | None:
        status = await self._optional(self.subjects.power_get, PowerGet(), PowerStatus)
        if status is not None:
            self.last_power = status
        return status or self.last_power

    async def snapshot(self, boot: bool = False, nics: bool = False, media: bool = False) -> rs.Snapshot:
        snap = rs.Snapshot(power=await self.power())
        if boot:
            snap.boot = await self._optional(self.subjects.boot_get, BootGet(), BootStatus)
        if nics:
            plan = await self._optional(self.subjects.net_nics, NicsGet(), NicPlan)
            snap.nics = sorted(plan.nics, key=lambda n: n.index) if plan else []
        if media:
            status = await self._optional(self.subjects.media_get, MediaGet(), MediaStatus)
            snap.media = status.slots if status else []
        return snap

    async def users(self) -> list:
        return (await self._request(self.subjects.users_get, UsersGet(), UserList)).users

    # --- authentication -----------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        try:
            path = request.path.rstrip("/") or "/"
            # only /redfish is ours to guard: the web console's routes check their own sessions
            public = (request.method, path) in PUBLIC or (request.method == "HEAD" and ("GET", path) in PUBLIC)
            if path.startswith("/redfish") and not public:
                await self._authenticate(request)
            response = await handler(request)
        except RedfishError as exc:
            headers = dict(exc.headers)
            if request.headers.get("X-Requested-With") == "XMLHttpRequest":
                # a page's script handles a 401 itself; a Basic challenge would make the
                # browser put up its own password dialog over it (and hang the request)
                headers.pop("WWW-Authenticate", None)
            response = _json(exc.body, exc.status, headers)
        except web.HTTPMethodNotAllowed as exc:
            response = _json(error_body("OperationNotAllowed"), 405, {"Allow": ",".join(sorted(exc.allowed_methods))})
        except web.HTTPNotFound:
            response = _json(error_body("ResourceNotFound", "Resource", request.path), 404)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            response = _json(error_body("InternalError"), 500)
        response.headers.setdefault("OData-Version", "4.0")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    async def _authenticate(self, request: web.Request) -> None:
        now = time.monotonic()
        token = request.headers.get("X-Auth-Token")
        if token:
            session = self.sessions.by_token(token, now)
            if session is None:
                raise RedfishError(401, "NoValidSession", headers={"WWW-Authenticate": 'Basic realm="qemu-bmc"'})
            request["user"], request["role"], request["session"] = session.user, session.role, session.id
            return
        header = request.headers.get("Authorization", "")
        if header[:6].lower() == "basic ":
            try:
                name, _, password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise RedfishError(401, "NoValidSession",
                                   headers={"WWW-Authenticate": 'Basic realm="qemu-bmc"'}) from None
            role = await self.check_password(name, password, request.remote or "")
            request["user"], request["role"], request["session"] = name, role, None
            return
        raise RedfishError(401, "NoValidSession", headers={"WWW-Authenticate": 'Basic realm="qemu-bmc"'})

    def session_for(self, token: str):
        """The live session of an X-Auth-Token (for the web console), or None."""
        return self.sessions.by_token(token, time.monotonic())

    async def check_password(self, name: str, password: str, peer: str) -> str:
        result = await self._request(self.subjects.users_check, UserCheck(name=name, password=password, peer=peer),
                                     UserCheckResult)
        role = role_of(result.privilege) if result.ok else "NoAccess"
        if not result.ok or role == "NoAccess":
            log.warning("login refused for %r from %s: %s", name, peer, result.reason or "no access")
            raise RedfishError(401, "NoValidSession", headers={"WWW-Authenticate": 'Basic realm="qemu-bmc"'})
        return role

    @staticmethod
    def require(request: web.Request, privilege: str) -> None:
        if not allowed(request.get("role", "NoAccess"), privilege):
            raise RedfishError(403, "InsufficientPrivilege")

    @staticmethod
    async def body(request: web.Request) -> dict:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RedfishError(400, "MalformedJSON") from None
        if not isinstance(body, dict):
            raise RedfishError(400, "MalformedJSON")
        return body

    # --- routes -------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.middleware], client_max_size=64 * 1024)
        v1 = rs.V1

        def get(path: str, build: Callable[[web.Request], Awaitable[dict]]):
            async def handler(request: web.Request) -> web.Response:
                body = await build(request)
                headers = {"ETag": body["@odata.etag"]} if "@odata.etag" in body else {}
                return _json(body, headers=headers)
            add("GET", path, handler)

        def add(method: str, path: str, handler) -> None:
            app.router.add_route(method, path, handler)
            if path != "/redfish" and not path.endswith("/"):
                app.router.add_route(method, path + "/", handler)

        async def const(value):
            return value

        get("/redfish", lambda r: const({"v1": f"{v1}/"}))
        get(v1, lambda r: const(rs.service_root(self.info)))
        get(f"{v1}/odata", lambda r: const(rs.odata_document()))
        add("GET", f"{v1}/$metadata", self.metadata)
        get(f"{v1}/Systems", lambda r: const(rs.collection(f"{v1}/Systems", "ComputerSystemCollection",
                                                             "Computer systems", [rs.SYSTEM])))
        get(rs.SYSTEM, self.get_system)
        add("PATCH", rs.SYSTEM, self.patch_system)
        add("POST", f"{rs.SYSTEM}/Actions/ComputerSystem.Reset", self.reset)
        get(f"{rs.SYSTEM}/EthernetInterfaces", self.get_nics)
        get(f"{rs.SYSTEM}/EthernetInterfaces/{{nic}}", self.get_nic)
        get(f"{rs.SYSTEM}/Processors", lambda r: const(rs.processors(self.info)))
        get(f"{rs.SYSTEM}/Processors/CPU1", self.get_processor)
        get(f"{rs.SYSTEM}/Memory", lambda r: const(rs.memory_collection()))
        get(f"{rs.SYSTEM}/Memory/DIMM1", self.get_memory)
        get(f"{v1}/Chassis", lambda r: const(rs.collection(f"{v1}/Chassis", "ChassisCollection", "Chassis",
                                                             [rs.CHASSIS])))
        get(rs.CHASSIS, self.get_chassis)
        get(f"{v1}/Managers", lambda r: const(rs.collection(f"{v1}/Managers", "ManagerCollection", "Managers",
                                                              [rs.MANAGER])))
        get(rs.MANAGER, lambda r: const(rs.manager(self.info)))
        get(f"{rs.MANAGER}/NetworkProtocol", lambda r: const(rs.network_protocol(self.info)))
        for parent in rs.MEDIA_PARENTS:
            get(f"{parent}/VirtualMedia", lambda r, p=parent: const(rs.virtual_media_collection(p)))
            get(f"{parent}/VirtualMedia/{{media}}", lambda r, p=parent: self.get_media(r, p))
            add("POST", f"{parent}/VirtualMedia/{{media}}/Actions/VirtualMedia.InsertMedia", self.insert_media)
            add("POST", f"{parent}/VirtualMedia/{{media}}/Actions/VirtualMedia.EjectMedia", self.eject_media)
        get(f"{v1}/AccountService", lambda r: const(rs.account_service()))
        get(rs.ACCOUNTS, self.get_accounts)
        get(f"{rs.ACCOUNTS}/{{account}}", self.get_account)
        add("PATCH", f"{rs.ACCOUNTS}/{{account}}", self.patch_account)
        get(rs.ROLES, lambda r: const(rs.roles()))
        get(f"{rs.ROLES}/{{role}}", self.get_role)
        get(f"{v1}/SessionService", lambda r: const(rs.session_service(self.info)))
        get(rs.SESSIONS, self.get_sessions)
        add("POST", rs.SESSIONS, self.create_session)
        get(f"{rs.SESSIONS}/{{session}}", self.get_session)
        add("DELETE", f"{rs.SESSIONS}/{{session}}", self.delete_session)
        get(f"{v1}/EventService", lambda r: const(rs.event_service()))
        get(f"{v1}/EventService/Subscriptions", lambda r: const(rs.subscriptions()))
        add("GET", f"{v1}/EventService/SSE", self.sse)
        return app

    # --- handlers -----------------------------------------------------------------

    async def metadata(self, _request: web.Request) -> web.Response:
        return web.Response(text=rs.metadata_document(), content_type="application/xml")

    async def get_system(self, _request: web.Request) -> dict:
        return rs.system(self.info, await self.snapshot(boot=True))

    async def patch_system(self, request: web.Request) -> web.Response:
        self.require(request, "ConfigureComponents")
        body = await self.body(request)
        snap = await self.snapshot(boot=True)
        changes.check_if_match(request.headers.get("If-Match"), rs.system(self.info, snap)["@odata.etag"])
        current = snap.boot or await self._request(self.subjects.boot_get, BootGet(), BootStatus)
        wanted = changes.boot_change(current, body)
        log.info("boot override %s (persistent %s, EFI %s) by %s", wanted.device, wanted.persistent, wanted.efi,
                 request["user"])
        snap.boot = await self._request(self.subjects.boot_set, wanted, BootStatus)
        self.broadcast(self.events.boot_changed(time.time()))
        resource = rs.system(self.info, snap)
        return _json(resource, headers={"ETag": resource["@odata.etag"]})

    async def reset(self, request: web.Request) -> web.Response:
        self.require(request, "ConfigureComponents")
        reset_type = changes.reset_type(await self.body(request))
        log.info("reset %s by %s", reset_type, request["user"])
        action = rs.RESET_ACTIONS[reset_type]
        if reset_type == "GracefulRestart":
            await self._request(self.subjects.power_set, PowerSet(action="soft", source="redfish"), PowerStatus)
            self._spawn(self._power_on_after_off())
        else:
            await self._request(self.subjects.power_set, PowerSet(action=action, source="redfish"), PowerStatus,
                                timeout=60.0)
        return web.Response(status=204)

    async def _power_on_after_off(self) -> None:
        """GracefulRestart, as BMCs do it: ACPI power button, wait for the guest to be
        off, then power on. A guest that ignores the button stays on (nothing forced)."""
        deadline = time.monotonic() + GRACEFUL_RESTART_WAIT
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            status = await self._optional(self.subjects.power_get, PowerGet(), PowerStatus)
            if status is not None and status.state == "off":
                try:
                    await self.bus.request(self.subjects.power_set, PowerSet(action="on", source="redfish"),
                                           PowerStatus, 60.0)
                except BusError as exc:
                    log.error("GracefulRestart: power on after the shutdown failed: %s", exc)
                return
        log.warning("GracefulRestart: the guest did not power off within %gs; left on", GRACEFUL_RESTART_WAIT)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def get_nics(self, _request: web.Request) -> dict:
        return rs.ethernet_interfaces(await self.snapshot(nics=True))

    async def get_nic(self, request: web.Request) -> dict:
        snap = await self.snapshot(nics=True)
        for nic in snap.nics:
            if rs.nic_id(nic) == request.match_info["nic"]:
                return rs.ethernet_interface(nic)
        raise RedfishError(404, "ResourceNotFound", "EthernetInterface", request.match_info["nic"])

    async def get_processor(self, _request: web.Request) -> dict:
        return rs.processor(await self.snapshot())

    async def get_memory(self, _request: web.Request) -> dict:
        return rs.memory(await self.snapshot())

    async def get_chassis(self, _request: web.Request) -> dict:
        return rs.chassis(self.info, await self.snapshot())

    # --- virtual media --------------------------------------------------------------

    def _media_slot(self, request: web.Request) -> str:
        media_id = request.match_info["media"]
        if media_id not in rs.MEDIA_SLOTS:
            raise RedfishError(404, "ResourceNotFound", "VirtualMedia", media_id)
        return media_id

    async def get_media(self, request: web.Request, parent: str) -> dict:
        media_id = self._media_slot(request)
        snap = await self.snapshot(media=True)
        slot = next((s for s in snap.media if s.slot == rs.MEDIA_SLOTS[media_id]), None)
        return rs.virtual_media(parent, media_id, slot)

    async def insert_media(self, request: web.Request) -> web.Response:
        media_id = self._media_slot(request)
        self.require(request, "ConfigureManager")
        wanted = changes.insert_media(await self.body(request))
        path = await self.fetch_media(wanted.image)  # downloaded, or checked in place
        log.info("insert %s into %s by %s", wanted.image, media_id, request["user"])
        await self._request(self.subjects.media_insert, MediaInsert(path=path, slot=rs.MEDIA_SLOTS[media_id],
                                                                     image_name=wanted.image, source="redfish"),
                            MediaStatus, timeout=30.0)
        return web.Response(status=204)

    async def eject_media(self, request: web.Request) -> web.Response:
        media_id = self._media_slot(request)
        self.require(request, "ConfigureManager")
        if request.can_read_body:
            body = await self.body(request)
            if body:
                raise RedfishError(400, "ActionParameterNotSupported", next(iter(body)), "VirtualMedia.EjectMedia")
        log.info("eject %s by %s", media_id, request["user"])
        await self._request(self.subjects.media_eject, MediaEject(slot=rs.MEDIA_SLOTS[media_id], source="redfish"),
                            MediaStatus, timeout=30.0)
        return web.Response(status=204)

    # --- accounts ---------------------------------------------------------------------

    async def get_accounts(self, _request: web.Request) -> dict:
        return rs.accounts(await self.users())

    async def _account(self, request: web.Request):
        account_id = request.match_info["account"]
        for user in await self.users():
            if str(user.id) == account_id:
                return user
        raise RedfishError(404, "ResourceNotFound", "ManagerAccount", account_id)

    async def get_account(self, request: web.Request) -> dict:
        return rs.account(await self._account(request))

    async def patch_account(self, request: web.Request) -> web.Response:
        user = await self._account(request)
        if user.name != request["user"]:
            self.require(request, "ConfigureUsers")
        else:
            self.require(request, "ConfigureSelf")
        body = await self.body(request)
        changes.check_if_match(request.headers.get("If-Match"), rs.account(user)["@odata.etag"])
        password = changes.password_change(body)
        try:
            reply = await self.bus.request(self.subjects.users_password,
                                           UserPasswordSet(name=user.name, password=password, source="redfish"),
                                           UserList, BUS_TIMEOUT)
        except RemoteError as exc:
            raise RedfishError(400, "PropertyValueFormatError", "(hidden)", "Password",
                               detail=exc.reply.message) from None
        except BusError as exc:
            raise RedfishError(503, "ServiceTemporarilyUnavailable", 5, headers={"Retry-After": "5"},
                               detail=str(exc)) from None
        log.info("password of %r changed by %s", user.name, request["user"])
        updated = next((u for u in reply.users if u.id == user.id), user)
        resource = rs.account(updated)
        return _json(resource, headers={"ETag": resource["@odata.etag"]})

    async def get_role(self, request: web.Request) -> dict:
        role_id = request.match_info["role"]
        if role_id not in rs.ROLE_PRIVILEGES:
            raise RedfishError(404, "ResourceNotFound", "Role", role_id)
        return rs.role(role_id)

    # --- sessions ----------------------------------------------------------------------

    async def get_sessions(self, _request: web.Request) -> dict:
        self.sessions.expire(time.monotonic())
        return rs.sessions(list(self.sessions.sessions))

    def _session_resource(self, session) -> dict:
        created = datetime.datetime.fromtimestamp(session.created, datetime.timezone.utc)
        return rs.session(session.id, session.user, created.isoformat(timespec="seconds"))

    async def get_session(self, request: web.Request) -> dict:
        session = self.sessions.sessions.get(request.match_info["session"])
        if session is None:
            raise RedfishError(404, "ResourceNotFound", "Session", request.match_info["session"])
        return self._session_resource(session)

    async def create_session(self, request: web.Request) -> web.Response:
        body = await self.body(request)
        for key in ("UserName", "Password"):
            if not isinstance(body.get(key), str):
                raise RedfishError(400, "PropertyMissing", key)
        peer = request.remote or ""
        role = await self.check_password(body["UserName"], body["Password"], peer)
        session = self.sessions.create(body["UserName"], role, peer, time.monotonic())
        location = f"{rs.SESSIONS}/{session.id}"
        log.info("session %s opened for %s from %s", session.id, session.user, peer)
        return _json(self._session_resource(session), 201,
                     headers={"X-Auth-Token": session.token, "Location": location})

    async def delete_session(self, request: web.Request) -> web.Response:
        session_id = request.match_info["session"]
        session = self.sessions.sessions.get(session_id)
        if session is None:
            raise RedfishError(404, "ResourceNotFound", "Session", session_id)
        if session.user != request["user"]:
            self.require(request, "ConfigureManager")
        self.sessions.delete(session_id)
        log.info("session %s of %s closed", session_id, session.user)
        return web.Response(status=204)

    # --- events ----------------------------------------------------------------------------

    async def sse(self, request: web.Request) -> web.StreamResponse:
        """EventService SSE: one `data:` line per Redfish Event, a comment every 15 s."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "OData-Version": "4.0"})
        await response.prepare(request)
        queue: asyncio.Queue = asyncio.Queue(SSE_QUEUE)
        self.sse_clients.add(queue)
        try:
            await response.write(SSE_KEEPALIVE)
            while queue in self.sse_clients or not queue.empty():
                try:
                    event = await asyncio.wait_for(queue.get(), SSE_KEEPALIVE_SECONDS)
                except asyncio.TimeoutError:
                    await response.write(SSE_KEEPALIVE)
                    continue
                await response.write(sse_frame(event))
        except ConnectionResetError:
            pass
        finally:
            self.sse_clients.discard(queue)
        return response
