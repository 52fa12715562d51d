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
    return macs


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
