"""In-band IPMI (issue #9): the guest's own ipmitool talks to the BMC through
QEMU's KCS interface, whose BMC is the IPMI service (ipmi-bmc-extern over a
unix socket). The real stack, the real guest driven over its serial console,
real ipmitool inside and real ipmitool/FreeIPMI outside."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import uuid

import pytest

from conftest import make_stack
from helpers import free_low_port, ipmitool, wait_for

pytestmark = pytest.mark.vm

SUPERVISOR_CONF = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
                  "supervisord.conf")
MAAS_PASSWORD = "Maas-Enlist-42"


@pytest.fixture(scope="module")
def kcs_stack(guest_dir):
    """A running stack whose guest has booted with /dev/ipmi0 and offers its shell.
    FreeIPMI needs the UDP port below 32768."""
    tmp = tempfile.mkdtemp(prefix="qemu-bmc-kcs-")
    stack = make_stack(tmp, guest_dir, IPMI_PORT=str(free_low_port()))
    stack.start()
    try:
        wait_for(lambda: "qemu-bmc-guest: boot complete" in stack.console_log, 120, "the guest's boot banner")
        assert "qemu-bmc-guest: ipmi /dev/ipmi0" in stack.console_log, \
            "the guest found no IPMI interface (a guest built before in-band IPMI? rebuild it: " \
            f"scripts/build-guest.sh {guest_dir}):\n" + stack.console_log[-3000:]
        wait_for(lambda: "guest# " in stack.console_log, 60, "the guest's shell prompt")
        yield stack
    finally:
        stack.stop()
        if os.environ.get("KEEP_TEST_DIRS") != "1":
            shutil.rmtree(tmp, ignore_errors=True)


def in_guest(stack, command: str, timeout: float = 90, over_tcp: bool = False) -> tuple[int, str]:
    """Run a shell command in the guest over its serial console: (exit status, output).
    over_tcp types through the TCP console (no bus involved), held open until the answer.
    The end marker is split in the typed line so only the shell's echo of it matches."""
    tag = uuid.uuid4().hex[:8]
    start = len(stack.console_log)
    line = f"{command}; echo @@END-{tag}-\"\"-rc=$?\n"
    pattern = re.compile(rf"@@END-{tag}--rc=(\d+)")
    with contextlib.ExitStack() as held:
        if over_tcp:
            conn = held.enter_context(socket.create_connection(("127.0.0.1", stack.console_port), timeout=10))
            conn.sendall(line.encode())
        else:
            stack.type_on_console(line)
        match = wait_for(lambda: pattern.search(stack.console_log, start), timeout,
                         f"the guest to run {command!r}")
    text = stack.console_log[start:match.start()]
    output = text.split("\n", 1)[1] if "\n" in text else ""  # drop the echoed command line
    return int(match.group(1)), output.replace("\r", "")


def guest_ipmitool(stack, *args: str, timeout: float = 90, over_tcp: bool = False) -> str:
    status, output = in_guest(stack, "ipmitool " + " ".join(args), timeout, over_tcp)
    assert status == 0, f"in-band ipmitool {' '.join(args)} failed ({status}):\n{output}"
    return output


def freeipmi(stack, tool: str, *args: str, user: str, password: str) -> subprocess.CompletedProcess:
    cmd = [tool, "-h", f"127.0.0.1:{stack.ipmi_port}", "-u", user, "-p", password, "--session-timeout", "8000",
           *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_mc_info_and_lan_print_in_band_match_the_lan_view(kcs_stack):
    inside = guest_ipmitool(kcs_stack, "mc", "info")
    outside = kcs_stack.ipmitool("mc", "info").stdout
    for field in ("Device ID", "Firmware Revision", "IPMI Version", "Manufacturer ID", "Product ID"):
        line = re.search(rf"^{field}\s*:.*$", outside, re.MULTILINE).group(0)
        assert line in inside, f"{field!r} differs in-band:\n{inside}"
    assert "Chassis Power is on" in guest_ipmitool(kcs_stack, "chassis", "power", "status")
    lan = guest_ipmitool(kcs_stack, "lan", "print", "1")
    assert re.search(r"IP Address\s*:\s*\d+\.\d+\.\d+\.\d+", lan), lan
    assert re.search(r"MAC Address\s*:\s*[0-9a-f:]{17}", lan), lan


def test_maas_enlistment_creates_a_user_in_band_that_works_over_lan(kcs_stack):
    guest_ipmitool(kcs_stack, "user", "set", "name", "3", "maas")
    guest_ipmitool(kcs_stack, "user", "set", "password", "3", MAAS_PASSWORD)
    guest_ipmitool(kcs_stack, "user", "priv", "3", "4", "1")
    guest_ipmitool(kcs_stack, "user", "enable", "3")
    # the same user store the LAN side sees
    listed = kcs_stack.ipmitool("user", "list", "1").stdout
    assert re.search(r"^3\s+maas\s+.*ADMINISTRATOR", listed, re.MULTILINE), listed
    result = freeipmi(kcs_stack, "ipmipower", "-D", "LAN_2_0", "--stat", user="maas", password=MAAS_PASSWORD)
    assert result.returncode == 0 and result.stdout.strip() == "127.0.0.1: on", result.stderr + result.stdout
    wrong = freeipmi(kcs_stack, "ipmipower", "-D", "LAN_2_0", "--stat", user="maas", password="not-it")
    assert "127.0.0.1: on" not in wrong.stdout


def sel_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if re.match(r"\s*[0-9a-f]+ \|", line)]


