"""Shared test helpers: free ports, waiting on conditions, running real clients."""

from __future__ import annotations

import os
import socket
import subprocess
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUEST_CACHE = os.environ.get("QEMU_BMC_GUEST_CACHE", "/var/cache/qemu-bmc/guest")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_low_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A free port below 32768: FreeIPMI's ipmiconsole keeps the port in an int16."""
    import random
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below 32768")


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    """Poll `predicate` until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:  # the condition may not be checkable yet
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def ipmitool(host: str, port: int, *args: str, user: str = "admin", password: str = "secret",
             interface: str = "lanplus", cipher: str | None = None, timeout: float = 30,
             check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["ipmitool", "-I", interface, "-H", host, "-p", str(port), "-U", user, "-P", password]
    if cipher is not None:
        cmd += ["-C", cipher]
    cmd += list(args)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr}{result.stdout}")
    return result
