"""Serial over LAN (IPMI 2.0 section 15 and 26): the SOL payload state machine
of one active instance, sans-IO. Bytes from the guest's serial port go out in
numbered packets that the console acknowledges; unacknowledged data is sent
again after the retry interval; what the console sends is delivered once.

Packet layout (table 15-2): sequence (bits 3:0, 0 = ack only), ack/nack
sequence, accepted character count, operation/status, character data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

OP_NACK = 0x40  # console -> BMC: packet nacked; BMC -> console: same bit, NACK
OP_GENERATE_BREAK = 0x10
OP_FLUSH_INBOUND = 0x02  # discard what the console sent that the BMC has not delivered yet
OP_FLUSH_OUTBOUND = 0x01  # discard the BMC's pending output to the console
STATUS_DEACTIVATING = 0x10
STATUS_TRANSMIT_OVERRUN = 0x08

PENDING_LIMIT = 4 * 1024 * 1024  # guest output kept for a slow console before the oldest is lost


@dataclass
class SolSettings:
    """SOL configuration parameters (26.7/26.8, table 26-5) for channel 1."""

    enabled: bool = True
    force_encryption: bool = False
    force_auth: bool = False
    privilege: int = 2  # user
    accumulate_5ms: int = 2  # character accumulate interval, 5 ms units
    send_threshold: int = 96
    retry_count: int = 7
    retry_interval_10ms: int = 50  # 500 ms
    bit_rate: int = 0x0A  # 115.2 kbps
    port: int = 623


@dataclass
class Unacked:
    seq: int
    data: bytes
    sent_at: float
    tries: int = 1


@dataclass
class Received:
    """What an inbound SOL packet asks the BMC to do."""

    data: bytes = b""  # for the guest's serial port (empty: nothing new)
    send_break: bool = False


@dataclass
class SolChannel:
    session_id: int  # the local ID of the session the payload is active in
    max_data: int = 251  # outbound payload size 255 minus the 4-byte header
    retry_interval: float = 0.5
    pending: bytearray = field(default_factory=bytearray)
    unacked: Unacked | None = None
    next_seq: int = 1
    last_in: tuple[int, int] = (0, 0)  # (sequence, length) of the last packet delivered
    ack_due: tuple[int, int] | None = None  # (sequence, accepted count) still to acknowledge
    overrun: bool = False
    retransmits: int = 0

    def output(self, data: bytes) -> None:
        """Guest output to send; a console that cannot keep up loses the oldest bytes."""
        self.pending += data
        if len(self.pending) > PENDING_LIMIT:
            del self.pending[:len(self.pending) - PENDING_LIMIT]
            self.overrun = True

    def receive(self, payload: bytes, now: float) -> Received:
        if len(payload) < 4:
            return Received()
        seq, ack_seq, accepted, op = payload[0] & 0x0F, payload[1] & 0x0F, payload[2], payload[3]
        if ack_seq and self.unacked and ack_seq == self.unacked.seq:
            if op & OP_NACK:
                # the console could not take it now: send it again, later
                self.unacked.sent_at = now
            else:
                rest = self.unacked.data[min(accepted, len(self.unacked.data)):]
                if rest:  # a partial acknowledgement: the rest goes again in a new packet
                    self.pending[:0] = rest
                self.unacked = None
        if op & OP_FLUSH_OUTBOUND:
            self.pending.clear()
        result = Received(send_break=bool(op & OP_GENERATE_BREAK))
        data = bytes(payload[4:])
        if seq:
            if (seq, len(data)) == self.last_in:
                pass  # a retransmission of what we delivered: acknowledge again, deliver nothing
            elif not op & OP_FLUSH_INBOUND:
                result.data = data
                self.last_in = (seq, len(data))
            self.ack_due = (seq, len(data))
        return result

    def poll(self, now: float) -> list[bytes]:
        """SOL payloads to send now: an acknowledgement, then new data or a retransmission.

        Acknowledgements always go alone, never riding on data: ipmitool drops data
        that arrives on the ack of its keepalive packet (it acks it, never prints it).
        """
        out = []
        if self.ack_due is not None:
            seq, accepted = self.ack_due
            self.ack_due = None
            out.append(bytes((0, seq, accepted, 0)))
        if self.unacked is not None and now - self.unacked.sent_at >= self.retry_interval:
            self.unacked.sent_at = now
            self.unacked.tries += 1
            self.retransmits += 1
            out.append(self._packet(self.unacked.seq, self.unacked.data))
        elif self.unacked is None and self.pending:
            chunk = bytes(self.pending[:self.max_data])
            del self.pending[:len(chunk)]
            self.unacked = Unacked(self.next_seq, chunk, now)
            self.next_seq = self.next_seq % 15 + 1
            out.append(self._packet(self.unacked.seq, chunk))
        return out

    def next_deadline(self) -> float | None:
        return None if self.unacked is None else self.unacked.sent_at + self.retry_interval

    def _packet(self, seq: int, data: bytes) -> bytes:
        status = STATUS_TRANSMIT_OVERRUN if self.overrun else 0
        self.overrun = False
        return bytes((seq, 0, 0, status)) + data
