"""IPMI sessions (RMCP+ and IPMI 1.5): the table, handshake state and sequence windows.

Pure state: time comes in as an argument, randomness from os.urandom.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

from services.ipmi.crypto import CipherSuite, SessionKeys

PRIV_CALLBACK, PRIV_USER, PRIV_OPERATOR, PRIV_ADMIN, PRIV_OEM = 1, 2, 3, 4, 5
PRIV_NAMES = {1: "callback", 2: "user", 3: "operator", 4: "administrator", 5: "oem"}

SEQ_WINDOW = 32  # how far behind the highest sequence number a packet may be


class SequenceWindow:
    """Accepts each inbound sequence number once, within a window behind the highest.

    IPMI 2.0 section 6.12.13: session sequence numbers protect against replay;
    packets may arrive out of order, so a window rather than strict order.
    """

    def __init__(self) -> None:
        self.highest = 0
        self.seen = 0  # bit i set: highest - i was accepted

    def accept(self, seq: int) -> bool:
        if seq == 0:
            return False
        if self.highest == 0 or seq > self.highest:
            shift = seq - self.highest if self.highest else SEQ_WINDOW
            self.seen = ((self.seen << shift) | 1) & ((1 << SEQ_WINDOW) - 1) if shift < SEQ_WINDOW else 1
            self.highest = seq
            return True
        behind = self.highest - seq
        if behind >= SEQ_WINDOW or self.seen & (1 << behind):
            return False
        self.seen |= 1 << behind
        return True


@dataclass
class Session:
    local_id: int  # the managed system's session ID (inbound packets carry it)
    remote_id: int  # the remote console's session ID (outbound packets carry it)
    peer: tuple
    suite: CipherSuite | None  # None for an IPMI 1.5 session
    max_privilege: int  # from Open Session; RAKP1 may lower it
    created: float
    last_seen: float
    state: str = "opening"  # RMCP+: opening -> rakp2-sent -> active; 1.5: challenged -> active
    username: bytes = b""
    user_privilege: int = 0
    role: int = 0  # RAKP1 requested role byte, lookup bit included
    rm: bytes = b""
    rc: bytes = b""
    keys: SessionKeys | None = None
    privilege: int = 0  # current session privilege, once active
    out_seq: int = 0
    inbound: SequenceWindow = field(default_factory=SequenceWindow)
    # answered requests by (rq_seq, netfn, cmd): retransmits are answered, not re-run
    answered: dict = field(default_factory=dict)
    in_flight: set = field(default_factory=set)
    # IPMI 1.5 only
    auth_type: int = 0  # MD5, straight password (or none, when allowed)
    password15: bytes = b""  # the user's password padded to 16 bytes
    challenge: bytes = b""
    user_slot: int = 0

    @property
    def is_v15(self) -> bool:
        return self.suite is None

    @property
    def suite_id(self) -> int:
        return -1 if self.suite is None else self.suite.id

    def next_out_seq(self) -> int:
        self.out_seq = (self.out_seq + 1) & 0xFFFFFFFF or 1
        return self.out_seq


class TableFull(Exception):
    pass


class SessionTable:
    def __init__(self, limit: int, idle_timeout: float, handshake_timeout: float = 10.0):
        self.limit = limit
        self.idle_timeout = idle_timeout
        self.handshake_timeout = handshake_timeout
        self.by_local_id: dict[int, Session] = {}

    def __len__(self) -> int:
        return len(self.by_local_id)

    def create(self, remote_id: int, peer, suite: CipherSuite | None, max_privilege: int, now: float) -> Session:
        if len(self.by_local_id) >= self.limit:
            raise TableFull()
        while True:
            local_id = struct.unpack("<I", os.urandom(4))[0]
            if local_id and local_id not in self.by_local_id:
                break
        session = Session(local_id, remote_id, peer, suite, max_privilege, now, now)
        self.by_local_id[local_id] = session
        return session

    def get(self, local_id: int) -> Session | None:
        return self.by_local_id.get(local_id)

    def remove(self, local_id: int) -> Session | None:
        return self.by_local_id.pop(local_id, None)

    def expire(self, now: float) -> list[Session]:
        gone = [s for s in self.by_local_id.values()
                if (s.state == "active" and now - s.last_seen > self.idle_timeout)
                or (s.state != "active" and now - s.created > self.handshake_timeout)]
        for s in gone:
            del self.by_local_id[s.local_id]
        return gone
