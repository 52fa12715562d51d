"""Bad configuration fails fast with a message naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bus.config import ConfigError, Settings
from helpers import REPO
from services.ipmi.config import ipmi_config_from_env
from services.net.plan import NetConfig, stable_mac
from services.power.config import power_config_from_env, vm_config_from_env
from services.power.qemu_command import BootChoice, RuntimePaths, build_argv


@pytest.fixture
def guest(tmp_path):
    for name in ("vmlinuz", "initrd.img"):
        (tmp_path / name).write_bytes(b"x")
    return str(tmp_path)


@pytest.mark.parametrize("variable,value,needle", [
    ("QEMU_ACCEL", "hvf", "QEMU_ACCEL"),
    ("VM_MEMORY", "lots", "VM_MEMORY"),
    ("VM_MEMORY", "16M", "VM_MEMORY"),
    ("VM_CPUS", "0", "VM_CPUS"),
    ("VM_DISK", "/nonexistent.qcow2", "VM_DISK"),
    ("VM_CDROM", "/nonexistent.iso", "VM_CDROM"),
    ("POWER_RESTORE_POLICY", "sometimes", "POWER_RESTORE_POLICY"),
    ("VNC_PASSWORD", "much-too-long", "VNC_PASSWORD"),
    ("QEMU_EXTRA_ARGS", "-foo 'unclosed", "QEMU_EXTRA_ARGS"),
    ("NATS_URL", "http://x", "NATS_URL"),
])
def test_power_config_errors_name_the_variable(guest, variable, value, needle):
    with pytest.raises(ConfigError) as err:
        power_config_from_env({"GUEST_DIR": guest, variable: value})
    assert err.value.variable == needle and needle in str(err.value)


@pytest.mark.parametrize("env,needle", [
    ({"IPMI_PORT": "70000"}, "IPMI_PORT"),
    ({"IPMI_USERS": "bob:pw"}, "IPMI_USERS"),
    ({"IPMI_USERS": "bob:pw:king"}, "IPMI_USERS"),
    ({"IPMI_USERS": "admin:pw:user"}, "IPMI_USERS"),
    ({"IPMI_PASSWORD": "x" * 21}, "IPMI_USER/IPMI_PASSWORD"),
    ({"IPMI_CIPHER_SUITES": "3,99"}, "IPMI_CIPHER_SUITES"),
    ({"IPMI_PASSWORD_FILE": "/nonexistent"}, "IPMI_PASSWORD_FILE"),
])
def test_ipmi_config_errors_name_the_variable(env, needle):
    with pytest.raises(ConfigError) as err:
        ipmi_config_from_env(env)
    assert err.value.variable == needle


def test_default_password_is_warned_about_and_users_parse(tmp_path):
    config = ipmi_config_from_env({})
    assert any("default password" in w for w in config.warnings)
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    config = ipmi_config_from_env({"IPMI_PASSWORD_FILE": str(secret), "IPMI_USERS": "ops:pw:operator"})
    assert config.warnings == ()
    assert config.users.lookup(b"admin").password == b"s3cret"
    assert config.users.lookup(b"ops").privilege == 3


@pytest.mark.parametrize("raw,needle", [("eth0,eth2", "eth0"), ("eth2,eth2", "more than once"),
                                        ("eth0+", "eth0")])
def test_net_config_refuses_eth0_and_duplicates(raw, needle):
    with pytest.raises(ConfigError) as err:
        NetConfig.from_env({"VM_NICS": raw})
    assert err.value.variable == "VM_NICS" and needle in str(err.value)
    with pytest.raises(ConfigError) as err:
        NetConfig.from_env({"NET_MODE": "wormhole"})
    assert err.value.variable == "NET_MODE"


def test_nic_selection_order_and_stable_macs():
    config = NetConfig.from_env({})
    assert config.selection.order(["eth10", "eth0", "eth1", "eth3", "eth2"]) == ["eth2", "eth3", "eth10"]
    assert stable_mac("n1", 0) == stable_mac("n1", 0) != stable_mac("n1", 1) != stable_mac("n2", 0)
    assert int(stable_mac("n1", 0)[:2], 16) & 0x03 == 0x02  # locally administered unicast


def test_node_name_is_made_subject_safe():
    assert Settings.from_env({"CLAB_LABEL_CLAB_NODE_NAME": "a.b c"}).node == "a-b-c"
    with pytest.raises(ConfigError):
        Settings.from_env({"NODE_NAME": "bad.name"})


def test_qemu_argv_for_the_default_guest_and_for_a_disk(guest, tmp_path):
    paths = RuntimePaths("/run/q/qmp.sock", "/run/q/serial.sock", "/log/console.log", "/run/q/vnc")
    vm = vm_config_from_env({"GUEST_DIR": guest, "QEMU_ACCEL": "tcg", "VM_MEMORY": "1G", "VM_CPUS": "2"})
    argv = build_argv(vm, paths, BootChoice("none"), "n1")
    joined = " ".join(argv)
    assert "-machine q35,accel=tcg" in joined and "-m 1024" in joined and "-smp 2" in joined
    assert "-kernel" in argv and "logfile=/log/console.log" in joined and "-vnc :0" in joined
    disk = tmp_path / "disk.qcow2"
    disk.write_bytes(b"")
    vm = vm_config_from_env({"GUEST_DIR": guest, "QEMU_ACCEL": "tcg", "VM_DISK": str(disk),
                             "VNC_PASSWORD": "pw", "VNC_PORT": "5905", "QEMU_EXTRA_ARGS": "-rtc base=utc"})
    argv = build_argv(vm, paths, BootChoice("pxe", persistent=True), "n1")
    joined = " ".join(argv)
    assert f"file={disk},format=qcow2,if=virtio" in joined and "-kernel" not in argv
    assert "-boot order=n" in joined and "password-secret=vncpw" in joined and ":5" in joined
    assert argv[-2:] == ["-rtc", "base=utc"]
    assert not any("pw" == a or "=pw" in a for a in argv)  # the password stays off the command line


def test_entrypoint_stops_on_bad_configuration(tmp_path):
    path = f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"
    env = dict(os.environ, PATH=path, RUN_DIR=str(tmp_path / "run"), STATE_DIR=str(tmp_path / "s"),
               LOG_DIR=str(tmp_path / "l"), QEMU_ACCEL="warp", GUEST_DIR=str(tmp_path))
    result = subprocess.run([os.path.join(REPO, "scripts", "entrypoint.sh"), "true"], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "QEMU_ACCEL" in result.stderr


def test_suite_zero_and_auth_none_need_to_be_asked_for_and_are_warned_about():
    assert 0 not in ipmi_config_from_env({}).suites
    config = ipmi_config_from_env({"IPMI_CIPHER_SUITES": "17,0", "IPMI_V15_AUTH": "md5,none",
                                   "IPMI_PASSWORD": "x"})
    assert config.suites == (17, 0) and 0 in config.v15_auth_types
    assert len(config.warnings) == 2 and all("without any authentication" in w for w in config.warnings)
