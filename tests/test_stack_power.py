"""The walking skeleton on the host: supervisord, nats-server, QEMU booting the
real default guest, and real ipmitool driving it over RMCP+ (issue: walking skeleton).

The container runs exactly this stack; tests/test_docker_image.py repeats the
essentials inside the real image.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import make_stack
from helpers import wait_for

pytestmark = pytest.mark.vm


def ensure_on(stack) -> None:
    if "off" in stack.power_state():
        before = stack.boots()
        stack.ipmitool("power", "on")
        wait_for(lambda: stack.boots() > before, 60, "a boot banner after power on")
    wait_for(lambda: stack.supervisor_status().get("qemu") == "RUNNING", 20, "qemu RUNNING")


def wait_booted(stack, count: int) -> None:
    wait_for(lambda: stack.boots() >= count, 60, f"boot banner number {count}")


def test_every_program_runs_and_the_guest_boots(stack):
    status = wait_for(lambda: (s := stack.supervisor_status()) and
                      all(s.get(p) == "RUNNING" for p in ("nats", "power", "ipmi", "console", "net", "redfish", "qemu")) and s,
                      30, "all programs RUNNING")
    assert set(status) == {"nats", "power", "ipmi", "console", "net", "redfish", "qemu"}
    assert "qemu-bmc-guest: boot complete" in stack.console_log
    # every program logs with its name in front
    out = stack.output()
    for program in ("nats:", "power:", "ipmi:", "qemu:"):
        assert program in out, f"no {program} lines in the log"


@pytest.mark.parametrize("cipher", [None, "3", "17"])
def test_mc_info_and_power_status_over_lanplus(stack, cipher):
    info = stack.ipmitool("mc", "info", cipher=cipher).stdout
    assert "IPMI Version              : 2.0" in info
    assert "Manufacturer ID           : 32473" in info
    assert "Chassis Device" in info
    ensure_on(stack)
    assert stack.ipmitool("power", "status", cipher=cipher).stdout.strip() == "Chassis Power is on"


def test_power_off_stops_qemu_and_power_on_boots_again(stack):
    ensure_on(stack)
    out = stack.ipmitool("power", "off").stdout
    assert "Down/Off" in out
    wait_for(lambda: stack.power_state() == "Chassis Power is off", 10, "status off")
    assert stack.supervisor_status()["qemu"] == "STOPPED"
    before = stack.boots()
    assert "Up/On" in stack.ipmitool("power", "on").stdout
    wait_for(lambda: stack.boots() == before + 1, 60, "the guest to boot again")
    assert stack.supervisor_status()["qemu"] == "RUNNING"
    assert stack.power_state() == "Chassis Power is on"


def test_power_cycle_boots_the_guest_again_and_trace_shows_it(stack):
    ensure_on(stack)
    wait_booted(stack, stack.boots())
    before = stack.boots()
    trace = subprocess.Popen(["qemu-bmc", "trace", "--seconds", "20"], env=stack.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # let the subscription settle before the command goes out
    assert "Cycle" in stack.ipmitool("power", "cycle").stdout
    wait_for(lambda: stack.boots() == before + 1, 60, "a boot banner after power cycle")
    wait_for(lambda: stack.power_state() == "Chassis Power is on", 20, "power on after the cycle")
    trace.send_signal(signal.SIGINT)
    out, err = trace.communicate(timeout=20)
    messages = parse_trace(out)
    assert {"type": "power.set", "action": "cycle", "source": "ipmi"}.items() <= \
        messages["request bmc.testnode.power.set"][0].items(), out
    changes = [(m["state"], m["cause"]) for m in messages["event bmc.testnode.power.changed"]]
    assert ("off", "power-cycle") in changes and ("on", "power-cycle") in changes, out
    assert any(m["event"] == "SHUTDOWN" for m in messages["event bmc.testnode.vm.event"]), out


def parse_trace(out: str) -> dict[str, list[dict]]:
    """`qemu-bmc trace` lines -> {"<kind> <subject>": [payload, ...]}."""
    import collections
    import json
    messages = collections.defaultdict(list)
    for line in out.splitlines():
        _time, kind, subject, payload = line.split(None, 3)
        try:
            messages[f"{kind} {subject}"].append(json.loads(payload))
        except ValueError:
            messages[f"{kind} {subject}"].append({"raw": payload})
    return messages


def test_power_reset_reboots_the_guest(stack):
    ensure_on(stack)
    before = stack.boots()
    pid_before = stack.supervisor_status()
    assert "Reset" in stack.ipmitool("power", "reset").stdout
    wait_for(lambda: stack.boots() == before + 1, 60, "a second boot banner after reset")
    assert stack.supervisor_status()["qemu"] == "RUNNING"
    assert pid_before["qemu"] == "RUNNING"


def test_power_soft_lets_the_guest_power_itself_off(stack):
    ensure_on(stack)
    wait_booted(stack, stack.boots())  # acpid must be up to hear the power button
    time.sleep(0.5)
    assert "Soft" in stack.ipmitool("power", "soft").stdout
    wait_for(lambda: stack.power_state() == "Chassis Power is off", 30, "the guest to power off")
    assert stack.supervisor_status()["qemu"] in ("EXITED", "STOPPED")
    assert "power off (soft-off)" in stack.output()
    status = stack.run("qemu-bmc", "status").stdout
    assert "power     off" in status and "soft-off" in status


def test_power_diag_sends_an_nmi(stack):
    ensure_on(stack)
    stack.ipmitool("power", "diag")
    wait_for(lambda: "power nmi requested by ipmi" in stack.output(), 10, "the NMI request in the log")
    assert stack.power_state() == "Chassis Power is on"


def test_wrong_password_fails_and_changes_nothing(stack):
    ensure_on(stack)
    before = stack.output().count("power off requested")
    result = stack.ipmitool("power", "off", password="not-the-password", check=False)
    assert result.returncode != 0
    assert "Chassis Power Control" not in result.stdout
    assert stack.power_state() == "Chassis Power is on"
    assert stack.output().count("power off requested") == before


def test_user_level_account_cannot_power_off(stack):
    ensure_on(stack)
    # reading is allowed at USER level ...
    out = stack.ipmitool("-L", "USER", "power", "status", user="viewer", password="viewpw").stdout
    assert "Chassis Power is on" in out
    # ... control is not: completion code 0xD4, insufficient privilege
    result = stack.ipmitool("-L", "USER", "power", "off", user="viewer", password="viewpw", check=False)
    assert result.returncode != 0
    assert "Insufficient privilege" in result.stderr + result.stdout
    # and a USER account cannot ask for a higher privilege at all
    result = stack.ipmitool("power", "off", user="viewer", password="viewpw", check=False)
    assert result.returncode != 0
    assert stack.power_state() == "Chassis Power is on"


def test_operator_can_control_power(stack):
    ensure_on(stack)
    before = stack.boots()
    stack.ipmitool("-L", "OPERATOR", "power", "reset", user="ops", password="opspw")
    wait_for(lambda: stack.boots() == before + 1, 60, "a boot banner after the operator's reset")


def test_vnc_answers_an_rfb_handshake(stack):
    ensure_on(stack)

    def banner():
        with socket.create_connection(("127.0.0.1", stack.vnc_port), timeout=2) as s:
            return s.recv(12)
    data = wait_for(banner, 10, "an RFB banner")
    assert data.startswith(b"RFB 003.00"), data


def test_power_agent_restart_leaves_the_vm_alone(stack):
    ensure_on(stack)
    conf = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "supervisord.conf")

    def qemu_pid():
        out = stack.run("supervisorctl", "-c", conf, "pid", "qemu").stdout.strip()
        return int(out)
    pid = qemu_pid()
    boots = stack.boots()
    stack.run("supervisorctl", "-c", conf, "restart", "power")
    wait_for(lambda: "re-attached to running QEMU" in stack.output(), 20, "the agent to re-attach")
    assert qemu_pid() == pid
    assert stack.boots() == boots
    assert stack.power_state() == "Chassis Power is on"
    # and it still controls the VM it re-attached to
    stack.ipmitool("power", "reset")
    wait_for(lambda: stack.boots() == boots + 1, 60, "a reboot commanded after re-attaching")


def test_qemu_killed_from_outside_is_reported_as_crashed_and_restored(stack):
    ensure_on(stack)
    conf = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "supervisord.conf")
    pid = int(stack.run("supervisorctl", "-c", conf, "pid", "qemu").stdout)
    boots = stack.boots()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: "power off (crashed)" in stack.output(), 20, "the crash to be noticed")
    # restore policy always-on powers the server back on
    wait_for(lambda: stack.boots() == boots + 1, 60, "the restore policy to boot the guest again")
    assert stack.power_state() == "Chassis Power is on"


def test_restore_policy_always_off_and_previous(guest_dir, tmp_path):
    s = make_stack(str(tmp_path), guest_dir, POWER_RESTORE_POLICY="always-off")
    s.start()
    try:
        wait_for(lambda: "restore policy always-off" in s.output(), 30, "the policy to be applied")
        wait_for(lambda: s.power_state() == "Chassis Power is off", 20, "power off")
        assert s.supervisor_status()["qemu"] == "STOPPED"
    finally:
        s.stop()
    # previous: the last state (off) holds; power on, restart the container, it comes back on
    s = make_stack(str(tmp_path), guest_dir, POWER_RESTORE_POLICY="previous")
    s.start()
    try:
        wait_for(lambda: "restore policy previous (last state off): staying off" in s.output(), 30,
                 "the previous policy to keep it off")
        s.ipmitool("power", "on")
        wait_for(lambda: s.boots() >= 1, 60, "boot")
    finally:
        s.stop()
    s = make_stack(str(tmp_path), guest_dir, POWER_RESTORE_POLICY="previous")
    s.start()
    try:
        wait_for(lambda: s.boots() >= 2, 60, "the previous policy to power on after restart")
        assert "(last state on): powering on" in s.output()
    finally:
        s.stop()


def test_guest_initiated_poweroff_and_reboot_are_noticed(stack):
    ensure_on(stack)
    wait_booted(stack, stack.boots())
    time.sleep(0.5)
    boots = stack.boots()
    stack.type_on_console("\nreboot -f\n")
    wait_for(lambda: stack.boots() == boots + 1, 60, "the guest to reboot itself")
    assert "QMP event RESET {'guest': True" in stack.output()
    assert stack.power_state() == "Chassis Power is on"
    time.sleep(0.5)
    stack.type_on_console("\npoweroff -f\n")
    wait_for(lambda: "power off (guest-poweroff)" in stack.output(), 30, "the guest's own poweroff")
    assert stack.power_state() == "Chassis Power is off"
    # a guest poweroff is not a crash: the restore policy does not power it back on
    time.sleep(2)
    assert stack.power_state() == "Chassis Power is off"
    ensure_on(stack)
