"""The real image under a real Docker engine, run least-privileged the way the
README recommends, driven from outside by real ipmitool (walking skeleton
acceptance). Needs dockerd; tests/run_tests.sh starts one."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid

import pytest

from dockerlab import docker
from helpers import REPO, free_low_port, ipmitool, wait_for
from test_stack_power import parse_trace

pytestmark = pytest.mark.docker
# `docker` and the session-wide `image` fixture (one build per run) are shared
# with test_containerlab.py: see dockerlab.py and conftest.py.


class Container:
    def __init__(self, name: str):
        self.name = name
        self.ipmi_port = int(docker("port", name, "623/udp").stdout.split(":")[-1])
        self.vnc_port = int(docker("port", name, "5900/tcp").stdout.split(":")[-1])
        self.console_port = int(docker("port", name, "5000/tcp").stdout.split(":")[-1])

    def exec(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        return docker("exec", self.name, *args, timeout=timeout, check=check)

    def ipmitool(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return ipmitool("127.0.0.1", self.ipmi_port, *args, **kw)

    def programs(self) -> dict[str, str]:
        out = self.exec("supervisorctl", "status", check=False).stdout
        return {line.split()[0]: line.split()[1] for line in out.splitlines() if line.strip()}

    def boots(self) -> int:
        out = self.exec("cat", "/var/log/qemu-bmc/console.log", check=False).stdout
        return out.count("qemu-bmc-guest: boot complete")

    def power(self) -> str:
        return self.ipmitool("power", "status").stdout.strip()

    def logs(self) -> str:
        r = docker("logs", self.name, check=False)
        return r.stdout + r.stderr


@pytest.fixture(scope="module")
def container(image):
    name = f"qemu-bmc-test-{uuid.uuid4().hex[:8]}"
    ipmi_port = free_low_port()  # known before the run: SOL must advertise it (IPMI_SOL_PORT)
    docker("run", "-d", "--name", name, "--hostname", "node1",
           "--cap-add", "NET_ADMIN", "--device", "/dev/net/tun", "--device", "/dev/kvm",
           "-e", "QEMU_ACCEL=tcg", "-e", "IPMI_PASSWORD=secret", "-e", f"IPMI_SOL_PORT={ipmi_port}",
           "-p", f"127.0.0.1:{ipmi_port}:623/udp", "-p", "127.0.0.1::5900", "-p", "127.0.0.1::5000", image)
    try:
        c = Container(name)
        wait_for(lambda: c.boots() >= 1, 90, "the guest's boot banner in the console log")
        yield c
    finally:
        logs = docker("logs", name, check=False)
        os.makedirs(os.path.join(REPO, "artifacts"), exist_ok=True)
        with open(os.path.join(REPO, "artifacts", f"{name}.log"), "w") as f:
            f.write(logs.stdout + logs.stderr)
        docker("rm", "-f", name, check=False)


def test_supervisord_is_pid1_and_every_program_runs(container):
    assert "supervisord" in container.exec("cat", "/proc/1/cmdline").stdout
    programs = wait_for(lambda: (p := container.programs()) and all(v == "RUNNING" for v in p.values()) and p,
                        30, "all programs RUNNING")
    assert set(programs) == {"nats", "qemu", "power", "ipmi", "console", "net", "redfish"}
    assert "qemu-bmc-guest: boot complete" in container.exec("cat", "/var/log/qemu-bmc/console.log").stdout


def test_healthcheck_reports_healthy(container):
    assert container.exec("qemu-bmc", "health").stdout.strip() == "healthy"
    wait_for(lambda: docker("inspect", "-f", "{{.State.Health.Status}}", container.name).stdout.strip() == "healthy",
             90, "docker to call the container healthy")


@pytest.mark.parametrize("cipher", [None, "3", "17"])
def test_ipmitool_reads_the_bmc(container, cipher):
    info = container.ipmitool("mc", "info", cipher=cipher).stdout
    assert "IPMI Version              : 2.0" in info
    assert container.ipmitool("power", "status", cipher=cipher).stdout.strip() == "Chassis Power is on"


def test_power_off_on_cycle_reset_soft(container):
    c = container
    wait_for(lambda: c.power() == "Chassis Power is on", 20, "power on")
    c.ipmitool("power", "off")
    wait_for(lambda: c.power() == "Chassis Power is off", 20, "power off")
    assert c.programs()["qemu"] == "STOPPED"

    boots = c.boots()
    c.ipmitool("power", "on", cipher="3")
    wait_for(lambda: c.boots() == boots + 1, 90, "a boot after power on")
    assert c.programs()["qemu"] == "RUNNING"

    trace = subprocess.Popen(["docker", "exec", c.name, "qemu-bmc", "trace", "--seconds", "15"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    c.ipmitool("power", "cycle", cipher="17")
    wait_for(lambda: c.boots() == boots + 2, 90, "a boot after power cycle")
    out, _ = trace.communicate(timeout=30)
    messages = parse_trace(out)
    assert messages["request bmc.node1.power.set"][0]["action"] == "cycle", out
    causes = [(m["state"], m["cause"]) for m in messages["event bmc.node1.power.changed"]]
    assert ("off", "power-cycle") in causes and ("on", "power-cycle") in causes, out

    c.ipmitool("power", "reset")
    wait_for(lambda: c.boots() == boots + 3, 90, "a second boot banner after reset")

    time.sleep(1.0)  # acpid in the guest must be listening for the power button
    c.ipmitool("power", "soft")
    wait_for(lambda: c.power() == "Chassis Power is off", 30, "the guest to power itself off")
    assert "power off (soft-off)" in c.logs()
    c.ipmitool("power", "on")
    wait_for(lambda: c.boots() == boots + 4, 90, "a boot after power on")


def test_wrong_password_is_refused(container):
    before = container.power()
    result = container.ipmitool("power", "off", password="wrong", check=False)
    assert result.returncode != 0
    assert container.power() == before


def test_vnc_answers_an_rfb_handshake(container):
    def banner():
        with socket.create_connection(("127.0.0.1", container.vnc_port), timeout=2) as s:
            return s.recv(12)
    assert wait_for(banner, 20, "an RFB banner").startswith(b"RFB 003.00")


def test_sol_and_the_tcp_console_work_through_the_port_mapping(container):
    from test_console_sol import Pty
    wait_for(lambda: container.power() == "Chassis Power is on", 30, "power on")
    sol = Pty(["ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-p", str(container.ipmi_port),
               "-U", "admin", "-P", "secret", "sol", "activate"])
    try:
        sol.read_until(b"SOL Session operational", 20)
        sol.type(b"\r")
        sol.read_until(b"guest#", 30)
        sol.type(b"echo in-container-$((5*5))\r")
        sol.read_until(b"in-container-25", 20)
    finally:
        sol.leave_sol()
        sol.close()
    with socket.create_connection(("127.0.0.1", container.console_port), timeout=5) as tcp:
        tcp.sendall(b"echo over-tcp-$((6*6))\n")
        seen = b""
        deadline = time.monotonic() + 20
        while b"over-tcp-36" not in seen and time.monotonic() < deadline:
            seen += tcp.recv(4096)
        assert b"over-tcp-36" in seen


def test_docker_stop_shuts_the_guest_down_and_keeps_the_state(container):
    c = container
    wait_for(lambda: c.power() == "Chassis Power is on", 30, "power on")
    boots = c.boots()
    c.ipmitool("user", "set", "name", "6", "survivor")
    c.ipmitool("user", "set", "password", "6", "survivor-pw")
    c.ipmitool("user", "priv", "6", "4", "1")
    c.ipmitool("user", "enable", "6")
    c.ipmitool("chassis", "bootdev", "disk", "options=persistent")
    sel_before = c.ipmitool("sel", "list").stdout.strip().splitlines()
    docker("stop", "-t", "60", c.name, timeout=90)
    logs = c.logs()
    assert "container stopping: ACPI power button" in logs
    assert "power off (soft-off)" in logs, logs[-3000:]
    docker("start", c.name)
    wait_for(lambda: c.ipmitool("mc", "info", check=False).returncode == 0, 60, "the BMC back")
    wait_for(lambda: c.ipmitool("power", "status", user="survivor", password="survivor-pw",
                                check=False).returncode == 0, 60, "the persisted user to log in")
    assert "Force Boot from default Hard-Drive" in c.ipmitool("chassis", "bootparam", "get", "5").stdout
    sel_after = c.ipmitool("sel", "list").stdout.strip().splitlines()
    assert len(sel_after) >= len(sel_before) and sel_after[:len(sel_before)] == sel_before


def test_two_containers_linked_on_eth2_ping_each_other(image):
    """The containerlab way: two nodes started, then a veth pair moved in as eth2 of
    each (CLAB_INTFS=1 makes the power-on wait for it); their guests ping each other."""
    names = [f"qemu-bmc-link-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    veth = [f"qbl{uuid.uuid4().hex[:6]}", f"qbl{uuid.uuid4().hex[:6]}"]
    try:
        for name in names:
            docker("run", "-d", "--name", name, "--hostname", name[-6:],
                   "--cap-add", "NET_ADMIN", "--device", "/dev/net/tun", "--device", "/dev/kvm",
                   "-e", "QEMU_ACCEL=tcg", "-e", "IPMI_PASSWORD=secret", "-e", "CLAB_INTFS=1", image)
        pids = [docker("inspect", "-f", "{{.State.Pid}}", name).stdout.strip() for name in names]
        subprocess.run(["ip", "link", "add", veth[0], "type", "veth", "peer", "name", veth[1]], check=True)
        for end, pid in zip(veth, pids):
            subprocess.run(["ip", "link", "set", end, "netns", pid], check=True)
            subprocess.run(["nsenter", "-t", pid, "-n", "ip", "link", "set", end, "name", "eth2"], check=True)
            subprocess.run(["nsenter", "-t", pid, "-n", "ip", "link", "set", "eth2", "up"], check=True)

        def console(name: str) -> str:
            return docker("exec", name, "cat", "/var/log/qemu-bmc/console.log", check=False).stdout

        for name in names:
            wait_for(lambda n=name: "guest# " in console(n), 120, f"{name}'s guest to boot with its NIC")
            assert "qemu-bmc-guest: nic eth0" in console(name)
        for name, addr in zip(names, ("192.0.2.101", "192.0.2.102")):
            subprocess.run(["docker", "exec", "-i", name, "qemu-bmc", "console", "--seconds", "2"],
                           input=f"\nip addr add {addr}/24 dev eth0\n".encode(), capture_output=True, timeout=30)
        subprocess.run(["docker", "exec", "-i", names[0], "qemu-bmc", "console", "--seconds", "2"],
                       input=b"ping -c 3 -W 3 192.0.2.102 && echo LINKED''-OK\n", capture_output=True, timeout=30)
        wait_for(lambda: "LINKED-OK" in console(names[0]), 60, "a ping across the containers' eth2 link")
    finally:
        for name in names:
            docker("rm", "-f", name, check=False)
        subprocess.run(["ip", "link", "del", veth[0]], capture_output=True)
