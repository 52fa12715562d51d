"""The remote-console side of RMCP+, written for tests and benchmarks.

It drives a LanEndpoint (or real UDP) through Open Session, RAKP 1-4 and sealed
IPMI requests, checking every value the BMC sends back the way ipmitool does.
"""

from __future__ import annotations

import hmac
import os
import struct

from services.ipmi import wire
from services.ipmi.crypto import SUITES, aes_decrypt, aes_encrypt, derive_keys, hmac_digest, user_key


class HandshakeFailed(AssertionError):
    def __init__(self, stage: str, status: int):
        super().__init__(f"{stage} status {status:#04x}")
        self.stage = stage
        self.status = status


class Console:
    def __init__(self, user: bytes, password: bytes, suite_id: int = 17, role: int = 0x14):
        self.user = user
        self.password = password
        self.suite = SUITES[suite_id]
        self.role = role  # name-only lookup (0x10) | requested privilege
        self.remote_id = struct.unpack("<I", os.urandom(4))[0] | 1
        self.local_id = 0
        self.keys = None
        self.out_seq = 0
        self.rq_seq = 0
        self.guid = b""

    # --- handshake: each step builds a datagram or checks the answer ----------

    def open_session_request(self, max_priv: int = 4) -> bytes:
        s = self.suite
        body = bytes((0x01, max_priv, 0, 0)) + struct.pack("<I", self.remote_id)
        body += bytes((0, 0, 0, 8, s.auth, 0, 0, 0, 1, 0, 0, 8, s.integrity, 0, 0, 0,
                       2, 0, 0, 8, s.confidentiality, 0, 0, 0))
        return _sessionless(wire.PAYLOAD_OPEN_SESSION_REQUEST, body)

    def open_session_response(self, datagram: bytes) -> None:
        payload = _payload(datagram, wire.PAYLOAD_OPEN_SESSION_RESPONSE)
        if payload[1] != 0:
            raise HandshakeFailed("open session", payload[1])
        assert struct.unpack_from("<I", payload, 4)[0] == self.remote_id
        self.local_id = struct.unpack_from("<I", payload, 8)[0]
        self.max_priv = payload[2]

    def rakp1(self) -> bytes:
        self.rm = os.urandom(16)
        body = bytes((0x02, 0, 0, 0)) + struct.pack("<I", self.local_id) + self.rm
        body += bytes((self.role, 0, 0, len(self.user))) + self.user
        return _sessionless(wire.PAYLOAD_RAKP1, body)

    def rakp2(self, datagram: bytes) -> None:
        payload = _payload(datagram, wire.PAYLOAD_RAKP2)
        if payload[1] != 0:
            raise HandshakeFailed("rakp2", payload[1])
        self.rc, self.guid, auth_code = payload[8:24], payload[24:40], payload[40:]
        expected = hmac_digest(self.suite.digest, user_key(self.password),
                               struct.pack("<II", self.remote_id, self.local_id) + self.rm + self.rc
                               + self.guid + bytes((self.role, len(self.user))) + self.user)
        if not hmac.compare_digest(expected, auth_code):
            raise HandshakeFailed("rakp2 auth code", 0xFF)

    def rakp3(self, password: bytes | None = None) -> bytes:
        key = user_key(self.password if password is None else password)
        auth = hmac_digest(self.suite.digest, key, self.rc + struct.pack("<I", self.remote_id)
                           + bytes((self.role, len(self.user))) + self.user)
        body = bytes((0x03, 0, 0, 0)) + struct.pack("<I", self.local_id) + auth
        return _sessionless(wire.PAYLOAD_RAKP3, body)

    def rakp4(self, datagram: bytes) -> None:
        payload = _payload(datagram, wire.PAYLOAD_RAKP4)
        if payload[1] != 0:
            raise HandshakeFailed("rakp4", payload[1])
        self.keys = derive_keys(self.suite.digest, user_key(self.password), self.rm, self.rc, self.role, self.user)
        icv = hmac_digest(self.suite.digest, self.keys.sik,
                          self.rm + struct.pack("<I", self.local_id) + self.guid)[:self.suite.icv_len]
        if not hmac.compare_digest(icv, payload[8:]):
            raise HandshakeFailed("rakp4 icv", 0xFF)

    # --- in-session messages ---------------------------------------------------

    def request(self, netfn: int, cmd: int, data: bytes = b"", seq: int | None = None) -> bytes:
        self.rq_seq = (self.rq_seq + 1) & 0x3F
        message = wire.build_ipmi_request(netfn, cmd, data, self.rq_seq)
        if seq is None:
            self.out_seq += 1
            seq = self.out_seq
        return self.seal(message, seq)

    def seal(self, message: bytes, seq: int) -> bytes:
        s = self.suite
        payload = aes_encrypt(self.keys.aes_key, message) if s.confidentiality else message
        body = wire.v20_header(wire.PAYLOAD_IPMI, self.local_id, seq, len(payload),
                               bool(s.confidentiality), bool(s.integrity)) + payload
        if s.integrity:
            body += wire.integrity_pad(len(body))
            body += hmac_digest(s.digest, self.keys.k1, body)[:s.auth_code_len]
        return wire.rmcp_header() + body

    def unseal(self, datagram: bytes) -> tuple[int, bytes]:
        """Check and open a BMC answer: returns (completion code, data)."""
        rmcp = wire.parse_rmcp(datagram)
        packet = wire.parse_v20(rmcp.body)
        assert packet.session_id == self.remote_id, "answer carries the console's session ID"
        s = self.suite
        if s.integrity:
            signed, code = wire.split_trailer(packet, s.auth_code_len)
            assert hmac.compare_digest(hmac_digest(s.digest, self.keys.k1, signed)[:s.auth_code_len], code)
        payload = aes_decrypt(self.keys.aes_key, packet.payload) if s.confidentiality else packet.payload
        assert wire.checksum(payload[:2]) == payload[2] and wire.checksum(payload[3:-1]) == payload[-1]
        self.last_bmc_seq = packet.sequence
        return payload[6], bytes(payload[7:-1])


