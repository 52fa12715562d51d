"""Real IPMI clients against the real stack: ipmitool (lanplus with every cipher
suite and lan), FreeIPMI and pyghmi, with the command patterns Ironic and MAAS use."""

from __future__ import annotations

import subprocess

import pytest

from helpers import wait_for

pytestmark = pytest.mark.vm

INTERFACES = [("lanplus", None), ("lanplus", "3"), ("lanplus", "17"), ("lan", None)]


def freeipmi(stack, tool: str, *args: str, user: str = "admin", password: str = "secret",
             check: bool = True) -> subprocess.CompletedProcess:
    cmd = [tool, "-h", f"127.0.0.1:{stack.ipmi_port}", "-u", user, "-p", password,
           "--session-timeout", "8000", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)}: {result.stderr}{result.stdout}")
    return result


@pytest.mark.parametrize("interface,cipher", INTERFACES)
def test_ipmitool_reads_everything(stack, interface, cipher):
    run = lambda *a: stack.ipmitool(*a, interface=interface, cipher=cipher).stdout  # noqa: E731
    assert "IPMI Version              : 2.0" in run("mc", "info")
    guid = run("mc", "guid")
    assert "System GUID" in guid and "00000000-0000" not in guid
    assert "Power Restore Policy" in run("chassis", "status")
    assert run("power", "status").startswith("Chassis Power is")
    assert "802.3 LAN" in run("channel", "info", "1")
    users = run("user", "list", "1")
    assert "admin" in users and "ADMINISTRATOR" in users and "ops" in users
    assert "Boot parameter version: 1" in run("chassis", "bootparam", "get", "5")
    assert "always-off always-on previous" in run("chassis", "policy", "list")
    run("raw", "0x00", "0x08", "0x03", "0x08")  # Ironic's first command
    assert "SEL Information" in run("sel", "info")
    run("sel", "list")
    assert "VM Memory" in run("sdr", "list")
    assert "QEMU Virtual Server" in run("fru", "print", "0")
    assert "RMCP+ Cipher Suites" in run("lan", "print", "1")


@pytest.mark.parametrize("interface,cipher", INTERFACES)
def test_ipmitool_controls_power_over_every_interface(stack, interface, cipher):
    run = lambda *a: stack.ipmitool(*a, interface=interface, cipher=cipher).stdout  # noqa: E731
    wait_for(lambda: stack.power_state() == "Chassis Power is on", 30, "power on")
    run("power", "off")
    wait_for(lambda: "off" in run("power", "status"), 20, "power off")
    boots = stack.boots()
    run("power", "on")
    wait_for(lambda: stack.boots() == boots + 1, 60, "a boot after power on")
    run("power", "reset")
    wait_for(lambda: stack.boots() == boots + 2, 60, "a boot after reset")
    run("power", "cycle")
    wait_for(lambda: stack.boots() == boots + 3, 60, "a boot after cycle")
    run("power", "diag")
    run("power", "soft")
    wait_for(lambda: "off" in run("power", "status"), 30, "the guest to obey the power button")
    run("power", "on")
    wait_for(lambda: stack.boots() == boots + 4, 60, "a boot after power on")


@pytest.mark.parametrize("device,label", [("pxe", "Force PXE"), ("disk", "Force Boot from default Hard-Drive"),
                                          ("cdrom", "Force Boot from CD/DVD"), ("bios", "Force Boot into BIOS Setup")])
def test_bootdev_round_trips_with_options(stack, device, label):
    stack.ipmitool("chassis", "bootdev", device, "options=persistent,efiboot")
    out = stack.ipmitool("chassis", "bootparam", "get", "5").stdout
    assert label in out and "Options apply to all future boots" in out and "BIOS EFI boot" in out
    stack.ipmitool("chassis", "bootdev", device)
    out = stack.ipmitool("chassis", "bootparam", "get", "5", interface="lan").stdout
    assert label in out and "Options apply to only next boot" in out and "legacy" in out
    stack.ipmitool("chassis", "bootdev", "none")


def test_ironic_raw_boot_flag_clearing_and_policy(stack):
    stack.ipmitool("raw", "0x00", "0x08", "0x03", "0x08")
    assert "always-off always-on previous" in stack.ipmitool("chassis", "policy", "list").stdout
    for policy in ("always-off", "previous", "always-on"):
        stack.ipmitool("chassis", "policy", policy)
        assert f"Power Restore Policy : {policy}" in stack.ipmitool("chassis", "status").stdout


