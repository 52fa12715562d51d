"""In-band IPMI: QEMU's external-BMC ("VM") wire protocol and the system
interface behind it, as sans-IO code.

QEMU's `ipmi-bmc-extern` device forwards what the guest writes to its KCS
interface over a byte stream (a chardev); OpenIPMI's lanserv README.vm and
QEMU's hw/ipmi/ipmi_bmc_extern.c define the framing:

- a message is `msg_id, netfn<<2|lun, cmd, data..., checksum` then 0xA0; the
  checksum makes the 8-bit sum of everything before 0xA0 zero (IPMB style).
  A response is `msg_id, (netfn|1)<<2|lun, cmd, completion, data..., checksum`.
- a control ("hardware operation") is `op, args...` then 0xA1, no checksum.
- 0xA0, 0xA1 and 0xAA inside a frame go out as 0xAA followed by the byte with
  bit 4 set; the receiver clears bit 4 of the byte after 0xAA.

QEMU announces itself on connect with VERSION (0xFF, 1) and CAPABILITIES
(0x08, bits); it sends RESET (0x04) when the machine resets. The BMC may send
ATTN, IRQ enable/disable, power-off, reset, NMI, graceful shutdown.

`VmDecoder.feed(bytes)` turns the stream into `VmRequest`/`VmControl`/
`VmFrameError` events; `encode_response`/`encode_control` make bytes.
`SystemInterface` is the BMC side of one connection: requests it can answer
from the interface's own state (global enables, message flags, the system
interface channel) it answers; the rest go to the command core as `Dispatch`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MSG_END = 0xA0  # ends a message
CONTROL_END = 0xA1  # ends a control
ESCAPE = 0xAA  # the next byte has bit 4 set; clear it
ESCAPE_BIT = 0x10
SPECIAL = (MSG_END, CONTROL_END, ESCAPE)

PROTOCOL_VERSION = 1
# control operations (ipmi_bmc_extern.c VM_CMD_*)
OP_NOATTN = 0x00
OP_ATTN = 0x01
OP_ATTN_IRQ = 0x02
OP_POWEROFF = 0x03
OP_RESET = 0x04  # QEMU -> BMC: the machine was reset; BMC -> QEMU: reset it
OP_ENABLE_IRQ = 0x05
OP_DISABLE_IRQ = 0x06
OP_SEND_NMI = 0x07
OP_CAPABILITIES = 0x08
OP_GRACEFUL_SHUTDOWN = 0x09
OP_VERSION = 0xFF
# capability bits QEMU announces (VM_CAPABILITIES_*)
CAPABILITY_NAMES = {0x01: "power", 0x02: "reset", 0x04: "irq", 0x08: "nmi", 0x10: "attn",
                    0x20: "graceful-shutdown"}

# IPMI 2.0 allows 32+ bytes through KCS; QEMU's buffer is MAX_IPMI_MSG_SIZE (300) + 2
MAX_FRAME = 302

NETFN_APP = 0x06
SYSTEM_INTERFACE_CHANNEL = 0x0F  # channel numbers, IPMI 2.0 table 6-1
CURRENT_CHANNEL = 0x0E
CC_OK = 0x00
CC_REQUEST_LENGTH = 0xC7
CC_INVALID_FIELD = 0xCC
CC_MESSAGE_QUEUE_EMPTY = 0x80  # Get Message (22.6) / Read Event Message Buffer (22.8): nothing there

# BMC Global Enables (22.1): bit 0 receive message queue interrupt, 1 event
# message buffer full interrupt, 2 event message buffer, 3 system event logging
ENABLE_RECEIVE_IRQ = 0x01
DEFAULT_GLOBAL_ENABLES = 0x08


def checksum(data: bytes) -> int:
    """The byte that makes the 8-bit sum of data + it zero (two's complement)."""
    return -sum(data) & 0xFF


def _escape(frame: bytes) -> bytes:
    out = bytearray()
    for byte in frame:
        if byte in SPECIAL:
            out += bytes((ESCAPE, byte | ESCAPE_BIT))
        else:
            out.append(byte)
    return bytes(out)


def encode_message(body: bytes) -> bytes:
    """Any message (body without checksum) as it goes on the wire."""
    return _escape(body + bytes((checksum(body),))) + bytes((MSG_END,))


def encode_response(msg_id: int, netfn: int, lun: int, cmd: int, completion: int, data: bytes = b"") -> bytes:
    """The response to a request: netfn is the request's; the response netfn is netfn|1."""
    return encode_message(bytes((msg_id & 0xFF, ((netfn | 1) << 2) | (lun & 3), cmd & 0xFF, completion & 0xFF))
                          + data)


def encode_request(msg_id: int, netfn: int, lun: int, cmd: int, data: bytes = b"") -> bytes:
    """A request as QEMU sends it (the tests play QEMU with this)."""
    return encode_message(bytes((msg_id & 0xFF, (netfn << 2) | (lun & 3), cmd & 0xFF)) + data)


def encode_control(op: int, *args: int) -> bytes:
    return _escape(bytes((op, *args))) + bytes((CONTROL_END,))


@dataclass(frozen=True)
class VmRequest:
    msg_id: int
    netfn: int
    lun: int
    cmd: int
    data: bytes


@dataclass(frozen=True)
class VmControl:
    op: int
    args: bytes


@dataclass(frozen=True)
class VmFrameError:
    reason: str  # "checksum", "too-short", "too-long", "escape", "response-netfn"


class VmDecoder:
    """Bytes in, frames out; one per connection. Bad frames are reported and
    skipped: the next end marker starts afresh (as QEMU's receiver does)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._escaped = False
        self._overflow = False

    def feed(self, data: bytes) -> list[VmRequest | VmControl | VmFrameError]:
        events: list[VmRequest | VmControl | VmFrameError] = []
        for byte in data:
            if byte == MSG_END or byte == CONTROL_END:
                event = self._frame(byte)
                if event is not None:
                    events.append(event)
                self._buf.clear()
                self._escaped = self._overflow = False
            elif byte == ESCAPE:
                self._escaped = True
            else:
                if self._escaped:
                    byte &= ~ESCAPE_BIT & 0xFF
                    self._escaped = False
                if len(self._buf) >= MAX_FRAME:
                    self._overflow = True
                else:
                    self._buf.append(byte)
        return events

    def _frame(self, end: int) -> VmRequest | VmControl | VmFrameError | None:
        frame = bytes(self._buf)
        if self._escaped:
            return VmFrameError("escape")
        if self._overflow:
            return VmFrameError("too-long")
        if end == CONTROL_END:
            return VmControl(frame[0], frame[1:]) if frame else None
        if len(frame) < 4:  # msg_id, netfn/lun, cmd, checksum
            return VmFrameError("too-short")
        if sum(frame) & 0xFF:
            return VmFrameError("checksum")
        netfn = frame[1] >> 2
        if netfn & 1:
            return VmFrameError("response-netfn")  # QEMU only ever sends requests
        return VmRequest(msg_id=frame[0], netfn=netfn, lun=frame[1] & 3, cmd=frame[2], data=frame[3:-1])


# --- the system interface (one connection's BMC side) ------------------------------


@dataclass(frozen=True)
class Write:
    """Bytes for QEMU. `control` writes must end QEMU's read: QEMU drops what
    follows a control in the same read, so the edge leaves a gap after one."""

    data: bytes
    control: bool = False


@dataclass(frozen=True)
class Dispatch:
    """A request for the command core, answered through `SystemInterface.respond`."""

    request: VmRequest


@dataclass(frozen=True)
class MachineReset:
    """QEMU says the machine was reset (its RESET control)."""


@dataclass(frozen=True)
class PeerHello:
    """QEMU's version and capabilities, as it announced them on connect."""

    version: int | None
    capabilities: tuple[str, ...]


@dataclass
class SystemInterface:
    """The BMC's KCS system interface: sessionless, at administrator privilege
    (IPMI 2.0 6.12.2: the system interface has no authentication)."""

    global_enables: int = DEFAULT_GLOBAL_ENABLES
    version: int | None = None
    capabilities: int = 0
    requests: int = 0
    frame_errors: int = 0
    decoder: VmDecoder = field(default_factory=VmDecoder)

    def capability_names(self) -> tuple[str, ...]:
        return tuple(name for bit, name in CAPABILITY_NAMES.items() if self.capabilities & bit)

    def receive(self, data: bytes) -> list:
        actions: list = []
        for event in self.decoder.feed(data):
            if isinstance(event, VmFrameError):
                self.frame_errors += 1
            elif isinstance(event, VmControl):
                actions += self._control(event)
            else:
                self.requests += 1
                actions += self._request(event)
        return actions

    def respond(self, request: VmRequest, completion: int, data: bytes = b"") -> Write:
        return Write(encode_response(request.msg_id, request.netfn, request.lun, request.cmd, completion, data))

    def _control(self, event: VmControl) -> list:
        if event.op == OP_VERSION:
            self.version = event.args[0] if event.args else None
        elif event.op == OP_CAPABILITIES:
            self.capabilities = event.args[0] if event.args else 0
            return [PeerHello(self.version, self.capability_names())]
        elif event.op == OP_RESET:
            self.global_enables = DEFAULT_GLOBAL_ENABLES  # the next OS starts from scratch
            return [MachineReset()]
        return []

    def _request(self, req: VmRequest) -> list:
        local = self._local(req)
        if local is None:
            return [Dispatch(req)]
        actions, completion, data = local
        return actions + [self.respond(req, completion, data)]

    def _local(self, req: VmRequest) -> tuple[list, int, bytes] | None:
        """Commands that belong to the system interface itself (IPMI 2.0 22.x)."""
        if req.netfn != NETFN_APP:
            return None
        data = req.data
        if req.cmd == 0x2E:  # Set BMC Global Enables (22.1)
            if len(data) != 1:
                return [], CC_REQUEST_LENGTH, b""
            self.global_enables = data[0]
            # QEMU's KCS raises interrupts only while the BMC has them enabled: say so
            # every time (QEMU may have been reset or reconnected since), before the answer
            op = OP_ENABLE_IRQ if data[0] & ENABLE_RECEIVE_IRQ else OP_DISABLE_IRQ
            return [Write(encode_control(op), control=True)], CC_OK, b""
        if req.cmd == 0x2F:  # Get BMC Global Enables (22.2)
            return ([], CC_REQUEST_LENGTH, b"") if data else ([], CC_OK, bytes((self.global_enables,)))
        if req.cmd == 0x30:  # Clear Message Flags (22.3): nothing is ever queued
            return ([], CC_REQUEST_LENGTH, b"") if len(data) != 1 else ([], CC_OK, b"")
        if req.cmd == 0x31:  # Get Message Flags (22.4): no message, no event, no watchdog pre-timeout
            return ([], CC_REQUEST_LENGTH, b"") if data else ([], CC_OK, b"\x00")
        if req.cmd in (0x33, 0x35):  # Get Message (22.6), Read Event Message Buffer (22.8)
            return [], CC_MESSAGE_QUEUE_EMPTY, b""
        if req.cmd == 0x42 and len(data) == 1 and data[0] & 0x0F in (CURRENT_CHANNEL, SYSTEM_INTERFACE_CHANNEL):
            # Get Channel Info (22.24) about this channel: system interface medium (0Ch),
            # KCS protocol (05h), session-less; IPMI's IANA number 7154
            return [], CC_OK, bytes((SYSTEM_INTERFACE_CHANNEL, 0x0C, 0x05, 0x00, 0xF2, 0x1B, 0x00, 0x00, 0x00))
        return None
