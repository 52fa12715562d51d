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

import hashlib
import hmac
import os
import struct
from collections import Counter
from dataclasses import dataclass

from services.ipmi import wire
from services.ipmi.crypto import (SUITES, CipherSuite, DecryptError, aes_decrypt, aes_encrypt, derive_keys,
                                  hmac_digest, user_key)
from services.ipmi.session import (PRIV_ADMIN, PRIV_CALLBACK, PRIV_NAMES, PRIV_OEM, PRIV_USER, Session,
                                   SessionTable, TableFull)
from services.ipmi.sol import STATUS_DEACTIVATING, SolChannel, SolSettings
from services.ipmi.users import UserStore

LAN_CHANNEL = 1
NETFN_APP = 0x06
CMD_GET_CHANNEL_AUTH_CAPS = 0x38
CMD_GET_SESSION_CHALLENGE = 0x39
CMD_ACTIVATE_SESSION = 0x3A
CMD_SET_SESSION_PRIVILEGE = 0x3B
CMD_CLOSE_SESSION = 0x3C
CMD_GET_SESSION_INFO = 0x3D
CMD_ACTIVATE_PAYLOAD = 0x48
CMD_DEACTIVATE_PAYLOAD = 0x49
CMD_GET_PAYLOAD_ACTIVATION_STATUS = 0x4A
CMD_GET_PAYLOAD_INSTANCE_INFO = 0x4B
CMD_GET_CHANNEL_CIPHER_SUITES = 0x54
SESSIONLESS_COMMANDS = {(NETFN_APP, CMD_GET_CHANNEL_AUTH_CAPS), (NETFN_APP, CMD_GET_CHANNEL_CIPHER_SUITES),
                        (NETFN_APP, CMD_GET_SESSION_CHALLENGE)}
SESSION_LAYER_COMMANDS = (CMD_GET_CHANNEL_AUTH_CAPS, CMD_GET_CHANNEL_CIPHER_SUITES, CMD_SET_SESSION_PRIVILEGE,
                          CMD_CLOSE_SESSION, CMD_GET_SESSION_INFO, CMD_ACTIVATE_PAYLOAD, CMD_DEACTIVATE_PAYLOAD,
                          CMD_GET_PAYLOAD_ACTIVATION_STATUS, CMD_GET_PAYLOAD_INSTANCE_INFO)
SOL_PAYLOAD_SIZE = 255
V15_AUTH_TYPE_BITS = {wire.AUTH_NONE: 0x01, wire.AUTH_MD5: 0x04, wire.AUTH_PASSWORD: 0x10}

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
# password guessing: after this many failed logins from one address within the
# window, that address gets no new sessions until the window has passed
AUTH_FAILURE_LIMIT = 5
AUTH_FAILURE_WINDOW = 30.0


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
class ConsoleInput:
    """Bytes an SOL console typed, for the guest's serial port."""

    data: bytes


@dataclass(frozen=True)
class SerialBreak:
    """The SOL console asked for a break on the guest's serial port."""


@dataclass(frozen=True)
class SessionNote:
    what: str  # opened, closed, expired, auth-failed
    peer: tuple
    user: str = ""
    privilege: int = 0
    cipher_suite: int = -1


