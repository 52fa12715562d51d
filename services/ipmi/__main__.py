"""`qemu-bmc-ipmi`: the IPMI-over-LAN front end program run by supervisord."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from services.lean import leave_out_aiohttp

leave_out_aiohttp()  # before bus (and so nats-py) is imported

import msgspec
import nats.js.errors

from bus import ConfigError, Subjects, connect, key_value
from bus.logs import setup_logging
from bus.program import run_service, stop_requested
from bus.messages import IpmiDropped, IpmiSessionEvent, IpmiStats, PowerChanged, StatsGet, VmEvent
from services.ipmi.backend import BusBackend
from services.ipmi.bmc import build_core
from services.ipmi.commands import DeviceIdentity, guid_wire
from services.ipmi.config import FIRMWARE_VERSION, ipmi_config_from_env
from services.ipmi.lan import LanEndpoint, SessionNote, privilege_name
from services.ipmi.server import IpmiDatagramServer
from services.ipmi.kcs_server import KcsServer
from services.ipmi.fru import FruInfo, build_fru
from services.ipmi.sel import (EVENT_AUTH_FAILURE, EVENT_CRASH, EVENT_GUEST_RESTART, EVENT_HARD_RESET,
                               EVENT_POWER_OFF, EVENT_POWER_ON, PersistedSel, SelLog)
from services.ipmi.users import PersistedUsers
from services.ipmi.user_bus import UserBus
from qemu_bmc import __version__

USERS_KEY = "users"
USERS_WAIT = 10.0  # seconds new sessions wait for the persisted users at start
SEL_KEY = "sel"

log = setup_logging("ipmi")


async def run() -> None:
    config = ipmi_config_from_env()
    for warning in config.warnings:
        log.warning("%s", warning)
    subjects = Subjects(config.bus.node)
    backend = BusBackend(subjects)
    system_guid = guid_wire(config.system_guid())
    identity = DeviceIdentity(device_id=0x20, device_revision=1, firmware=FIRMWARE_VERSION,
                              manufacturer_id=config.manufacturer_id, product_id=config.product_id,
                              system_guid=system_guid, device_guid=guid_wire(config.device_guid()))
    endpoint = LanEndpoint(config.users, system_guid, config.suites, config.session_limit,
                           config.session_timeout, config.v15_auth_types, config.auth_failure_limit)
    kv_holder: list = []

    async def save_users() -> None:
        """Users are the IPMI service's state: persisted in its key-value bucket."""
        if not kv_holder:
            log.warning("user change not persisted yet: the bus is not connected")
            return
        try:
            await kv_holder[0].put(USERS_KEY, msgspec.json.encode(config.users.to_record()))
        except Exception as exc:
            log.error("could not persist users: %s", exc)
        await user_bus.announce()

    sel = SelLog()

    async def save_sel() -> None:
        if not kv_holder:
            return
        try:
            await kv_holder[0].put(SEL_KEY, msgspec.json.encode(sel.to_record()))
        except Exception as exc:
            log.error("could not persist the SEL: %s", exc)

    fru = build_fru(FruInfo.from_env(os.environ, config.bus.node, __version__))
    endpoint.sol_settings.port = config.sol_port
    core = build_core(identity, backend, config.users, save_users, sel, save_sel, fru,
                      config.lan_interface, config.suites, config.v15_auth_types, endpoint.sol_settings)
    core.active_sessions = lambda: len(endpoint.sessions)

    def restart_service() -> None:
        log.info("cold/warm reset: restarting the IPMI service")
        os.execv(sys.argv[0], sys.argv)

    core.on_reset = lambda: asyncio.get_running_loop().call_later(0.3, restart_service)
    notes: asyncio.Queue[SessionNote] = asyncio.Queue(maxsize=1024)

    def on_note(note: SessionNote) -> None:
        # every session is an event on the bus; the log keeps the failures (Ironic
        # opens a session a minute per node: INFO for each would drown the rest)
        level = logging.WARNING if note.what == "auth-failed" else logging.DEBUG
        log.log(level, "session %s: %s from %s:%s%s", note.what, note.user or "-", note.peer[0], note.peer[1],
                f" ({privilege_name(note.privilege)}, suite {note.cipher_suite})" if note.what == "opened" else "")
        if not notes.full():
            notes.put_nowait(note)

    user_bus = UserBus(config.users, endpoint, save_users, on_note)  # users.* for Redfish and others

    async def publish_notes(bus) -> None:
        while True:
            note = await notes.get()
            if note.what == "auth-failed":
                sel.add_event(EVENT_AUTH_FAILURE)
                await save_sel()
            await bus.publish(subjects.ipmi_session, IpmiSessionEvent(
                what=note.what, peer=f"{note.peer[0]}:{note.peer[1]}", user=note.user,
                privilege=privilege_name(note.privilege) if note.privilege else "",
                cipher_suite=note.cipher_suite))

    async def stats(_req: StatsGet) -> IpmiStats:
        return IpmiStats(datagrams=endpoint.datagrams, dropped=dict(endpoint.dropped),
                         sessions_active=len(endpoint.sessions), sessions_opened=endpoint.sessions_opened,
                         auth_failures=endpoint.auth_failures)

    async def report_drops(bus) -> None:
        """Dropped datagrams, by reason, as an event when the counts moved (at most every 5 s)."""
        last: dict[str, int] = {}
        while True:
            await asyncio.sleep(5)
            now = dict(endpoint.dropped)
            if now != last:
                await bus.publish(subjects.ipmi_dropped, IpmiDropped(counts=now, total=sum(now.values())))
                last = now

    # listen first: the BMC answers IPMI even before (or without) the bus
    loop = asyncio.get_running_loop()
    bus_holder: list = []

    def console_input(data: bytes) -> None:
        if bus_holder:
            task = asyncio.create_task(bus_holder[0].publish(subjects.console_in, data))
            background.append(task)
            task.add_done_callback(background.remove)

    def serial_break() -> None:
        if bus_holder:
            task = asyncio.create_task(bus_holder[0].publish(subjects.console_break, b""))
            background.append(task)
            task.add_done_callback(background.remove)

    server = IpmiDatagramServer(endpoint, core, on_note, console_input, serial_break)
    try:
        transport, _ = await loop.create_datagram_endpoint(lambda: server, local_addr=(config.listen, config.port))
    except OSError as exc:
        # exit 1 (supervisord retries): the port may be free again in a moment
        log.error("cannot listen on %s:%d/udp: %s (IPMI_LISTEN/IPMI_PORT)", config.listen, config.port, exc)
        raise SystemExit(1) from None
    log.info("listening on %s:%d/udp, cipher suites %s, session limit %d", config.listen, config.port,
             ",".join(map(str, config.suites)), config.session_limit)
    background = [asyncio.create_task(server.expire_loop()), asyncio.create_task(server.sol_loop())]
    kcs = None
    if config.kcs_socket:  # in-band IPMI (the guest's KCS interface), also before the bus
        kcs = KcsServer(core, config.kcs_socket)
        try:
            await kcs.start()
        except OSError as exc:
            raise ConfigError("RUN_DIR", f"cannot listen on {config.kcs_socket} for in-band IPMI: {exc} "
                                         "(or set VM_IPMI_KCS=off)") from None
        log.info("in-band IPMI (KCS) on %s", config.kcs_socket)
    endpoint.accepting_sessions = False

    def accept_sessions_anyway() -> None:
        if not endpoint.accepting_sessions:
            log.warning("the bus is not there: sessions use the configured users until it is")
            endpoint.accepting_sessions = True

    loop.call_later(USERS_WAIT, accept_sessions_anyway)
    bus = await connect(config.bus.nats_url, "ipmi", wait=float("inf"))
    await backend.attach(bus)
    bus_holder.append(bus)

    async def guest_output(msg) -> None:
        server.console_output(msg.data)

    await bus.subscribe_raw(subjects.console_out, guest_output)
    kv = await key_value(bus, "qemu_bmc_ipmi")
    try:
        entry = await kv.get(USERS_KEY)
        config.users.restore(msgspec.json.decode(entry.value, type=PersistedUsers))
    except nats.js.errors.KeyNotFoundError:
        pass
    except msgspec.DecodeError as exc:
        log.error("persisted users unreadable (%s); using the configured ones", exc)
    kv_holder.append(kv)
    await user_bus.attach(bus, subjects)
    await save_users()
    endpoint.accepting_sessions = True
    try:
        sel.restore(msgspec.json.decode((await kv.get(SEL_KEY)).value, type=PersistedSel))
    except nats.js.errors.KeyNotFoundError:
        pass
    except msgspec.DecodeError as exc:
        log.error("persisted SEL unreadable (%s); starting an empty one", exc)

    async def log_power(event: PowerChanged) -> None:
        if event.cause in ("crashed", "guest-panic"):
            sel.add_event(EVENT_CRASH)
        sel.add_event(EVENT_POWER_ON if event.state == "on" else EVENT_POWER_OFF)
        await save_sel()

    async def log_reset(event: VmEvent) -> None:
        if event.event == "RESET":
            sel.add_event(EVENT_GUEST_RESTART if event.guest else EVENT_HARD_RESET)
            await save_sel()

    await bus.subscribe(subjects.power_changed, PowerChanged, log_power)
    await bus.subscribe(subjects.vm_event, VmEvent, log_reset)
    background.append(asyncio.create_task(report_drops(bus)))
    log.info("users: %s", ", ".join(f"{u.slot}:{u.name.decode(errors='replace')}"
                                    for u in sorted(config.users.slots.values(), key=lambda u: u.slot)
                                    if u.name and u.enabled))
    await bus.serve(subjects.ipmi_stats, StatsGet, stats)
    background.append(asyncio.create_task(publish_notes(bus)))
    await stop_requested()
    for task in background:
        task.cancel()
    transport.close()
    if kcs is not None:
        await kcs.close()
    await bus.close()


def main() -> None:
    run_service(run, log)


if __name__ == "__main__":
    main()
