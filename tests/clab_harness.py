"""Deploys a containerlab topology file the way containerlab does, for the tests
(containerlab itself cannot be installed on the CI machines).

What it honours, as containerlab does for `kind: linux` nodes:
- `name`, `mgmt.network` / `mgmt.ipv4-subnet`, a node's `mgmt-ipv4`: a docker bridge
  network is the management network, every container's eth0 is on it;
- containers named `clab-<lab>-<node>`, hostname `<node>`, labels `containerlab`,
  `clab-node-name`, env `CLAB_LABEL_CLAB_NODE_NAME`, `CLAB_INTFS` (the node's number of
  data links) plus the node's `env`;
- `binds` (a relative host path is relative to the topology file's directory and made
  if missing), `ports`, `cap-add`, `devices`;
- `links` with `endpoints`: after every container started, a veth pair per link is
  made on the host, each end moved into its container's network namespace and renamed
  to the interface named in the topology, then brought up;
- `exec`: each node's commands run after the links exist, in order (split like a shell).

Not honoured (refused loudly, so a topology never half-deploys): other kinds, `{{ }}`
templates, `kinds`/`defaults`/`groups` inheritance. Containers are never privileged
(this machine refuses `--privileged`): `cap-add` and `devices` give what they need.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import subprocess
import uuid
from dataclasses import dataclass, field

import yaml

_SUPPORTED_NODE_KEYS = {"kind", "image", "env", "binds", "ports", "exec", "mgmt-ipv4", "cap-add", "devices"}


class TopologyError(ValueError):
    """The topology file uses something this harness (or containerlab) cannot deploy."""


@dataclass
class Node:
    name: str
    image: str
    env: dict[str, str] = field(default_factory=dict)
    binds: list[str] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)
    exec: list[str] = field(default_factory=list)
    mgmt_ipv4: str | None = None
    cap_add: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)


@dataclass
class Link:
    a: tuple[str, str]  # (node, interface)
    b: tuple[str, str]


@dataclass
class Topology:
    name: str
    directory: str
    mgmt_network: str
    mgmt_subnet: str | None
    nodes: dict[str, Node]
    links: list[Link]

    def interfaces_of(self, node: str) -> int:
        return sum((link.a[0] == node) + (link.b[0] == node) for link in self.links)


def load_topology(path: str) -> Topology:
    with open(path) as f:
        text = f.read()
    if "{{" in text:
        raise TopologyError(f"{path}: templates ({{{{ }}}}) are not supported")
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
        raise TopologyError(f"{path}: a topology needs a `name`")
    topo = doc.get("topology") or {}
    for unsupported in ("kinds", "defaults", "groups"):
        if unsupported in topo:
            raise TopologyError(f"{path}: topology.{unsupported} is not supported by this harness")
    nodes: dict[str, Node] = {}
    for name, spec in (topo.get("nodes") or {}).items():
        spec = spec or {}
        if spec.get("kind") != "linux":
            raise TopologyError(f"{path}: node {name}: only kind linux is supported, not {spec.get('kind')!r}")
        unknown = set(spec) - _SUPPORTED_NODE_KEYS
        if unknown:
            raise TopologyError(f"{path}: node {name}: unsupported keys {sorted(unknown)}")
        if not spec.get("image"):
            raise TopologyError(f"{path}: node {name}: `image` is required")
        nodes[name] = Node(name=name, image=spec["image"],
                           env={str(k): str(v) for k, v in (spec.get("env") or {}).items()},
                           binds=list(spec.get("binds") or []), ports=[str(p) for p in spec.get("ports") or []],
                           exec=list(spec.get("exec") or []), mgmt_ipv4=spec.get("mgmt-ipv4"),
                           cap_add=list(spec.get("cap-add") or []), devices=list(spec.get("devices") or []))
    links = []
    for entry in topo.get("links") or []:
        ends = (entry or {}).get("endpoints") or []
        if len(ends) != 2:
            raise TopologyError(f"{path}: a link needs two endpoints: {entry!r}")
        parsed = []
        for end in ends:
            node, sep, ifname = str(end).partition(":")
            if not sep or node not in nodes or not ifname or len(ifname) > 15:
                raise TopologyError(f"{path}: bad endpoint {end!r} (node:interface, node defined above)")
            parsed.append((node, ifname))
        links.append(Link(parsed[0], parsed[1]))
    mgmt = doc.get("mgmt") or {}
    return Topology(name=doc["name"], directory=os.path.dirname(os.path.abspath(path)),
                    mgmt_network=mgmt.get("network") or "clab", mgmt_subnet=mgmt.get("ipv4-subnet"),
                    nodes=nodes, links=links)


def _run(*argv: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr}{result.stdout}")
    return result


class Lab:
    """One deployed topology. `images` and `env` override what the file says (the
    tests run their freshly built images, and force QEMU_ACCEL=tcg on the servers)."""

    def __init__(self, topology: Topology, images: dict[str, str] | None = None,
                 env: dict[str, dict[str, str]] | None = None):
        self.topology = topology
        self.images = images or {}
        self.env_overrides = env or {}

    def container(self, node: str) -> str:
        return f"clab-{self.topology.name}-{node}"

    def image_of(self, node: str) -> str:
        image = self.topology.nodes[node].image
        return self.images.get(image, image)

    def pid(self, node: str) -> str:
        return _run("docker", "inspect", "-f", "{{.State.Pid}}", self.container(node)).stdout.strip()

    def exec(self, node: str, *argv: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        return _run("docker", "exec", self.container(node), *argv, timeout=timeout, check=check)

    # -- deploy -------------------------------------------------------------

    def deploy(self) -> None:
        self._create_mgmt_network()
        for node in self.topology.nodes.values():
            self._run_container(node)
        for link in self.topology.links:
            self._wire(link)
        for node in self.topology.nodes.values():
            for command in node.exec:
                self.exec(node.name, *shlex.split(command))

    def _create_mgmt_network(self) -> None:
        name = self.topology.mgmt_network
        if _run("docker", "network", "inspect", name, check=False).returncode == 0:
            return  # containerlab reuses an existing management network too
        argv = ["docker", "network", "create", "--driver", "bridge", "--label", f"containerlab={self.topology.name}",
                # the lab talks to itself and to the docker host, nowhere else
                "-o", "com.docker.network.bridge.enable_ip_masquerade=false"]
        if self.topology.mgmt_subnet:
            ipaddress.ip_network(self.topology.mgmt_subnet)  # a typo fails here, naming itself
            argv += ["--subnet", self.topology.mgmt_subnet]
        _run(*argv, name)

    def _run_container(self, node: Node) -> None:
        env = {"CLAB_LABEL_CLAB_NODE_NAME": node.name, "CLAB_LABEL_CONTAINERLAB": self.topology.name,
               "CLAB_LABEL_CLAB_NODE_KIND": "linux", "CLAB_INTFS": str(self.topology.interfaces_of(node.name))}
        env.update(node.env)
        env.update(self.env_overrides.get(node.name, {}))
        argv = ["docker", "run", "-d", "--name", self.container(node.name), "--hostname", node.name,
                "--network", self.topology.mgmt_network, "--label", f"containerlab={self.topology.name}",
                "--label", f"clab-node-name={node.name}", "--stop-timeout", "60"]
        if node.mgmt_ipv4:
            argv += ["--ip", node.mgmt_ipv4]
        for key, value in env.items():
            argv += ["-e", f"{key}={value}"]
        for bind in node.binds:
            source, sep, rest = bind.partition(":")
            if not os.path.isabs(source):
                source = os.path.join(self.topology.directory, source)
                if not os.path.exists(source):
                    os.makedirs(source)
            argv += ["-v", f"{source}{sep}{rest}"]
        for port in node.ports:
            argv += ["-p", port]
        for cap in node.cap_add:
            argv += ["--cap-add", cap]
        for device in node.devices:
            argv += ["--device", device]
        _run(*argv, self.image_of(node.name))

    def _wire(self, link: Link) -> None:
        """A veth pair made on the host, each end moved into its container and renamed."""
        temp = [f"clab{uuid.uuid4().hex[:8]}" for _ in range(2)]
        _run("ip", "link", "add", temp[0], "type", "veth", "peer", "name", temp[1])
        for tmp_name, (node, ifname) in zip(temp, (link.a, link.b)):
            pid = self.pid(node)
            _run("ip", "link", "set", tmp_name, "netns", pid)
            _run("nsenter", "-t", pid, "-n", "ip", "link", "set", tmp_name, "name", ifname)
            _run("nsenter", "-t", pid, "-n", "ip", "link", "set", ifname, "up")

    # -- destroy ------------------------------------------------------------

    def logs(self, node: str) -> str:
        result = _run("docker", "logs", self.container(node), check=False)
        return result.stdout + result.stderr

    def destroy(self) -> None:
        """Containers go (their veth ends with them), then the management network."""
        for node in self.topology.nodes:
            _run("docker", "rm", "-f", self.container(node), timeout=120, check=False)
        _run("docker", "network", "rm", self.topology.mgmt_network, check=False)
