"""IPMI over LAN (RMCP+): qemu-bmc against OpenIPMI's ipmi_sim and pyghmi's BMC server, same load, same run.

Three measurements, each against every peer, all over UDP on 127.0.0.1:
  1. latency of Get Chassis Status (netfn 0x00 cmd 0x01) inside one established
     RMCP+ session, requests sent one after another (p50, p99);
  2. session set-ups per second: Open Session, RAKP 1-4, Set Session Privilege
     (administrator), Close Session, one after another and with a few workers;
  3. wall time of an `ipmitool -I lanplus ... power status` process (median).

The load generator is the remote-console side of RMCP+ the tests use
(tests/rmcp_console.py): every answer is checked (RAKP2 auth code, RAKP4 ICV,
per-packet integrity, decryption, checksums, completion codes).

qemu-bmc runs as the whole product on the host (scripts/entrypoint.sh, supervisord,
nats-server, the services, QEMU with the test guest under TCG), like the tests'
make_stack. ipmi_sim runs from config files written into a temporary directory;
pyghmi's server (pyghmi.ipmi.bmc.Bmc) runs as its own process (benchmarks/_pyghmi_bmc.py).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack

from benchmarks import Result, Row

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))  # the RMCP+ console lives with the tests
from rmcp_console import Console, HandshakeFailed  # noqa: E402

NAME = "ipmi"
USER, PASSWORD = "admin", "bench-secret"
HOST = "127.0.0.1"
PRIV_ADMIN = 4
NETFN_CHASSIS, CMD_GET_CHASSIS_STATUS = 0x00, 0x01
NETFN_APP, CMD_SET_SESSION_PRIVILEGE, CMD_CLOSE_SESSION = 0x06, 0x3B, 0x3C
GUEST_CACHE = os.environ.get("QEMU_BMC_GUEST_CACHE", "/var/cache/qemu-bmc/guest")
BOOT_BANNER = "qemu-bmc-guest: boot complete"
SUITE_NAMES = {3: "cipher suite 3 (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128)",
               17: "cipher suite 17 (RAKP-HMAC-SHA256, HMAC-SHA256-128, AES-CBC-128)"}


class BenchmarkError(RuntimeError):
    """The benchmark cannot run (a peer is missing or does not start): says why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("ipmi")
    group.add_argument("--ipmi-requests", type=int, default=None,
                       help="Get Chassis Status requests for the latency (default 2000, --quick 20)")
    group.add_argument("--ipmi-seconds", type=float, default=None,
                       help="seconds of session set-ups per peer and mode (default 3, --quick 0.3)")
    group.add_argument("--ipmi-workers", type=int, default=4, help="concurrent set-up workers (default 4)")
    group.add_argument("--ipmitool-runs", type=int, default=None,
                       help="ipmitool processes per peer (default 20, --quick 2)")
    group.add_argument("--no-vm", action="store_true",
                       help="run qemu-bmc with POWER_RESTORE_POLICY=always-off (no QEMU running)")


# --- free ports and small helpers -------------------------------------------------

