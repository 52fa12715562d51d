"""containerlab/example.yml deployed the way containerlab deploys it (tests/clab_harness.py)
under the real Docker engine, then driven from the provisioning node only: real
ipmitool/FreeIPMI over the lab's management network, real dnsmasq on the provisioning
network behind a Linux-bridge switch, and the lab-wide bus through a NATS leaf hub.

The servers run the real image with QEMU_ACCEL=tcg (nested KVM hangs here): the one
override of the topology's env, besides the freshly built images' tags."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from clab_harness import Lab, load_topology
from dockerlab import docker
from helpers import REPO, ipmitool, wait_for
from services.net.plan import stable_mac
from test_console_sol import Pty
from test_stack_power import parse_trace

pytestmark = pytest.mark.docker

SERVERS = ("node1", "node2")
PASSWORD = "lab-password"  # IPMI_PASSWORD in example.yml
HUB_URL = "nats://lab:lab-bus-secret@198.51.100.70:4222"  # containerlab/provisioner/nats-hub.conf


@pytest.fixture(scope="module")
def lab(image, provisioner_image):
    # a copy of containerlab/: the relative binds (state directories) land there, not in the tree
    workdir = tempfile.mkdtemp(prefix="qemu-bmc-clab-")
    shutil.copytree(os.path.join(REPO, "containerlab"), os.path.join(workdir, "containerlab"))
    topology = load_topology(os.path.join(workdir, "containerlab", "example.yml"))
    lab = Lab(topology, images={"qemu-bmc:latest": image, "qemu-bmc-provisioner:latest": provisioner_image},
              env={name: {"QEMU_ACCEL": "tcg"} for name in SERVERS})
    lab.destroy()  # leftovers of an interrupted run
    try:
        lab.deploy()
        yield lab
    finally:
        os.makedirs(os.path.join(REPO, "artifacts"), exist_ok=True)
        for node in topology.nodes:
            with open(os.path.join(REPO, "artifacts", f"{lab.container(node)}.log"), "w") as f:
                f.write(lab.logs(node))
        dnsmasq = lab.exec("provisioner", "cat", "/var/log/dnsmasq-lab.log", check=False).stdout
        with open(os.path.join(REPO, "artifacts", "clab-dnsmasq.log"), "w") as f:
            f.write(dnsmasq)
        lab.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


def bmc_address(lab: Lab, node: str) -> str:
    return lab.topology.nodes[node].mgmt_ipv4


def from_provisioner(lab: Lab, node: str, *args: str, user: str = "admin", password: str = PASSWORD,
                     check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    """ipmitool run inside the provisioner against `node`'s BMC on the management network."""
    return lab.exec("provisioner", "ipmitool", "-I", "lanplus", "-H", bmc_address(lab, node),
                    "-U", user, "-P", password, *args, check=check, timeout=timeout)


def power(lab: Lab, node: str) -> str:
    return from_provisioner(lab, node, "power", "status").stdout.strip()


def console_log(lab: Lab, node: str) -> str:
    return lab.exec(node, "cat", "/var/log/qemu-bmc/console.log", check=False).stdout


def test_the_lab_is_deployed_like_containerlab_does(lab):
    for node in lab.topology.nodes:
        env = lab.exec(node, "env").stdout
        assert f"CLAB_LABEL_CLAB_NODE_NAME={node}" in env
    assert "CLAB_INTFS=3" in lab.exec("switch", "env").stdout
    bridge = lab.exec("switch", "ip", "-o", "link", "show", "master", "br0").stdout
    assert all(f" eth{i}@" in bridge for i in (1, 2, 3)), bridge
    assert "192.0.2.1/24" in lab.exec("provisioner", "ip", "-o", "addr", "show", "eth1").stdout
    for node in SERVERS:  # the bind in example.yml: a state directory next to the topology
        assert os.path.isdir(os.path.join(lab.topology.directory, f"{node}-state", "nats"))


