"""The VM's NICs end to end (issue: network): the whole stack runs inside a network
namespace made here to play the container (eth0..eth3, veths whose far ends sit in
a peer namespace), QEMU boots the real guest under TCG, and the guest pings the
peer over each NIC in each wiring mode, sees LLDP frames (tc), gets hot-plugged
NICs, and waits for CLAB_INTFS interfaces that arrive late.

Only the documentation ranges 192.0.2.0/24 and 198.51.100.0/24 are used, inside
namespaces made and removed here; nothing is routed out of the machine.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from conftest import Stack, make_stack
from helpers import REPO, wait_for
from services.net.plan import stable_mac

pytestmark = pytest.mark.vm

NODE = "testnode"
PY = sys.executable
# (container interface, peer end, peer address, guest address): distinct subnets
EXTRA = {"eth2": ("p2", "192.0.2.1/26", "192.0.2.2/26"),
         "eth3": ("p3", "198.51.100.1/24", "198.51.100.2/24"),
         "eth4": ("p4", "192.0.2.65/26", "192.0.2.66/26")}


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: {result.stderr}{result.stdout}")
    return result


class NetLab:
    """Namespace `ctr` (the container) and `peer` (the far ends of its data links)."""

    def __init__(self):
        tag = f"{os.getpid() % 100000}"
        self.ctr, self.peer = f"qbctr{tag}", f"qbpeer{tag}"
        for ns in (self.ctr, self.peer):
            sh("ip", "netns", "add", ns)
            # IPv6 chatter (router solicitations, DAD) would blur the guest's frame counters
            for knob in ("all", "default"):
                sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{knob}.disable_ipv6=1")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        for i in (0, 1):  # management and BMC LAN: must stay untouched
            self.add_link(f"eth{i}", f"m{i}", None)

    def add_link(self, ifname: str, peer_end: str, peer_addr: str | None, mtu: int = 1500) -> None:
        """A veth: `ifname` in ctr (made elsewhere, then moved in, as containerlab does)."""
        tmp = f"qbt{next(_counter)}"
        sh("ip", "link", "add", tmp, "mtu", str(mtu), "type", "veth", "peer", "name", peer_end,
           "mtu", str(mtu), "netns", self.peer)
        if peer_addr:
            sh("ip", "-n", self.peer, "addr", "add", peer_addr, "dev", peer_end)
        sh("ip", "-n", self.peer, "link", "set", peer_end, "up")
        sh("ip", "link", "set", tmp, "netns", self.ctr)
        sh("ip", "-n", self.ctr, "link", "set", tmp, "name", ifname)

    def add_data_link(self, ifname: str, mtu: int = 1500) -> None:
        peer_end, peer_addr, _guest = EXTRA[ifname]
        self.add_link(ifname, peer_end, peer_addr, mtu)

    def remove(self) -> None:
        for ns in (self.ctr, self.peer):
            sh("ip", "netns", "del", ns, check=False)


_counter = itertools.count(os.getpid() % 1000 * 100)


class NetnsStack(Stack):
    """The stack under `ip netns exec ctr`: NATS on 127.0.0.1 of that namespace."""

    def __init__(self, root: str, env: dict[str, str], ns: str):
        super().__init__(root, env)
        self.ns = ns

    def start(self) -> None:
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, os.path.join(REPO, "scripts", "entrypoint.sh")],
                                     env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def type_on_console(self, text: str) -> None:
        code = ("import asyncio, sys, nats\n"
                "async def go():\n"
                "    nc = await nats.connect(sys.argv[1])\n"
                "    await nc.publish(sys.argv[2], sys.argv[3].encode())\n"
                "    await nc.flush(); await nc.close()\n"
                "asyncio.run(go())\n")
        subprocess.run(["ip", "netns", "exec", self.ns, PY, "-c", code, self.nats_url,
                        f"bmc.{NODE}.console.in", text], env=self.env, check=True, timeout=30)

    def guest(self, command: str, timeout: float = 60) -> str:
        """Run a shell command in the guest; return what it printed up to its end marker."""
        tag = f"Q{next(_counter)}"
        start = len(self.console_log)
        # the marker is computed by the guest, so the console's echo of the line never matches it
        self.type_on_console(f"{command}; echo {tag}=$((40+2))\n")
        log = wait_for(lambda: (text := self.console_log[start:]) and f"{tag}=42" in text and text, timeout,
                       f"the guest to run {command!r}")
        return log[:log.index(f"{tag}=42")]


@pytest.fixture
def lab():
    lab = NetLab()
    yield lab
    lab.remove()


@pytest.fixture
def netstack(guest_dir, lab):
    """Start a stack in lab.ctr with extra environment; stopped and cleaned afterwards."""
    made: list[NetnsStack] = []
    tmp = tempfile.mkdtemp(prefix="qemu-bmc-net-")

    def start(**env: str) -> NetnsStack:
        env.setdefault("VM_NICS", "eth2+")  # inside the lab namespace the VM takes eth2 and up
        base = make_stack(tmp, guest_dir, NODE_NAME=NODE, **env)
        s = NetnsStack(tmp, base.env, lab.ctr)
        s.start()
        made.append(s)
        return s
    yield start
    for s in made:
        s.stop()
    if os.environ.get("KEEP_TEST_DIRS") != "1":
        shutil.rmtree(tmp, ignore_errors=True)


def guest_nics(stack: Stack) -> list[tuple[str, str]]:
    """(name, MAC) of the guest's NICs as it printed them at its last boot."""
    last_boot = stack.console_log.rsplit("Linux version", 1)[-1]
    return [tuple(line.split()[2:4]) for line in last_boot.splitlines()
            if line.startswith("qemu-bmc-guest: nic ")]


