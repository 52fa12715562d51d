"""Bounded load on the real IPMI service: 64 concurrent RMCP+ sessions hammering
chassis status and boot options plus a flood of garbage datagrams. Zero wrong
answers, no crash, the session table within its limit, stale sessions expiring,
memory back near its baseline. (Speed is measured in benchmarks/, not here.)"""

from __future__ import annotations

import os
import random
import shutil
import socket
import struct
import tempfile
import threading
import time

import pytest

from conftest import make_stack
from helpers import wait_for
from rmcp_console import Console
from services.ipmi import wire

pytestmark = pytest.mark.vm
CLIENTS = 64
SECONDS = float(os.environ.get("QEMU_BMC_LOAD_SECONDS", "60"))


@pytest.fixture(scope="module")
def stack(guest_dir):
    tmp = tempfile.mkdtemp(prefix="qemu-bmc-load-")
    s = make_stack(tmp, guest_dir, IPMI_SESSION_LIMIT="64", IPMI_SESSION_TIMEOUT="5",
                   POWER_RESTORE_POLICY="always-off")
    s.start()
    try:
        wait_for(lambda: "Chassis Power is off" in s.ipmitool("power", "status", check=False).stdout, 60,
                 "the BMC to answer")
        yield s
    finally:
        s.stop()
        shutil.rmtree(tmp, ignore_errors=True)


class UdpConsole:
    """A console over real UDP that retransmits like real clients do (a lost
    datagram under load is not a wrong answer; a wrong answer is)."""

    def __init__(self, port: int, suite: int):
        self.port, self.suite = port, suite
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(1.0)
        self.addr = ("127.0.0.1", port)
        self.retries = 0

    def ask(self, datagram: bytes) -> bytes:
        self.sock.sendto(datagram, self.addr)
        return self.sock.recv(4096)

    def open(self) -> None:
        for _ in range(10):
            self.c = Console(b"admin", b"secret", self.suite)
            try:
                self.c.open_session_response(self.ask(self.c.open_session_request()))
                self.c.rakp2(self.ask(self.c.rakp1()))
                self.c.rakp4(self.ask(self.c.rakp3()))
                assert self.call(0x06, 0x3B, b"\x04") == (0, b"\x04")
                return
            except socket.timeout:
                self.retries += 1
        raise AssertionError("could not open a session in 10 tries")

    def call(self, netfn: int, cmd: int, data: bytes = b"") -> tuple[int, bytes]:
        for _ in range(8):
            self.sock.sendto(self.c.request(netfn, cmd, data), self.addr)
            wanted = self.c.rq_seq
            deadline = time.monotonic() + 1.0
            try:
                while True:
                    self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                    answer = self.sock.recv(4096)
                    message = self._message(answer)
                    if message[4] >> 2 == wanted and message[5] == cmd:
                        return self.c.unseal(answer)
                    # a late answer to an earlier try: not ours any more
            except socket.timeout:
                self.retries += 1
        raise AssertionError(f"no answer to netfn {netfn:#x} cmd {cmd:#x} in 8 tries")

    def _message(self, datagram: bytes) -> bytes:
        from services.ipmi.crypto import aes_decrypt
        packet = wire.parse_v20(wire.parse_rmcp(datagram).body)
        return aes_decrypt(self.c.keys.aes_key, packet.payload)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def ipmi_pid(stack) -> int:
    conf = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "supervisord.conf")
    return int(stack.run("supervisorctl", "-c", conf, "pid", "ipmi").stdout)


def stats(stack) -> dict:
    import asyncio

    from bus import Subjects, connect
    from bus.messages import IpmiStats, StatsGet

    async def get():
        bus = await connect(f"nats://{stack.env['NATS_LISTEN']}", "load-test", wait=5)
        try:
            return await bus.request(Subjects(stack.env["NODE_NAME"]).ipmi_stats, StatsGet(), IpmiStats, 5)
        finally:
            await bus.close()
    return asyncio.run(get())


def test_64_sessions_and_a_garbage_flood(stack):
    pid = ipmi_pid(stack)
    baseline = rss_kib(pid)
    stop = time.monotonic() + SECONDS
    errors: list[str] = []
    answered = [0] * CLIENTS
    peak = [0]

    def client(i: int) -> None:
        try:
            con = UdpConsole(stack.ipmi_port, (17, 3)[i % 2])
            con.open()
            while time.monotonic() < stop:
                cc, data = con.call(0x00, 0x01)
                if cc != 0 or len(data) != 3 or data[0] & 0x01:  # the VM is off in this stack
                    errors.append(f"client {i}: chassis status {cc:#x} {data.hex()}")
                cc, data = con.call(0x00, 0x09, b"\x05\x00\x00")
                if cc != 0 or data[:2] != b"\x01\x05" or len(data) != 7:
                    errors.append(f"client {i}: boot options {cc:#x} {data.hex()}")
                answered[i] += 2
        except Exception as exc:  # a timeout is a wrong answer too
            errors.append(f"client {i}: {exc!r}")

    def flood() -> None:
        rng = random.Random(7)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sent = 0
        while time.monotonic() < stop:
            junk = bytes(rng.randrange(256) for _ in range(rng.randint(0, 120)))
            if rng.random() < 0.5:  # plausible headers with junk inside get further
                junk = bytes((6, 0, 0xFF, 7, 6, rng.choice((0, 0x10, 0x12, 0xC0)))) + struct.pack(
                    "<II", rng.getrandbits(32), rng.getrandbits(32)) + junk
            sock.sendto(junk, ("127.0.0.1", stack.ipmi_port))
            sent += 1
            if sent % 50 == 0:
                time.sleep(0.05)  # bounded: about a thousand datagrams a second

    def watch() -> None:
        while time.monotonic() < stop:
            peak[0] = max(peak[0], stats(stack).sessions_active)
            time.sleep(2)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    threads += [threading.Thread(target=flood), threading.Thread(target=watch)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(SECONDS + 60)
    assert not errors, errors[:10]
    assert all(n > 0 for n in answered)
    assert ipmi_pid(stack) == pid, "the IPMI service restarted: it crashed"
    assert peak[0] <= 64
    s = stats(stack)
    assert s.dropped, "garbage was not counted as dropped"
    # one session more than the limit is refused, not squeezed in
    extra = UdpConsole(stack.ipmi_port, 17)
    wait_for(lambda: stats(stack).sessions_active == 0, 30, "idle sessions to expire (5 s timeout)")
    extra.open()
    growth = rss_kib(pid) - baseline
    assert growth < 30 * 1024, f"RSS grew by {growth} KiB under load and did not come back"
