"""The SOL channel state machine and the telnet filter, fed bytes (no I/O)."""

from __future__ import annotations

from services.console.telnet import TelnetFilter
from services.ipmi.sol import OP_FLUSH_OUTBOUND, OP_GENERATE_BREAK, OP_NACK, SolChannel


def packet(seq=0, ack=0, accepted=0, op=0, data=b""):
    return bytes((seq, ack, accepted, op)) + data


def test_output_is_sent_in_numbered_packets_and_acknowledged():
    ch = SolChannel(session_id=1, max_data=4)
    ch.output(b"abcdefghij")
    [first] = ch.poll(0.0)
    assert first == packet(1, data=b"abcd")
    assert ch.poll(0.1) == []  # stop and wait: nothing new until the ack
    ch.receive(packet(ack=1, accepted=4), 0.2)
    [second] = ch.poll(0.2)
    assert second == packet(2, data=b"efgh")


def test_unacknowledged_data_is_retransmitted_after_the_retry_interval():
    ch = SolChannel(session_id=1, retry_interval=0.5)
    ch.output(b"hello")
    [first] = ch.poll(0.0)
    assert ch.poll(0.4) == []
    assert ch.poll(0.6) == [first]
    assert ch.retransmits == 1


def test_partial_ack_resends_the_rest_in_a_new_packet_and_nack_waits():
    ch = SolChannel(session_id=1)
    ch.output(b"0123456789")
    ch.poll(0.0)
    ch.receive(packet(ack=1, accepted=3), 0.1)
    [rest] = ch.poll(0.1)
    assert rest == packet(2, data=b"3456789")
    ch.receive(packet(ack=2, op=OP_NACK), 0.2)  # console busy: keep it, send again later
    assert ch.poll(0.3) == []
    assert ch.poll(0.8) == [rest]


def test_console_data_is_delivered_once_and_acknowledged_even_when_repeated():
    ch = SolChannel(session_id=1)
    got = ch.receive(packet(seq=3, data=b"ls\r"), 0.0)
    assert got.data == b"ls\r"
    assert ch.poll(0.0) == [packet(ack=3, accepted=3)]
    again = ch.receive(packet(seq=3, data=b"ls\r"), 0.1)  # our ack was lost
    assert again.data == b""
    assert ch.poll(0.1) == [packet(ack=3, accepted=3)]


def test_acks_go_alone_never_riding_on_data():
    ch = SolChannel(session_id=1)
    ch.receive(packet(seq=5, data=b"x"), 0.0)
    ch.output(b"y")
    assert ch.poll(0.0) == [packet(ack=5, accepted=1), packet(1, data=b"y")]


def test_break_and_flush():
    ch = SolChannel(session_id=1)
    ch.output(b"pending")
    assert ch.receive(packet(op=OP_GENERATE_BREAK), 0.0).send_break
    ch.receive(packet(op=OP_FLUSH_OUTBOUND), 0.0)
    assert ch.poll(0.0) == []


def test_sequence_numbers_wrap_from_15_to_1():
    ch = SolChannel(session_id=1, max_data=1)
    ch.output(bytes(20))
    seqs = []
    for i in range(16):
        [p] = ch.poll(float(i))
        seqs.append(p[0])
        ch.receive(packet(ack=p[0], accepted=1), float(i))
    assert seqs == list(range(1, 16)) + [1]


def test_telnet_negotiation_is_stripped_and_raw_bytes_pass():
    f = TelnetFilter()
    assert f.feed(b"\xff\xfd\x01\xff\xfb\x1fls\r\n") == b"ls\r\n"
    assert f.feed(b"\xff\xfa\x18\x00xterm\xff\xf0ok") == b"ok"
    assert f.feed(b"a\xff\xffb") == b"a\xffb"
    assert TelnetFilter().feed(b"plain nc text\n") == b"plain nc text\n"
