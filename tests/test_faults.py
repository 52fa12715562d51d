"""Faults injected into the real stack: every program killed with SIGKILL in turn,
and NATS away for 10 s. supervisord brings programs back, the VM keeps running,
the bus converges to the truth and nothing persisted is lost."""

from __future__ import annotations

import os
import signal
import time

import pytest

from helpers import REPO, wait_for

pytestmark = pytest.mark.vm
CONF = os.path.join(REPO, "configs", "supervisord.conf")


def pid_of(stack, program: str) -> int:
    return int(stack.run("supervisorctl", "-c", CONF, "pid", program).stdout.strip())


def bus_power(stack) -> str:
    result = stack.run("qemu-bmc", "--timeout", "2", "power", "status", check=False)
    return result.stdout.strip()


@pytest.mark.parametrize("program", ["nats", "power", "ipmi", "console", "net"])
def test_sigkill_of_a_program_leaves_the_vm_running_and_state_intact(stack, program):
    wait_for(lambda: stack.power_state() == "Chassis Power is on", 60, "power on")
    stack.ipmitool("chassis", "bootdev", "pxe", "options=persistent")
    stack.ipmitool("user", "set", "name", "7", f"kept-{program}")
    qemu = pid_of(stack, "qemu")
    victim = pid_of(stack, program)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: stack.supervisor_status().get(program) == "RUNNING" and pid_of(stack, program) != victim,
             30, f"supervisord to restart {program}")
    start = time.monotonic()
    wait_for(lambda: bus_power(stack) == "power on", 15, "the bus to report the truth again")
    converged = time.monotonic() - start
    assert converged < 5, f"took {converged:.1f}s to converge after killing {program}"
    assert pid_of(stack, "qemu") == qemu, f"killing {program} touched QEMU"
    wait_for(lambda: stack.ipmitool("power", "status", check=False).stdout.strip() == "Chassis Power is on",
             15, "IPMI answering again")
    assert "Force PXE" in stack.ipmitool("chassis", "bootparam", "get", "5").stdout
    assert f"kept-{program}" in stack.ipmitool("user", "list", "1").stdout
    stack.ipmitool("chassis", "bootdev", "none")


def test_console_restart_loses_nothing_from_the_raw_log(stack):
    wait_for(lambda: stack.power_state() == "Chassis Power is on", 60, "power on")
    stack.run("supervisorctl", "-c", CONF, "stop", "console")
    # the guest prints while nobody relays: QEMU's raw log still has it
    stack.run("supervisorctl", "-c", CONF, "start", "console")
    marker = f"raw-{time.monotonic_ns()}"
    stack.type_on_console(f"\necho {marker[:4]}''{marker[4:]}\n")
    raw = os.path.join(stack.env["LOG_DIR"], "console.raw.log")
    wait_for(lambda: marker in open(raw, errors="replace").read(), 20, "the marker in console.raw.log")


def test_nats_down_for_ten_seconds(stack):
    wait_for(lambda: stack.power_state() == "Chassis Power is on", 60, "power on")
    stack.run("supervisorctl", "-c", CONF, "stop", "nats")
    try:
        time.sleep(1.0)  # let every client notice
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert "IPMI Version" in stack.ipmitool("mc", "info", timeout=15).stdout
            assert "System Power         : on" in stack.ipmitool("chassis", "status", timeout=15).stdout
            began = time.monotonic()
            refused = stack.ipmitool("power", "off", check=False, timeout=15)
            assert refused.returncode != 0 and "Node busy" in refused.stderr + refused.stdout
            assert time.monotonic() - began < 5, "a refused power command must not hang"
            time.sleep(2)
    finally:
        stack.run("supervisorctl", "-c", CONF, "start", "nats")
    wait_for(lambda: bus_power(stack) == "power on", 30, "the services to reconnect")
    boots = stack.boots()
    stack.ipmitool("power", "reset")
    wait_for(lambda: stack.boots() == boots + 1, 60, "power control after NATS came back")


def test_health_names_what_is_wrong(stack):
    wait_for(lambda: stack.run("qemu-bmc", "health", check=False).returncode == 0, 30, "a healthy stack")
    stack.run("supervisorctl", "-c", CONF, "stop", "ipmi")
    try:
        result = stack.run("qemu-bmc", "--timeout", "1", "health", check=False)
        assert result.returncode == 1
        assert "ipmi is STOPPED" in result.stdout and "no IPMI answer" in result.stdout
    finally:
        stack.run("supervisorctl", "-c", CONF, "start", "ipmi")
    wait_for(lambda: stack.run("qemu-bmc", "health", check=False).returncode == 0, 30, "healthy again")
