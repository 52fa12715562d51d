"""The IPMI-over-LAN endpoint as a sans-IO state machine.

`LanEndpoint.datagram(bytes, peer, now)` returns actions: datagrams to send,
IPMI requests for the command core to run, and session notes for the bus. The
asyncio edge (server.py) moves bytes and runs commands; nothing here blocks.

The RMCP+ handshake (Open Session, RAKP 1-4) and the session-layer commands
(channel authentication capabilities, cipher suites, session privilege, close)
live here because they need the session table; every other command goes out as
a Dispatch.
"""

from __future__ import annotations

import hmac
import os
import struct
from collections import Counter
from dataclasses import dataclass

from services.ipmi import wire
from services.ipmi.crypto import (SUITES, CipherSuite, DecryptError, aes_decrypt, aes_encrypt, derive_keys,
                                  hmac_digest, suite_for, user_key)
from services.ipmi.session import (PRIV_ADMIN, PRIV_CALLBACK, PRIV_NAMES, PRIV_OEM, PRIV_USER, Session,
                                   SessionTable, TableFull)
from services.ipmi.users import UserStore

LAN_CHANNEL = 1
NETFN_APP = 0x06
CMD_GET_CHANNEL_AUTH_CAPS = 0x38
CMD_SET_SESSION_PRIVILEGE = 0x3B
CMD_CLOSE_SESSION = 0x3C
CMD_GET_CHANNEL_CIPHER_SUITES = 0x54
SESSIONLESS_COMMANDS = {(NETFN_APP, CMD_GET_CHANNEL_AUTH_CAPS), (NETFN_APP, CMD_GET_CHANNEL_CIPHER_SUITES)}

# RMCP+ status codes (table 13-15)
RMCP_OK = 0x00
RMCP_NO_RESOURCES = 0x01
RMCP_INVALID_SESSION_ID = 0x02
RMCP_INVALID_ROLE = 0x09
RMCP_UNAUTHORIZED_ROLE = 0x0A
RMCP_UNAUTHORIZED_NAME = 0x0D
RMCP_INVALID_ICV = 0x0F
RMCP_NO_CIPHER_SUITE_MATCH = 0x11

RETRANSMIT_MEMORY = 5.0  # seconds a finished answer is kept for a retransmitted request


@dataclass(frozen=True)
class Send:
    data: bytes
    peer: tuple


@dataclass(frozen=True)
class Dispatch:
    """An IPMI request for the command core; answer it with `LanEndpoint.respond`."""

    request: wire.IpmiRequest
    privilege: int
    session_id: int  # local session ID; 0 for a sessionless request
    form: str  # "v15" or "v20": how the answer is wrapped
    peer: tuple
    username: str


@dataclass(frozen=True)
class SessionNote:
    what: str  # opened, closed, expired, auth-failed
    peer: tuple
    user: str = ""
    privilege: int = 0
    cipher_suite: int = -1


