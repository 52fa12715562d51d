"""The IPMI command core: (netfn, cmd, data, privilege) in, (completion, data) out.

Handlers that need the rest of the BMC go through a `Backend` (the bus edge in
production, anything with the same methods in tests). Every request gets an
answer: 0xC1 for unknown commands, 0xC7 for bad lengths, 0xCC for bad fields,
0xD4 for insufficient privilege.

Spec references are IPMI v2.0 rev 1.1 section numbers.
"""

from __future__ import annotations

import inspect
import struct
import uuid
from dataclasses import dataclass
from typing import Awaitable, Callable, Protocol

from services.ipmi.session import PRIV_ADMIN, PRIV_USER

NETFN_CHASSIS, NETFN_APP = 0x00, 0x06
LAN_CHANNEL = 1

CC_OK = 0x00
CC_NODE_BUSY = 0xC0
CC_INVALID_COMMAND = 0xC1
CC_TIMEOUT = 0xC3
CC_REQUEST_LENGTH = 0xC7
CC_INVALID_FIELD = 0xCC
CC_INSUFFICIENT_PRIVILEGE = 0xD4
CC_NOT_IN_PRESENT_STATE = 0xD5
CC_UNSPECIFIED = 0xFF



class BackendError(Exception):
    """The backend could not do it; `completion` is the code to answer with."""

    def __init__(self, completion: int, message: str):
        super().__init__(message)
        self.completion = completion


class Backend(Protocol):
    """What the commands need from the rest of the BMC (the bus, in production)."""

    power_on: bool
    restore_policy: str
    last_power_event: int  # Get Chassis Status byte 2 bits
    restart_cause: int  # Get System Restart Cause (28.11)

    async def power(self, action: str) -> None: ...

    async def boot_get(self): ...  # -> BootFlags

    async def boot_set(self, flags) -> None: ...

    async def set_restore_policy(self, policy: str) -> None: ...


@dataclass(frozen=True)
class DeviceIdentity:
    device_id: int
    device_revision: int
    firmware: tuple[int, int]  # major (0..127), minor (0..99, sent as BCD)
    manufacturer_id: int  # IANA enterprise number (20 bits)
    product_id: int
    system_guid: bytes  # 16 bytes, wire order
    device_guid: bytes


def guid_wire(value: uuid.UUID) -> bytes:
    """GUIDs go out least significant byte first (IPMI 20.8, SMBIOS byte order)."""
    return bytes(reversed(value.bytes))


# a handler is a plain function when it answers from memory, a coroutine
# function when it has to wait (the bus, a persisted change)
Handler = Callable[[bytes], "tuple[int, bytes] | Awaitable[tuple[int, bytes]]"]


