"""The power agent: the one owner of the VM's power state and boot device.

Current state comes only from QEMU (supervisord says the process runs, QMP
answers query-status), never from what was last asked. Requests are served
one at a time; QEMU's own events (guest poweroff, reboot, crash) arrive on a
watcher task and are published as facts with their cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import time

import msgspec
from qemu.qmp import ConnectError, EventListener, ExecuteError, QMPClient, Runstate, StateError

from bus import Bus, BusError, Subjects
from bus.messages import (BootGet, BootSet, BootStatus, ErrorReply, Message, PowerChanged,
                          PowerGet, PowerSet, PowerStatus, RestorePolicySet, VmEvent)
from bus.messages import Nic, NicPlan, NicsGet
from bus.messages import MediaEject, MediaGet, MediaInsert
from services.power.media import (InsertedMedia, MediaError, allowed_media_dirs, change_medium_args,
                                  check_image_path, eject_args, media_status)
from services.power.config import PowerConfig
from services.power.launch import write_plan
from services.power.qemu_command import VIRTUAL_CD_DEVICE
from services.power.qemu_command import (BootChoice, RuntimePaths, VmNic, build_argv, device_options,
                                         netdev_options, nic_fds, nic_ports)
from services.power.supervisor import ProcessInfo, SupervisorControl, SupervisorError

log = logging.getLogger("agent")

RESTORE_MARKER = "power-restored"  # in RUN_DIR: the restore policy ran for this container start
STATE_KEY = "power"
QMP_CONNECT_TIMEOUT = 15.0
CYCLE_OFF_INTERVAL = 1.0
CONSOLE_ATTACH_WAIT = 3.0  # how long a new VM waits, paused, for the console relay
# causes that follow a power request, and the request's action
ACTION_BY_CAUSE = {"power-on": "on", "power-off": "off", "power-cycle": "cycle", "soft-off": "soft"}  # IPMI: power cycle keeps power off for at least 1 s


NICS_FILE = "vm-nics.json"  # in RUN_DIR: the running VM's NICs and root ports
NET_SERVICE_WAIT = 15.0  # a power-on waits this long for a net service that has not answered yet
NET_WAIT_MARGIN = 5.0  # on top of NET_WAIT_TIMEOUT, which net counts from its own start
NIC_UNPLUG_TIMEOUT = 20.0  # the guest acknowledges a PCI unplug (ACPI or PCIe native hot-plug)


def _vm_nic(nic: Nic) -> VmNic:
    return VmNic(ifname=nic.ifname, mac=nic.mac, mtu=nic.mtu, tap=nic.tap, tap_device=nic.tap_device)


async def _wait_event(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(event.wait(), max(0.0, timeout))


class PowerError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class PersistedPower(msgspec.Struct, kw_only=True):
    """What the power agent keeps in its key-value bucket."""

    v: int = 1
    last_state: str = "off"
    boot_device: str = "none"
    boot_persistent: bool = False
    boot_efi: bool = False
    restore_policy: str = ""  # set over IPMI/Redfish; "" means: POWER_RESTORE_POLICY
    restore_policy_env: str = ""  # POWER_RESTORE_POLICY when the policy was last set
    media_path: str = ""  # the image in the virtual CD until ejected ("" = empty)
    media_image_name: str = ""  # what the user named it (URL or file name)


class PowerAgent:
    def __init__(self, config: PowerConfig, bus: Bus, supervisor: SupervisorControl, kv):
        self.config = config
        self.bus = bus
        self.subjects = Subjects(config.bus.node)
        self.supervisor = supervisor
        self.kv = kv
        run = config.bus.run_dir
        self.paths = RuntimePaths(
            qmp_socket=os.path.join(run, "qmp.sock"),
            serial_socket=os.path.join(run, "serial.sock"),
            console_log=os.path.join(config.bus.log_dir, "console.raw.log"),
            vnc_secret_file=os.path.join(run, "vnc-password"),
            efi_vars=os.path.join(config.bus.state_dir, "efi-vars.fd"),
            ipmi_socket=os.path.join(run, "ipmi-kcs.sock"),  # the IPMI service listens there
        )
        self.state = "off"
        self.last_cause = ""
        self.since = time.time()
        self.persisted = PersistedPower()
        self._lock = asyncio.Lock()
        self._qmp: QMPClient | None = None
        self._watcher: asyncio.Task | None = None
        self._expected_exit: str | None = None  # cause to report when QEMU exits because we asked
        self._soft_off_requested = False
        self._shutdown_reason: str | None = None
        self._background: set[asyncio.Task] = set()
        self._booted_with: tuple[str, bool] = ("none", False)  # boot device and EFI flag QEMU started with
        self.container_stopping = False  # set by shutdown_guest: power changes now are not the user's
        self._init_nics()
        self.media_dirs = allowed_media_dirs(config.bus.state_dir, config.media_dir)

    # --- start-up ------------------------------------------------------------

    async def start(self) -> None:
        await self._load()
        info = await self.supervisor.info()
        if info.running:
            # power agent restarted under a running VM: re-attach, touch nothing
            await self._attach()
            self.state, self.last_cause = "on", "re-attached"
            log.info("re-attached to running QEMU (pid %s)", info.pid)
        s = self.subjects
        await self.bus.serve(s.power_set, PowerSet, self.handle_power_set)
        await self.bus.serve(s.power_get, PowerGet, self.handle_power_get)
        await self.bus.serve(s.boot_set, BootSet, self.handle_boot_set)
        await self.bus.serve(s.boot_get, BootGet, self.handle_boot_get)
        await self.bus.serve(s.power_policy, RestorePolicySet, self.handle_policy_set)
        await self.bus.subscribe_raw(s.console_break, self.handle_serial_break)
        await self.bus.serve(s.media_insert, MediaInsert, self.handle_media_insert)
        await self.bus.serve(s.media_eject, MediaEject, self.handle_media_eject)
        await self.bus.serve(s.media_get, MediaGet, self.handle_media_get)
        await self._start_nics()
        marker = os.path.join(self.config.bus.run_dir, RESTORE_MARKER)
        if not os.path.exists(marker):
            open(marker, "w").close()
            if not info.running:
                await self._apply_restore_policy("restore-policy")

    async def _load(self) -> None:
        try:
            entry = await self.kv.get(STATE_KEY)
            self.persisted = msgspec.json.decode(entry.value, type=PersistedPower)
        except Exception as exc:  # missing key or unreadable record: start from defaults
            if exc.__class__.__name__ != "KeyNotFoundError":
                log.warning("persisted power state unreadable (%s); using defaults", exc)

    async def _save(self) -> None:
        try:
            await self.kv.put(STATE_KEY, msgspec.json.encode(self.persisted))
        except Exception as exc:
            log.error("could not persist power state: %s", exc)

    @property
    def restore_policy(self) -> str:
        """The persisted choice wins until POWER_RESTORE_POLICY itself changes."""
        p = self.persisted
        if p.restore_policy and p.restore_policy_env == self.config.restore_policy:
            return p.restore_policy
        return self.config.restore_policy

    async def handle_policy_set(self, req: RestorePolicySet) -> Message:
        async with self._lock:
            self.persisted.restore_policy = req.policy
            self.persisted.restore_policy_env = self.config.restore_policy
            await self._save()
        log.info("power restore policy set to %s", req.policy)
        return await self.status()

    async def _apply_restore_policy(self, cause: str) -> None:
        policy = self.restore_policy
        want_on = policy == "always-on" or (policy == "previous" and self.persisted.last_state == "on")
        log.info("power restore policy %s (last state %s): %s", policy,
                 self.persisted.last_state, "powering on" if want_on else "staying off")
        if want_on:
            async with self._lock:
                try:
                    await self._power_on(cause)
                except Exception as exc:  # the agent must survive a failed power-on
                    log.error("restore policy could not power on: %s", exc)

    # --- bus handlers --------------------------------------------------------

    async def handle_power_get(self, _req: PowerGet) -> Message:
        return await self.status()

    async def handle_power_set(self, req: PowerSet) -> Message:
        log.info("power %s requested%s", req.action, f" by {req.source}" if req.source else "")
        async with self._lock:
            try:
                await self._do(req.action)
            except PowerError as exc:
                log.warning("power %s refused: %s", req.action, exc)
                return ErrorReply(code=exc.code, message=str(exc))
        return await self.status()

    async def handle_serial_break(self, _msg) -> None:
        """A break on the guest's serial port (SOL asked for it); QMP owns the chardev."""
        if self._qmp is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._qmp.execute("chardev-send-break", {"id": "serial0"}), 2)

    async def handle_boot_get(self, _req: BootGet) -> Message:
        return self._boot_status()

    async def handle_boot_set(self, req: BootSet) -> Message:
        async with self._lock:
            self.persisted.boot_device = req.device
            self.persisted.boot_persistent = req.persistent
            self.persisted.boot_efi = req.efi
            await self._save()
        log.info("boot device %s (%s, %s) for the next power-on", req.device,
                 "persistent" if req.persistent else "once", "efi" if req.efi else "legacy")
        return self._boot_status()

    def _boot_status(self) -> BootStatus:
        p = self.persisted
        return BootStatus(device=p.boot_device, persistent=p.boot_persistent, efi=p.boot_efi)

    async def status(self) -> PowerStatus:
        vm_status = "stopped"
        if self.state == "on" and self._qmp is not None:
            with contextlib.suppress(Exception):
                result = await asyncio.wait_for(self._qmp.execute("query-status"), 2)
                vm_status = result["status"]
        return PowerStatus(state=self.state, vm_status=vm_status,
                           restore_policy=self.restore_policy,
                           last_cause=self.last_cause, since=self.since,
                           vcpus=self.config.vm.cpus, memory_mib=self.config.vm.memory_mib)

    # --- actions (called with the lock held) ---------------------------------

    async def _do(self, action: str) -> None:
        if action == "on":
            await self._power_on("power-on")
        elif action == "off":
            await self._power_off("power-off")
        elif action == "soft":
            if self.state == "on":
                self._soft_off_requested = True
                await self._qmp_execute("system_powerdown")
        elif action == "reset":
            self._require_on(action)
            if self._boot_override_pending():
                # QEMU fixes its boot order at start: a reset that must boot
                # another device restarts QEMU, without the cycle's pause
                await self._power_off("reset")
                await self._power_on("reset")
            else:
                await self._qmp_execute("system_reset")
        elif action == "nmi":
            self._require_on(action)
            await self._qmp_execute("inject-nmi")
        elif action == "cycle":
            self._require_on(action)
            await self._power_off("power-cycle")
            await asyncio.sleep(CYCLE_OFF_INTERVAL)
            await self._power_on("power-cycle")
        else:  # the message type already limits this; keep the guard for other speakers
            raise PowerError("bad-action", f"unknown power action {action!r}")

    def _boot_override_pending(self) -> bool:
        return (self.persisted.boot_device, self.persisted.boot_efi) != self._booted_with

    def _require_on(self, action: str) -> None:
        if self.state != "on":
            raise PowerError("powered-off", f"power {action} needs the server powered on")

    async def _qmp_execute(self, command: str):
        if self._qmp is None:
            raise PowerError("qmp-unavailable", "no QMP connection to QEMU")
        try:
            return await asyncio.wait_for(self._qmp.execute(command), 5)
        except (ExecuteError, StateError, asyncio.TimeoutError, ConnectionError, EOFError) as exc:
            raise PowerError("qmp-failed", f"QMP {command} failed: {exc}") from None

    async def _power_on(self, cause: str) -> None:
        if self.state == "on":
            return
        boot = BootChoice(self.persisted.boot_device, self.persisted.boot_efi, self.persisted.boot_persistent)
        nics, ports = await self._nics_for_power_on()
        argv = build_argv(self.config.vm, self.paths, boot, self.config.bus.node, nics, ports,
                          media=await self._media_for_power_on())
        if self.config.vm.vnc_password:
            fd = os.open(self.paths.vnc_secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self.config.vm.vnc_password)
        os.makedirs(os.path.dirname(self.paths.console_log), exist_ok=True)
        write_plan(self.config.bus.run_dir, argv, nic_fds(nics))
        self._expected_exit = None
        self._soft_off_requested = False
        self._shutdown_reason = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.paths.qmp_socket)  # a stale socket would look like a live QEMU
        attached = asyncio.Event()

        async def on_attached(_msg) -> None:
            attached.set()

        subscription = await self.bus.subscribe_raw(self.subjects.console_attached, on_attached)
        try:
            try:
                await self.supervisor.start()
            except SupervisorError as exc:
                raise PowerError("qemu-failed", f"could not start QEMU: {exc}") from None
            await self._attach()
            # QEMU starts paused (-S): let it run once the console relay reads the
            # serial port, so the first line the guest prints reaches every viewer
            try:
                await asyncio.wait_for(attached.wait(), CONSOLE_ATTACH_WAIT)
            except asyncio.TimeoutError:
                log.warning("console relay not attached after %gs; starting the VM anyway", CONSOLE_ATTACH_WAIT)
            await self._qmp_execute("cont")
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        self._booted_with = (boot.device, boot.efi)
        if boot.device != "none" and not self.persisted.boot_persistent:
            self.persisted.boot_device = "none"  # a one-time choice is used up by this boot
            self.persisted.boot_efi = False  # (the whole of it: the next boot is the default one)
        self.persisted.last_state = "on"
        await self._save()
        await self._changed("on", cause)

    async def _power_off(self, cause: str) -> None:
        if self.state == "off":
            return
        self._expected_exit = cause
        try:
            await self.supervisor.stop()
        except SupervisorError as exc:
            raise PowerError("qemu-failed", f"could not stop QEMU: {exc}") from None
        if self._watcher is not None:
            await asyncio.shield(self._watcher)
        self.persisted.last_state = "off"
        await self._save()

    # --- QMP ----------------------------------------------------------------

    async def _attach(self) -> None:
        """Connect QMP to the running QEMU, waiting for its socket to appear."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + QMP_CONNECT_TIMEOUT
        while True:
            qmp = QMPClient(self.config.bus.node)
            try:
                await qmp.connect(self.paths.qmp_socket)
                break
            except ConnectError as exc:
                info = await self.supervisor.info()
                if not info.running:
                    raise PowerError("qemu-failed", f"QEMU exited at start (status {info.exitstatus}); "
                                     "see the qemu: lines in the log") from None
                if loop.time() > deadline:
                    await self.supervisor.stop()
                    raise PowerError("qemu-failed", f"QMP did not answer within "
                                     f"{QMP_CONNECT_TIMEOUT:g}s: {exc}") from None
                await asyncio.sleep(0.05)
        self._qmp = qmp
        self._watcher = asyncio.create_task(self._watch(qmp))

    async def _watch(self, qmp: QMPClient) -> None:
        """Forward QMP events until QEMU goes away, then report why it went."""
        pump = asyncio.create_task(self._pump_events(qmp))
        try:
            while qmp.runstate == Runstate.RUNNING:
                await qmp.runstate_changed()
        finally:
            pump.cancel()
            with contextlib.suppress(Exception):
                await qmp.disconnect()
        self._qmp = None
        await self._qemu_gone()

    async def _pump_events(self, qmp: QMPClient) -> None:
        async for event in qmp.events:
            name = event["event"]
            data = dict(event.get("data", {}))
            guest = bool(data.get("guest", False))
            if name == "SHUTDOWN":
                self._shutdown_reason = data.get("reason")
            log.info("QMP event %s %s", name, data or "")
            await self.bus.publish(self.subjects.vm_event, VmEvent(event=name, data=data, guest=guest))

    async def _qemu_gone(self) -> None:
        # QMP hung up; the process may take a moment to be reaped by supervisord
        for _ in range(100):
            try:
                info = await self.supervisor.info()
            except SupervisorError:  # supervisord shutting down takes no calls: QMP's word stands
                info = ProcessInfo(state="EXITED", pid=0, exitstatus=0)
            if not info.running:
                break
            await asyncio.sleep(0.05)
        else:
            log.warning("QMP closed but QEMU still runs; re-attaching")
            with contextlib.suppress(PowerError):
                await self._attach()
                return
        reason = self._shutdown_reason
        if self._expected_exit:
            cause = self._expected_exit
        elif reason == "guest-shutdown":
            cause = "soft-off" if self._soft_off_requested else "guest-poweroff"
        elif reason == "guest-panic":
            cause = "guest-panic"
        elif reason == "host-qmp-quit":
            cause = "qmp-quit"
        else:
            cause = "crashed"
        self._watcher = None
        await self._changed("off", cause)
        if cause in ("soft-off", "guest-poweroff", "qmp-quit") and not self.container_stopping:
            self.persisted.last_state = "off"
            await self._save()
        if cause == "crashed":
            log.error("QEMU exited unexpectedly (status %s)", info.exitstatus)
            task = asyncio.create_task(self._apply_restore_policy("restore-after-crash"))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _changed(self, state: str, cause: str) -> None:
        self.state, self.last_cause, self.since = state, cause, time.time()
        log.info("power %s (%s)", state, cause)
        await self.bus.publish(self.subjects.power_changed,
                               PowerChanged(state=state, cause=cause, action=ACTION_BY_CAUSE.get(cause, "")))

    # --- virtual media: the CD drive QEMU always has ----------------------------

    @property
    def inserted_media(self) -> InsertedMedia:
        return InsertedMedia(self.persisted.media_path, self.persisted.media_image_name)

    async def handle_media_get(self, _req: MediaGet) -> Message:
        return media_status(self.inserted_media)

    async def handle_media_insert(self, req: MediaInsert) -> Message:
        async with self._lock:
            try:
                path = check_image_path(req.path, self.media_dirs)
                if self.state == "on":
                    await self._qmp_media("blockdev-change-medium", change_medium_args(VIRTUAL_CD_DEVICE, path))
            except (MediaError, PowerError) as exc:
                log.warning("media insert %s refused: %s", req.path, exc)
                return ErrorReply(code=exc.code, message=str(exc))
            self.persisted.media_path = path
            self.persisted.media_image_name = req.image_name or os.path.basename(path)
            await self._save()
        log.info("virtual CD: %s inserted%s", path, f" by {req.source}" if req.source else "")
        return await self._media_changed()

    async def handle_media_eject(self, req: MediaEject) -> Message:
        async with self._lock:
            if self.state == "on" and self.persisted.media_path:
                try:
                    await self._qmp_media("eject", eject_args(VIRTUAL_CD_DEVICE))
                except PowerError as exc:
                    log.warning("media eject refused: %s", exc)
                    return ErrorReply(code=exc.code, message=str(exc))
            was = self.persisted.media_path
            self.persisted.media_path = self.persisted.media_image_name = ""
            await self._save()
        if was:
            log.info("virtual CD: %s ejected%s", was, f" by {req.source}" if req.source else "")
        return await self._media_changed()

    async def _media_changed(self) -> Message:
        status = media_status(self.inserted_media)
        await self.bus.publish(self.subjects.media_changed, status)
        return status

    async def _media_for_power_on(self) -> str:
        """The image for the QEMU about to start; one that has gone away is ejected
        (a missing file would stop QEMU from starting at all)."""
        path = self.persisted.media_path
        if not path:
            return ""
        try:
            return check_image_path(path, self.media_dirs)
        except MediaError as exc:
            log.error("virtual CD image unusable, ejected: %s", exc)
            self.persisted.media_path = self.persisted.media_image_name = ""
            await self._save()
            await self.bus.publish(self.subjects.media_changed, media_status(self.inserted_media))
            return ""

    async def _qmp_media(self, command: str, arguments: dict):
        if self._qmp is None:
            raise PowerError("qmp-unavailable", "no QMP connection to QEMU")
        try:
            return await asyncio.wait_for(self._qmp.execute(command, arguments), 10)
        except ExecuteError as exc:  # QEMU's own words, e.g. "Could not open ...: Permission denied"
            raise PowerError("qmp-failed", f"QEMU refused {command}: {exc}") from None
        except (StateError, asyncio.TimeoutError, ConnectionError, EOFError) as exc:
            raise PowerError("qmp-failed", f"QMP {command} failed: {exc}") from None

    # --- NICs: the net service's plan, and hot-plug ----------------------------
    #
    # net owns the taps and macvtaps; it answers the NIC plan (net.nics) and
    # publishes it whenever it changes (net.plan). A power-on builds QEMU's NICs
    # from the plan; while the VM runs, every plan change is reconciled with
    # what QEMU has, over QMP (netdev_add/device_add, device_del/netdev_del).

    def _init_nics(self) -> None:
        self._vm_nics: dict[str, VmNic] | None = None  # device id -> NIC in the running VM (None: unknown)
        self._nic_ports: list[str] = []  # PCIe root ports made for NICs at this power-on
        self._nics_changed = asyncio.Event()
        self._nics_file = os.path.join(self.config.bus.run_dir, NICS_FILE)

    async def _start_nics(self) -> None:
        async def on_plan(_plan: NicPlan) -> None:
            self._nics_changed.set()
        await self.bus.subscribe(self.subjects.net_plan, NicPlan, on_plan)
        task = asyncio.create_task(self._follow_nic_plan())
        self._background.add(task)

    async def _nics_for_power_on(self) -> tuple[list[VmNic], list[str]]:
        """The NICs (and their root ports) for the QEMU about to start."""
        plan = await self._wait_nic_plan()
        nics = [_vm_nic(n) for n in plan.nics if n.wired] if plan else []
        ports = nic_ports(self.config.vm, len(nics))
        if ports:
            nics = [dataclasses.replace(nic, port=ports[i]) for i, nic in enumerate(nics)]
        self._vm_nics = {nic.device_id: nic for nic in nics}
        self._nic_ports = ports
        self._save_vm_nics()
        if plan is not None:
            log.info("VM NICs (%s mode): %s", plan.mode or "?",
                     ", ".join(f"{n.ifname} {n.mac}" for n in nics) or "none")
            if plan.missing:
                log.warning("powering on without %s (not there)", ", ".join(plan.missing))
        return nics, ports

    async def _wait_nic_plan(self) -> NicPlan | None:
        """Ask net for the plan; wait while it still waits for CLAB_INTFS interfaces.

        Bounded: NET_WAIT_TIMEOUT (+ a margin) for interfaces, NET_SERVICE_WAIT
        for a net service that has not answered yet. None when net is not there
        (bad configuration, stopped): the VM then powers on without NICs.
        """
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        async def on_plan(_plan: NicPlan) -> None:
            changed.set()
        subscription = await self.bus.subscribe(self.subjects.net_plan, NicPlan, on_plan)
        service_deadline = loop.time() + NET_SERVICE_WAIT
        links_deadline = loop.time() + self.config.net_wait_timeout + NET_WAIT_MARGIN
        told = False
        try:
            while True:
                changed.clear()
                try:
                    plan = await self.bus.request(self.subjects.net_nics, NicsGet(), NicPlan, timeout=2)
                except BusError as exc:
                    if await self._net_program_gone() or loop.time() > service_deadline:
                        log.warning("no NIC plan from the net service (%s): the VM gets no NICs", exc)
                        return None
                    await _wait_event(changed, 0.5)
                    continue
                if not plan.waiting_for or loop.time() > links_deadline:
                    return plan
                if not told:
                    log.info("power-on waits for %s (CLAB_INTFS): %s", ", ".join(plan.waiting_for),
                             ", ".join(plan.missing))
                    told = True
                await _wait_event(changed, links_deadline - loop.time())
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def _net_program_gone(self) -> bool:
        try:
            info = await self.supervisor.info("net")
        except SupervisorError:
            return True
        return info.state in ("EXITED", "FATAL", "STOPPED")

    async def _follow_nic_plan(self) -> None:
        """Hot-plug: reconcile the running VM's NICs with the plan after each change."""
        while True:
            await self._nics_changed.wait()
            self._nics_changed.clear()
            async with self._lock:
                if self.state != "on" or self._qmp is None:
                    continue
                try:
                    plan = await self.bus.request(self.subjects.net_nics, NicsGet(), NicPlan, timeout=5)
                except BusError as exc:
                    log.warning("NIC plan changed but could not be read: %s", exc)
                    continue
                try:
                    await self._reconcile_nics(plan)
                except Exception as exc:  # the agent outlives a failed hot-plug
                    log.error("NIC hot-plug failed: %s", exc)

    async def _reconcile_nics(self, plan: NicPlan) -> None:
        if self._vm_nics is None:
            self._load_vm_nics()
        assert self._vm_nics is not None
        want = {nic.device_id: nic for nic in (_vm_nic(n) for n in plan.nics if n.wired)}
        for device_id, nic in list(self._vm_nics.items()):
            wanted = want.get(device_id)
            # a new tap, macvtap or MAC means a new NIC; an MTU change alone does not
            if wanted is None or (wanted.tap, wanted.tap_device, wanted.mac) != (nic.tap, nic.tap_device, nic.mac):
                await self._unplug_nic(nic)
        for device_id, nic in want.items():
            if device_id not in self._vm_nics:
                await self._plug_nic(nic)
        self._save_vm_nics()

    async def _plug_nic(self, nic: VmNic) -> None:
        assert self._vm_nics is not None and self._qmp is not None
        if self._nic_ports:
            used = {n.port for n in self._vm_nics.values()}
            free = [p for p in self._nic_ports if p not in used]
            if not free:
                log.error("no free PCIe slot to hot-plug %s (VM_NIC_HOTPLUG_SLOTS=%d); it joins at the next "
                          "power-on", nic.ifname, self.config.vm.nic_hotplug_slots)
                return
            nic = dataclasses.replace(nic, port=free[0])
        fd_name = None
        if nic.tap_device:
            # QEMU cannot open the macvtap itself here: pass it an fd (SCM_RIGHTS + getfd)
            fd = os.open(nic.tap_device, os.O_RDWR | os.O_CLOEXEC)
            try:
                self._qmp.send_fd_scm(fd)
                await self._qmp_nic("getfd", {"fdname": nic.netdev_id})
            finally:
                os.close(fd)  # QEMU holds its own copy now; ours would be a second queue
            fd_name = nic.netdev_id
        await self._qmp_nic("netdev_add", netdev_options(nic, fd_name))
        try:
            await self._qmp_nic("device_add", device_options(nic, self.config.vm.nic_model))
        except PowerError:
            with contextlib.suppress(PowerError):
                await self._qmp_nic("netdev_del", {"id": nic.netdev_id})
            raise
        self._vm_nics[nic.device_id] = nic
        log.info("hot-plugged %s into the VM (%s, %s)", nic.ifname, nic.mac, nic.port or "root bus")

    async def _unplug_nic(self, nic: VmNic) -> None:
        assert self._vm_nics is not None and self._qmp is not None
        listener = EventListener(("DEVICE_DELETED",))
        self._qmp.register_listener(listener)
        try:
            await self._qmp_nic("device_del", {"id": nic.device_id})

            async def deleted() -> None:
                while (await listener.get()).get("data", {}).get("device") != nic.device_id:
                    pass
            await asyncio.wait_for(deleted(), NIC_UNPLUG_TIMEOUT)
        except asyncio.TimeoutError:
            log.warning("the guest did not release %s within %gs", nic.device_id, NIC_UNPLUG_TIMEOUT)
        except PowerError as exc:
            log.warning("%s", exc)  # already gone, most likely
        finally:
            self._qmp.remove_listener(listener)
        with contextlib.suppress(PowerError):
            await self._qmp_nic("netdev_del", {"id": nic.netdev_id})
        del self._vm_nics[nic.device_id]
        log.info("unplugged %s from the VM", nic.ifname)

    async def _qmp_nic(self, command: str, arguments: dict):
        if self._qmp is None:
            raise PowerError("qmp-unavailable", "no QMP connection to QEMU")
        try:
            return await asyncio.wait_for(self._qmp.execute(command, arguments), 10)
        except (ExecuteError, StateError, asyncio.TimeoutError, ConnectionError, EOFError) as exc:
            raise PowerError("qmp-failed", f"QMP {command} {arguments.get('id', '')} failed: {exc}") from None

    def _save_vm_nics(self) -> None:
        """What the running VM has, so a restarted agent can go on hot-plugging."""
        state = {"ports": self._nic_ports,
                 "nics": [dataclasses.asdict(n) for n in (self._vm_nics or {}).values()]}
        tmp = self._nics_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.replace(tmp, self._nics_file)

    def _load_vm_nics(self) -> None:
        try:
            with open(self._nics_file) as f:
                state = json.load(f)
            self._nic_ports = list(state["ports"])
            self._vm_nics = {n.device_id: n for n in (VmNic(**d) for d in state["nics"])}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("NICs of the running VM unknown (%s); assuming none", exc)
            self._vm_nics = {}

    async def shutdown_guest(self, timeout: float) -> None:
        """The container is stopping: ask the guest to power off (ACPI), wait up to
        `timeout`, then cut power. The last power state stays what it was, so the
        `previous` restore policy brings the server back as it was before the stop."""
        self.container_stopping = True
        if self.state != "on":
            return
        log.info("container stopping: ACPI power button, up to %gs", timeout)
        async with self._lock:
            with contextlib.suppress(PowerError):
                self._soft_off_requested = True
                await self._qmp_execute("system_powerdown")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.state == "on" and loop.time() < deadline:
            await asyncio.sleep(0.1)
        if self.state == "on":
            log.warning("the guest did not power off within %gs: cutting power", timeout)
            async with self._lock:
                # supervisord takes no calls while it shuts down: QMP ends QEMU instead
                self._expected_exit = "power-off"
                with contextlib.suppress(PowerError):
                    await self._qmp_execute("quit")
                if self._watcher is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(asyncio.shield(self._watcher), 10)

    async def close(self) -> None:
        """Detach from QEMU without touching it (the VM outlives the agent)."""
        if self._watcher is not None:
            self._watcher.cancel()
        if self._qmp is not None:
            with contextlib.suppress(Exception):
                await self._qmp.disconnect()