def test_the_provisioner_reads_every_bmc(lab):
    for node in SERVERS:
        wait_for(lambda n=node: from_provisioner(lab, n, "mc", "info", check=False).returncode == 0, 120,
                 f"{node}'s BMC on the management network")
        info = from_provisioner(lab, node, "mc", "info").stdout
        assert "IPMI Version              : 2.0" in info
    assert power(lab, "node1") == "Chassis Power is off"  # POWER_RESTORE_POLICY: always-off
    wait_for(lambda: power(lab, "node2") == "Chassis Power is on", 60, "node2 on (always-on)")
    # FreeIPMI agrees, from the same node
    for node, state in (("node1", "off"), ("node2", "on")):
        out = lab.exec("provisioner", "ipmipower", "-D", "LAN_2_0", "-h", bmc_address(lab, node),
                       "-u", "admin", "-p", PASSWORD, "--stat").stdout
        assert f"{bmc_address(lab, node)}: {state}" in out, out
    # the topology's port mapping also works from the docker host
    assert ipmitool("127.0.0.1", 6232, "power", "status", password=PASSWORD).stdout.strip() == "Chassis Power is on"


def test_pxe_boot_of_node1_reaches_the_provisioners_dnsmasq(lab):
    wait_for(lambda: from_provisioner(lab, "node1", "mc", "info", check=False).returncode == 0, 120, "node1's BMC")
    from_provisioner(lab, "node1", "chassis", "bootdev", "pxe")
    from_provisioner(lab, "node1", "power", "on")
    mac = stable_mac("node1", 0)  # the VM's first NIC, on the container's eth2

    def dhcp_seen() -> bool:
        log = lab.exec("provisioner", "cat", "/var/log/dnsmasq-lab.log", check=False).stdout
        return f"DHCPDISCOVER(eth1) {mac}" in log
    wait_for(dhcp_seen, 180, f"node1's PXE DHCPDISCOVER ({mac}) in dnsmasq's log", interval=1)
    assert power(lab, "node1") == "Chassis Power is on"


def test_sol_to_node2_runs_a_command_in_its_guest(lab):
    wait_for(lambda: "guest# " in console_log(lab, "node2"), 180, "node2's guest shell", interval=1)
    sol = Pty(["docker", "exec", "-it", lab.container("provisioner"), "ipmitool", "-I", "lanplus",
               "-H", bmc_address(lab, "node2"), "-U", "admin", "-P", PASSWORD, "sol", "activate"])
    try:
        sol.read_until(b"SOL Session operational", 30)
        sol.type(b"\r")
        sol.read_until(b"guest#", 30)
        sol.type(b"echo from-the-provisioner-$((6*7))\r")
        sol.read_until(b"from-the-provisioner-42", 30)
    finally:
        sol.leave_sol()
        sol.close()


def test_power_cycling_both_nodes_shows_on_the_lab_wide_bus(lab):
    for node in SERVERS:
        wait_for(lambda n=node: power(lab, n) == "Chassis Power is on", 120, f"{node} on")
    # one subscriber on the provisioner's hub sees every node: their embedded NATS are leaf nodes
    env = dict(os.environ, NATS_URL=HUB_URL)
    trace = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "qemu-bmc"), "--timeout", "20",
                              "trace", "--seconds", "60", "bmc.>"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)  # the subscription's interest travels to both leaves
        boots = {node: console_log(lab, node).count("qemu-bmc-guest: boot complete") for node in SERVERS}
        for node in SERVERS:
            from_provisioner(lab, node, "power", "cycle")
        wait_for(lambda: all(console_log(lab, n).count("qemu-bmc-guest: boot complete") > boots[n] for n in SERVERS),
                 180, "both guests booting again", interval=1)
    finally:
        trace.terminate()
        out, err = trace.communicate(timeout=30)
    messages = parse_trace(out)
    for node in SERVERS:
        causes = [(m["state"], m["cause"]) for m in messages.get(f"event bmc.{node}.power.changed", [])]
        assert ("off", "power-cycle") in causes and ("on", "power-cycle") in causes, out[-3000:] + err[-2000:]
    # the key-value store (users and their passwords) stays on each node
    assert "$KV." not in out and "$JS." not in out
    for node in SERVERS:  # the leaf connection came up, and its password is in no log
        logs = lab.logs(node)
        assert "Leafnode connection created" in logs
        assert "lab-leaf-secret" not in logs