def wait_booted(stack: Stack) -> None:
    wait_for(lambda: stack.boots() >= 1, 120, "the guest's boot banner")
    wait_for(lambda: "guest# " in stack.console_log, 30, "the guest's shell prompt")


def guest_pings(stack: Stack, guest_if: str, ifname: str) -> None:
    _peer, peer_addr, guest_addr = EXTRA[ifname]
    out = stack.guest(f"ip link set {guest_if} up; ip addr add {guest_addr} dev {guest_if}; "
                      f"ping -c 3 -W 3 {peer_addr.split('/')[0]} && echo PING=$((1+1))")
    assert "PING=2" in out, f"the guest could not ping over {guest_if} ({ifname}):\n{out}"


def untouched(lab: NetLab, ifname: str) -> None:
    link = json.loads(sh("ip", "-n", lab.ctr, "-j", "-d", "link", "show", ifname).stdout)[0]
    assert "master" not in link and link.get("promiscuity", 0) == 0, link
    qdiscs = sh("tc", "-n", lab.ctr, "qdisc", "show", "dev", ifname).stdout
    assert "ingress" not in qdiscs, qdiscs


def send_lldp(lab: NetLab, peer_end: str, count: int) -> None:
    """LLDP frames (01:80:c2:00:00:0e, ethertype 0x88cc) from the peer's raw socket."""
    code = ("import socket, sys\n"
            "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
            "s.bind((sys.argv[1], 0))\n"
            "src = bytes.fromhex('02aabbccdd01')\n"
            # chassis ID (MAC), port ID (ifname eth0), TTL 120, end
            "tlvs = bytes.fromhex('020704' '02aabbccdd01' '040505' '65746830' '06020078' '0000')\n"
            "frame = bytes.fromhex('0180c200000e') + src + b'\\x88\\xcc' + tlvs\n"
            "frame += bytes(max(0, 60 - len(frame)))\n"
            "for _ in range(int(sys.argv[2])): s.send(frame)\n")
    sh("ip", "netns", "exec", lab.peer, PY, "-c", code, peer_end, str(count))


RX = "/sys/class/net/eth0/statistics/rx_packets"


@pytest.mark.parametrize("mode", ["tc", "bridge", "macvtap"])
def test_nics_ping_lldp_and_hotplug(lab, netstack, mode):
    lab.add_data_link("eth2")
    lab.add_data_link("eth3", mtu=9000)
    stack = netstack(NET_MODE=mode)
    wait_booted(stack)
    # the guest's NICs, in eth order, with the MACs stable per node and index
    assert guest_nics(stack) == [("eth0", stable_mac(NODE, 0)), ("eth1", stable_mac(NODE, 1))], stack.console_log
    # virtio-net: the guest's MTU follows the container interface
    assert stack.guest("cat /sys/class/net/eth1/mtu").strip().endswith("9000")
    untouched(lab, "eth0")
    untouched(lab, "eth1")

    guest_pings(stack, "eth0", "eth2")
    guest_pings(stack, "eth1", "eth3")

    if mode == "tc":
        # link-local frames cross untouched: count what reaches the guest's eth0 (promiscuous,
        # as an LLDP agent joining 01:80:c2:00:00:0e would be, else virtio-net filters them)
        stack.guest(f"ip link set eth0 promisc on; a=$(cat {RX})")
        send_lldp(lab, "p2", 20)
        out = stack.guest(f"i=0; while [ $(( $(cat {RX}) - a )) -lt 20 ] && [ $i -lt 100 ]; "
                          f"do sleep 0.1; i=$((i+1)); done; echo LLDP=$(( $(cat {RX}) - a ))X")
        got = int(out.rsplit("LLDP=", 1)[1].split("X")[0])
        assert got >= 20, f"only {got} of 20 LLDP frames reached the guest"

    # hot-plug: an interface that appears while the VM runs becomes its third NIC
    lab.add_data_link("eth4")
    wait_for(lambda: "hot-plugged eth4" in stack.output(), 60, "the power agent to hot-plug eth4")
    out = stack.guest("i=0; while [ ! -e /sys/class/net/eth2 ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done; "
                      "cat /sys/class/net/eth2/address")
    assert stable_mac(NODE, 2) in out, out
    guest_pings(stack, "eth2", "eth4")

    # and one that disappears is taken out of the VM
    sh("ip", "-n", lab.ctr, "link", "del", "eth4")
    wait_for(lambda: "unplugged eth4" in stack.output(), 60, "the power agent to unplug eth4")
    out = stack.guest("i=0; while [ -e /sys/class/net/eth2 ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done; "
                      "ls /sys/class/net")
    assert "eth2" not in out.split("ls /sys/class/net", 1)[-1], out


