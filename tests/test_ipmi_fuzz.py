"""Mutation fuzzing of the sans-IO LAN endpoint: at least 100 000 datagrams made
from valid packets (bit flips, truncation, extension, splices) and random bytes.
No exception may escape, and a valid session must keep working afterwards.
QEMU_BMC_FUZZ_DATAGRAMS raises the count for a longer run."""

from __future__ import annotations

import os
import random

from rmcp_console import Console, Console15
from services.ipmi import wire
from test_ipmi_lan import PEER, exchange, exchange15, handshake, handshake15, make_endpoint, sends

COUNT = int(os.environ.get("QEMU_BMC_FUZZ_DATAGRAMS", "100000"))


def seeds(ep) -> list[bytes]:
    """Valid datagrams of every kind the endpoint understands."""
    c = Console(b"admin", b"secret", 17)
    handshake(ep, c)
    c3 = Console(b"admin", b"secret", 3)
    c15 = Console15(b"admin", b"secret")
    out = [c.open_session_request(), c.request(0x06, 0x01), c.request(0x00, 0x02, b"\x01"),
           c.request(0x0A, 0x43, b"\x00\x00\x00\x00\x00\xff"), c.request(0x06, 0x3B, b"\x04"),
           c3.open_session_request(), c15.challenge_request(),
           wire.build_v15(wire.build_ipmi_request(0x06, 0x38, b"\x8e\x04")),
           wire.build_v15(wire.build_ipmi_request(0x06, 0x54, b"\x0e\x00\x80")),
           bytes((6, 0, 0xFF, 6)) + (4542).to_bytes(4, "big") + bytes((0x80, 0x01, 0, 0))]
    [reply] = sends(ep.datagram(c3.open_session_request(), PEER, 0))
    c3.open_session_response(reply)
    out.append(c3.rakp1())
    [reply] = sends(ep.datagram(c3.rakp1(), PEER, 0))
    c3.rakp2(reply)
    out.append(c3.rakp3())
    return out


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    b = bytearray(data)
    kind = rng.randrange(6)
    if kind == 0 and b:
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif kind == 1:
        b = b[:rng.randrange(len(b) + 1)]
    elif kind == 2:
        b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
    elif kind == 3 and b:
        b[rng.randrange(len(b))] = rng.choice((0x00, 0xFF, 0x7F, 0x80, 0x06, 0x07, 0x10))
    elif kind == 4:
        other = rng.choice(pool)
        cut = rng.randrange(min(len(b), len(other)) + 1)
        b = b[:cut] + other[cut:]
    else:
        b = bytearray(rng.randrange(256) for _ in range(rng.randint(0, 80)))
    return bytes(b)


def test_one_hundred_thousand_mutated_datagrams():
    rng = random.Random(0x1B3C)
    ep = make_endpoint(session_limit=1024)
    pool = seeds(ep)
    good = Console(b"admin", b"secret", 17)
    handshake(ep, good)
    good15 = Console15(b"admin", b"secret")
    handshake15(ep, good15)
    for i in range(COUNT):
        datagram = mutate(rng, rng.choice(pool), pool)
        ep.datagram(datagram, PEER if i % 3 else ("192.0.2.77", 1000 + i % 50), 1.0 + i / COUNT)
        if i % 20000 == 0:
            ep.expire(1.0 + i / COUNT)  # half-open sessions made by accident come and go
    assert ep.datagrams >= COUNT
    assert sum(ep.dropped.values()) > COUNT // 2  # most of them are garbage and were counted
    # the valid sessions opened before the storm still work
    assert exchange(ep, good, 0x06, 0x01)[0] == 0
    assert exchange15(ep, good15, 0x06, 0x01)[0] == 0