def test_one_time_boot_device_is_applied_and_then_cleared(stack):
    wait_for(lambda: stack.power_state() == "Chassis Power is on", 30, "power on")
    stack.ipmitool("chassis", "bootdev", "disk")
    boots = stack.boots()
    stack.ipmitool("power", "cycle")
    wait_for(lambda: stack.boots() == boots + 1, 60, "the guest to boot from 'disk'")
    assert "-boot once=c" in stack.output().rsplit("qemu: ", 1)[1].splitlines()[0]
    assert "No override" in stack.ipmitool("chassis", "bootparam", "get", "5").stdout


def test_maas_style_user_management_persists(stack):
    run = stack.ipmitool
    run("user", "set", "name", "5", "maas")
    run("user", "set", "password", "5", "maas-secret")
    run("user", "priv", "5", "4", "1")
    run("user", "enable", "5")
    assert freeipmi(stack, "ipmipower", "-D", "LAN_2_0", "--stat", user="maas",
                    password="maas-secret").stdout.strip().endswith(("on", "off"))
    # the same user survives a restart of the IPMI service (state in the key-value store)
    run("mc", "reset", "cold")
    wait_for(lambda: "maas" in run("user", "list", "1", check=False).stdout, 20, "the BMC back after reset")
    out = stack.ipmitool("power", "status", user="maas", password="maas-secret").stdout
    assert "Chassis Power is" in out
    # disabling the user locks it out
    run("user", "disable", "5")
    assert stack.ipmitool("power", "status", user="maas", password="maas-secret", check=False).returncode != 0


@pytest.mark.parametrize("driver", ["LAN_2_0", "LAN"])
def test_freeipmi_bmc_info_and_chassis(stack, driver):
    info = freeipmi(stack, "bmc-info", "-D", driver).stdout
    assert "IPMI Version          : 2.0" in info and "32473" in info
    status = freeipmi(stack, "ipmi-chassis", "-D", driver, "--get-chassis-status").stdout
    assert "System Power" in status
    flags = freeipmi(stack, "ipmi-chassis", "-D", driver, "--get-boot-flags", "-l", "ADMIN").stdout
    assert "Boot device selector" in flags


@pytest.mark.parametrize("driver", ["LAN_2_0", "LAN"])
def test_ipmipower_controls_power(stack, driver):
    wait_for(lambda: stack.power_state() == "Chassis Power is on", 30, "power on")
    assert freeipmi(stack, "ipmipower", "-D", driver, "--stat").stdout.strip() == "127.0.0.1: on"
    assert freeipmi(stack, "ipmipower", "-D", driver, "--off").stdout.strip() == "127.0.0.1: ok"
    wait_for(lambda: stack.power_state() == "Chassis Power is off", 20, "power off")
    assert freeipmi(stack, "ipmipower", "-D", driver, "--on").stdout.strip() == "127.0.0.1: ok"
    wait_for(lambda: stack.power_state() == "Chassis Power is on", 20, "power on")
    assert freeipmi(stack, "ipmipower", "-D", driver, "--cycle").stdout.strip() == "127.0.0.1: ok"
    wait_for(lambda: stack.power_state() == "Chassis Power is on", 30, "power on after the cycle")


def test_maas_ipmipower_pattern(stack):
    """MAAS drives ipmipower with -W opensesspriv, cipher suite 3 and OPERATOR."""
    out = freeipmi(stack, "ipmipower", "-D", "LAN_2_0", "-W", "opensesspriv", "-I", "3", "-l", "OPERATOR",
                   "--stat", user="ops", password="opspw").stdout
    assert out.strip() in ("127.0.0.1: on", "127.0.0.1: off")


def test_wrong_password_over_ipmi15_is_refused(stack):
    assert stack.ipmitool("power", "status", interface="lan", password="nope", check=False).returncode != 0
    out = freeipmi(stack, "ipmipower", "-D", "LAN_2_0", "--stat", password="nope", check=False)
    assert "password invalid" in out.stdout + out.stderr