def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def all_pids() -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def argv_of(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def program_name(argv: list[str]) -> str:
    """qemu-bmc-ipmi -> ipmi, python -m benchmarks._pyghmi_bmc -> pyghmi, ..."""
    for arg in argv[:3]:
        base = os.path.basename(arg)
        if base.startswith("qemu-bmc-") and base != "qemu-bmc-prefix":
            return base.removeprefix("qemu-bmc-")
        if base.startswith("qemu-system"):
            return "qemu"
        if base in ("supervisord", "nats-server", "ipmi_sim"):
            return base
        if base == "benchmarks._pyghmi_bmc":
            return "pyghmi"
        if base == "qemu-bmc-prefix":  # a forked helper that prefixes a program's log lines
            return "log prefixer (python)"
        if base == "sed":  # what prefixes nats-server's log lines (configs/supervisord.conf)
            return "log prefixer (sed)"
    return os.path.basename(argv[0]) if argv else "?"


def session_pids(sid: int) -> list[int]:
    found = []
    for pid in all_pids():
        try:
            if os.getsid(pid) == sid:
                found.append(pid)
        except OSError:
            continue
    return found


def command_output(*cmd: str) -> str:
    try:
        result = subprocess.run(list(cmd), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (result.stdout + result.stderr).strip()


def deb_version(package: str) -> str:
    return command_output("dpkg-query", "-W", "-f=${Version}", package) or "?"


# --- the client: one RMCP+ session over a connected UDP socket ------------------------

class Client:
    """A remote console on its own UDP socket, connected to one BMC."""

    def __init__(self, port: int, suite: int, timeout: float = 1.0):
        self.port = port
        self.suite = suite
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(timeout)
        self.sock.connect((HOST, port))
        self.console: Console | None = None

    def close(self) -> None:
        self.sock.close()

    def exchange(self, datagram: bytes) -> bytes:
        self.sock.send(datagram)
        return self.sock.recv(4096)

    def open(self) -> Console:
        """Open Session, RAKP 1-4 and Set Session Privilege (administrator)."""
        c = Console(USER.encode(), PASSWORD.encode(), suite_id=self.suite, role=0x10 | PRIV_ADMIN)
        c.open_session_response(self.exchange(c.open_session_request(PRIV_ADMIN)))
        c.rakp2(self.exchange(c.rakp1()))
        c.rakp4(self.exchange(c.rakp3()))
        self.console = c
        completion, data = c.unseal(self.exchange(c.request(NETFN_APP, CMD_SET_SESSION_PRIVILEGE,
                                                            bytes((PRIV_ADMIN,)))))
        if completion != 0 or data[:1] != bytes((PRIV_ADMIN,)):
            raise HandshakeFailed("set session privilege", completion)
        return c

    def close_session(self) -> None:
        c = self.console
        completion, _ = c.unseal(self.exchange(c.request(NETFN_APP, CMD_CLOSE_SESSION,
                                                         struct.pack("<I", c.local_id))))
        if completion != 0:
            raise HandshakeFailed("close session", completion)
        self.console = None

    def chassis_status(self) -> tuple[int, int]:
        """One Get Chassis Status; returns (nanoseconds from send to answer, power bit)."""
        c = self.console
        datagram = c.request(NETFN_CHASSIS, CMD_GET_CHASSIS_STATUS)
        t0 = time.perf_counter_ns()
        self.sock.send(datagram)
        answer = self.sock.recv(4096)
        elapsed = time.perf_counter_ns() - t0
        completion, data = c.unseal(answer)
        if completion != 0 or len(data) < 3:
            raise AssertionError(f"Get Chassis Status answered {completion:#04x} {data.hex()}")
        return elapsed, data[0] & 1


def session_setup(port: int, suite: int) -> None:
    client = Client(port, suite)
    try:
        client.open()
        client.close_session()
    finally:
        client.close()


# --- the peers -------------------------------------------------------------------

class Peer:
    name = ""
    port = 0

    def start(self) -> None: ...

    def wait_ready(self, deadline: float) -> None: ...

    def stop(self) -> None: ...

    def server_pid(self) -> int | None:
        return None

    def versions(self) -> dict[str, str]:
        return {}

    def log_tail(self) -> str:
        return ""

    def check_alive(self) -> None: ...


def stop_process(proc: subprocess.Popen | None) -> None:
    """SIGTERM, then SIGKILL if it is still there after 10 s."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def wait_for_rmcp(peer: Peer, label: str, deadline: float, interval: float) -> None:
    """Until `deadline`, try an RMCP+ session set-up every `interval` seconds while the
    peer stays alive; BenchmarkError (with the peer's log) if none succeeded."""
    last = ""
    while time.monotonic() < deadline:
        peer.check_alive()
        try:
            session_setup(peer.port, 3)
            return
        except (OSError, AssertionError) as exc:
            last = repr(exc)
        time.sleep(interval)
    raise BenchmarkError(f"{label} did not answer RMCP+ on {HOST}:{peer.port} ({last}):\n{peer.log_tail()}")


class ServerProcess(Peer):
    """A peer BMC that is one local process on a loopback UDP port, its output in
    `log_path` under its own temporary directory."""

    label = ""  # how errors name it

    def __init__(self, tmp_prefix: str, log_name: str):
        self.tmp = tempfile.mkdtemp(prefix=tmp_prefix)
        self.port = free_port(socket.SOCK_DGRAM)
        self.log_path = os.path.join(self.tmp, log_name)
        self.proc: subprocess.Popen | None = None
        self._log = None

    def spawn(self, argv: list[str], cwd: str) -> None:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchmarkError(f"{self.label} exited ({self.proc.returncode}); its output:\n{self.log_tail()}")

    def wait_ready(self, deadline: float) -> None:
        wait_for_rmcp(self, self.label, deadline, 0.1)

    def server_pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> None:
        stop_process(self.proc)
        if self._log is not None:
            self._log.close()
        if os.environ.get("KEEP_BENCH_DIRS") != "1":
            shutil.rmtree(self.tmp, ignore_errors=True)

    def log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-3000:]
        except OSError:
            return ""


class QemuBmc(Peer):
    """The whole product on the host, as supervisord runs it in the container."""

    name = "qemu-bmc"

    def __init__(self, guest_dir: str, no_vm: bool = False):
        self.guest_dir = guest_dir
        self.no_vm = no_vm
        self.tmp = tempfile.mkdtemp(prefix="qemu-bmc-bench-")
        self.port = free_port(socket.SOCK_DGRAM)
        venv_bin = os.path.join(REPO, ".venv", "bin")
        if not os.path.isdir(venv_bin):
            venv_bin = os.path.dirname(sys.executable)
        self.env = dict(os.environ)
        self.env.update({
            "PATH": f"{venv_bin}:{self.env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
            "STATE_DIR": os.path.join(self.tmp, "state"), "RUN_DIR": os.path.join(self.tmp, "run"),
            "LOG_DIR": os.path.join(self.tmp, "log"), "QEMU_BMC_CONFIG_DIR": os.path.join(REPO, "configs"),
            "NODE_NAME": "bench", "NATS_LISTEN": f"{HOST}:{free_port(socket.SOCK_STREAM)}",
            "IPMI_PORT": str(self.port), "IPMI_LISTEN": HOST, "VNC_PORT": str(free_port(socket.SOCK_STREAM)),
            "CONSOLE_PORT": str(free_port(socket.SOCK_STREAM)),
            "VM_NICS": "qbt-none0",  # never hand this machine's own interfaces to the VM
            "QEMU_ACCEL": "tcg", "GUEST_DIR": guest_dir, "IPMI_USER": USER, "IPMI_PASSWORD": PASSWORD,
            "LOG_LEVEL": "INFO",
        })
        if no_vm:
            self.env["POWER_RESTORE_POLICY"] = "always-off"
        for key in ("NATS_URL", "IPMI_USERS", "IPMI_PASSWORD_FILE", "IPMI_CIPHER_SUITES", "IPMI_SESSION_LIMIT",
                    "VM_DISK", "VM_CDROM", "QEMU_EXTRA_ARGS"):
            self.env.pop(key, None)
        self.log_path = os.path.join(self.tmp, "stack.log")
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self) -> None:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([os.path.join(REPO, "scripts", "entrypoint.sh")], env=self.env, cwd=self.tmp,
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchmarkError(f"the qemu-bmc stack exited ({self.proc.returncode}):\n{self.log_tail()}")

    def wait_ready(self, deadline: float) -> None:
        wait_for_rmcp(self, "qemu-bmc", deadline, 0.2)
        if self.no_vm:
            return
        # let the guest finish booting: TCG boot work would compete with the load
        while time.monotonic() < deadline:
            self.check_alive()
            if BOOT_BANNER in self.console_log():
                return
            time.sleep(0.2)
        raise BenchmarkError(f"the qemu-bmc guest did not boot ({BOOT_BANNER!r} not on its console)")

    def console_log(self) -> str:
        try:
            with open(os.path.join(self.env["LOG_DIR"], "console.log"), "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def server_pid(self) -> int | None:
        """The qemu-bmc-ipmi process of this stack (same session as the entrypoint)."""
        return next((pid for pid in session_pids(self.proc.pid) if program_name(argv_of(pid)) == "ipmi"), None)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            except ProcessLookupError:
                pass
        if self._log is not None:
            self._log.close()
        if os.environ.get("KEEP_BENCH_DIRS") != "1":
            shutil.rmtree(self.tmp, ignore_errors=True)

    def log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-3000:]
        except OSError:
            return ""

    def versions(self) -> dict[str, str]:
        from qemu_bmc import __version__
        commit = command_output("git", "-C", REPO, "rev-parse", "--short", "HEAD")
        qemu = command_output("qemu-system-x86_64", "--version").splitlines()
        nats = command_output("nats-server", "--version").removeprefix("nats-server:").strip()
        return {"qemu-bmc": f"{__version__} (git {commit})",
                "QEMU": qemu[0] if qemu else "?", "nats-server": nats}


LAN_CONF = """\
# ipmi_sim LAN configuration written by benchmarks/ipmi.py
name "qemu-bmc-bench"
set_working_mc 0x20
  startlan 1
    addr {host} {port}
    priv_limit admin
    allowed_auths_callback md5
    allowed_auths_user md5
    allowed_auths_operator md5
    allowed_auths_admin md5
    guid 71656d752d626d632d62656e63680001
  endlan
  # num enabled name password max-priv max-sessions allowed-auths
  user 1 false "" "unused" user 1 md5
  user 2 true "{user}" "{password}" admin 16 md5
"""

# the BMC: one management controller at 0x20, enabled; chassis status comes with it
EMULATOR_COMMANDS = """\
mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02
mc_enable 0x20
"""


class IpmiSim(ServerProcess):
    """OpenIPMI's BMC simulator, listening on loopback only."""

    name = "ipmi_sim"
    label = "ipmi_sim"

    def __init__(self):
        self.binary = shutil.which("ipmi_sim")
        if self.binary is None:
            raise BenchmarkError("ipmi_sim not found: the IPMI benchmark compares against OpenIPMI's ipmi_sim; "
                                 "install it with `apt-get install -y openipmi`")
        super().__init__("ipmi-sim-bench-", "ipmi_sim.log")
        self.lan_conf = os.path.join(self.tmp, "lan.conf")
        self.cmd_file = os.path.join(self.tmp, "bmc.emu")
        self.state_dir = os.path.join(self.tmp, "state")
        os.mkdir(self.state_dir)
        with open(self.lan_conf, "w") as f:
            f.write(LAN_CONF.format(host=HOST, port=self.port, user=USER, password=PASSWORD))
        with open(self.cmd_file, "w") as f:
            f.write(EMULATOR_COMMANDS)

    def start(self) -> None:
        self.spawn([self.binary, "-c", self.lan_conf, "-f", self.cmd_file, "-s", self.state_dir, "-n"], self.tmp)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchmarkError(f"ipmi_sim exited ({self.proc.returncode}); its output:\n{self.log_tail()}\n"
                                 f"(config in {self.lan_conf}, {self.cmd_file})")

    def versions(self) -> dict[str, str]:
        banner = command_output(self.binary, "-v")
        match = re.search(r"IPMI Simulator version (\S+)", banner)
        return {"ipmi_sim": f"OpenIPMI {deb_version('openipmi')} (simulator {match.group(1) if match else '?'})"}


class PyghmiServer(ServerProcess):
    """pyghmi's BMC server (pyghmi.ipmi.bmc.Bmc) in its own process on a loopback port,
    like ipmi_sim: benchmarks/_pyghmi_bmc.py."""

    name = "pyghmi"
    label = "the pyghmi BMC"

    def __init__(self):
        super().__init__("pyghmi-bench-", "pyghmi.log")
        self.argv = [sys.executable, "-m", "benchmarks._pyghmi_bmc", "--port", str(self.port), "--address", HOST,
                     "--user", USER, "--password", PASSWORD]

    def start(self) -> None:
        self.spawn(self.argv, REPO)

    def versions(self) -> dict[str, str]:
        from importlib.metadata import version
        return {"pyghmi": f"{version('pyghmi')} (pyghmi.ipmi.bmc.Bmc, CPython {sys.version.split()[0]})"}


# --- the measurements ------------------------------------------------------------

def suite_supported(port: int, suite: int) -> bool:
    try:
        session_setup(port, suite)
        return True
    except HandshakeFailed:
        return False


def measure_latency(peer: Peer, suite: int, requests: int, warmup: int, budget: float) -> dict:
    """Get Chassis Status one after another inside one session: percentiles in ms."""
    client = Client(peer.port, suite)
    pid = peer.server_pid()
    try:
        client.open()
        for _ in range(warmup):
            client.chassis_status()
        samples: list[int] = []
        cpu0, deadline = cpu_seconds(pid) if pid else None, time.monotonic() + budget
        while len(samples) < requests and time.monotonic() < deadline:
            samples.append(client.chassis_status()[0])
        cpu = (cpu_seconds(pid) - cpu0) if pid else None
        client.close_session()
    finally:
        client.close()
    samples.sort()
    ms = [s / 1e6 for s in samples]
    return {"n": len(ms), "p50": percentile(ms, 50), "p99": percentile(ms, 99), "mean": statistics.fmean(ms),
            "cpu_us": cpu / len(ms) * 1e6 if cpu is not None else None}


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


def _setup_loop(port: int, suite: int, start_at: float, stop_at: float) -> tuple[int, list[str]]:
    """Set-ups one after another between two time.monotonic() instants: (done, errors)."""
    done, errors = 0, []
    while time.monotonic() < start_at:
        time.sleep(0.001)
    while time.monotonic() < stop_at and len(errors) <= 50:
        try:
            session_setup(port, suite)
            done += 1
        except (OSError, AssertionError) as exc:
            errors.append(repr(exc))
    return done, errors


def _setup_worker(port: int, suite: int, start_at: float, stop_at: float, out) -> None:
    out.put(_setup_loop(port, suite, start_at, stop_at))


def measure_setups(peer: Peer, suite: int, seconds: float, workers: int) -> dict:
    """Complete set-ups (open, RAKP 1-4, privilege, close) per second.

    One worker runs here; more run as separate processes (forked), so the load
    generator is not held back by one interpreter's lock.
    """
    pid = peer.server_pid()
    cpu0 = cpu_seconds(pid) if pid else None
    if workers == 1:
        start_at = time.monotonic()
        total, errors = _setup_loop(peer.port, suite, start_at, start_at + seconds)
        elapsed = time.monotonic() - start_at
    else:
        ctx = multiprocessing.get_context("fork")
        out = ctx.Queue()
        start_at = time.monotonic() + 0.2  # every worker forked and waiting
        procs = [ctx.Process(target=_setup_worker, args=(peer.port, suite, start_at, start_at + seconds, out),
                             daemon=True) for _ in range(workers)]
        for p in procs:
            p.start()
        total, errors = 0, []
        try:
            for _ in procs:
                done, errs = out.get(timeout=seconds + 15)
                total += done
                errors += errs
        finally:
            for p in procs:
                p.join(5)
                if p.is_alive():
                    p.kill()
        elapsed = seconds
    cpu = (cpu_seconds(pid) - cpu0) if pid else None
    if errors and total == 0:
        raise BenchmarkError(f"no session set-up against {peer.name} succeeded: {errors[:3]}")
    return {"per_s": total / elapsed, "n": total, "errors": len(errors), "first_errors": errors[:3],
            "cpu_us": cpu / total * 1e6 if cpu is not None and total else None}


def measure_ipmitool(peer: Peer, suite: int, runs: int) -> dict:
    cmd = ["ipmitool", "-I", "lanplus", "-H", HOST, "-p", str(peer.port), "-U", USER, "-P", PASSWORD,
           "-C", str(suite), "power", "status"]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        elapsed = time.perf_counter() - t0
        if result.returncode != 0 or not result.stdout.startswith("Chassis Power is"):
            raise BenchmarkError(f"ipmitool against {peer.name} failed ({result.returncode}): "
                                 f"{result.stderr.strip()} {result.stdout.strip()}")
        times.append(elapsed * 1000)
    return {"median": statistics.median(times), "n": runs}


# --- the benchmark ----------------------------------------------------------------

def ensure_guest() -> str:
    if not os.path.isfile(os.path.join(GUEST_CACHE, "initrd.img")):
        print(f"ipmi: building the test guest into {GUEST_CACHE}", file=sys.stderr)
        subprocess.run([os.path.join(REPO, "scripts", "build-guest.sh"), GUEST_CACHE], check=True,
                       stdout=subprocess.DEVNULL)
    return GUEST_CACHE


def run(args: argparse.Namespace) -> Result:
    quick = args.quick
    requests = args.ipmi_requests or (20 if quick else 2000)
    warmup = 5 if quick else 100
    seconds = args.ipmi_seconds or (0.3 if quick else 3.0)
    workers = max(1, args.ipmi_workers if not quick else min(args.ipmi_workers, 2))
    runs = args.ipmitool_runs or (2 if quick else 20)
    no_vm = getattr(args, "no_vm", False)
    if shutil.which("ipmitool") is None:
        raise BenchmarkError("ipmitool not found: `apt-get install -y ipmitool`")

    def say(text: str) -> None:
        print(f"ipmi: {text}", file=sys.stderr, flush=True)

    with ExitStack() as stack:
        sim = IpmiSim()
        stack.callback(sim.stop)
        pyg = PyghmiServer()
        stack.callback(pyg.stop)
        bmc = QemuBmc(ensure_guest(), no_vm=no_vm)
        stack.callback(bmc.stop)
        peers: list[Peer] = [bmc, sim, pyg]
        say(f"starting ipmi_sim on {HOST}:{sim.port}/udp, the pyghmi BMC on {HOST}:{pyg.port}/udp and the "
            f"qemu-bmc stack on {HOST}:{bmc.port}/udp")
        sim.start()
        pyg.start()
        bmc.start()
        sim.wait_ready(time.monotonic() + 15)
        pyg.wait_ready(time.monotonic() + 30)
        bmc.wait_ready(time.monotonic() + 120)
        # one suite for every peer (pyghmi's server offers 3 only; ipmi_sim refuses 17)
        suite = 17 if all(suite_supported(p.port, 17) for p in peers) else 3
        say(f"all answer; using {SUITE_NAMES[suite]}")

        latency, seq, conc, tool = {}, {}, {}, {}
        for peer in peers:
            say(f"{peer.name}: {requests} Get Chassis Status in one session")
            latency[peer.name] = measure_latency(peer, suite, requests, warmup, budget=60)
            peer.check_alive()
        for peer in peers:
            say(f"{peer.name}: session set-ups for {seconds:g} s, sequential")
            seq[peer.name] = measure_setups(peer, suite, seconds, 1)
            peer.check_alive()
        for peer in peers:
            say(f"{peer.name}: session set-ups for {seconds:g} s, {workers} workers")
            conc[peer.name] = measure_setups(peer, suite, seconds, workers)
            peer.check_alive()
        for peer in peers:
            say(f"{peer.name}: {runs} ipmitool power status")
            tool[peer.name] = measure_ipmitool(peer, suite, runs)
            peer.check_alive()
        versions = {}
        for peer in peers:
            versions.update(peer.versions())
        versions["ipmitool"] = deb_version("ipmitool")

    names = [p.name for p in peers]

    def values(results: dict, key: str) -> dict[str, float]:
        return {n: results[n][key] for n in names if results[n].get(key) is not None}

    rows = [
        Row(NAME, "Get Chassis Status in-session p50", "ms", values(latency, "p50"), True, 1.0, 1.5, "ipmi_sim"),
        Row(NAME, "Get Chassis Status in-session p99", "ms", values(latency, "p99"), True, None, 1.5, "ipmi_sim"),
        Row(NAME, "session set-ups, sequential", "/s", values(seq, "per_s"), False, 200, 1.5, "ipmi_sim"),
        Row(NAME, f"session set-ups, {workers} workers", "/s", values(conc, "per_s"), False, 200, 1.5, "ipmi_sim"),
        Row(NAME, "ipmitool power status wall time, median", "ms", values(tool, "median"), True, None, 1.5,
            "ipmi_sim"),
        Row(NAME, "server CPU per Get Chassis Status", "µs", values(latency, "cpu_us"), True),
        Row(NAME, "server CPU per session set-up", "µs", values(seq, "cpu_us"), True),
    ]
    errors = {n: seq[n]["errors"] + conc[n]["errors"] for n in names}
    notes = [
        f"IPMI: {SUITE_NAMES[suite]} for every peer"
        + ("" if suite == 17 else " (ipmi_sim refuses cipher suite 17 in Open Session; pyghmi's server offers "
           "suite 3 only)") + "; UDP on 127.0.0.1; "
        f"user `{USER}` at administrator privilege.",
        f"IPMI latency: {latency[names[0]]['n']} Get Chassis Status requests one after another inside one "
        f"session after {warmup} warm-up requests; time from send to answer, sealing and checking outside the "
        "timer; nearest-rank percentiles.",
        f"IPMI set-ups: Open Session, RAKP 1-4, Set Session Privilege (administrator), Close Session, each step "
        f"waiting for its answer, for {seconds:g} s with 1 worker and with {workers} worker processes, each set-up on a "
        f"fresh UDP socket; failed set-ups (timeouts, 1 s): "
        + ", ".join(f"{n} {errors[n]}" for n in names) + ".",
        f"IPMI ipmitool: median wall time of {runs} `ipmitool -I lanplus -C {suite} ... power status` processes.",
        "IPMI server CPU: user+system CPU of the answering process (qemu-bmc-ipmi; ipmi_sim; the pyghmi "
        "server) over the "
        "measurement, divided by the requests or set-ups done.",
        "qemu-bmc ran as the whole product on the host (entrypoint.sh: supervisord, nats-server, the services"
        + (", no VM (POWER_RESTORE_POLICY=always-off))." if no_vm else
           ", QEMU under TCG with the test guest booted and idle)."),
        "ipmi_sim ran from a temporary lan.conf (one LAN channel on 127.0.0.1, user 2 with administrator "
        "privilege) and a command file adding one enabled BMC at 0x20 (mc_setbmc, mc_add, mc_enable).",
        "pyghmi ran its BMC server (pyghmi.ipmi.bmc.Bmc with a power bit: benchmarks/_pyghmi_bmc.py) as its own "
        "Python process on 127.0.0.1, one administrator account; its failed set-ups are Open Session "
        "answers whose status byte is not a status code (0x80, 0xb8, ...); the cause was not investigated (a "
        "guess: it keeps sessions by client address and port, and a fresh socket can reuse a recent port).",
    ]
    return Result(rows, notes, versions)