def test_power_on_waits_for_clab_intfs(lab, netstack):
    stack = netstack(CLAB_INTFS="2", NET_WAIT_TIMEOUT="60")
    wait_for(lambda: "power-on waits for 2 more interface(s)" in stack.output(), 60,
             "the power-on to wait for the data links")
    assert stack.boots() == 0
    lab.add_data_link("eth2")
    lab.add_data_link("eth3")
    wait_booted(stack)
    assert guest_nics(stack) == [("eth0", stable_mac(NODE, 0)), ("eth1", stable_mac(NODE, 1))], stack.console_log
    # both were there when QEMU started: nothing had to be hot-plugged
    assert f"VM NICs (tc mode): eth2 {stable_mac(NODE, 0)}, eth3 {stable_mac(NODE, 1)}" in stack.output()
    assert "hot-plugged" not in stack.output()
    guest_pings(stack, "eth1", "eth3")


def test_bad_configuration_stops_net_only(tmp_path):
    env = dict(os.environ, NET_MODE="token-ring", NATS_URL="nats://127.0.0.1:1")
    result = subprocess.run([os.path.join(os.path.dirname(PY), "qemu-bmc-net")], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "NET_MODE" in result.stdout + result.stderr


def test_e1000_for_guests_without_virtio(lab, netstack):
    """VM_NIC_MODEL=e1000 gives the guest an Intel 82540EM (8086:100e). The embedded guest's
    cloud kernel has no e1000 driver, so this checks the device, not traffic."""
    lab.add_data_link("eth2")
    stack = netstack(VM_NIC_MODEL="e1000")
    wait_booted(stack)
    assert f"-device e1000,id=nic-eth2,netdev=net-eth2,mac={stable_mac(NODE, 0)}" in stack.output()
    out = stack.guest("for d in /sys/bus/pci/devices/*; do echo PCI=$(cat $d/vendor):$(cat $d/device); done")
    assert "PCI=0x8086:0x100e" in out, out


def test_bootdev_pxe_makes_the_guests_nic_ask_for_dhcp(lab, netstack):
    """A boot device chosen over IPMI changes what the next power-on boots: with
    `bootdev pxe` the VM's firmware (iPXE from Debian's ipxe-qemu) sends DHCP
    requests out of eth2, seen by dnsmasq on the far end."""
    lab.add_data_link("eth2")
    tmp = tempfile.mkdtemp(prefix="qemu-bmc-pxe-")
    log = os.path.join(tmp, "dnsmasq.log")
    dnsmasq = subprocess.Popen(["ip", "netns", "exec", lab.peer, "dnsmasq", "--no-daemon", "--port=0",
                                "--conf-file=/dev/null", "--no-resolv", "--interface=p2", "--bind-interfaces",
                                "--dhcp-range=192.0.2.10,192.0.2.20,255.255.255.192", "--log-dhcp",
                                f"--log-facility={log}", f"--dhcp-leasefile={tmp}/leases",
                                f"--pid-file={tmp}/pid"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        s = netstack(POWER_RESTORE_POLICY="always-off")

        def ipmitool(*args: str) -> str:
            cmd = ["ip", "netns", "exec", lab.ctr, "ipmitool", "-I", "lanplus", "-H", "127.0.0.1",
                   "-p", str(s.ipmi_port), "-U", "admin", "-P", "secret", *args]
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            assert result.returncode == 0, result.stderr + result.stdout
            return result.stdout

        wait_for(lambda: "off" in ipmitool("power", "status"), 60, "the BMC (server off)")
        ipmitool("chassis", "bootdev", "pxe")
        ipmitool("power", "on")
        mac = stable_mac(NODE, 0)
        wait_for(lambda: os.path.exists(log) and f"DHCPDISCOVER(p2) {mac}" in open(log).read(), 120,
                 "iPXE's DHCPDISCOVER from the VM's NIC")
        assert "-boot once=n" in s.output()
        # the one-time choice is used up: the next boot is the embedded guest again
        assert "No override" in ipmitool("chassis", "bootparam", "get", "5")
    finally:
        dnsmasq.terminate()
        dnsmasq.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