class LanEndpoint:
    def __init__(self, users: UserStore, guid: bytes, suites: tuple[int, ...] = (17, 3, 2, 1),
                 session_limit: int = 32, idle_timeout: float = 60.0,
                 v15_auth_types: tuple[int, ...] = (wire.AUTH_MD5, wire.AUTH_PASSWORD),
                 auth_failure_limit: int = AUTH_FAILURE_LIMIT):
        self.users = users
        self.guid = guid
        self.suites = tuple(s for s in suites if s in SUITES)
        self.v15_auth_types = v15_auth_types  # empty: IPMI 1.5 sessions are off
        self.sol_settings = SolSettings()
        self.failures_by_ip: dict[str, list[float]] = {}
        # new sessions wait until the persisted users are loaded (or it is clear they
        # cannot be): a login must not fail, and count as a failure, for a user that exists
        self.accepting_sessions = True
        self.auth_failure_limit = auth_failure_limit  # 0: no lock-out
        self.sol: SolChannel | None = None  # the one SOL payload instance, when active
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
        return Send(self._seal_message(session, message), session.peer)

    def expire(self, now: float) -> list[SessionNote]:
        notes = []
        for s in self.sessions.expire(now):
            # a console that could not verify our RAKP2 (wrong password) just goes quiet
            what = "auth-failed" if s.state == "rakp2-sent" else "expired"
            if what == "auth-failed":
                self._failed_login(s.peer[0], now)
            notes.append(SessionNote(what, s.peer, s.username.decode(errors="replace"), s.privilege, s.suite_id))
        return notes

    def close_all(self) -> None:
        self.sessions.by_local_id.clear()

    # --- helpers --------------------------------------------------------------

    def _locked_out(self, ip: str, now: float) -> bool:
        recent = [t for t in self.failures_by_ip.get(ip, ()) if now - t < AUTH_FAILURE_WINDOW]
        if recent:
            self.failures_by_ip[ip] = recent
        else:
            self.failures_by_ip.pop(ip, None)
        return 0 < self.auth_failure_limit <= len(recent)

    def _failed_login(self, ip: str, now: float) -> None:
        self.auth_failures += 1
        self.failures_by_ip.setdefault(ip, []).append(now)
        if len(self.failures_by_ip) > 4096:  # bounded: forget the quietest addresses
            for old in sorted(self.failures_by_ip, key=lambda k: self.failures_by_ip[k][-1])[:1024]:
                del self.failures_by_ip[old]

    def _drop(self, reason: str) -> list:
        self.dropped[reason] += 1
        return []

    def _sessionless_reply(self, form: str, message: bytes, peer) -> Send:
        if form == "v15":
            return Send(wire.build_v15(message), peer)
        header = wire.v20_header(wire.PAYLOAD_IPMI, 0, 0, len(message))
        return Send(wire.rmcp_header() + header + message, peer)

    def _seal_message(self, session: Session, message: bytes) -> bytes:
        if session.is_v15:
            return self._seal15(session, message, session.next_out_seq())
        return self._seal(session, wire.PAYLOAD_IPMI, message)

    @staticmethod
    def _seal15(session: Session, message: bytes, seq: int) -> bytes:
        code = v15_auth_code(session.auth_type, session.password15, session.local_id, seq, message)
        return wire.build_v15(message, session.auth_type, seq, session.local_id, code)

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

    # --- IPMI 1.5 sessions (section 22.15-22.17, 13.6) ----------------------------

    def _v15(self, packet: wire.V15Packet, peer, now: float) -> list:
        if packet.session_id == 0:
            if packet.auth_type != wire.AUTH_NONE:
                return self._drop("v15-bad-sessionless")
            req = wire.parse_ipmi_request(packet.message)
            if (req.netfn, req.cmd) == (NETFN_APP, CMD_GET_SESSION_CHALLENGE):
                return self._session_challenge(req, peer, now)
            return self._sessionless(req, "v15", peer)
        session = self.sessions.get(packet.session_id)
        if session is None or not session.is_v15:
            return self._drop("unknown-session")
        if peer[0] != session.peer[0]:
            return self._drop("wrong-peer")
        if packet.auth_type != session.auth_type:
            return self._drop("v15-auth-type")
        expected = v15_auth_code(session.auth_type, session.password15, packet.session_id, packet.sequence,
                                 packet.message)
        if not hmac.compare_digest(expected, packet.auth_code):
            if session.state == "challenged":
                self.sessions.remove(session.local_id)
                self._failed_login(peer[0], now)
                return self._drop("bad-auth-code") + [SessionNote(
                    "auth-failed", peer, session.username.decode(errors="replace"))]
            return self._drop("bad-auth-code")
        req = wire.parse_ipmi_request(packet.message)
        if session.state == "challenged":
            if (req.netfn, req.cmd) != (NETFN_APP, CMD_ACTIVATE_SESSION):
                return self._drop("v15-not-activated")
            return self._activate_session(session, req, now)
        if not session.inbound.accept(packet.sequence):
            return self._drop("replay")
        session.last_seen = now
        return self._in_session(session, req, now)

    def _session_challenge(self, req: wire.IpmiRequest, peer, now: float) -> list:
        """Get Session Challenge (22.16): a temporary session waiting for Activate Session."""

        def reply(completion: int, data: bytes = b"") -> list:
            return [Send(wire.build_v15(wire.build_ipmi_response(req, completion, data)), peer)]

        if len(req.data) != 17:
            return reply(0xC7)
        if self._locked_out(peer[0], now):
            return self._drop("locked-out")
        if not self.accepting_sessions:
            return self._drop("not-ready")
        auth_type = req.data[0] & 0x0F
        if auth_type not in self.v15_auth_types:
            return reply(0xCC)
        name = req.data[1:17].rstrip(b"\x00")
        user = self.users.lookup(name)
        if user is None:
            self._failed_login(peer[0], now)
            return reply(0x81 if name else 0x82) + [SessionNote("auth-failed", peer, name.decode(errors="replace"))]
        try:
            session = self.sessions.create(0, peer, None, user.privilege, now)
        except TableFull:
            return reply(0xC0)  # node busy: no room for another session
        session.state, session.auth_type = "challenged", auth_type
        session.username, session.user_privilege, session.user_slot = name, user.privilege, user.slot
        session.password15 = user.password[:16].ljust(16, b"\x00")
        session.challenge = os.urandom(16)
        return reply(0x00, struct.pack("<I", session.local_id) + session.challenge)

    def _activate_session(self, session: Session, req: wire.IpmiRequest, now: float) -> list:
        """Activate Session (22.17): the challenge comes back signed with the password."""

        def reply(completion: int, data: bytes = b"", seq: int = 0) -> list:
            message = wire.build_ipmi_response(req, completion, data)
            return [Send(self._seal15(session, message, seq), session.peer)]

        if len(req.data) != 22:
            return reply(0xC7)
        auth_type, max_priv = req.data[0] & 0x0F, req.data[1] & 0x0F
        challenge, initial_out = req.data[2:18], struct.unpack_from("<I", req.data, 18)[0]
        if auth_type != session.auth_type or not hmac.compare_digest(challenge, session.challenge):
            self.sessions.remove(session.local_id)
            return reply(0x85)  # invalid session ID (the challenge does not match)
        if not PRIV_CALLBACK <= max_priv <= PRIV_OEM or max_priv > session.user_privilege:
            self.sessions.remove(session.local_id)
            return reply(0x86)  # requested maximum privilege exceeds the user's limit
        if initial_out == 0:
            self.sessions.remove(session.local_id)
            return reply(0xCC)
        inbound = struct.unpack("<I", os.urandom(4))[0] & 0x7FFFFFFF or 1
        session.max_privilege = max_priv
        session.privilege = min(PRIV_USER, max_priv)
        # this answer carries the console's initial outbound sequence number; the
        # next one carries that plus one (FreeIPMI checks both)
        session.out_seq = initial_out
        session.inbound.highest, session.inbound.seen = inbound - 1, (1 << 32) - 1
        session.state = "active"
        session.last_seen = now
        self.sessions_opened += 1
        return reply(0x00, bytes((session.auth_type,)) + struct.pack("<II", session.local_id, inbound)
                     + bytes((max_priv,)), seq=initial_out) + [SessionNote("opened", session.peer,
                                                          session.username.decode(errors="replace"), max_priv, -1)]

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
        if session is None or session.state != "active" or session.is_v15:
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
        if packet.payload_type == wire.PAYLOAD_SOL:
            return self._sol_in(session, payload, now)
        if packet.payload_type != wire.PAYLOAD_IPMI:
            return self._drop("payload-type")
        return self._in_session(session, wire.parse_ipmi_request(payload), now)

    # --- Serial over LAN -------------------------------------------------------

    def _sol_in(self, session: Session, payload: bytes, now: float) -> list:
        sol = self.sol
        if sol is None or sol.session_id != session.local_id:
            return self._drop("sol-inactive")
        received = sol.receive(payload, now)
        actions: list = []
        if received.data:
            actions.append(ConsoleInput(received.data))
        if received.send_break:
            actions.append(SerialBreak())
        return actions + self.sol_tick(now)

    def sol_output(self, data: bytes, now: float) -> list:
        """Guest output for the active SOL console (nothing when none is active)."""
        if self.sol is None:
            return []
        self.sol.output(data)
        return self.sol_tick(now)

    def sol_tick(self, now: float) -> list:
        """SOL packets due now: new data, retransmissions, acknowledgements."""
        sol = self.sol
        if sol is None:
            return []
        session = self.sessions.get(sol.session_id)
        if session is None:
            self.sol = None  # its session ended: the payload ends with it
            return []
        return [Send(self._seal(session, wire.PAYLOAD_SOL, p), session.peer) for p in sol.poll(now)]

    def _activate_payload(self, session: Session, data: bytes) -> tuple[int, bytes]:
        """Activate Payload (24.1) for SOL: one instance, in an RMCP+ session."""
        if len(data) != 6:
            return 0xC7, b""
        if data[0] & 0x3F != wire.PAYLOAD_SOL or data[1] != 1:
            return 0xCC, b""
        settings = self.sol_settings
        if not settings.enabled or session.is_v15:
            return 0x81, b""  # payload type disabled
        if session.privilege < settings.privilege:
            return 0xD4, b""
        if self.sol is not None and self.sessions.get(self.sol.session_id) is not None:
            return 0x80, b""  # already active on another session
        wants_encryption, wants_auth = bool(data[2] & 0x80), bool(data[2] & 0x40)
        if (wants_encryption and not session.suite.confidentiality) or (wants_auth and not session.suite.integrity):
            return 0x83, b""  # cannot activate with encryption/authentication on this session
        if (settings.force_encryption and not wants_encryption) or (settings.force_auth and not wants_auth):
            return 0x84, b""
        self.sol = SolChannel(session.local_id, max_data=SOL_PAYLOAD_SIZE - 4,
                              retry_interval=settings.retry_interval_10ms / 100)
        return 0x00, (bytes(4) + struct.pack("<HHHH", SOL_PAYLOAD_SIZE, SOL_PAYLOAD_SIZE,
                                             settings.port, 0xFFFF))

    def _deactivate_payload(self, session: Session, data: bytes) -> tuple[int, bytes, list]:
        if len(data) != 6:
            return 0xC7, b"", []
        if data[0] & 0x3F != wire.PAYLOAD_SOL or data[1] != 1:
            return 0xCC, b"", []
        if self.sol is None:
            return 0x80, b"", []  # payload already deactivated
        sol, self.sol = self.sol, None
        holder = self.sessions.get(sol.session_id)
        notify = []
        if holder is not None and holder is not session:
            # tell the console that held it, then end its session: its next
            # keystroke or keepalive finds no BMC and it leaves ("closed by BMC")
            packet = bytes((0, 0, 0, STATUS_DEACTIVATING))
            notify.append(Send(self._seal(holder, wire.PAYLOAD_SOL, packet), holder.peer))
            self.sessions.remove(holder.local_id)
            notify.append(SessionNote("closed", holder.peer, holder.username.decode(errors="replace"),
                                      holder.privilege, holder.suite_id))
        return 0x00, b"", notify

    def _payload_status(self, data: bytes) -> tuple[int, bytes]:
        if len(data) != 1:
            return 0xC7, b""
        if data[0] & 0x3F != wire.PAYLOAD_SOL:
            return 0xCC, b""
        active = self.sol is not None and self.sessions.get(self.sol.session_id) is not None
        return 0x00, bytes((0x01, 0x01 if active else 0x00, 0x00))

    def _payload_instance_info(self, data: bytes) -> tuple[int, bytes]:
        if len(data) != 2:
            return 0xC7, b""
        if data[0] & 0x3F != wire.PAYLOAD_SOL or data[1] != 1:
            return 0xCC, b""
        session_id = self.sol.session_id if self.sol else 0
        return 0x00, struct.pack("<I", session_id) + bytes(8)

    def _in_session(self, session: Session, req: wire.IpmiRequest, now: float) -> list:
        if req.netfn == NETFN_APP and req.cmd in SESSION_LAYER_COMMANDS:
            extra: list = []
            if req.cmd == CMD_DEACTIVATE_PAYLOAD:
                completion, data, extra = self._deactivate_payload(session, req.data)
            else:
                completion, data = self._session_command(session, req)
            reply = self._seal_message(session, wire.build_ipmi_response(req, completion, data))
            actions: list = [Send(reply, session.peer)] + extra
            if req.cmd == CMD_CLOSE_SESSION and completion == 0:
                closed_id = struct.unpack("<I", req.data[:4])[0]
                closed = self.sessions.remove(closed_id)
                if closed is not None:
                    actions.append(SessionNote("closed", closed.peer, closed.username.decode(errors="replace"),
                                               closed.privilege, closed.suite_id))
            return actions
        key = _request_key(req)
        if key in session.in_flight:
            return self._drop("retransmit-in-progress")
        answered = session.answered.get(key)
        if answered and now - answered[0] < RETRANSMIT_MEMORY:
            _, completion, data = answered
            message = wire.build_ipmi_response(req, completion, data)
            return [Send(self._seal_message(session, message), session.peer)]
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
        if req.cmd == CMD_GET_SESSION_INFO:
            return self._session_info(session, req.data)
        if req.cmd == CMD_ACTIVATE_PAYLOAD:
            return self._activate_payload(session, req.data) if session else (0xD4, b"")
        if req.cmd == CMD_GET_PAYLOAD_ACTIVATION_STATUS:
            return self._payload_status(req.data)
        if req.cmd == CMD_GET_PAYLOAD_INSTANCE_INFO:
            return self._payload_instance_info(req.data)
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

    def _session_info(self, session: Session | None, data: bytes) -> tuple[int, bytes]:
        """Get Session Info (22.20): the current session, the Nth, or by handle or ID."""
        if session is None:
            return 0xD4, b""
        if not data:
            return 0xC7, b""
        active = [s for s in self.sessions.by_local_id.values() if s.state == "active"]
        index = data[0]
        if index == 0x00:
            target = session
        elif index == 0xFE:
            if len(data) < 2:
                return 0xC7, b""
            target = active[data[1] - 1] if 1 <= data[1] <= len(active) else None
        elif index == 0xFF:
            if len(data) < 5:
                return 0xC7, b""
            target = self.sessions.get(struct.unpack_from("<I", data, 1)[0])
        else:
            target = active[index - 1] if index <= len(active) else None
        if target is None or target not in active:
            return 0xCC, b""
        handle = active.index(target) + 1
        channel = (0x00 if target.is_v15 else 0x10) | LAN_CHANNEL
        ip = bytes(int(x) for x in target.peer[0].split(".")) if target.peer[0].count(".") == 3 else bytes(4)
        return 0x00, (bytes((handle, self.sessions.limit & 0x3F, len(active) & 0x3F, target.user_slot & 0x3F,
                             target.privilege & 0x0F, channel))
                      + ip + bytes(6) + struct.pack("<H", target.peer[1]))

    def _auth_caps(self, data: bytes) -> tuple[int, bytes]:
        """Get Channel Authentication Capabilities (22.13)."""
        if len(data) != 2:
            return 0xC7, b""
        channel = data[0] & 0x0F
        if channel not in (LAN_CHANNEL, 0x0E):
            return 0xCC, b""
        extended = bool(data[0] & 0x80)
        auth_types = 0x80 if extended else 0x00  # bit 7: IPMI 2.0 extended capabilities follow
        for auth_type in self.v15_auth_types:
            auth_types |= V15_AUTH_TYPE_BITS[auth_type]
        login = 0x04  # non-null user names enabled; per-message and user-level auth on; K_g default
        # extended capabilities: bit 1 IPMI 2.0 (RMCP+) connections, bit 0 IPMI 1.5 connections
        ext_caps = (0x02 | (0x01 if self.v15_auth_types else 0)) if extended else 0x00
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
        if self._locked_out(peer[0], now):
            return self._drop("locked-out")
        if not self.accepting_sessions:
            return self._drop("not-ready")
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
            self._failed_login(peer[0], now)
            return reply(RMCP_UNAUTHORIZED_NAME) + [SessionNote("auth-failed", peer, username.decode(errors="replace"))]
        if not PRIV_CALLBACK <= role_priv <= PRIV_OEM:
            self.sessions.remove(local_id)
            return reply(RMCP_INVALID_ROLE)
        if role_priv > user.privilege or role_priv > session.max_privilege:
            self.sessions.remove(local_id)
            return reply(RMCP_UNAUTHORIZED_ROLE)
        session.rm, session.rc = bytes(rm), os.urandom(16)
        session.role, session.username, session.user_privilege = role, bytes(username), user.privilege
        session.user_slot = user.slot
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
            self._failed_login(peer[0], now)
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
            self._failed_login(peer[0], now)
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


def v15_auth_code(auth_type: int, password16: bytes, session_id: int, seq: int, message: bytes) -> bytes:
    """IPMI 1.5 per-message auth code (22.17.1): MD5 or the straight password."""
    if auth_type == wire.AUTH_MD5:
        ids = struct.pack("<I", session_id)
        return hashlib.md5(password16 + ids + message + struct.pack("<I", seq) + password16).digest()
    if auth_type == wire.AUTH_PASSWORD:
        return password16
    return b""


def _request_key(req: wire.IpmiRequest) -> tuple:
    return (req.rq_seq, req.netfn, req.cmd, req.data)


def privilege_name(level: int) -> str:
    return PRIV_NAMES.get(level, str(level))
