"""Watches the container's interfaces over netlink and keeps the NIC plan.

Every change to a selected interface is a `net.link` event; `net.nics` answers
with the current plan (interfaces in VM order, their stable MACs, MTU, state and,
once wired, the tap or macvtap QEMU uses) and `net.plan` publishes it whenever it
changes, which is what the power agent hot-plugs from.

With a Wiring, a selected interface is wired when it appears (at start or later)
and unwired when it goes. Without one (tests of the plan alone) nothing is touched.
"""

from __future__ import annotations

import asyncio
import logging

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.rtnl import RTMGRP_LINK

from bus import Bus, Subjects
from bus.messages import NetLink, Nic, NicPlan, NicsGet
from services.net.plan import NetConfig, WaitState
from services.net.wiring import Wired, Wiring

log = logging.getLogger("watcher")


class LinkWatcher:
    def __init__(self, bus: Bus, subjects: Subjects, config: NetConfig, node: str,
                 wiring: Wiring | None = None):
        self.bus = bus
        self.subjects = subjects
        self.config = config
        self.node = node
        self.wiring = wiring
        self.links: dict[str, dict] = {}  # ifname -> {"mac", "mtu", "up"} of selected interfaces
        self.wired: dict[str, Wired] = {}  # ifname -> its tap or macvtap
        self.wait = WaitState(config.expected)
        self._deadline_task: asyncio.Task | None = None

    async def start(self) -> None:
        self._monitor = AsyncIPRoute()
        await self._monitor.bind(groups=RTMGRP_LINK)  # bind before the dump: no change slips between
        async with AsyncIPRoute() as ipr:
            for link in [m async for m in await ipr.link("dump")]:
                self._update(link)
        for ifname in self.ordered():
            await self._wire(ifname)
        self.wait = self.wait.update(self.ready(), timed_out=False)
        await self.bus.serve(self.subjects.net_nics, NicsGet, self.handle_nics)
        log.info("VM NICs now: %s (mode %s)", ", ".join(self.ordered()) or "none", self.config.mode)
        if self.wait.waiting(self.ready()):
            log.info("waiting up to %ds for %d interface(s) (CLAB_INTFS): %s", self.config.wait_timeout,
                     self.config.expected, ", ".join(self.wait.missing(self.config.selection, self.ready())))
            self._deadline_task = asyncio.create_task(self._wait_deadline())

    def ordered(self) -> list[str]:
        return self.config.selection.order(list(self.links))

    def ready(self) -> list[str]:
        """Interfaces the VM can have now: present and, when wiring, wired."""
        names = self.ordered()
        return names if self.wiring is None else [n for n in names if n in self.wired]

    def plan(self) -> NicPlan:
        names = self.ordered()
        nics = []
        for name in names:
            index = self.config.selection.index_of(name)
            wired = self.wired.get(name)
            nics.append(Nic(ifname=name, mac=self.config.mac_for(self.node, index), mtu=self.links[name]["mtu"],
                            up=self.links[name]["up"], index=index, wired=wired is not None,
                            tap=wired.tap if wired else "", tap_device=wired.tap_device if wired else ""))
        ready = self.ready()  # an interface that is there but not wired yet is still awaited
        missing = self.wait.missing(self.config.selection, ready)
        waiting_for = []
        if self.wait.waiting(ready):
            waiting_for = [f"{self.config.expected - len(ready)} more interface(s)"]
        return NicPlan(nics=nics, waiting_for=waiting_for, mode=self.config.mode, missing=missing)

    async def handle_nics(self, _req: NicsGet) -> NicPlan:
        return self.plan()

    async def _wait_deadline(self) -> None:
        await asyncio.sleep(self.config.wait_timeout)
        if self.wait.waiting(self.ready()):
            missing = self.wait.missing(self.config.selection, self.ready())
            log.warning("gave up waiting for %s after NET_WAIT_TIMEOUT=%ds; the VM gets %s",
                        ", ".join(missing) or f"{self.config.expected} interfaces", self.config.wait_timeout,
                        ", ".join(self.ready()) or "no NICs")
            self.wait = self.wait.update(self.ready(), timed_out=True)
            await self._publish_plan()

    async def _wire(self, ifname: str) -> None:
        if self.wiring is None:
            return
        info = self.links[ifname]
        index = self.config.selection.index_of(ifname)
        try:
            self.wired[ifname] = await self.wiring.wire(ifname, self.config.mac_for(self.node, index), info["mtu"])
        except Exception as exc:  # one bad interface must not stop the others
            log.error("could not wire %s (%s mode): %s", ifname, self.config.mode, exc)
            return
        w = self.wired[ifname]
        log.info("%s wired for the VM: %s", ifname, w.tap or w.tap_device)

    async def _unwire(self, ifname: str) -> None:
        self.wired.pop(ifname, None)
        if self.wiring is None:
            return
        try:
            await self.wiring.unwire(ifname)
        except Exception as exc:
            log.error("could not unwire %s: %s", ifname, exc)

    async def _publish_plan(self) -> None:
        await self.bus.publish(self.subjects.net_plan, self.plan())

    def _update(self, msg) -> str | None:
        ifname = msg.get("ifname")
        if not ifname or not self.config.selection.wants(ifname):
            return None
        if msg["event"] == "RTM_DELLINK":
            return "removed" if self.links.pop(ifname, None) is not None else None
        up = msg.get("operstate") in ("UP", "UNKNOWN")
        before = self.links.get(ifname)
        self.links[ifname] = {"mtu": msg.get("mtu") or 1500, "up": up, "mac": msg.get("address") or ""}
        if before is None:
            return "added"
        if before["up"] != up:
            return "up" if up else "down"
        return None

    async def run(self) -> None:
        while True:
            async for msg in self._monitor.get():
                ifname = msg.get("ifname")
                change = self._update(msg)
                if not change:
                    continue
                info = self.links.get(ifname, {})
                log.info("%s %s", ifname, change)
                if change == "added":
                    await self._wire(ifname)
                    self.wait = self.wait.update(self.ready(), timed_out=False)
                elif change == "removed":
                    await self._unwire(ifname)
                await self.bus.publish(self.subjects.net_link, NetLink(
                    ifname=ifname, change=change, mac=info.get("mac", ""), mtu=info.get("mtu", 0)))
                if change in ("added", "removed"):
                    await self._publish_plan()