def test_sel_list_is_the_same_inside_and_outside(kcs_stack):
    # a record added from outside shows up inside, and the whole lists agree
    kcs_stack.ipmitool("raw", "0x0a", "0x44", "0x00", "0x00", "0x02", "0x00", "0x00", "0x00", "0x00",
                       "0x20", "0x00", "0x04", "0x12", "0x42", "0x6f", "0x01", "0xff", "0xff")
    outside = sel_lines(kcs_stack.ipmitool("sel", "list").stdout)
    inside = sel_lines(guest_ipmitool(kcs_stack, "sel", "list"))
    assert len(outside) >= 2 and inside == outside, f"inside:\n{inside}\noutside:\n{outside}"
    # and one cleared in-band is gone for the LAN side too
    guest_ipmitool(kcs_stack, "sel", "clear")
    wait_for(lambda: len(sel_lines(kcs_stack.ipmitool("sel", "list").stdout)) <= 1, 20, "the SEL cleared in-band")


def test_in_band_ipmi_answers_while_the_bus_is_down(kcs_stack):
    kcs_stack.run("supervisorctl", "-c", SUPERVISOR_CONF, "stop", "nats")
    try:
        # typed over the TCP console: console.in is a bus subject
        assert "IPMI Version              : 2.0" in guest_ipmitool(kcs_stack, "mc", "info", over_tcp=True)
        assert re.search(r"^2\s+admin\s", guest_ipmitool(kcs_stack, "user", "list", "1", over_tcp=True),
                         re.MULTILINE)
        inside = sel_lines(guest_ipmitool(kcs_stack, "sel", "list", over_tcp=True))
        assert inside == sel_lines(kcs_stack.ipmitool("sel", "list").stdout)
    finally:
        kcs_stack.run("supervisorctl", "-c", SUPERVISOR_CONF, "start", "nats")
    wait_for(lambda: "Chassis Power is on" in kcs_stack.ipmitool("power", "status", check=False).stdout, 30,
             "the BMC back on the bus")


def test_in_band_ipmi_works_again_after_the_guest_reboots(kcs_stack):
    boots = kcs_stack.boots()
    kcs_stack.type_on_console("reboot -f\n")
    wait_for(lambda: kcs_stack.boots() > boots, 120, "the guest to boot again")
    wait_for(lambda: "guest# " in kcs_stack.console_log.rsplit("boot complete", 1)[1], 60,
             "the shell prompt after the reboot")
    log = kcs_stack.console_log
    assert log.count("qemu-bmc-guest: ipmi /dev/ipmi0") == log.count("qemu-bmc-guest: boot complete")
    assert "Device ID" in guest_ipmitool(kcs_stack, "mc", "info")


def test_the_guest_reaches_the_bmc_again_after_the_ipmi_service_restarts(kcs_stack):
    connected = kcs_stack.output().count("QEMU connected")
    kcs_stack.run("supervisorctl", "-c", SUPERVISOR_CONF, "restart", "ipmi")
    wait_for(lambda: kcs_stack.supervisor_status().get("ipmi") == "RUNNING", 30, "the ipmi service RUNNING")
    # QEMU's chardev reconnects on its own (reconnect=1)
    wait_for(lambda: kcs_stack.output().count("QEMU connected") > connected, 30, "QEMU to reconnect")
    assert "Device ID" in guest_ipmitool(kcs_stack, "mc", "info")


class ImageNode:
    """The product image under the real Docker engine: its console log and TCP console."""

    def __init__(self, name: str):
        from dockerlab import docker
        self.docker = docker
        self.name = name
        self.console_port = int(docker("port", name, "5000/tcp").stdout.split(":")[-1])

    @property
    def console_log(self) -> str:
        return self.docker("exec", self.name, "cat", "/var/log/qemu-bmc/console.log", check=False).stdout


@pytest.mark.docker
def test_maas_enlistment_in_band_in_the_real_image(image):
    """The Dockerfile's guest (generic kernel, ipmi modules, ipmitool) and the image's
    services: a user made in-band logs in over the mapped IPMI port."""
    from dockerlab import docker
    name = f"qemu-bmc-kcs-{uuid.uuid4().hex[:8]}"
    ipmi_port = free_low_port()
    docker("run", "-d", "--name", name, "--hostname", "node1", "--cap-add", "NET_ADMIN",
           "--device", "/dev/net/tun", "-e", "QEMU_ACCEL=tcg", "-e", "IPMI_PASSWORD=secret",
           "-p", f"127.0.0.1:{ipmi_port}:623/udp", "-p", "127.0.0.1::5000", image)
    try:
        node = ImageNode(name)
        wait_for(lambda: "guest# " in node.console_log, 120, "the guest's shell prompt in the container")
        assert "qemu-bmc-guest: ipmi /dev/ipmi0" in node.console_log
        for args in (("user", "set", "name", "3", "maas"), ("user", "set", "password", "3", MAAS_PASSWORD),
                     ("user", "priv", "3", "4", "1"), ("user", "enable", "3")):
            guest_ipmitool(node, *args, over_tcp=True)
        out = ipmitool("127.0.0.1", ipmi_port, "power", "status", user="maas", password=MAAS_PASSWORD).stdout
        assert out.strip() == "Chassis Power is on"
    finally:
        docker("rm", "-f", name, check=False)
