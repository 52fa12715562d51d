"""Which container interfaces become the VM's NICs, and their MACs. Pure logic.

`VM_NICS` is either `ethN+` (ethN, ethN+1, … in index order) or a list such as
`eth2,eth4`. eth0 is the BMC's management interface and is never handed over.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Mapping

from bus.config import ConfigError, env_choice, env_int

MODES = ("tc", "bridge", "macvtap")
_RANGE = re.compile(r"^([a-z]+)(\d+)\+$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


@dataclass(frozen=True)
class NicSelection:
    """Either an open range (prefix, first index) or an explicit list of names."""

    prefix: str = ""
    first: int = 0
    names: tuple[str, ...] = ()

    def wants(self, ifname: str) -> bool:
        if self.names:
            return ifname in self.names
        m = re.fullmatch(rf"{re.escape(self.prefix)}(\d+)", ifname)
        return bool(m) and int(m.group(1)) >= self.first

    def index_of(self, ifname: str) -> int:
        """The VM NIC index of a selected interface; stable whatever else is present.

        eth2+ gives eth2 index 0, eth3 index 1 …; a list gives each name its position.
        The MAC follows the index, so a NIC keeps its MAC when a sibling comes or goes.
        """
        if self.names:
            return self.names.index(ifname)
        return int(ifname[len(self.prefix):]) - self.first

    def expected_names(self, count: int) -> list[str]:
        """The first `count` interfaces this selection would take (for CLAB_INTFS)."""
        if self.names:
            return list(self.names[:count])
        return [f"{self.prefix}{self.first + i}" for i in range(count)]

    def order(self, ifnames: list[str]) -> list[str]:
        """The selected interfaces in VM NIC order (list order, or index order)."""
        if self.names:
            return [n for n in self.names if n in ifnames]
        chosen = [n for n in ifnames if self.wants(n)]
        return sorted(chosen, key=lambda n: int(n[len(self.prefix):]))


def parse_vm_nics(raw: str) -> NicSelection:
    raw = raw.strip() or "eth2+"
    m = _RANGE.match(raw)
    if m:
        prefix, first = m.group(1), int(m.group(2))
        if prefix == "eth" and first == 0:
            raise ConfigError("VM_NICS", "eth0 is the BMC's management interface; start at eth1 or later")
        return NicSelection(prefix=prefix, first=first)
    names = tuple(n.strip() for n in raw.split(","))
    for n in names:
        if not _NAME.match(n):
            raise ConfigError("VM_NICS", f"{n!r} is not an interface name")
    if "eth0" in names:
        raise ConfigError("VM_NICS", "eth0 is the BMC's management interface and cannot go to the VM")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError("VM_NICS", f"{', '.join(dupes)} named more than once")
    return NicSelection(names=names)


def stable_mac(node: str, index: int) -> str:
    """A locally administered unicast MAC that stays the same for (node, NIC index)."""
    digest = hashlib.sha256(f"qemu-bmc:{node}:{index}".encode()).digest()
    octets = bytes((0x02,)) + digest[:5]
    return ":".join(f"{b:02x}" for b in octets)


def parse_vm_macs(raw: str) -> tuple[str, ...]:
    if not raw.strip():
        return ()
    macs = tuple(m.strip().lower() for m in raw.split(","))
    for mac in macs:
        if not re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", mac) or int(mac[:2], 16) & 1:
            raise ConfigError("VM_MACS", f"{mac!r} is not a unicast MAC like 02:00:00:00:00:01")
    dupes = sorted({m for m in macs if macs.count(m) > 1})
    if dupes:
        raise ConfigError("VM_MACS", f"{', '.join(dupes)} given more than once")
    return macs


def _device_name(prefix: str, ifname: str) -> str:
    """prefix + ifname when it fits Linux's 15 characters, else prefix + a short hash."""
    name = prefix + ifname
    if len(name) <= 15:
        return name
    return prefix + hashlib.sha256(ifname.encode()).hexdigest()[:15 - len(prefix)]


def tap_name(ifname: str) -> str:
    """The tap QEMU opens for ifname (tc and bridge modes): eth2 -> tap-eth2."""
    return _device_name("tap-", ifname)


def bridge_name(ifname: str) -> str:
    """The Linux bridge joining ifname and its tap (bridge mode): eth2 -> br-eth2."""
    return _device_name("br-", ifname)


def macvtap_name(ifname: str) -> str:
    """The passthru macvtap on top of ifname (macvtap mode): eth2 -> mvt-eth2."""
    return _device_name("mvt-", ifname)


@dataclass(frozen=True)
class WaitState:
    """Waiting for CLAB_INTFS interfaces: pure, the caller says what is present and
    whether NET_WAIT_TIMEOUT has passed. Once enough interfaces were there the wait
    is over for good (a link that flaps later does not hold a power-on back)."""

    expected: int
    over: bool = False

    def missing(self, selection: NicSelection, present: list[str]) -> list[str]:
        if len(present) >= self.expected:
            return []
        return [n for n in selection.expected_names(self.expected) if n not in present]

    def waiting(self, present: list[str]) -> bool:
        return not self.over and len(present) < self.expected

    def update(self, present: list[str], timed_out: bool) -> "WaitState":
        if self.over or len(present) >= self.expected or timed_out:
            return WaitState(self.expected, over=True)
        return self


@dataclass(frozen=True)
class NetConfig:
    selection: NicSelection
    mode: str
    macs: tuple[str, ...]
    expected: int  # CLAB_INTFS: data links containerlab will attach (0: do not wait)
    wait_timeout: int

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "NetConfig":
        return cls(selection=parse_vm_nics(env.get("VM_NICS", "")),
                   mode=env_choice(env, "NET_MODE", "tc", MODES),
                   macs=parse_vm_macs(env.get("VM_MACS", "")),
                   expected=env_int(env, "CLAB_INTFS", 0, 0, 64),
                   wait_timeout=env_int(env, "NET_WAIT_TIMEOUT", 120, 0, 3600))

    def mac_for(self, node: str, index: int) -> str:
        return self.macs[index] if index < len(self.macs) else stable_mac(node, index)