def _sessionless(payload_type: int, body: bytes) -> bytes:
    return wire.rmcp_header() + wire.v20_header(payload_type, 0, 0, len(body)) + body


def _payload(datagram: bytes, payload_type: int) -> bytes:
    packet = wire.parse_v20(wire.parse_rmcp(datagram).body)
    assert packet.payload_type == payload_type, f"expected payload {payload_type:#x}, got {packet.payload_type:#x}"
    return packet.payload


class Console15:
    """The remote-console side of an IPMI 1.5 session (MD5 or straight password)."""

    def __init__(self, user: bytes, password: bytes, auth_type: int = wire.AUTH_MD5):
        self.user = user
        self.password16 = password[:16].ljust(16, b"\x00")
        self.auth_type = auth_type
        self.session_id = 0
        self.out_seq = 0
        self.rq_seq = 0

    def challenge_request(self) -> bytes:
        data = bytes((self.auth_type,)) + self.user.ljust(16, b"\x00")
        return wire.build_v15(wire.build_ipmi_request(0x06, 0x39, data))

    def challenge_response(self, datagram: bytes) -> None:
        message = wire.parse_v15(wire.parse_rmcp(datagram).body).message
        if message[6] != 0:
            raise HandshakeFailed("get session challenge", message[6])
        self.session_id = struct.unpack_from("<I", message, 7)[0]
        self.challenge = message[11:27]

    def activate_request(self, initial_out: int = 0x1000) -> bytes:
        self.initial_out = initial_out
        data = bytes((self.auth_type, 0x04)) + self.challenge + struct.pack("<I", initial_out)
        return self._sealed(wire.build_ipmi_request(0x06, 0x3A, data), 0)

    def activate_response(self, datagram: bytes) -> None:
        packet = wire.parse_v15(wire.parse_rmcp(datagram).body)
        message = packet.message
        if message[6] != 0:
            raise HandshakeFailed("activate session", message[6])
        assert packet.sequence == self.initial_out
        self.session_id = struct.unpack_from("<I", message, 8)[0]
        self.out_seq = struct.unpack_from("<I", message, 12)[0] - 1

    def request(self, netfn: int, cmd: int, data: bytes = b"") -> bytes:
        self.rq_seq = (self.rq_seq + 1) & 0x3F
        self.out_seq += 1
        return self._sealed(wire.build_ipmi_request(netfn, cmd, data, self.rq_seq), self.out_seq)

    def _sealed(self, message: bytes, seq: int) -> bytes:
        from services.ipmi.lan import v15_auth_code
        code = v15_auth_code(self.auth_type, self.password16, self.session_id, seq, message)
        return wire.build_v15(message, self.auth_type, seq, self.session_id, code)

    def unseal(self, datagram: bytes) -> tuple[int, bytes]:
        from services.ipmi.lan import v15_auth_code
        packet = wire.parse_v15(wire.parse_rmcp(datagram).body)
        expected = v15_auth_code(self.auth_type, self.password16, packet.session_id, packet.sequence,
                                 packet.message)
        assert hmac.compare_digest(expected, packet.auth_code)
        self.last_bmc_seq = packet.sequence
        return packet.message[6], bytes(packet.message[7:-1])