def test_docker_stop_and_start_keep_users_boot_device_and_sel(lab):
    node = "node2"
    from_provisioner(lab, node, "user", "set", "name", "6", "survivor")
    from_provisioner(lab, node, "user", "set", "password", "6", "survivor-pw")
    from_provisioner(lab, node, "user", "priv", "6", "4", "1")
    from_provisioner(lab, node, "user", "enable", "6")
    from_provisioner(lab, node, "chassis", "bootdev", "disk", "options=persistent")
    sel_before = from_provisioner(lab, node, "sel", "list").stdout.strip().splitlines()
    assert sel_before, "power cycles should have left SEL records"
    docker("stop", "-t", "60", lab.container(node), timeout=90)
    logs = lab.logs(node)
    assert "container stopping: ACPI power button" in logs
    docker("start", lab.container(node))
    wait_for(lambda: from_provisioner(lab, node, "mc", "info", check=False).returncode == 0, 120,
             f"{node}'s BMC back after docker start")
    wait_for(lambda: from_provisioner(lab, node, "power", "status", user="survivor", password="survivor-pw",
                                      check=False).returncode == 0, 60, "the persisted user to log in")
    assert "Force Boot from default Hard-Drive" in from_provisioner(lab, node, "chassis", "bootparam", "get",
                                                                    "5").stdout
    sel_after = from_provisioner(lab, node, "sel", "list").stdout.strip().splitlines()
    assert len(sel_after) >= len(sel_before) and sel_after[:len(sel_before)] == sel_before


def test_an_exposed_embedded_nats_demands_credentials_and_never_logs_them(image):
    """NATS_LISTEN beyond loopback: without NATS_PASSWORD the container refuses to start
    (naming the variable); with it, outsiders need the credentials, the node's own
    programs use them over loopback, and no log line shows the password."""
    import asyncio

    import nats
    import nats.errors

    from bus.client import connect
    from bus.messages import PowerGet, PowerStatus
    from bus.subjects import Subjects

    refused = docker("run", "--rm", "-e", "NATS_LISTEN=0.0.0.0:4222", image, timeout=120, check=False)
    assert refused.returncode == 2
    assert "NATS_PASSWORD: required when NATS_LISTEN (0.0.0.0) is not loopback" in refused.stdout + refused.stderr

    name = f"qemu-bmc-natsexp-{os.getpid()}"
    secret = "exposed-bus-secret-7"
    docker("run", "-d", "--name", name, "--hostname", "natsexp", "--cap-add", "NET_ADMIN",
           "--device", "/dev/net/tun", "-e", "QEMU_ACCEL=tcg", "-e", "POWER_RESTORE_POLICY=always-off",
           "-e", "IPMI_PASSWORD=secret", "-e", "NATS_LISTEN=0.0.0.0:4222", "-e", "NATS_USER=lab",
           "-e", f"NATS_PASSWORD={secret}", image)
    try:
        address = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name).stdout.strip()
        wait_for(lambda: docker("exec", name, "qemu-bmc", "health", check=False).stdout.strip() == "healthy", 90,
                 "every program up, connected to the bus with the credentials")

        async def without_credentials() -> str:
            try:
                nc = await nats.connect(f"nats://{address}:4222", allow_reconnect=False, connect_timeout=5,
                                        max_reconnect_attempts=0)
            except Exception as exc:  # nats-py reports the refusal as an auth error
                return f"refused: {exc!r}"
            await nc.close()
            return "connected"

        assert "refused" in asyncio.run(without_credentials())

        async def with_credentials() -> PowerStatus:
            bus = await connect(f"nats://lab:{secret}@{address}:4222", "test", wait=20)
            try:
                return await bus.request(Subjects("natsexp").power_get, PowerGet(), PowerStatus, timeout=10)
            finally:
                await bus.close()

        assert asyncio.run(with_credentials()).state == "off"
        logs = docker("logs", name).stdout + docker("logs", name).stderr
        assert secret not in logs
        assert "authorization" in docker("exec", name, "cat", "/run/qemu-bmc/nats.conf").stdout
        mode = docker("exec", name, "stat", "-c", "%a", "/run/qemu-bmc/nats.conf").stdout.strip()
        assert mode == "600"
    finally:
        docker("rm", "-f", name, check=False)


