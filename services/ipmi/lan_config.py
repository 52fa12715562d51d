"""LAN configuration parameters (IPMI 2.0 section 23.1-23.2, table 23-4) for
channel 1, read from the container's own interface. Addresses cannot be set
over IPMI: they belong to the container's network, and changing them would cut
the BMC off; such writes are refused as read-only (0x82)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct
from dataclasses import dataclass

from services.ipmi.commands import CC_INVALID_FIELD, CC_OK, CC_REQUEST_LENGTH, CommandCore
from services.ipmi.session import PRIV_ADMIN, PRIV_OPERATOR

log = logging.getLogger("lan_config")

NETFN_TRANSPORT = 0x0C
LAN_CHANNEL = 1
CC_PARAMETER_NOT_SUPPORTED = 0x80
CC_READ_ONLY = 0x82
PARAMETER_REVISION = 0x11
NIC_PARAMETERS = (3, 4, 5, 6, 12, 13)  # IP, source, MAC, mask, gateway IP and MAC


@dataclass(frozen=True)
class InterfaceInfo:
    ifname: str
    ip: str = "0.0.0.0"
    prefix: int = 0
    mac: str = "00:00:00:00:00:00"
    gateway: str = "0.0.0.0"
    gateway_mac: str = "00:00:00:00:00:00"
    dhcp: bool = False


def read_interface(wanted: str = "") -> InterfaceInfo:
    """Address, MAC and default gateway of `wanted`, or of the default route's interface."""
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        links = {link["index"]: link for link in ipr.get_links()}
        gateway, gw_index = "0.0.0.0", None
        for route in ipr.get_default_routes(family=socket.AF_INET):
            gateway, gw_index = route.get_attr("RTA_GATEWAY") or "0.0.0.0", route.get_attr("RTA_OIF")
            break
        by_name = {link.get_attr("IFLA_IFNAME"): index for index, link in links.items()}
        index = by_name.get(wanted) if wanted else (gw_index or by_name.get("eth0"))
        if index is None:
            return InterfaceInfo(wanted or "eth0")
        link = links[index]
        info = {"ifname": link.get_attr("IFLA_IFNAME"), "mac": link.get_attr("IFLA_ADDRESS") or "00:00:00:00:00:00"}
        for addr in ipr.get_addr(family=socket.AF_INET, index=index):
            info["ip"], info["prefix"] = addr.get_attr("IFA_ADDRESS"), addr["prefixlen"]
            info["dhcp"] = not (addr["flags"] & 0x80)  # IFA_F_PERMANENT: set by hand, not leased
            break
        if gw_index == index:
            info["gateway"] = gateway
            for neigh in ipr.get_neighbours(family=socket.AF_INET, index=index):
                if neigh.get_attr("NDA_DST") == gateway and neigh.get_attr("NDA_LLADDR"):
                    info["gateway_mac"] = neigh.get_attr("NDA_LLADDR")
        return InterfaceInfo(**info)


def _ip(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


def _mac(text: str) -> bytes:
    return bytes(int(x, 16) for x in text.split(":"))


class LanConfig:
    def __init__(self, core: CommandCore, interface: str, suites: tuple[int, ...], v15_auth_types: tuple[int, ...]):
        self.interface = interface
        self.suites = suites
        self.v15_auth_types = v15_auth_types
        self.set_in_progress = 0
        self.community = b"public".ljust(18, b"\x00")
        t = core.table
        t[(NETFN_TRANSPORT, 0x01)] = (PRIV_ADMIN, self.set_parameter)
        t[(NETFN_TRANSPORT, 0x02)] = (PRIV_OPERATOR, self.get_parameter)

    def _value(self, param: int, nic: InterfaceInfo | None = None) -> bytes | None:
        auth_bits = 0
        for auth_type in self.v15_auth_types:
            auth_bits |= 1 << auth_type
        if param == 0:
            return bytes((self.set_in_progress,))
        if param == 1:
            return bytes((auth_bits,))
        if param == 2:  # per privilege: callback, user, operator, admin, OEM
            return bytes((auth_bits,) * 4 + (0,))
        if param == 7:
            return bytes((0x40, 0x40, 0x10))  # TTL 64, don't fragment, TOS 10h
        if param == 16:
            return self.community
        if param == 20:
            return b"\x00\x00"  # no VLAN
        if param == 21:
            return b"\x00"
        if param == 22:
            return bytes((len(self.suites),))
        if param == 23:
            return b"\x00" + bytes(self.suites)
        if param == 24:  # maximum privilege per cipher suite entry: administrator for every one
            nibbles = [0x04] * len(self.suites) + [0x00] * (16 - len(self.suites))
            return b"\x00" + bytes((nibbles[i] | nibbles[i + 1] << 4) for i in range(0, 16, 2))
        if param in NIC_PARAMETERS:
            if nic is None:
                return b""  # known, needs the interface: see get_parameter
            if param == 3:
                return _ip(nic.ip)
            if param == 4:
                return b"\x02" if nic.dhcp else b"\x01"
            if param == 5:
                return _mac(nic.mac)
            if param == 6:
                mask = (0xFFFFFFFF << (32 - nic.prefix)) & 0xFFFFFFFF if nic.prefix else 0
                return struct.pack(">I", mask)
            if param == 12:
                return _ip(nic.gateway)
            return _mac(nic.gateway_mac)
        if param in (14,):
            return _ip("0.0.0.0")
        if param in (15,):
            return bytes(6)
        return None

    async def get_parameter(self, data: bytes) -> tuple[int, bytes]:
        if len(data) != 4:
            return CC_REQUEST_LENGTH, b""
        if data[0] & 0x0F not in (LAN_CHANNEL, 0x0E):
            return CC_INVALID_FIELD, b""
        if data[0] & 0x80:  # revision only
            return CC_OK, bytes((PARAMETER_REVISION,))
        try:
            nic = None
            if data[1] in NIC_PARAMETERS:
                # pyroute2's synchronous API runs its own event loop: keep it off ours
                nic = await asyncio.to_thread(read_interface, self.interface)
            value = self._value(data[1], nic)
        except Exception as exc:  # netlink trouble must cost this parameter, not the answer
            log.warning("cannot read LAN parameter %d: %s", data[1], exc)
            value = None
        if value is None:
            return CC_PARAMETER_NOT_SUPPORTED, b""
        return CC_OK, bytes((PARAMETER_REVISION,)) + value

    def set_parameter(self, data: bytes) -> tuple[int, bytes]:
        if len(data) < 2:
            return CC_REQUEST_LENGTH, b""
        if data[0] & 0x0F not in (LAN_CHANNEL, 0x0E):
            return CC_INVALID_FIELD, b""
        param, value = data[1], data[2:]
        if param == 0:
            if len(value) != 1:
                return CC_REQUEST_LENGTH, b""
            self.set_in_progress = 0 if value[0] & 0x03 == 2 else value[0] & 0x03
            return CC_OK, b""
        if param == 16:
            if len(value) != 18:
                return CC_REQUEST_LENGTH, b""
            self.community = bytes(value)
            return CC_OK, b""
        if self._value(param) is None:
            return CC_PARAMETER_NOT_SUPPORTED, b""
        return CC_READ_ONLY, b""
