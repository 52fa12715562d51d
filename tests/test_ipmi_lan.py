"""The sans-IO LAN endpoint: handshake, sealing, replay and tamper rejection,
privilege and the session table, fed bytes in-process (no sockets)."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rmcp_console import Console, HandshakeFailed
from services.ipmi import wire
from services.ipmi.bmc import build_core
from services.ipmi.boot_options import BootFlags
from services.ipmi.commands import CommandCore, DeviceIdentity
from services.ipmi.lan import Dispatch, LanEndpoint, Send, SessionNote
from services.ipmi.users import User, UserStore

PEER = ("192.0.2.10", 40000)
GUID = bytes(range(16))


class StaticBackend:
    """A backend that holds power state in memory: no bus involved in these tests."""

    def __init__(self):
        self.power_on = True
        self.restore_policy = "always-on"
        self.last_power_event = 0
        self.restart_cause = 0
        self.actions: list[str] = []
        self.boot = BootFlags("none", False, False)

    async def power(self, action: str) -> None:
        self.actions.append(action)
        self.power_on = action != "off"

    async def boot_get(self) -> BootFlags:
        return self.boot

    async def boot_set(self, flags: BootFlags) -> None:
        self.boot = flags

    async def set_restore_policy(self, policy: str) -> None:
        self.restore_policy = policy


def make_endpoint(**kw) -> LanEndpoint:
    users = UserStore([User(2, b"admin", b"secret", 4), User(3, b"viewer", b"viewpw", 2)])
    return LanEndpoint(users, GUID, **kw)


def sends(actions) -> list[bytes]:
    return [a.data for a in actions if isinstance(a, Send)]


def handshake(ep: LanEndpoint, console: Console, now: float = 0.0) -> None:
    [reply] = sends(ep.datagram(console.open_session_request(), PEER, now))
    console.open_session_response(reply)
    [reply] = sends(ep.datagram(console.rakp1(), PEER, now))
    console.rakp2(reply)
    [reply] = sends(ep.datagram(console.rakp3(), PEER, now))
    console.rakp4(reply)


def exchange(ep: LanEndpoint, console: Console, netfn: int, cmd: int, data: bytes = b"",
             core: CommandCore | None = None, now: float = 1.0) -> tuple[int, bytes]:
    actions = ep.datagram(console.request(netfn, cmd, data), PEER, now)
    replies = sends(actions)
    for action in actions:
        if isinstance(action, Dispatch):
            core = core or build_core(identity(), StaticBackend(), ep.users)
            cc, out = asyncio.run(core.handle(action.request.netfn, action.request.cmd,
                                              action.request.data, action.privilege))
            replies.append(ep.respond(action, cc, out, now).data)
    assert len(replies) == 1, actions
    return console.unseal(replies[0])


def identity() -> DeviceIdentity:
    return DeviceIdentity(0x20, 1, (0, 1), 32473, 1, GUID, GUID[::-1])


@pytest.mark.parametrize("suite", [1, 2, 3, 17])
def test_handshake_and_a_sealed_request_for_every_suite(suite):
    ep = make_endpoint()
    console = Console(b"admin", b"secret", suite)
    handshake(ep, console)
    cc, data = exchange(ep, console, 0x06, 0x01)  # Get Device ID
    assert cc == 0 and data[4] == 0x02  # IPMI 2.0
    assert data[6:9] == (32473).to_bytes(3, "little")
    assert console.last_bmc_seq == 1  # the BMC's outbound sequence starts at 1


def test_cipher_suite_zero_only_when_offered():
    assert make_endpoint().suites == (17, 3, 2, 1)
    with pytest.raises(HandshakeFailed):
        handshake(make_endpoint(), Console(b"admin", b"", 0))
    ep = make_endpoint(suites=(17, 0))
    console = Console(b"admin", b"anything", 0)  # suite 0 checks no password at all
    handshake(ep, console)
    assert exchange(ep, console, 0x06, 0x01)[0] == 0


def test_outbound_sequence_increments_on_every_packet():
    ep = make_endpoint()
    console = Console(b"admin", b"secret", 17)
    handshake(ep, console)
    seqs = []
    for _ in range(3):
        exchange(ep, console, 0x06, 0x01)
        seqs.append(console.last_bmc_seq)
    assert seqs == [1, 2, 3]


def test_wrong_password_fails_at_rakp3_and_is_counted():
    ep = make_endpoint()
    console = Console(b"admin", b"not-secret", 17)
    [reply] = sends(ep.datagram(console.open_session_request(), PEER, 0))
    console.open_session_response(reply)
    [reply] = sends(ep.datagram(console.rakp1(), PEER, 0))
    with pytest.raises(HandshakeFailed):  # our RAKP2 does not verify with the wrong password
        console.rakp2(reply)
    # a console that carries on anyway gets RAKP4 "invalid integrity check value"
    console.rc = wire.parse_v20(wire.parse_rmcp(reply).body).payload[8:24]
    actions = ep.datagram(console.rakp3(), PEER, 0)
    with pytest.raises(HandshakeFailed) as err:
        console.rakp4(sends(actions)[0])
    assert err.value.status == 0x0F
    assert ep.auth_failures == 1 and len(ep.sessions) == 0
    assert any(isinstance(a, SessionNote) and a.what == "auth-failed" for a in actions)


def test_unknown_user_is_refused_in_rakp2():
    ep = make_endpoint()
    console = Console(b"mallory", b"x", 3)
    [reply] = sends(ep.datagram(console.open_session_request(), PEER, 0))
    console.open_session_response(reply)
    [reply] = sends(ep.datagram(console.rakp1(), PEER, 0))
    with pytest.raises(HandshakeFailed) as err:
        console.rakp2(reply)
    assert err.value.status == 0x0D


def test_user_asking_for_more_than_its_privilege_is_refused():
    ep = make_endpoint()
    console = Console(b"viewer", b"viewpw", 17, role=0x14)  # administrator
    with pytest.raises(HandshakeFailed) as err:
        handshake(ep, console)
    assert err.value.stage == "rakp2" and err.value.status == 0x0A


def test_user_level_session_cannot_control_power():
    ep = make_endpoint()
    console = Console(b"viewer", b"viewpw", 17, role=0x12)
    handshake(ep, console)
    assert exchange(ep, console, 0x06, 0x3B, b"\x02") == (0, b"\x02")
    assert exchange(ep, console, 0x06, 0x3B, b"\x04")[0] == 0x81  # above the user's limit
    backend = StaticBackend()
    core = build_core(identity(), backend, ep.users)
    assert exchange(ep, console, 0x00, 0x02, b"\x00", core=core)[0] == 0xD4
    assert backend.actions == []
    assert exchange(ep, console, 0x00, 0x01, core=core)[0] == 0  # reading is fine


def test_session_starts_at_user_and_admin_can_raise_it():
    ep = make_endpoint()
    console = Console(b"admin", b"secret", 3)
    handshake(ep, console)
    assert exchange(ep, console, 0x06, 0x3B, b"\x00") == (0, b"\x02")
    assert exchange(ep, console, 0x00, 0x02, b"\x01")[0] == 0xD4
    assert exchange(ep, console, 0x06, 0x3B, b"\x04") == (0, b"\x04")
    assert exchange(ep, console, 0x00, 0x02, b"\x01")[0] == 0


def test_replayed_packet_is_dropped():
    ep = make_endpoint()
    console = Console(b"admin", b"secret", 17)
    handshake(ep, console)
    packet = console.request(0x06, 0x3B, b"\x00")
    assert sends(ep.datagram(packet, PEER, 1))
    assert ep.datagram(packet, PEER, 1) == []
    assert ep.dropped["replay"] == 1


def test_out_of_order_within_the_window_is_accepted_once():
    ep = make_endpoint()
    console = Console(b"admin", b"secret", 17)
    handshake(ep, console)
    late = console.request(0x06, 0x3B, b"\x00", seq=5)
    assert sends(ep.datagram(console.request(0x06, 0x3B, b"\x00", seq=9), PEER, 1))
    assert sends(ep.datagram(late, PEER, 1))
    assert ep.datagram(late, PEER, 1) == []
    too_old = console.request(0x06, 0x3B, b"\x00", seq=100)
    assert sends(ep.datagram(too_old, PEER, 1))
    assert ep.datagram(console.request(0x06, 0x3B, b"\x00", seq=60), PEER, 1) == []


def test_tampered_auth_code_and_payload_are_dropped():
    ep = make_endpoint()
    console = Console(b"admin", b"secret", 17)
    handshake(ep, console)
    packet = bytearray(console.request(0x06, 0x01))
    packet[-1] ^= 0x01
    assert ep.datagram(bytes(packet), PEER, 1) == []
    packet = bytearray(console.request(0x06, 0x01))
    packet[20] ^= 0x80  # inside the encrypted payload
    assert ep.datagram(bytes(packet), PEER, 1) == []
    assert ep.dropped["bad-auth-code"] == 2


def test_wrong_session_id_and_wrong_peer_are_dropped():
    ep = make_endpoint()
    console = Console(b"admin", b"secret", 17)
    handshake(ep, console)
    console.local_id ^= 0x5A5A
    assert ep.datagram(console.request(0x06, 0x01), PEER, 1) == []
    console.local_id ^= 0x5A5A
    assert ep.datagram(console.request(0x06, 0x01), ("192.0.2.99", 40000), 1) == []
    assert ep.dropped["unknown-session"] == 1 and ep.dropped["wrong-peer"] == 1


def test_retransmitted_request_is_answered_without_running_twice():
    ep = make_endpoint()
    console = Console(b"admin", b"secret", 17)
    handshake(ep, console)
    exchange(ep, console, 0x06, 0x3B, b"\x04")
    message = wire.build_ipmi_request(0x00, 0x02, b"\x02", rq_seq=7)
    first = ep.datagram(console.seal(message, 50), PEER, 2)
    [dispatch] = [a for a in first if isinstance(a, Dispatch)]
    # the console times out and sends the same request again while it runs ...
    assert ep.datagram(console.seal(message, 51), PEER, 2) == []
    ep.respond(dispatch, 0, b"", 2)
    # ... and once more after the answer went out: the answer is repeated, nothing re-runs
    again = ep.datagram(console.seal(message, 52), PEER, 3)
    assert not any(isinstance(a, Dispatch) for a in again)
    assert console.unseal(sends(again)[0]) == (0, b"")


def test_no_matching_cipher_suite_gets_status_0x11():
    ep = make_endpoint(suites=(17,))
    console = Console(b"admin", b"secret", 3)
    [reply] = sends(ep.datagram(console.open_session_request(), PEER, 0))
    with pytest.raises(HandshakeFailed) as err:
        console.open_session_response(reply)
    assert err.value.status == 0x11


def test_session_table_is_bounded_and_idle_sessions_expire():
    ep = make_endpoint(session_limit=2, idle_timeout=60)
    for _ in range(2):
        handshake(ep, Console(b"admin", b"secret", 17), now=0)
    with pytest.raises(HandshakeFailed) as err:
        handshake(ep, Console(b"admin", b"secret", 17), now=0)
    assert err.value.status == 0x01
    assert len(ep.expire(30)) == 0
    notes = ep.expire(61)
    assert [n.what for n in notes] == ["expired", "expired"] and len(ep.sessions) == 0


def test_close_session_ends_it():
    ep = make_endpoint()
    console = Console(b"admin", b"secret", 17)
    handshake(ep, console)
    cc, _ = exchange(ep, console, 0x06, 0x3C, console.local_id.to_bytes(4, "little"))
    assert cc == 0 and len(ep.sessions) == 0
    assert ep.datagram(console.request(0x06, 0x01), PEER, 2) == []


def test_channel_auth_capabilities_and_cipher_suites_before_a_session():
    ep = make_endpoint()
    caps = wire.build_v15(wire.build_ipmi_request(0x06, 0x38, b"\x8e\x04"))
    [reply] = sends(ep.datagram(caps, PEER, 0))
    v15 = wire.parse_v15(wire.parse_rmcp(reply).body)
    data = v15.message[7:-1]
    assert v15.message[6] == 0 and data[1] & 0x80 and data[2] == 0x04 and data[3] & 0x02
    records = b""
    for index in range(4):
        request = wire.build_ipmi_request(0x06, 0x54, bytes((0x0E, 0x00, 0x80 | index)))
        [reply] = sends(ep.datagram(wire.build_v15(request), PEER, 0))
        chunk = wire.parse_v15(wire.parse_rmcp(reply).body).message[8:-1]
        records += chunk
        if len(chunk) < 16:
            break
    assert bytes.fromhex("c0 11 03 44 81") in records and bytes.fromhex("c0 03 01 41 81") in records


def test_asf_presence_ping_gets_a_pong():
    ping = bytes((6, 0, 0xFF, 6)) + (4542).to_bytes(4, "big") + bytes((0x80, 0x22, 0, 0))
    [pong] = sends(make_endpoint().datagram(ping, PEER, 0))
    assert pong[8] == 0x40 and pong[9] == 0x22


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_garbage_never_raises_and_a_session_keeps_working(garbage):
    ep = _fuzz_endpoint()
    ep.datagram(garbage, PEER, 1)
    ep.datagram(bytes((6, 0, 0xFF, 7, 6)) + garbage, PEER, 1)  # RMCP+ framing, junk inside
    ep.datagram(bytes((6, 0, 0xFF, 7, 0)) + garbage, PEER, 1)  # IPMI 1.5 framing, junk inside


_FUZZ = {}


def _fuzz_endpoint() -> LanEndpoint:
    if "ep" not in _FUZZ:
        ep = make_endpoint()
        console = Console(b"admin", b"secret", 17)
        handshake(ep, console)
        _FUZZ.update(ep=ep, console=console)
    return _FUZZ["ep"]


def test_fuzzed_endpoint_still_answers_its_session():
    _fuzz_endpoint()
    ep, console = _FUZZ["ep"], _FUZZ["console"]
    assert exchange(ep, console, 0x06, 0x01)[0] == 0


def handshake15(ep: LanEndpoint, console, now: float = 0.0) -> None:
    [reply] = sends(ep.datagram(console.challenge_request(), PEER, now))
    console.challenge_response(reply)
    [reply] = sends(ep.datagram(console.activate_request(), PEER, now))
    console.activate_response(reply)


@pytest.mark.parametrize("auth_type", [wire.AUTH_MD5, wire.AUTH_PASSWORD])
def test_ipmi15_session_with_md5_and_straight_password(auth_type):
    from rmcp_console import Console15
    ep = make_endpoint()
    console = Console15(b"admin", b"secret", auth_type)
    handshake15(ep, console)
    assert exchange15(ep, console, 0x06, 0x3B, b"\x04") == (0, b"\x04")
    assert console.last_bmc_seq == console.initial_out + 1  # the answer after activation
    cc, data = exchange15(ep, console, 0x06, 0x01)
    assert cc == 0 and data[4] == 0x02


def test_ipmi15_wrong_password_and_auth_type_none_are_refused():
    from rmcp_console import Console15
    ep = make_endpoint()
    console = Console15(b"admin", b"wrong")
    [reply] = sends(ep.datagram(console.challenge_request(), PEER, 0))
    console.challenge_response(reply)
    actions = ep.datagram(console.activate_request(), PEER, 0)
    assert sends(actions) == [] and ep.auth_failures == 1 and len(ep.sessions) == 0
    none = Console15(b"admin", b"secret", wire.AUTH_NONE)
    [reply] = sends(ep.datagram(none.challenge_request(), PEER, 0))
    with pytest.raises(HandshakeFailed) as err:
        none.challenge_response(reply)
    assert err.value.status == 0xCC


def test_ipmi15_replay_is_dropped():
    from rmcp_console import Console15
    ep = make_endpoint()
    console = Console15(b"admin", b"secret")
    handshake15(ep, console)
    packet = console.request(0x06, 0x01)
    assert len(ep.datagram(packet, PEER, 1)) == 1
    assert ep.datagram(packet, PEER, 1) == [] and ep.dropped["replay"] == 1


def exchange15(ep, console, netfn, cmd, data=b""):
    actions = ep.datagram(console.request(netfn, cmd, data), PEER, 1)
    replies = sends(actions)
    for action in actions:
        if isinstance(action, Dispatch):
            core = build_core(identity(), StaticBackend(), ep.users)
            cc, out = asyncio.run(core.handle(action.request.netfn, action.request.cmd,
                                              action.request.data, action.privilege))
            replies.append(ep.respond(action, cc, out, 1).data)
    assert len(replies) == 1, actions
    return console.unseal(replies[0])


def test_password_guessing_from_one_address_is_locked_out_for_a_while():
    ep = make_endpoint()
    for attempt in range(5):
        guess = Console(b"admin", f"guess{attempt}".encode(), 17)
        [reply] = sends(ep.datagram(guess.open_session_request(), PEER, 1.0))
        guess.open_session_response(reply)
        [reply] = sends(ep.datagram(guess.rakp1(), PEER, 1.0))
        guess.rc = wire.parse_v20(wire.parse_rmcp(reply).body).payload[8:24]
        ep.datagram(guess.rakp3(), PEER, 1.0)
    assert ep.auth_failures == 5
    # even the right password gets nothing from that address now ...
    right = Console(b"admin", b"secret", 17)
    assert ep.datagram(right.open_session_request(), PEER, 2.0) == [] and ep.dropped["locked-out"] == 1
    # ... while other addresses are not affected, and the lock ends with the window
    other = ("192.0.2.20", 40000)
    assert sends(ep.datagram(Console(b"admin", b"secret", 17).open_session_request(), other, 2.0))
    handshake(ep, right, now=40.0)
