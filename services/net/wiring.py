"""Connects a container interface to the VM: the netlink edge of the net service.

Three modes (NET_MODE), all through pyroute2, nothing shelled out:

- tc: a tap per interface and a u32 match-all filter on each side's ingress
  qdisc with a mirred egress redirect to the other. Every frame crosses
  untouched, link-local ones (LLDP, LACP, STP) and VLAN tags included.
- bridge: a Linux bridge per interface joining it and its tap, with
  group_fwd_mask set so link-local frames pass (the kernel refuses to forward
  STP, pause and LACP addresses, 01:80:c2:00:00:00-02, whatever the mask says).
- macvtap: a passthru macvtap on the interface; QEMU gets its /dev/tapN as an
  fd. Containers have no udev, so the node is made here from sysfs major:minor.

Wiring is idempotent: a restarted net service finds its taps, bridges and
macvtaps in place (a running QEMU still holds them) and only refreshes them.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from dataclasses import dataclass

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from bus.config import ConfigError
from services.net.plan import bridge_name, macvtap_name, tap_name

log = logging.getLogger("wiring")

ETH_P_ALL = 0x0003
INGRESS = 0xFFFF0000
# Every link-local group address the kernel lets a bridge forward (bits 0-2, STP,
# pause and LACP, are refused: BR_GROUPFWD_RESTRICTED).
GROUP_FWD_MASK = 0xFFF8
TUN_DEVICE = "/dev/net/tun"
IFF_PROMISC = 0x100


@dataclass(frozen=True)
class Wired:
    """What QEMU needs to use one wired interface."""

    tap: str = ""  # tc/bridge: a tap QEMU opens by name
    tap_device: str = ""  # macvtap: the /dev/tapN QEMU gets as an fd


def check_host(mode: str) -> None:
    """Refuse, naming NET_MODE, a mode this container cannot do (exit 2, no retries)."""
    if mode in ("tc", "bridge") and not os.path.exists(TUN_DEVICE):
        raise ConfigError("NET_MODE", f"{mode} needs {TUN_DEVICE} (docker run --device /dev/net/tun "
                          "--cap-add NET_ADMIN)")


class Wiring:
    def __init__(self, mode: str):
        self.mode = mode
        self._nodes: dict[str, str] = {}  # ifname -> /dev/tapN we made (devtmpfs did not)

    async def wire(self, ifname: str, mac: str, mtu: int) -> Wired:
        """Connect `ifname` to a new (or existing) tap or macvtap; raises NetlinkError/OSError."""
        async with AsyncIPRoute() as ipr:
            index = await _index(ipr, ifname)
            if index is None:
                raise OSError(errno.ENODEV, f"{ifname} is gone")
            if self.mode == "tc":
                return await self._wire_tc(ipr, ifname, index, mtu)
            if self.mode == "bridge":
                return await self._wire_bridge(ipr, ifname, index, mtu)
            return await self._wire_macvtap(ipr, ifname, index, mac)

    async def unwire(self, ifname: str) -> None:
        """Remove what wire() made for `ifname` (the interface itself may be gone already)."""
        names = {"tc": [tap_name(ifname)], "bridge": [tap_name(ifname), bridge_name(ifname)],
                 "macvtap": [macvtap_name(ifname)]}[self.mode]
        node = self._nodes.pop(ifname, None)
        if node:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(node)
        async with AsyncIPRoute() as ipr:
            for name in names:
                index = await _index(ipr, name)
                if index is None:
                    continue  # a macvtap goes with the interface under it
                try:
                    await ipr.link("del", index=index)
                except NetlinkError as exc:
                    if exc.code != errno.ENODEV:
                        raise

    # --- tc --------------------------------------------------------------

    async def _wire_tc(self, ipr, ifname: str, index: int, mtu: int) -> Wired:
        tap = tap_name(ifname)
        tap_index = await self._tap(ipr, tap, mtu)
        # promiscuous: a real NIC must not filter frames meant for the VM's MAC
        await ipr.link("set", index=index, flags=IFF_PROMISC, mask=IFF_PROMISC)
        await ipr.link("set", index=index, state="up")
        for src, dst in ((index, tap_index), (tap_index, index)):
            await _redirect(ipr, src, dst)
        return Wired(tap=tap)

    async def _tap(self, ipr, tap: str, mtu: int) -> int:
        tap_index = await _index(ipr, tap)
        if tap_index is None:
            await ipr.link("add", ifname=tap, kind="tuntap", mode="tap",
                           ifr={"no_pi": True, "one_queue": False, "vnet_hdr": False, "multi_queue": False})
            tap_index = await _index(ipr, tap)
        await ipr.link("set", index=tap_index, mtu=mtu, state="up")
        return tap_index

    # --- bridge ----------------------------------------------------------

    async def _wire_bridge(self, ipr, ifname: str, index: int, mtu: int) -> Wired:
        tap = tap_name(ifname)
        bridge = bridge_name(ifname)
        tap_index = await self._tap(ipr, tap, mtu)
        bridge_index = await _index(ipr, bridge)
        if bridge_index is None:
            await ipr.link("add", ifname=bridge, kind="bridge", br_group_fwd_mask=GROUP_FWD_MASK,
                           br_stp_state=0, br_mcast_snooping=0, br_forward_delay=0)
            bridge_index = await _index(ipr, bridge)
        for port in (index, tap_index):
            await ipr.link("set", index=port, master=bridge_index, state="up")
        await ipr.link("set", index=bridge_index, mtu=mtu, state="up")
        return Wired(tap=tap)

    # --- macvtap ---------------------------------------------------------

    async def _wire_macvtap(self, ipr, ifname: str, index: int, mac: str) -> Wired:
        name = macvtap_name(ifname)
        mv_index = await _index(ipr, name)
        if mv_index is None:
            await ipr.link("add", ifname=name, kind="macvtap", link=index, macvtap_mode="passthru")
            mv_index = await _index(ipr, name)
        await ipr.link("set", index=index, state="up")
        # passthru: the VM owns the interface, so the macvtap (and the interface
        # under it) takes the VM NIC's MAC
        await ipr.link("set", index=mv_index, address=mac, state="up")
        path, made = _tap_node(name, mv_index)
        if made:
            self._nodes[ifname] = path
        return Wired(tap_device=path)


async def _index(ipr, ifname: str) -> int | None:
    found = await ipr.link_lookup(ifname=ifname)
    return found[0] if found else None


async def _redirect(ipr, src: int, dst: int) -> None:
    """Ingress qdisc on src, and one filter sending every frame out of dst."""
    try:
        await ipr.tc("add", "ingress", src, INGRESS)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise
        # left over from an earlier run: start again from an empty qdisc
        await ipr.tc("del", "ingress", src, INGRESS)
        await ipr.tc("add", "ingress", src, INGRESS)
    await ipr.tc("add-filter", "u32", src, parent=INGRESS, protocol=ETH_P_ALL, prio=1,
                 target=0x10000, keys=["0x0/0x0+0"],
                 action={"kind": "mirred", "direction": "egress", "action": "redirect", "ifindex": dst})


def _tap_node(name: str, index: int) -> tuple[str, bool]:
    """/dev/tapN for the macvtap, made from sysfs major:minor when udev did not.

    Returns the path and whether we made the node (then we remove it too).
    """
    with open(f"/sys/class/net/{name}/tap{index}/dev") as f:
        major, minor = (int(x) for x in f.read().strip().split(":"))
    path = f"/dev/tap{index}"
    want = os.makedev(major, minor)
    try:
        st = os.stat(path)
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == want:
            return path, False
        os.unlink(path)  # a stale node from an earlier macvtap with this index
    except FileNotFoundError:
        pass
    os.mknod(path, 0o600 | stat.S_IFCHR, want)
    return path, True
