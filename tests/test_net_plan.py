"""The NIC plan without a VM: which interfaces, their indexes and MACs, the
CLAB_INTFS wait, QEMU's NIC arguments, the launcher's fd hand-over, and the
wiring itself over real netlink in a namespace made here."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest

from bus import ConfigError, Subjects, connect
from bus.messages import NicPlan
from helpers import REPO
from services.net.plan import (NetConfig, WaitState, bridge_name, macvtap_name, parse_vm_nics, stable_mac,
                               tap_name)
from services.net.watcher import LinkWatcher
from services.power.config import VmConfig
from services.power.launch import OPEN_FDS_FLAG, write_plan
from services.power.qemu_command import VmNic, device_options, netdev_options, nic_argv, nic_fds, nic_ports


def test_indexes_are_stable_whatever_else_is_present():
    sel = parse_vm_nics("eth2+")
    assert [sel.index_of(n) for n in ("eth2", "eth3", "eth7")] == [0, 1, 5]
    assert sel.order(["eth10", "eth3", "eth0", "eth1", "tap-eth2", "eth2"]) == ["eth2", "eth3", "eth10"]
    assert sel.expected_names(2) == ["eth2", "eth3"]
    listed = parse_vm_nics("eth3,eth1")
    assert listed.order(["eth1", "eth2", "eth3"]) == ["eth3", "eth1"]
    assert [listed.index_of(n) for n in ("eth3", "eth1")] == [0, 1]
    assert not listed.wants("eth0") and not sel.wants("eth1") and not sel.wants("br-eth2")


def test_macs_stable_or_explicit():
    config = NetConfig.from_env({"VM_MACS": "02:00:00:00:00:aa"})
    assert config.mac_for("n1", 0) == "02:00:00:00:00:aa"
    assert config.mac_for("n1", 1) == stable_mac("n1", 1) != stable_mac("n2", 1)
    with pytest.raises(ConfigError) as err:
        NetConfig.from_env({"VM_MACS": "02:00:00:00:00:aa,02:00:00:00:00:AA"})
    assert err.value.variable == "VM_MACS"
    with pytest.raises(ConfigError) as err:
        NetConfig.from_env({"NET_MODE": "vxlan"})
    assert err.value.variable == "NET_MODE"


def test_device_names_fit_linux():
    assert (tap_name("eth2"), bridge_name("eth2"), macvtap_name("eth2")) == ("tap-eth2", "br-eth2", "mvt-eth2")
    long = "enp129s0f1np1"
    assert len(tap_name(long)) <= 15 and tap_name(long) != tap_name("enp129s0f0np0")


def test_wait_for_clab_intfs_ends_when_enough_or_timed_out():
    sel = parse_vm_nics("eth2+")
    wait = WaitState(2)
    assert wait.waiting(["eth2"]) and wait.missing(sel, ["eth2"]) == ["eth3"]
    assert not wait.update(["eth2", "eth3"], timed_out=False).waiting(["eth2"])  # over for good
    timed_out = wait.update(["eth2"], timed_out=True)
    assert not timed_out.waiting(["eth2"]) and timed_out.missing(sel, ["eth2"]) == ["eth3"]
    assert not WaitState(0).waiting([])


def test_qemu_nic_arguments():
    vm = VmConfig(accel="tcg", memory_mib=512, cpus=1, machine="q35", disk="", disk_format="raw", cdrom="",
                  guest_dir="/g", guest_append="", vnc_port=5900, vnc_password="", extra_args=(),
                  qemu_binary="qemu-system-x86_64")
    tap = VmNic(ifname="eth2", mac="02:00:00:00:00:01", mtu=9000, tap="tap-eth2", port="nicport0")
    mvt = VmNic(ifname="eth3", mac="02:00:00:00:00:02", tap_device="/dev/tap9", port="nicport1")
    ports = nic_ports(vm, 2)
    assert ports == [f"nicport{i}" for i in range(2 + vm.nic_hotplug_slots)]
    argv = nic_argv(vm, [tap, mvt], ports)
    assert "tap,id=net-eth2,ifname=tap-eth2,script=no,downscript=no" in argv
    assert ("virtio-net-pci,id=nic-eth2,netdev=net-eth2,mac=02:00:00:00:00:01,bus=nicport0,host_mtu=9000"
            in argv)
    assert "tap,id=net-eth3,fd=@fd:net-eth3@" in argv
    assert nic_fds([tap, mvt]) == {"@fd:net-eth3@": "/dev/tap9"}
    # hot-plug uses the same options over QMP; e1000 has no host_mtu
    assert netdev_options(mvt, "net-eth3") == {"type": "tap", "id": "net-eth3", "fd": "net-eth3"}
    assert "host_mtu" not in device_options(tap, "e1000")
    # i440fx: NICs on the root bus, no root ports
    assert nic_ports(replace(vm, machine="pc"), 2) == []


def test_launcher_hands_devices_to_qemu_as_fds(tmp_path):
    """The second launcher stage opens each device and execs with its fd number in place."""
    device = tmp_path / "device"
    device.write_text("payload")
    out = tmp_path / "out"
    write_plan(str(tmp_path), ["/bin/sh", "-c", f"cat <&@fd:x@ > {out}; echo fd=@fd:x@"],
               {"@fd:x@": str(device)})
    result = subprocess.run([sys.executable, "-m", "services.power.launch", OPEN_FDS_FLAG],
                            env=dict(os.environ, RUN_DIR=str(tmp_path)), capture_output=True, text=True,
                            timeout=30, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert out.read_text() == "payload"
    assert "fd=@" not in result.stdout and "fd=" in result.stdout


async def test_wait_gives_up_after_net_wait_timeout_and_names_what_is_missing(nats_server):
    subjects = Subjects("n1")
    bus = await connect(nats_server, "net")
    config = NetConfig.from_env({"VM_NICS": "qbnone0,qbnone1", "CLAB_INTFS": "2", "NET_WAIT_TIMEOUT": "1"})
    viewer = await connect(nats_server, "viewer")
    plans: asyncio.Queue = asyncio.Queue()

    async def on_plan(plan: NicPlan):
        await plans.put(plan)
    await viewer.subscribe(subjects.net_plan, NicPlan, on_plan)
    watcher = LinkWatcher(bus, subjects, config, "n1")
    await watcher.start()
    assert watcher.plan().waiting_for == ["2 more interface(s)"]
    plan = await asyncio.wait_for(plans.get(), 10)  # published when the wait is over
    assert plan.waiting_for == [] and plan.missing == ["qbnone0", "qbnone1"] and plan.nics == []
    await viewer.close()
    await bus.close()


WIRE = """
import asyncio, json, sys
from services.net.wiring import Wiring
async def main():
    w = Wiring(sys.argv[1])
    first = await w.wire("eth2", "02:00:00:00:00:07", 1500)
    again = await w.wire("eth2", "02:00:00:00:00:07", 1500)  # a restarted net service
    print(json.dumps([first.tap or first.tap_device, again.tap or again.tap_device]))
    if sys.argv[2] == "unwire":
        await w.unwire("eth2")