class CommandCore:
    def __init__(self, identity: DeviceIdentity, backend: Backend):
        self.identity = identity
        self.backend = backend
        self.active_sessions = lambda: 0  # set by the LAN endpoint's owner
        self.on_reset: Callable[[], None] = lambda: None  # Cold/Warm Reset: restart the service
        # (netfn, cmd) -> (lowest privilege allowed, handler)
        self.table: dict[tuple[int, int], tuple[int, Handler]] = {
            (NETFN_APP, 0x01): (PRIV_USER, self.get_device_id),
            (NETFN_APP, 0x04): (PRIV_USER, self.get_self_test),
            (NETFN_APP, 0x08): (PRIV_USER, self.get_device_guid),
            (NETFN_APP, 0x37): (PRIV_USER, self.get_system_guid),
            (NETFN_APP, 0x02): (PRIV_ADMIN, self.cold_reset),
            (NETFN_APP, 0x03): (PRIV_ADMIN, self.warm_reset),
            (NETFN_APP, 0x41): (PRIV_USER, self.get_channel_access),
            (NETFN_APP, 0x42): (PRIV_USER, self.get_channel_info),
            (NETFN_APP, 0x4E): (PRIV_USER, self.get_channel_payload_support),
            (NETFN_APP, 0x4F): (PRIV_USER, self.get_channel_payload_version),
        }

    def _handler(self, netfn: int, cmd: int, privilege: int):
        """The handler for this command at this privilege, or the refusal to answer with."""
        entry = self.table.get((netfn, cmd))
        if entry is None:
            return CC_INVALID_COMMAND, b""
        needed, handler = entry
        if privilege < needed:
            return CC_INSUFFICIENT_PRIVILEGE, b""
        return handler

    async def handle(self, netfn: int, cmd: int, data: bytes, privilege: int) -> tuple[int, bytes]:
        handler = self._handler(netfn, cmd, privilege)
        if isinstance(handler, tuple):
            return handler
        try:
            result = handler(data)
            return (await result) if inspect.isawaitable(result) else result
        except BackendError as exc:
            return exc.completion, b""

    def handle_now(self, netfn: int, cmd: int, data: bytes, privilege: int) -> tuple[int, bytes] | None:
        """Answer without the event loop when the handler is synchronous; None when it
        must be awaited (then use `handle`)."""
        handler = self._handler(netfn, cmd, privilege)
        if isinstance(handler, tuple):
            return handler
        if inspect.iscoroutinefunction(handler):
            return None
        try:
            return handler(data)
        except BackendError as exc:
            return exc.completion, b""

    # --- App (section 20) -----------------------------------------------------

    def get_device_id(self, data: bytes) -> tuple[int, bytes]:
        if data:
            return CC_REQUEST_LENGTH, b""
        ident = self.identity
        major, minor = ident.firmware
        minor_bcd = ((minor // 10) << 4) | (minor % 10)
        # chassis device, FRU inventory, SEL, SDR repository, sensor device
        additional = 0x80 | 0x08 | 0x04 | 0x02 | 0x01
        return CC_OK, (bytes((ident.device_id, ident.device_revision & 0x0F, major & 0x7F, minor_bcd,
                              0x02, additional))
                       + struct.pack("<I", ident.manufacturer_id)[:3]
                       + struct.pack("<H", ident.product_id) + bytes(4))

    def get_self_test(self, data: bytes) -> tuple[int, bytes]:
        if data:
            return CC_REQUEST_LENGTH, b""
        return CC_OK, b"\x55\x00"  # 55h: no error

    def get_device_guid(self, data: bytes) -> tuple[int, bytes]:
        if data:
            return CC_REQUEST_LENGTH, b""
        return CC_OK, self.identity.device_guid

    def get_system_guid(self, data: bytes) -> tuple[int, bytes]:
        if data:
            return CC_REQUEST_LENGTH, b""
        return CC_OK, self.identity.system_guid

    def cold_reset(self, data: bytes) -> tuple[int, bytes]:
        """Cold Reset (20.2): answer, then restart the IPMI service (sessions end)."""
        if data:
            return CC_REQUEST_LENGTH, b""
        self.on_reset()
        return CC_OK, b""

    def warm_reset(self, data: bytes) -> tuple[int, bytes]:
        return self.cold_reset(data)

    # --- channels (22.22-22.24) and payloads (24.x) ---------------------------------

    def get_channel_info(self, data: bytes) -> tuple[int, bytes]:
        if len(data) != 1:
            return CC_REQUEST_LENGTH, b""
        channel = data[0] & 0x0F
        if channel not in (LAN_CHANNEL, 0x0E):
            return CC_INVALID_FIELD, b""
        # 802.3 LAN medium, IPMB-1.0 protocol, multi-session; the IPMI IANA number (7154)
        sessions = 0x80 | (self.active_sessions() & 0x3F)
        return CC_OK, bytes((LAN_CHANNEL, 0x04, 0x01, sessions, 0xF2, 0x1B, 0x00, 0x00, 0x00))

    def get_channel_access(self, data: bytes) -> tuple[int, bytes]:
        if len(data) != 2:
            return CC_REQUEST_LENGTH, b""
        if data[0] & 0x0F not in (LAN_CHANNEL, 0x0E) or data[1] & 0xC0 not in (0x40, 0x80):
            return CC_INVALID_FIELD, b""
        # alerting off, per-message and user-level authentication on, always available; admin limit
        return CC_OK, bytes((0x22, 0x04))

    def get_channel_payload_support(self, data: bytes) -> tuple[int, bytes]:
        if len(data) != 1:
            return CC_REQUEST_LENGTH, b""
        if data[0] & 0x0F not in (LAN_CHANNEL, 0x0E):
            return CC_INVALID_FIELD, b""
        # standard payloads: IPMI (bit 0) and SOL (bit 1); session set-up: open session, RAKP 1-4
        return CC_OK, bytes((0x03, 0x00, 0x3F, 0x00, 0x00, 0x00, 0x00, 0x00))

    def get_channel_payload_version(self, data: bytes) -> tuple[int, bytes]:
        if len(data) != 2:
            return CC_REQUEST_LENGTH, b""
        if data[0] & 0x0F not in (LAN_CHANNEL, 0x0E):
            return CC_INVALID_FIELD, b""
        if data[1] not in (0x00, 0x01):
            return 0x80, b""  # payload type not available on this channel
        return CC_OK, b"\x10"  # version 1.0
