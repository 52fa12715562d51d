"""Wire formats of IPMI over LAN: RMCP, ASF, the IPMI 1.5 and 2.0 (RMCP+) session
headers and IPMI messages. Pure functions over bytes; no state, no I/O.

References: IPMI v2.0 rev 1.1, section 13 (LAN interface), tables 13-1..13-8;
DMTF ASF 2.0 section 3.2 for presence ping/pong.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass


class MalformedPacket(ValueError):
    """A datagram we cannot parse; `reason` is a short counter key."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


RMCP_VERSION = 0x06
RMCP_NO_ACK_SEQ = 0xFF
RMCP_CLASS_ASF = 0x06
RMCP_CLASS_IPMI = 0x07

AUTH_NONE = 0x00
AUTH_MD2 = 0x01
AUTH_MD5 = 0x02
AUTH_PASSWORD = 0x04
AUTH_RMCPPLUS = 0x06

PAYLOAD_IPMI = 0x00
PAYLOAD_SOL = 0x01
PAYLOAD_OPEN_SESSION_REQUEST = 0x10
PAYLOAD_OPEN_SESSION_RESPONSE = 0x11
PAYLOAD_RAKP1 = 0x12
PAYLOAD_RAKP2 = 0x13
PAYLOAD_RAKP3 = 0x14
PAYLOAD_RAKP4 = 0x15

ASF_IANA = 4542
ASF_PRESENCE_PING = 0x80
ASF_PRESENCE_PONG = 0x40

BMC_SLAVE_ADDR = 0x20


def checksum(data: bytes) -> int:
    """IPMI two's-complement checksum: sum(data) + checksum == 0 (mod 256)."""
    return -sum(data) & 0xFF


@dataclass(frozen=True)
class Rmcp:
    sequence: int
    msg_class: int
    body: bytes


def parse_rmcp(datagram: bytes) -> Rmcp:
    if len(datagram) < 4:
        raise MalformedPacket("short", f"{len(datagram)} bytes")
    version, _reserved, sequence, msg_class = datagram[:4]
    if version != RMCP_VERSION:
        raise MalformedPacket("not-rmcp", f"version {version:#x}")
    if msg_class & 0x80:  # an RMCP ACK: nothing to answer
        raise MalformedPacket("rmcp-ack")
    return Rmcp(sequence, msg_class & 0x1F, datagram[4:])


def rmcp_header(msg_class: int = RMCP_CLASS_IPMI, sequence: int = RMCP_NO_ACK_SEQ) -> bytes:
    return bytes((RMCP_VERSION, 0, sequence, msg_class))


# --- ASF presence ping / pong (IPMI 1.5 discovery) --------------------------------

def asf_pong_for(body: bytes) -> bytes | None:
    """Answer an ASF Presence Ping with a Pong naming IPMI support, else None."""
    if len(body) < 8:
        raise MalformedPacket("short-asf")
    iana, msg_type, tag, _reserved, _length = struct.unpack(">IBBBB", body[:8])
    if iana != ASF_IANA or msg_type != ASF_PRESENCE_PING:
        return None
    # Pong data: IANA, OEM-defined, supported entities (bit 7: IPMI), interactions, reserved
    pong_data = struct.pack(">II", ASF_IANA, 0) + bytes((0x81, 0x00)) + bytes(6)
    header = struct.pack(">IBBBB", ASF_IANA, ASF_PRESENCE_PONG, tag, 0, len(pong_data))
    return rmcp_header(RMCP_CLASS_ASF) + header + pong_data


# --- IPMI 1.5 session wrapper (table 13-8) --------------------------------------

@dataclass(frozen=True)
class V15Packet:
    auth_type: int
    sequence: int
    session_id: int
    auth_code: bytes  # 16 bytes, or b"" for auth type none
    message: bytes


def parse_v15(body: bytes) -> V15Packet:
    if len(body) < 10:
        raise MalformedPacket("short-v15")
    auth_type = body[0] & 0x0F
    sequence, session_id = struct.unpack_from("<II", body, 1)
    offset = 9
    auth_code = b""
    if auth_type != AUTH_NONE:
        auth_code = body[offset:offset + 16]
        offset += 16
    if len(body) < offset + 1:
        raise MalformedPacket("short-v15")
    length = body[offset]
    message = body[offset + 1:offset + 1 + length]
    if len(message) != length:
        raise MalformedPacket("truncated", "IPMI 1.5 message length")
    return V15Packet(auth_type, sequence, session_id, auth_code, message)


def build_v15(message: bytes, auth_type: int = AUTH_NONE, sequence: int = 0,
              session_id: int = 0, auth_code: bytes = b"") -> bytes:
    header = bytes((auth_type,)) + struct.pack("<II", sequence, session_id)
    if auth_type != AUTH_NONE:
        header += auth_code
    # a trailing pad byte is legacy (some LAN controllers needed even lengths); none here
    return rmcp_header() + header + bytes((len(message),)) + message


