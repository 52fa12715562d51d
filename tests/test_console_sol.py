"""Serial console end to end: SOL with ipmitool (through tmux and a pty) and
FreeIPMI's ipmiconsole, the TCP console, the console log and `qemu-bmc console`,
against the real stack booting a real guest."""

from __future__ import annotations

import os
import pty
import re
import select
import socket
import subprocess
import time
import uuid

import pytest

from conftest import booted_stack
from helpers import free_low_port, wait_for

pytestmark = pytest.mark.vm
LINES = 150_000  # `seq 1 150000` prints about 1 MiB


@pytest.fixture(scope="module")
def stack(guest_dir):
    """A stack whose guest boots without `quiet`: the kernel's first lines are on the console."""
    port = str(free_low_port())
    with booted_stack(guest_dir, "qemu-bmc-sol-", GUEST_APPEND="console=ttyS0", IPMI_PORT=port,
                      IPMI_SOL_PORT=port) as s:
        yield s


def ipmitool_argv(stack, *args: str) -> list[str]:
    return ["ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-p", str(stack.ipmi_port),
            "-U", "admin", "-P", "secret", *args]


class Pty:
    """A program on a pseudo-terminal, read in full (unlike a screen scrape)."""

    def __init__(self, argv: list[str], env: dict | None = None):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     start_new_session=True)
        os.close(slave)
        self.output = bytearray()

    def read_until(self, needle: bytes, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {needle!r} within {timeout}s; last output: {bytes(self.output[-500:])!r}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    chunk = b""
                if not chunk:  # the program ended
                    raise AssertionError(f"no {needle!r} before the program ended: {bytes(self.output[-500:])!r}")
                self.output += chunk
        return bytes(self.output)

    def leave_sol(self) -> None:
        """ipmitool's escape: leave and deactivate the payload, as a user would."""
        self.type(b"\r~.")
        try:
            self.read_until(b"[terminated ipmitool]", 10)
        except AssertionError:
            pass
        self.proc.wait(10)

    def type(self, text: bytes) -> None:
        os.write(self.master, text)

    def close(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(10)
        finally:
            os.close(self.master)


def numbered_lines(text: bytes, start_marker: bytes, end_marker: bytes) -> list[int]:
    body = text.split(start_marker, 1)[1].split(end_marker, 1)[0]
    return [int(line) for line in re.split(rb"\r?\n", body) if line.strip().isdigit()]


def assert_all_lines(text: bytes, start_marker: bytes, end_marker: bytes, count: int, path: str) -> None:
    """Every number 1..count, in order; on a failure, show the raw bytes where it went wrong."""
    got = numbered_lines(text, start_marker, end_marker)
    if got == list(range(1, count + 1)):
        return
    first_bad = next((i for i, n in enumerate(got) if n != i + 1), len(got))
    expected_line = b"\n%d\r" % (first_bad + 1)
    body = text.split(start_marker, 1)[1].split(end_marker, 1)[0]
    previous = b"\n%d\r" % first_bad if first_bad else start_marker
    at = body.find(previous)
    raise AssertionError(f"{path}: {len(got)} numbered lines of {count}; first wrong at line {first_bad + 1} "
                         f"(got {got[first_bad] if first_bad < len(got) else 'nothing'}); "
                         f"{expected_line!r} {'is' if expected_line in body else 'is not'} in the output; "
                         f"bytes after line {first_bad}: {body[max(at, 0):max(at, 0) + 120]!r}")


def test_sol_info_prints_sane_values(stack):
    out = stack.ipmitool("sol", "info", "1").stdout
    assert "Enabled                         : true" in out
    assert f"Payload Port                    : {stack.ipmi_port}" in out
    assert "Volatile Bit Rate (kbps)        : 115.2" in out


def test_ipmitool_sol_round_trip_escape_and_deactivate(stack):
    session = f"sol-{uuid.uuid4().hex[:6]}"
    cmd = " ".join(ipmitool_argv(stack, "sol", "activate")) + "; echo IPMITOOL-EXITED-$?; sleep 60"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "40", cmd], check=True)

    def screen() -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                              text=True).stdout
    try:
        wait_for(lambda: "SOL Session operational" in screen(), 20, "ipmitool to activate SOL")
        subprocess.run(["tmux", "send-keys", "-t", session, "", "Enter"], check=True)
        wait_for(lambda: "guest#" in screen(), 20, "the guest's shell prompt")
        marker = f"sol-{uuid.uuid4().int % 100000}"
        subprocess.run(["tmux", "send-keys", "-t", session, f"echo {marker}-$((20+22))", "Enter"], check=True)
        wait_for(lambda: f"{marker}-42" in screen(), 20, "the command's output over SOL")
        # ~. leaves (escapes are recognised right after a newline)
        subprocess.run(["tmux", "send-keys", "-t", session, "Enter"], check=True)
        subprocess.run(["tmux", "send-keys", "-t", session, "~."], check=True)
        wait_for(lambda: "IPMITOOL-EXITED-0" in screen(), 20, "ipmitool to leave on ~.")
        # a new activation works after leaving, and `sol deactivate` elsewhere ends it
        subprocess.run(["tmux", "kill-session", "-t", session], check=True)
        subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "40", cmd], check=True)
        wait_for(lambda: "SOL Session operational" in screen(), 20, "a second activation")
        second = stack.ipmitool("sol", "activate", check=False)
        assert "already active" in second.stderr + second.stdout
        stack.ipmitool("sol", "deactivate")
        subprocess.run(["tmux", "send-keys", "-t", session, "x"], check=True)
        wait_for(lambda: "IPMITOOL-EXITED-1" in screen(), 30, "the active SOL to end after deactivate")
        assert "SOL session closed by BMC" in screen()
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def test_freeipmi_ipmiconsole_round_trip(stack):
    console = Pty(["ipmiconsole", "-h", f"127.0.0.1:{stack.ipmi_port}", "-u", "admin", "-p", "secret"])
    try:
        console.read_until(b"[SOL established]", 30)
        console.type(b"\r")
        console.read_until(b"guest#", 20)
        console.type(b"echo via-ipmiconsole-$((40+2))\r")
        console.read_until(b"via-ipmiconsole-42", 20)
        console.type(b"&.")
        console.read_until(b"[closing the connection]", 20)
        assert console.proc.wait(10) == 0
    finally:
        console.close()