class LanEndpoint:
    def __init__(self, users: UserStore, guid: bytes, suites: tuple[int, ...] = (17, 3, 2, 1),
                 session_limit: int = 32, idle_timeout: float = 60.0):
        self.users = users
        self.guid = guid
        self.suites = tuple(s for s in suites if s in SUITES)
        self.sessions = SessionTable(session_limit, idle_timeout)
        self.dropped: Counter[str] = Counter()
        self.datagrams = 0
        self.sessions_opened = 0
        self.auth_failures = 0

    # --- entry points ---------------------------------------------------------

    def datagram(self, data: bytes, peer: tuple, now: float) -> list:
        """Feed one UDP datagram; returns a list of Send, Dispatch and SessionNote."""
        self.datagrams += 1
        try:
            rmcp = wire.parse_rmcp(data)
            if rmcp.msg_class == wire.RMCP_CLASS_ASF:
                pong = wire.asf_pong_for(rmcp.body)
                return [Send(pong, peer)] if pong else self._drop("asf-not-ping")
            if rmcp.msg_class != wire.RMCP_CLASS_IPMI:
                return self._drop("rmcp-class")
            if not rmcp.body:
                return self._drop("short")
            if rmcp.body[0] & 0x0F == wire.AUTH_RMCPPLUS:
                return self._v20(wire.parse_v20(rmcp.body), peer, now)
            return self._v15(wire.parse_v15(rmcp.body), peer, now)
        except wire.MalformedPacket as exc:
            return self._drop(exc.reason)

    def respond(self, dispatch: Dispatch, completion: int, data: bytes, now: float) -> Send | None:
        """Wrap the command core's answer; None when its session is gone meanwhile."""
        req = dispatch.request
        message = wire.build_ipmi_response(req, completion, data)
        if dispatch.session_id == 0:
            return self._sessionless_reply(dispatch.form, message, dispatch.peer)
        session = self.sessions.get(dispatch.session_id)
        if session is None:
            return None
        key = _request_key(req)
        session.in_flight.discard(key)
        session.answered[key] = (now, completion, data)
        if len(session.answered) > 16:
            session.answered.pop(next(iter(session.answered)))
        return Send(self._seal(session, wire.PAYLOAD_IPMI, message), session.peer)

    def expire(self, now: float) -> list[SessionNote]:
        notes = []
        for s in self.sessions.expire(now):
            # a console that could not verify our RAKP2 (wrong password) just goes quiet
            what = "auth-failed" if s.state == "rakp2-sent" else "expired"
            if what == "auth-failed":
                self.auth_failures += 1
            notes.append(SessionNote(what, s.peer, s.username.decode(errors="replace"), s.privilege, s.suite.id))
        return notes

    def close_all(self) -> None:
        self.sessions.by_local_id.clear()

    # --- helpers --------------------------------------------------------------

    def _drop(self, reason: str) -> list:
        self.dropped[reason] += 1
        return []

    def _sessionless_reply(self, form: str, message: bytes, peer) -> Send:
        if form == "v15":
            return Send(wire.build_v15(message), peer)
        header = wire.v20_header(wire.PAYLOAD_IPMI, 0, 0, len(message))
        return Send(wire.rmcp_header() + header + message, peer)

    def _seal(self, session: Session, payload_type: int, payload: bytes) -> bytes:
        """Encrypt and sign a payload for `session` (table 13-8 trailer)."""
        suite, keys = session.suite, session.keys
        encrypted = suite.confidentiality != 0
        if encrypted:
            payload = aes_encrypt(keys.aes_key, payload)
        authenticated = suite.integrity != 0
        header = wire.v20_header(payload_type, session.remote_id, session.next_out_seq(), len(payload),
                                 encrypted, authenticated)
        body = header + payload
        if authenticated:
            body += wire.integrity_pad(len(body))
            body += hmac_digest(suite.digest, keys.k1, body)[:suite.auth_code_len]
        return wire.rmcp_header() + body

    # --- IPMI 1.5 packets: only the sessionless discovery commands for now -----

    def _v15(self, packet: wire.V15Packet, peer, now: float) -> list:
        if packet.session_id != 0 or packet.auth_type != wire.AUTH_NONE:
            return self._drop("v15-session-unsupported")
        req = wire.parse_ipmi_request(packet.message)
        return self._sessionless(req, "v15", peer)

    def _sessionless(self, req: wire.IpmiRequest, form: str, peer) -> list:
        if (req.netfn, req.cmd) not in SESSIONLESS_COMMANDS:
            return self._drop("sessionless-command")
        completion, data = self._session_command(None, req)
        return [self._sessionless_reply(form, wire.build_ipmi_response(req, completion, data), peer)]

    # --- IPMI 2.0 / RMCP+ -----------------------------------------------------

    def _v20(self, packet: wire.V20Packet, peer, now: float) -> list:
        if packet.session_id == 0:
            if packet.encrypted or packet.authenticated:
                return self._drop("bad-sessionless-flags")
            if packet.payload_type == wire.PAYLOAD_OPEN_SESSION_REQUEST:
                return self._open_session(packet.payload, peer, now)
            if packet.payload_type == wire.PAYLOAD_RAKP1:
                return self._rakp1(packet.payload, peer, now)
            if packet.payload_type == wire.PAYLOAD_RAKP3:
                return self._rakp3(packet.payload, peer, now)
            if packet.payload_type == wire.PAYLOAD_IPMI:
                return self._sessionless(wire.parse_ipmi_request(packet.payload), "v20", peer)
            return self._drop("sessionless-payload")
        session = self.sessions.get(packet.session_id)
        if session is None or session.state != "active":
            return self._drop("unknown-session")
        if peer[0] != session.peer[0]:
            return self._drop("wrong-peer")
        suite = session.suite
        if suite.integrity:
            if not packet.authenticated:
                return self._drop("unauthenticated")
            signed, auth_code = wire.split_trailer(packet, suite.auth_code_len)
            expected = hmac_digest(suite.digest, session.keys.k1, signed)[:suite.auth_code_len]
            if not hmac.compare_digest(expected, auth_code):
                return self._drop("bad-auth-code")
        if not session.inbound.accept(packet.sequence):
            return self._drop("replay")
        payload = packet.payload
        if suite.confidentiality:
            if not packet.encrypted:
                return self._drop("unencrypted")
            try:
                payload = aes_decrypt(session.keys.aes_key, payload)
            except DecryptError:
                return self._drop("bad-encryption")
        session.last_seen = now
        if packet.payload_type != wire.PAYLOAD_IPMI:
            return self._drop("payload-type")
        return self._in_session(session, wire.parse_ipmi_request(payload), now)

    def _in_session(self, session: Session, req: wire.IpmiRequest, now: float) -> list:
        if req.netfn == NETFN_APP and req.cmd in (CMD_GET_CHANNEL_AUTH_CAPS, CMD_GET_CHANNEL_CIPHER_SUITES,
                                                  CMD_SET_SESSION_PRIVILEGE, CMD_CLOSE_SESSION):
            completion, data = self._session_command(session, req)
            reply = self._seal(session, wire.PAYLOAD_IPMI, wire.build_ipmi_response(req, completion, data))
            actions: list = [Send(reply, session.peer)]
            if req.cmd == CMD_CLOSE_SESSION and completion == 0:
                closed_id = struct.unpack("<I", req.data[:4])[0]
                closed = self.sessions.remove(closed_id)
                if closed is not None:
                    actions.append(SessionNote("closed", closed.peer, closed.username.decode(errors="replace"),
                                               closed.privilege, closed.suite.id))
            return actions
        key = _request_key(req)
        if key in session.in_flight:
            return self._drop("retransmit-in-progress")
        answered = session.answered.get(key)
        if answered and now - answered[0] < RETRANSMIT_MEMORY:
            _, completion, data = answered
            message = wire.build_ipmi_response(req, completion, data)
            return [Send(self._seal(session, wire.PAYLOAD_IPMI, message), session.peer)]
        session.in_flight.add(key)
        return [Dispatch(req, session.privilege, session.local_id, "v20", session.peer,
                         session.username.decode(errors="replace"))]

    # --- session-layer commands ----------------------------------------------

    def _session_command(self, session: Session | None, req: wire.IpmiRequest) -> tuple[int, bytes]:
        if req.cmd == CMD_GET_CHANNEL_AUTH_CAPS:
            return self._auth_caps(req.data)
        if req.cmd == CMD_GET_CHANNEL_CIPHER_SUITES:
            return self._cipher_suites(req.data)
        if req.cmd == CMD_SET_SESSION_PRIVILEGE:
            return self._set_privilege(session, req.data)
        if req.cmd == CMD_CLOSE_SESSION:
            if len(req.data) < 4:
                return 0xC7, b""
            target = struct.unpack("<I", req.data[:4])[0]
            other = self.sessions.get(target)
            if other is None:
                return 0x87, b""  # invalid session ID in request
            if other is not session and session.privilege < PRIV_ADMIN:
                return 0xD4, b""
            return 0x00, b""
        return 0xC1, b""

    def _auth_caps(self, data: bytes) -> tuple[int, bytes]:
        """Get Channel Authentication Capabilities (22.13)."""
        if len(data) != 2:
            return 0xC7, b""
        channel = data[0] & 0x0F
        if channel not in (LAN_CHANNEL, 0x0E):
            return 0xCC, b""
        extended = bool(data[0] & 0x80)
        auth_types = 0x80 if extended else 0x00  # bit 7: IPMI 2.0 extended capabilities follow
        login = 0x04  # non-null user names enabled; per-message and user-level auth on; K_g default
        ext_caps = 0x02 if extended else 0x00  # supports IPMI 2.0 (RMCP+) connections
        return 0x00, bytes((LAN_CHANNEL, auth_types, login, ext_caps, 0, 0, 0, 0))

    def _cipher_suites(self, data: bytes) -> tuple[int, bytes]:
        """Get Channel Cipher Suites (22.15): 16 bytes of the record list per call."""
        if len(data) != 3:
            return 0xC7, b""
        channel = data[0] & 0x0F
        if channel not in (LAN_CHANNEL, 0x0E):
            return 0xCC, b""
        if data[1] != 0:  # payload type: only IPMI
            return 0xCC, b""
        by_suite = bool(data[2] & 0x80)
        index = data[2] & 0x3F
        if by_suite:
            records = b"".join(SUITES[s].record() for s in self.suites)
        else:
            algs = []
            for s in (SUITES[i] for i in self.suites):
                for tag in (s.auth, 0x40 | s.integrity, 0x80 | s.confidentiality):
                    if tag not in algs:
                        algs.append(tag)
            records = bytes(algs)
        return 0x00, bytes((LAN_CHANNEL,)) + records[index * 16:index * 16 + 16]

    def _set_privilege(self, session: Session | None, data: bytes) -> tuple[int, bytes]:
        """Set Session Privilege Level (22.18)."""
        if session is None:
            return 0xD4, b""
        if len(data) != 1:
            return 0xC7, b""
        wanted = data[0] & 0x0F
        if wanted == 0:
            return 0x00, bytes((session.privilege,))
        if wanted < PRIV_USER or wanted > PRIV_OEM:
            return 0xCC, b""
        if wanted > session.user_privilege:
            return 0x81, b""  # exceeds the user's privilege limit
        if wanted > session.max_privilege:
            return 0x81, b""  # exceeds the limit negotiated for this session
        session.privilege = wanted
        return 0x00, bytes((wanted,))

    # --- RMCP+ handshake (13.17-13.23) ----------------------------------------

    def _open_session(self, payload: bytes, peer, now: float) -> list:
        if len(payload) < 32:
            return self._drop("short-open-session")
        tag, requested_priv = payload[0], payload[1] & 0x0F
        remote_id = struct.unpack_from("<I", payload, 4)[0]
        algs = {}
        for offset in (8, 16, 24):
            kind, length, alg = payload[offset], payload[offset + 3], payload[offset + 4] & 0x3F
            algs[kind] = alg if length == 8 else None  # length 0: "any" (a null payload)
        if set(algs) != {0, 1, 2} or requested_priv > PRIV_OEM or remote_id == 0:
            return self._drop("bad-open-session")

        def reply(status: int, max_priv: int = 0, local_id: int = 0, suite: CipherSuite | None = None) -> list:
            body = bytes((tag, status, max_priv, 0)) + struct.pack("<II", remote_id, local_id)
            if suite is not None:
                body += bytes((0, 0, 0, 8, suite.auth, 0, 0, 0, 1, 0, 0, 8, suite.integrity, 0, 0, 0,
                               2, 0, 0, 8, suite.confidentiality, 0, 0, 0))
            header = wire.v20_header(wire.PAYLOAD_OPEN_SESSION_RESPONSE, 0, 0, len(body))
            return [Send(wire.rmcp_header() + header + body, peer)]

        suite = self._choose_suite(algs)
        if suite is None:
            return reply(RMCP_NO_CIPHER_SUITE_MATCH)
        max_priv = requested_priv or PRIV_ADMIN  # 0: the highest level the algorithms allow
        try:
            session = self.sessions.create(remote_id, peer, suite, max_priv, now)
        except TableFull:
            return reply(RMCP_NO_RESOURCES)
        return reply(RMCP_OK, max_priv, session.local_id, suite)

    def _choose_suite(self, algs: dict) -> CipherSuite | None:
        """Only ever the algorithms proposed; a null proposal takes our strongest."""
        for suite_id in self.suites:
            s = SUITES[suite_id]
            if all(algs[k] in (None, v) for k, v in ((0, s.auth), (1, s.integrity), (2, s.confidentiality))):
                return s
        return None

    def _rakp1(self, payload: bytes, peer, now: float) -> list:
        if len(payload) < 28:
            return self._drop("short-rakp1")
        tag = payload[0]
        local_id = struct.unpack_from("<I", payload, 4)[0]
        rm, role, name_len = payload[8:24], payload[24], payload[27]
        username = payload[28:28 + name_len]
        session = self.sessions.get(local_id)

        def reply(status: int, auth_code: bytes = b"") -> list:
            remote_id = session.remote_id if session else 0
            body = bytes((tag, status, 0, 0)) + struct.pack("<I", remote_id)
            if status == RMCP_OK:
                body += session.rc + self.guid + auth_code
            header = wire.v20_header(wire.PAYLOAD_RAKP2, 0, 0, len(body))
            return [Send(wire.rmcp_header() + header + body, peer)]

        if session is None or session.state != "opening" or session.peer[0] != peer[0]:
            return reply(RMCP_INVALID_SESSION_ID)
        if len(username) != name_len or name_len > 16:
            self.sessions.remove(local_id)
            return reply(0x0C)  # invalid name length
        role_priv = role & 0x0F
        user = self.users.lookup(bytes(username))
        if user is None:
            self.sessions.remove(local_id)
            self.auth_failures += 1
            return reply(RMCP_UNAUTHORIZED_NAME) + [SessionNote("auth-failed", peer, username.decode(errors="replace"))]
        if not PRIV_CALLBACK <= role_priv <= PRIV_OEM:
            self.sessions.remove(local_id)
            return reply(RMCP_INVALID_ROLE)
        if role_priv > user.privilege or role_priv > session.max_privilege:
            self.sessions.remove(local_id)
            return reply(RMCP_UNAUTHORIZED_ROLE)
        session.rm, session.rc = bytes(rm), os.urandom(16)
        session.role, session.username, session.user_privilege = role, bytes(username), user.privilege
        session.max_privilege = role_priv
        session.state = "rakp2-sent"
        kuid = user_key(user.password)
        auth_code = hmac_digest(session.suite.digest, kuid,
                                struct.pack("<II", session.remote_id, session.local_id) + session.rm
                                + session.rc + self.guid + bytes((role, len(username))) + session.username)
        return reply(RMCP_OK, auth_code)

    def _rakp3(self, payload: bytes, peer, now: float) -> list:
        if len(payload) < 8:
            return self._drop("short-rakp3")
        tag, status = payload[0], payload[1]
        local_id = struct.unpack_from("<I", payload, 4)[0]
        session = self.sessions.get(local_id)

        def reply(rakp_status: int, icv: bytes = b"") -> list:
            remote_id = session.remote_id if session else 0
            body = bytes((tag, rakp_status, 0, 0)) + struct.pack("<I", remote_id) + icv
            header = wire.v20_header(wire.PAYLOAD_RAKP4, 0, 0, len(body))
            return [Send(wire.rmcp_header() + header + body, peer)]

        if session is None or session.state != "rakp2-sent" or session.peer[0] != peer[0]:
            return reply(RMCP_INVALID_SESSION_ID)
        if status != RMCP_OK:  # the console gave up (e.g. our RAKP2 did not verify: wrong password)
            self.sessions.remove(local_id)
            self.auth_failures += 1
            return [SessionNote("auth-failed", peer, session.username.decode(errors="replace"))]
        user = self.users.lookup(session.username)
        suite = session.suite
        if user is None:
            self.sessions.remove(local_id)
            return reply(RMCP_UNAUTHORIZED_NAME)
        kuid = user_key(user.password)
        expected = hmac_digest(suite.digest, kuid, session.rc + struct.pack("<I", session.remote_id)
                               + bytes((session.role, len(session.username))) + session.username)
        if not hmac.compare_digest(expected, bytes(payload[8:])):
            self.sessions.remove(local_id)
            self.auth_failures += 1
            return reply(RMCP_INVALID_ICV) + [SessionNote("auth-failed", peer,
                                                          session.username.decode(errors="replace"))]
        session.keys = derive_keys(suite.digest, kuid, session.rm, session.rc, session.role, session.username)
        icv = hmac_digest(suite.digest, session.keys.sik,
                          session.rm + struct.pack("<I", session.local_id) + self.guid)[:suite.icv_len]
        session.state = "active"
        session.privilege = min(PRIV_USER, session.max_privilege)
        session.last_seen = now
        self.sessions_opened += 1
        return reply(RMCP_OK, icv) + [SessionNote("opened", peer, session.username.decode(errors="replace"),
                                                  session.max_privilege, suite.id)]


def _request_key(req: wire.IpmiRequest) -> tuple:
    return (req.rq_seq, req.netfn, req.cmd, req.data)


def privilege_name(level: int) -> str:
    return PRIV_NAMES.get(level, str(level))