# --- IPMI 2.0 / RMCP+ session wrapper (table 13-8) -------------------------------

@dataclass(frozen=True)
class V20Packet:
    payload_type: int  # bits 5:0
    encrypted: bool
    authenticated: bool
    session_id: int
    sequence: int
    payload: bytes
    trailer: bytes  # integrity pad, pad length, next header, auth code (authenticated only)
    signed: bytes  # the bytes the auth code covers, minus the auth code itself: filled by split_trailer


def parse_v20(body: bytes) -> V20Packet:
    if len(body) < 12:
        raise MalformedPacket("short-v20")
    if body[0] & 0x0F != AUTH_RMCPPLUS:
        raise MalformedPacket("bad-auth-type")
    type_byte = body[1]
    payload_type = type_byte & 0x3F
    offset = 2
    if payload_type == 0x02:  # OEM explicit: IANA (4) + payload ID (2); we support none
        raise MalformedPacket("oem-payload")
    session_id, sequence, length = struct.unpack_from("<IIH", body, offset)
    offset += 10
    payload = body[offset:offset + length]
    if len(payload) != length:
        raise MalformedPacket("truncated", "RMCP+ payload length")
    trailer = body[offset + length:]
    return V20Packet(payload_type, bool(type_byte & 0x80), bool(type_byte & 0x40),
                     session_id, sequence, payload, trailer, body)


def split_trailer(packet: V20Packet, auth_code_len: int) -> tuple[bytes, bytes]:
    """Return (signed bytes, auth code) of an authenticated packet, checking the pad."""
    body = packet.signed
    if len(packet.trailer) < auth_code_len + 2:
        raise MalformedPacket("short-trailer")
    auth_code = body[len(body) - auth_code_len:]
    signed = body[:len(body) - auth_code_len]
    if signed[-1] != 0x07:  # next header: always 0x07 (table 13-8)
        raise MalformedPacket("bad-next-header")
    pad_len = signed[-2]
    if pad_len > 3 or len(packet.trailer) != pad_len + 2 + auth_code_len:
        raise MalformedPacket("bad-pad")
    if len(signed) % 4:
        raise MalformedPacket("bad-pad")
    return signed, auth_code


def v20_header(payload_type: int, session_id: int, sequence: int, payload_len: int,
               encrypted: bool = False, authenticated: bool = False) -> bytes:
    type_byte = payload_type | (0x80 if encrypted else 0) | (0x40 if authenticated else 0)
    return bytes((AUTH_RMCPPLUS, type_byte)) + struct.pack("<IIH", session_id, sequence, payload_len)


def integrity_pad(signed_len_without_pad: int) -> bytes:
    """Pad 0xFF so auth-type..next-header is a multiple of 4 (with pad length and next header)."""
    n = (4 - (signed_len_without_pad + 2) % 4) % 4
    return b"\xff" * n + bytes((n, 0x07))


# --- IPMI messages (table 13-4 / 13-5) -----------------------------------------

@dataclass(frozen=True)
class IpmiRequest:
    rs_addr: int
    netfn: int
    rs_lun: int
    rq_addr: int
    rq_seq: int
    rq_lun: int
    cmd: int
    data: bytes


def parse_ipmi_request(message: bytes) -> IpmiRequest:
    if len(message) < 7:
        raise MalformedPacket("short-ipmi")
    if checksum(message[:2]) != message[2]:
        raise MalformedPacket("bad-checksum", "header")
    if checksum(message[3:-1]) != message[-1]:
        raise MalformedPacket("bad-checksum", "body")
    rs_addr, netfn_lun, _c1, rq_addr, seq_lun, cmd = message[:6]
    return IpmiRequest(rs_addr, netfn_lun >> 2, netfn_lun & 3, rq_addr, seq_lun >> 2, seq_lun & 3,
                       cmd, bytes(message[6:-1]))


def build_ipmi_response(req: IpmiRequest, completion: int, data: bytes = b"") -> bytes:
    head = bytes((req.rq_addr, ((req.netfn | 1) << 2) | req.rq_lun))
    body = bytes((req.rs_addr, (req.rq_seq << 2) | req.rs_lun, req.cmd, completion)) + data
    return head + bytes((checksum(head),)) + body + bytes((checksum(body),))


def build_ipmi_request(netfn: int, cmd: int, data: bytes = b"", rq_seq: int = 0,
                       rq_addr: int = 0x81, rs_addr: int = BMC_SLAVE_ADDR) -> bytes:
    """The console side of the exchange; used by tests and benchmarks."""
    head = bytes((rs_addr, netfn << 2))
    body = bytes((rq_addr, rq_seq << 2, cmd)) + data
    return head + bytes((checksum(head),)) + body + bytes((checksum(body),))