asyncio.run(main())
"""


@pytest.fixture
def netns():
    name = f"qbwire{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "add", "eth2", "type", "veth", "peer", "name", "peer2"], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


def in_ns(ns: str, *args: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, *args], capture_output=True, text=True, check=True,
                          timeout=30, cwd=REPO).stdout


@pytest.mark.parametrize("mode", ["tc", "bridge", "macvtap"])
def test_wiring_is_idempotent_and_undone(netns, mode):
    first, again = json.loads(in_ns(netns, sys.executable, "-c", WIRE, mode, "keep"))
    assert first == again
    links = {link["ifname"]: link for link in json.loads(in_ns(netns, "ip", "-j", "-d", "link", "show"))}
    if mode == "tc":
        assert first == "tap-eth2" and links["tap-eth2"]["mtu"] == links["eth2"]["mtu"]
        for dev, to in (("eth2", "tap-eth2"), ("tap-eth2", "eth2")):
            filters = in_ns(netns, "tc", "filter", "show", "dev", dev, "ingress")
            assert filters.count("mirred") == 1 and f"Egress Redirect to device {to}" in filters, filters
    elif mode == "bridge":
        assert links["eth2"]["master"] == "br-eth2" and links["tap-eth2"]["master"] == "br-eth2"
        assert links["br-eth2"]["linkinfo"]["info_data"]["group_fwd_mask"] in (0xFFF8, "0xfff8")
    else:
        assert first.startswith("/dev/tap") and links["eth2"]["address"] == "02:00:00:00:00:07"
        assert links["mvt-eth2"]["linkinfo"]["info_data"]["mode"] == "passthru"
    in_ns(netns, sys.executable, "-c", WIRE, mode, "unwire")
    left = {link["ifname"] for link in json.loads(in_ns(netns, "ip", "-j", "link", "show"))}
    assert left == {"lo", "eth2", "peer2"}