@pytest.mark.parametrize("env,variable", [
    ({"NATS_LISTEN": "0.0.0.0:4222"}, "NATS_PASSWORD"),
    ({"NATS_LISTEN": "0.0.0.0:4222", "NATS_PASSWORD": "short"}, "NATS_PASSWORD"),
    ({"NATS_LISTEN": "0.0.0.0:4222", "NATS_PASSWORD": "has space in it"}, "NATS_PASSWORD"),
    ({"NATS_LISTEN": "nowhere"}, "NATS_LISTEN"),
    ({"NATS_LEAF_URL": "nats-leaf://hub:7422"}, "NATS_LEAF_PASSWORD"),
    ({"NATS_LEAF_URL": "nats-leaf://leaf:pw@hub:7422", "NATS_LEAF_PASSWORD": "long-enough"}, "NATS_LEAF_URL"),
    ({"NATS_LEAF_URL": "http://hub:7422", "NATS_LEAF_PASSWORD": "long-enough"}, "NATS_LEAF_URL"),
    ({"NATS_LEAF_URL": "nats-leaf://hub:7422", "NATS_LEAF_PASSWORD": "long-enough", "NATS_LEAF_USER": "a b"},
     "NATS_LEAF_USER"),
])
def test_bus_exposure_without_usable_credentials_fails_naming_the_variable(env, variable):
    from bus.config import ConfigError, Settings
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"NODE_NAME": "n1", **env})
    assert caught.value.variable == variable
    assert "pw@" not in str(caught.value)  # a password in a bad URL is not repeated


@pytest.mark.parametrize("env", [
    {},
    {"NATS_LISTEN": "127.0.0.1:4333"},
    {"NATS_LISTEN": "0.0.0.0:4222", "NATS_PASSWORD": "long-enough"},
    {"NATS_LEAF_URL": "nats-leaf://198.51.100.70:7422", "NATS_LEAF_PASSWORD": "lab-leaf-secret"},
])
def test_loopback_or_credentialed_bus_settings_are_accepted(env):
    from bus.config import Settings
    assert Settings.from_env({"NODE_NAME": "n1", **env}).node == "n1"


def test_the_harness_refuses_what_it_cannot_deploy(tmp_path):
    from clab_harness import TopologyError
    bad = {
        "other kind": "name: x\ntopology:\n  nodes:\n    a: {kind: srl, image: i}\n",
        "template": "name: x\ntopology:\n  nodes:\n    a: {kind: linux, image: '{{ .img }}'}\n",
        "unknown endpoint": "name: x\ntopology:\n  nodes:\n    a: {kind: linux, image: i}\n"
                            "  links:\n    - endpoints: ['a:eth1', 'b:eth1']\n",
    }
    for what, text in bad.items():
        path = tmp_path / "t.yml"
        path.write_text(text)
        with pytest.raises(TopologyError):
            load_topology(str(path))
    for name in ("example.yml", "single-node.yml"):  # both shipped topologies load
        assert load_topology(os.path.join(REPO, "containerlab", name)).nodes