def test_pyghmi_power_and_boot_device(stack):
    from pyghmi.ipmi import command
    c = command.Command(bmc="127.0.0.1", userid="admin", password="secret", port=stack.ipmi_port)
    try:
        assert c.get_power()["powerstate"] in ("on", "off")
        c.set_bootdev("network", persist=True)
        assert c.get_bootdev() == {"bootdev": "network", "persistent": True, "uefimode": False}
        c.set_bootdev("hd", uefiboot=True)
        assert c.get_bootdev() == {"bootdev": "hd", "persistent": False, "uefimode": True}
        c.set_bootdev("default")
        assert c.set_power("off", wait=True)["powerstate"] == "off"
        assert c.set_power("on", wait=True)["powerstate"] == "on"
    finally:
        c.ipmi_session.logout()


def test_sel_records_power_events_and_can_be_cleared(stack):
    wait_for(lambda: stack.power_state() == "Chassis Power is on", 30, "power on")
    stack.ipmitool("sel", "clear")
    stack.ipmitool("power", "cycle")
    wait_for(lambda: "S0/G0: working" in stack.ipmitool("sel", "list").stdout, 30, "a power-on SEL record")
    listing = stack.ipmitool("sel", "list").stdout
    assert "System ACPI Power State" in listing and "S5/G2: soft-off" in listing
    info = stack.ipmitool("sel", "info", interface="lan").stdout
    assert "Entries          : 2" in info or "Entries          : 3" in info
    stack.ipmitool("sel", "clear")
    wait_for(lambda: "Entries          : 0" in stack.ipmitool("sel", "info").stdout, 10, "an empty SEL")


def test_sdr_and_sensors_tell_the_truth(stack):
    sdr = stack.ipmitool("sdr", "list").stdout
    assert "VM Memory" in sdr and "512 megabyte" in sdr
    assert "VM vCPUs" in sdr and "1 unspecified" in sdr
    sensors = stack.ipmitool("sensor", "list").stdout
    assert "ACPI State" in sensors and "VM Memory" in sensors


def test_fru_print_shows_the_configured_inventory(stack):
    fru = stack.ipmitool("fru", "print", "0").stdout
    assert "Product Name          : QEMU Virtual Server" in fru
    assert "Product Serial        : testnode" in fru and "Chassis Type          : Rack Mount Chassis" in fru


def test_lan_print_describes_the_bmc_interface_and_refuses_address_changes(stack):
    out = stack.ipmitool("lan", "print", "1").stdout
    for label in ("IP Address              :", "Subnet Mask", "MAC Address", "Default Gateway IP",
                  "RMCP+ Cipher Suites     : 17,3,2,1", "Auth Type Support       : MD5 PASSWORD"):
        assert label in out, out
    result = stack.ipmitool("lan", "set", "1", "ipaddr", "192.0.2.99", check=False)
    assert "192.0.2.99" not in stack.ipmitool("lan", "print", "1").stdout
    assert result.returncode != 0 or "read-only" in (result.stderr + result.stdout).lower()


def test_unknown_commands_get_0xc1_and_bad_lengths_0xc7(stack):
    result = stack.ipmitool("raw", "0x30", "0x99", check=False)
    assert "rsp=0xc1" in result.stderr.lower()
    result = stack.ipmitool("raw", "0x00", "0x02", check=False)  # chassis control without its byte
    assert "rsp=0xc7" in result.stderr.lower()


def test_efi_boot_flag_boots_the_guest_under_uefi_firmware(stack):
    wait_for(lambda: stack.power_state() == "Chassis Power is on", 30, "power on")
    stack.ipmitool("chassis", "bootdev", "disk", "options=efiboot")
    boots = stack.boots()
    stack.ipmitool("power", "cycle")
    wait_for(lambda: stack.boots() == boots + 1, 120, "the guest to boot under OVMF")
    assert "if=pflash" in stack.output().rsplit("qemu: ", 1)[1].splitlines()[0]
    stack.type_on_console("\n[ -d /sys/firmware/efi ] && echo FIRMWARE''-IS-UEFI\n")
    wait_for(lambda: "FIRMWARE-IS-UEFI" in stack.console_log, 20, "the guest to see UEFI firmware")
    # a one-time choice: the next boot is legacy again
    boots = stack.boots()
    stack.ipmitool("power", "cycle")
    wait_for(lambda: stack.boots() == boots + 1, 60, "a legacy boot")
    assert "if=pflash" not in stack.output().rsplit("qemu: ", 1)[1].splitlines()[0]