def test_one_mebibyte_arrives_complete_over_sol_tcp_and_log(stack):
    sol = Pty(ipmitool_argv(stack, "sol", "activate"))
    tcp = socket.create_connection(("127.0.0.1", stack.console_port))
    tcp_data = bytearray()
    try:
        sol.read_until(b"SOL Session operational", 20)
        sol.type(b"\r")
        sol.read_until(b"guest#", 20)
        start = f"START-{uuid.uuid4().hex[:8]}".encode()
        # the shell echoes the line as typed, so the markers are built by the shell; the
        # kernel's own late messages (this guest boots without `quiet`; "random: crng init
        # done" comes seconds after boot on a loaded machine) would land inside a line
        sol.type(b"dmesg -n 1; echo " + start[:4] + b"''" + start[4:] + b"; seq 1 %d; echo END''-MARK\r" % LINES)
        tcp.setblocking(False)
        deadline = time.monotonic() + 240
        while b"END-MARK" not in sol.output or b"END-MARK" not in tcp_data:
            assert time.monotonic() < deadline, "1 MiB did not arrive within 240 s"
            ready, _, _ = select.select([sol.master, tcp], [], [], 0.5)
            if sol.master in ready:
                sol.output += os.read(sol.master, 65536)
            if tcp in ready:
                tcp_data += tcp.recv(1 << 20)
        expected = list(range(1, LINES + 1))
        assert_all_lines(bytes(sol.output), start, b"END-MARK", LINES, "SOL")
        assert_all_lines(bytes(tcp_data), start, b"END-MARK", LINES, "TCP console")
        wait_for(lambda: "END-MARK" in stack.console_log.rsplit(start.decode(), 1)[-1], 20, "the log to catch up")
        log = stack.console_log.encode()
        assert numbered_lines(log[log.rindex(start):], start, b"END-MARK") == expected, "the log lost lines"
    finally:
        tcp.close()
        sol.leave_sol()
        sol.close()


def test_power_cycle_during_sol_shows_the_new_boot_from_its_first_line(stack):
    sol = Pty(ipmitool_argv(stack, "sol", "activate"))
    try:
        sol.read_until(b"SOL Session operational", 20)
        before = len(sol.output)
        stack.ipmitool("power", "cycle")
        text = sol.read_until(b"qemu-bmc-guest: boot complete", 90)[before:]
        # the kernel's very first line of the new boot came over SOL
        assert b"Linux version" in text, text[:2000]
        assert text.index(b"Linux version") < text.index(b"qemu-bmc-guest: boot complete")
    finally:
        sol.leave_sol()
        sol.close()


def test_qemu_bmc_console_shows_history_then_live_and_leaves_on_ctrl_bracket(stack):
    wait_for(lambda: "boot complete" in stack.console_log, 60, "a booted guest")
    console = Pty(["qemu-bmc", "console"], env=stack.env)
    try:
        console.read_until(b"qemu-bmc-guest: boot complete", 20)  # from the history
        console.read_until(b"Ctrl-] leaves", 10)
        console.type(b"\recho live-$((3*3))\r")
        console.read_until(b"live-9", 20)
        console.type(b"\x1d")
        console.read_until(b"[qemu-bmc console: left]", 10)
        assert console.proc.wait(10) == 0
    finally:
        console.close()
