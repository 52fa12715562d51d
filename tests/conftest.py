"""Fixtures that start real parts: nats-server, the supervisord stack with QEMU."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from helpers import GUEST_CACHE, REPO, free_port, ipmitool, wait_for  # noqa: E402


@pytest.fixture(scope="session")
def guest_dir() -> str:
    """The embedded default guest, built once by scripts/build-guest.sh into a cache."""
    if not os.path.isfile(os.path.join(GUEST_CACHE, "initrd.img")):
        subprocess.run([os.path.join(REPO, "scripts", "build-guest.sh"), GUEST_CACHE], check=True)
    return GUEST_CACHE


@pytest.fixture(scope="session")
def image() -> str:
    """The product image, built once per session for every test that runs it."""
    from dockerlab import IMAGE, build_image
    return build_image(IMAGE, REPO)


@pytest.fixture(scope="session")
def provisioner_image() -> str:
    """The lab's provisioner/switch image (containerlab/provisioner), built once."""
    from dockerlab import PROVISIONER_IMAGE, build_image
    return build_image(PROVISIONER_IMAGE, os.path.join(REPO, "containerlab", "provisioner"))


@pytest.fixture
def nats_server(tmp_path):
    """A real nats-server with JetStream on a free loopback port (ours: if the port
    turns out taken, by a process another test left behind, try another)."""
    import socket
    for attempt in range(5):
        port = free_port()
        proc = subprocess.Popen(["nats-server", "-a", "127.0.0.1", "-p", str(port), "-js",
                                 "-sd", str(tmp_path / f"js{attempt}")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: proc.poll() is None
                     and socket.create_connection(("127.0.0.1", port), timeout=0.2).close() is None, 10,
                     "nats-server to listen")
        except AssertionError:
            proc.kill()
            proc.wait(10)
            continue
        if proc.poll() is None:
            break
    else:
        raise AssertionError("nats-server would not start on a free port")
    yield f"nats://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


class Stack:
    """The whole product on the host, as supervisord runs it in the container."""

    def __init__(self, root: str, env: dict[str, str]):
        self.root = root
        self.env = env
        self.ipmi_port = int(env["IPMI_PORT"])
        self.vnc_port = int(env["VNC_PORT"])
        self.console_port = int(env["CONSOLE_PORT"])
        self.redfish_port = int(env["REDFISH_PORT"])
        self.log_path = os.path.join(root, "stack.log")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([os.path.join(REPO, "scripts", "entrypoint.sh")], env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()

    def run(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed: {result.stderr}{result.stdout}")
        return result

    def ipmitool(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return ipmitool("127.0.0.1", self.ipmi_port, *args, **kw)

    def supervisor_status(self) -> dict[str, str]:
        out = self.run("supervisorctl", "-c", os.path.join(REPO, "configs", "supervisord.conf"), "status",
                       check=False).stdout
        return {line.split()[0]: line.split()[1] for line in out.splitlines() if line.strip()}

    @property
    def console_log(self) -> str:
        path = os.path.join(self.env["LOG_DIR"], "console.log")
        if not os.path.exists(path):
            return ""
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")

    def boots(self) -> int:
        return self.console_log.count("qemu-bmc-guest: boot complete")

    def output(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def power_state(self) -> str:
        return self.ipmitool("power", "status").stdout.strip()

    @property
    def nats_url(self) -> str:
        return f"nats://{self.env['NATS_LISTEN']}"

    def type_on_console(self, text: str) -> None:
        """Type into the guest's serial console through the bus (console.in)."""
        bus_publish(self.nats_url, f"bmc.{self.env['NODE_NAME']}.console.in", text.encode())


def make_stack(tmp: str, guest: str, **overrides: str) -> Stack:
    venv_bin = os.path.dirname(sys.executable)
    nats_port = free_port()
    env = dict(os.environ)
    env.update({
        "PATH": f"{venv_bin}:{env.get('PATH', '/usr/bin:/bin')}",
        "STATE_DIR": os.path.join(tmp, "state"), "RUN_DIR": os.path.join(tmp, "run"),
        "LOG_DIR": os.path.join(tmp, "log"), "QEMU_BMC_CONFIG_DIR": os.path.join(REPO, "configs"),
        "NODE_NAME": "testnode", "NATS_LISTEN": f"127.0.0.1:{nats_port}",
        "IPMI_PORT": str(free_port(__import__("socket").SOCK_DGRAM)), "VNC_PORT": str(free_port()),
        "CONSOLE_PORT": str(free_port()), "REDFISH_PORT": str(free_port()),
        "QEMU_ACCEL": "tcg", "GUEST_DIR": guest, "IPMI_PASSWORD": "secret",
        "IPMI_USERS": "viewer:viewpw:user,ops:opspw:operator",
        # a name no host has: the host's own eth2+ must never be handed to a test VM
        "VM_NICS": "qbt-none0",
    })
    env.pop("NATS_URL", None)
    env.update(overrides)
    return Stack(tmp, env)


@contextlib.contextmanager
def booted_stack(guest: str, prefix: str, prepare=None, boot_timeout: float = 90, **overrides: str):
    """A stack in a fresh directory, started, its guest booted once; stopped and removed
    afterwards (kept with KEEP_TEST_DIRS=1). `prepare(stack)` runs before the start."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    s = make_stack(tmp, guest, **overrides)
    try:
        if prepare is not None:
            prepare(s)
        s.start()
        wait_for(lambda: s.boots() >= 1, boot_timeout, "the guest's first boot banner")
        yield s
    finally:
        if s.proc is not None:
            s.stop()
        if os.environ.get("KEEP_TEST_DIRS") != "1":
            shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def stack(guest_dir):
    """A running stack (always-on policy) whose guest has booted once."""
    with booted_stack(guest_dir, "qemu-bmc-stack-") as s:
        yield s


def pytest_runtest_makereport(item, call):
    """On failure, show the stack's log tail: the whole story is there."""
    if call.when == "call" and call.excinfo is not None:
        s = item.funcargs.get("stack")
        if isinstance(s, Stack):
            tail = s.output()[-6000:]
            item.add_report_section("call", "stack log (tail)", tail)


def bus_publish(url: str, subject: str, payload: bytes) -> None:
    """Publish one raw message on the stack's bus (a real NATS client)."""
    import asyncio

    import nats

    async def go():
        nc = await nats.connect(url)
        await nc.publish(subject, payload)
        await nc.flush()
        await nc.close()
    asyncio.run(go())
