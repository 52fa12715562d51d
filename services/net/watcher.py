"""Watches the container's interfaces over netlink and keeps the NIC plan.

Every change to a selected interface is a `net.link` event; `net.nics` answers
with the current plan (interfaces in VM order, their stable MACs, MTU, state).
"""

from __future__ import annotations

import asyncio
import logging

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.rtnl import RTMGRP_LINK

from bus import Bus, Subjects
from bus.messages import NetLink, Nic, NicPlan, NicsGet
from services.net.plan import NetConfig

log = logging.getLogger("watcher")


class LinkWatcher:
    def __init__(self, bus: Bus, subjects: Subjects, config: NetConfig, node: str):
        self.bus = bus
        self.subjects = subjects
        self.config = config
        self.node = node
        self.links: dict[str, dict] = {}  # ifname -> {"mac", "mtu", "up"} of selected interfaces

    async def start(self) -> None:
        self._monitor = AsyncIPRoute()
        await self._monitor.bind(groups=RTMGRP_LINK)  # bind before the dump: no change slips between
        async with AsyncIPRoute() as ipr:
            for link in [m async for m in await ipr.link("dump")]:
                self._update(link, announce=False)
        await self.bus.serve(self.subjects.net_nics, NicsGet, self.handle_nics)
        log.info("VM NICs now: %s (mode %s)", ", ".join(self.ordered()) or "none", self.config.mode)

    def ordered(self) -> list[str]:
        return self.config.selection.order(list(self.links))

    async def handle_nics(self, _req: NicsGet) -> NicPlan:
        names = self.ordered()
        nics = [Nic(ifname=n, mac=self.config.mac_for(self.node, i), mtu=self.links[n]["mtu"],
                    up=self.links[n]["up"]) for i, n in enumerate(names)]
        missing = max(0, self.config.expected - len(names))
        return NicPlan(nics=nics, waiting_for=[f"{missing} more interface(s)"] if missing else [])

    def _update(self, msg, announce: bool = True) -> str | None:
        ifname = msg.get("ifname")
        if not ifname or not self.config.selection.wants(ifname):
            return None
        if msg["event"] == "RTM_DELLINK":
            self.links.pop(ifname, None)
            return "removed"
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
                change = self._update(msg)
                if change:
                    ifname = msg.get("ifname")
                    info = self.links.get(ifname, {})
                    log.info("%s %s", ifname, change)
                    await self.bus.publish(self.subjects.net_link, NetLink(
                        ifname=ifname, change=change, mac=info.get("mac", ""), mtu=info.get("mtu", 0)))
