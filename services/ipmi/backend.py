"""The command core's view of the rest of the BMC, kept from the bus.

Power state is cached from `power.changed` events (and a `power.get` at start),
so Get Chassis Status answers from the last known state even while NATS is
away. Power control goes to the power agent as a request.
"""

from __future__ import annotations

import asyncio
import logging

from bus import Bus, BusError, BusTimeout, BusUnavailable, RemoteError, Subjects
from bus.messages import (BootGet, BootSet, BootStatus, PowerChanged, PowerGet, PowerSet, PowerStatus,
                          RestorePolicySet)
from services.ipmi.boot_options import BootFlags
from services.ipmi.commands import CC_NODE_BUSY, CC_NOT_IN_PRESENT_STATE, CC_UNSPECIFIED, BackendError

log = logging.getLogger("backend")

# Chassis Control answers once the power agent finished or after this long,
# whichever is first: a real BMC acknowledges the request, not the power-up.
# Clients retransmit after 500 ms or more (FreeIPMI with a new requester
# sequence number, so it looks like a new request): answer well before that.
CONTROL_ANSWER_WAIT = 0.15
NEEDS_POWER_ON = ("reset", "cycle", "nmi")
LAST_EVENT_POWER_ON_BY_IPMI = 0x10


class BusBackend:
    """Starts without a bus: IPMI answers from the first second, and power
    control says "node busy" (0xC0) until NATS is reachable."""

    def __init__(self, subjects: Subjects):
        self.bus: Bus | None = None
        self.subjects = subjects
        self.power_on = False
        self.restore_policy = "always-on"
        self.last_power_event = 0
        self.restart_cause = 0  # unknown until the first power-on we see
        self.vcpus = 0
        self.memory_mib = 0
        self.known = False  # have we heard from the power agent at all?
        self._pending: set[asyncio.Task] = set()

    async def attach(self, bus: Bus) -> None:
        self.bus = bus
        await self.bus.subscribe(self.subjects.power_changed, PowerChanged, self._on_changed)
        task = asyncio.create_task(self._initial_state())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _initial_state(self) -> None:
        """Ask the power agent once for the whole picture (events carry only changes)."""
        while True:
            try:
                self._apply(await self.bus.request(self.subjects.power_get, PowerGet(), PowerStatus, 2.0))
                return
            except BusError:
                await asyncio.sleep(0.5)

    def _apply(self, status: PowerStatus) -> None:
        self.power_on = status.state == "on"
        self.vcpus, self.memory_mib = status.vcpus, status.memory_mib
        self.restore_policy = status.restore_policy
        self.known = True

    async def _on_changed(self, event: PowerChanged) -> None:
        self.power_on = event.state == "on"
        self.known = True
        if event.state == "on":
            # Get System Restart Cause (28.11): 1 chassis control, 6 power restore policy
            self.restart_cause = 6 if event.cause.startswith("restore") else 1

    async def _request(self, subject: str, message, reply_type, timeout: float = 5.0):
        if self.bus is None or not self.bus.connected:
            raise BackendError(CC_NODE_BUSY, "the bus is not connected")
        try:
            return await self.bus.request(subject, message, reply_type, timeout)
        except RemoteError as exc:
            raise BackendError(CC_UNSPECIFIED, str(exc)) from None
        except (BusUnavailable, BusTimeout) as exc:
            raise BackendError(CC_NODE_BUSY, str(exc)) from None

    async def boot_get(self) -> BootFlags:
        status = await self._request(self.subjects.boot_get, BootGet(), BootStatus)
        return BootFlags(status.device, status.persistent, status.efi)

    async def boot_set(self, flags: BootFlags) -> None:
        await self._request(self.subjects.boot_set,
                            BootSet(device=flags.device, persistent=flags.persistent, efi=flags.efi), BootStatus)

    async def set_restore_policy(self, policy: str) -> None:
        status = await self._request(self.subjects.power_policy, RestorePolicySet(policy=policy), PowerStatus)
        self._apply(status)

    async def power(self, action: str) -> None:
        if self.bus is None or not self.bus.connected:
            # refuse now rather than queue a power action that NATS would deliver later
            raise BackendError(CC_NODE_BUSY, "the bus is not connected")
        if action in NEEDS_POWER_ON and self.known and not self.power_on:
            raise BackendError(CC_NOT_IN_PRESENT_STATE, f"power {action} needs the server powered on")
        request = asyncio.create_task(self.bus.request(
            self.subjects.power_set, PowerSet(action=action, source="ipmi"), PowerStatus, timeout=30.0))
        self._pending.add(request)
        request.add_done_callback(self._pending.discard)
        request.add_done_callback(self._log_late_failure)
        try:
            status = await asyncio.wait_for(asyncio.shield(request), CONTROL_ANSWER_WAIT)
        except asyncio.TimeoutError:
            return  # accepted and under way
        except RemoteError as exc:
            if exc.code == "powered-off":
                raise BackendError(CC_NOT_IN_PRESENT_STATE, str(exc)) from None
            raise BackendError(CC_UNSPECIFIED, str(exc)) from None
        except (BusUnavailable, BusTimeout) as exc:
            raise BackendError(CC_NODE_BUSY, str(exc)) from None
        self._apply(status)
        if action == "on":
            self.last_power_event = LAST_EVENT_POWER_ON_BY_IPMI

    @staticmethod
    def _log_late_failure(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.warning("power request failed: %s", task.exception())
