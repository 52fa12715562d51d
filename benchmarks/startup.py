"""Start-up, power-on and the idle control plane: qemu-bmc against ipmi_sim, pyghmi and a bare QEMU.

Three measurements, same run, every peer on 127.0.0.1:
  1. start -> first IPMI answer: from the exec of the program (or of `docker run`)
     to the first Get Device ID answered inside an RMCP+ session (Open Session,
     RAKP 1-4, Get Device ID, each answer checked), polled every 20 ms. Peers:
     the real image under Docker, the same stack on the host (entrypoint.sh,
     supervisord), ipmi_sim, pyghmi's BMC server;
  2. power-on -> first guest serial byte: qemu-bmc gets Chassis Control (power
     up) in an open session at t0, the first byte shows on its TCP console;
     a bare QEMU with the same guest is exec'd at t0 (serial on a unix socket it
     waits on); ipmi_sim gets the same Chassis Control and starts that QEMU
     through its `startcmd`. The boot banner's arrival is timed too;
  3. the control plane at rest, VM on and idle: resident memory (VmRSS, and PSS,
     which shares the common pages out fairly) of every process but QEMU, and
     its CPU use (utime + stime from /proc/<pid>/stat) over a window, against
     ipmi_sim's and the pyghmi server's.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack

from benchmarks import Result, Row
from benchmarks.ipmi import (BOOT_BANNER, HOST, PASSWORD, USER, BenchmarkError, Client, IpmiSim,
                             PyghmiServer, QemuBmc, all_pids, argv_of, command_output, ensure_guest, free_port,
                             program_name, session_pids, stop_process)
from rmcp_console import HandshakeFailed  # noqa: E402 (benchmarks.ipmi put tests/ on the path)

NAME = "startup"
NETFN_APP, CMD_GET_DEVICE_ID = 0x06, 0x01
NETFN_CHASSIS, CMD_CHASSIS_CONTROL = 0x00, 0x02
CHASSIS_POWER_DOWN, CHASSIS_POWER_UP = 0x00, 0x01
POLL = 0.02  # seconds between start-up probes
FIRST_ANSWER_LIMIT_S = 2.0
RSS_LIMIT_MIB = 150.0
IDLE_CPU_LIMIT_PCT = 1.0
IMAGE = os.environ.get("QEMU_BMC_BENCH_IMAGE", os.environ.get("QEMU_BMC_TEST_IMAGE", "qemu-bmc:test"))
DOCKER_LABEL = "qemu-bmc-benchmark"
SUITE = 3  # every peer offers it (pyghmi's server offers nothing else)
BARE = "bare QEMU serial"  # the column of a QEMU with no BMC, shared with the console benchmark


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("startup")
    group.add_argument("--startup-repeats", type=int, default=None,
                       help="start-ups and power-ons per peer (default 3, --quick 1); the median is reported")
    group.add_argument("--idle-seconds", type=float, default=None,
                       help="window for the idle CPU (default 20, --quick 2)")
    group.add_argument("--no-docker", action="store_true", help="leave the image under Docker out")
    group.add_argument("--rebuild-image", action="store_true",
                       help=f"build {IMAGE} from this tree first (by default it is built only when missing, "
                            "and never with --quick: then its row is skipped with the reason)")


def say(text: str) -> None:
    print(f"startup: {text}", file=sys.stderr, flush=True)


# --- the probe: a complete RMCP+ session and one Get Device ID ------------------------

def get_device_id(port: int, timeout: float = 0.25) -> bytes:
    """Open a session, ask Get Device ID, close: its data, or an exception."""
    client = Client(port, SUITE, timeout=timeout)
    try:
        console = client.open()
        completion, data = console.unseal(client.exchange(console.request(NETFN_APP, CMD_GET_DEVICE_ID)))
        if completion != 0 or len(data) < 11:
            raise HandshakeFailed("get device id", completion)
        try:
            client.close_session()
        except (OSError, AssertionError):
            pass  # answered is what counts
        return data
    finally:
        client.close()


def wait_first_answer(port: int, t0: float, deadline: float, alive) -> float:
    """Seconds from t0 until the first Get Device ID is answered."""
    last = "nothing tried"
    while time.monotonic() < deadline:
        alive()
        try:
            get_device_id(port)
            return time.monotonic() - t0
        except Exception as exc:  # noqa: BLE001 - a half-started server may answer anything: probe again
            last = repr(exc)
        time.sleep(POLL)
    raise BenchmarkError(f"no Get Device ID answer on {HOST}:{port} within the deadline ({last})")


# --- processes: who belongs to what, memory, CPU -------------------------------------

def descendant_pids(root: int) -> list[int]:
    """root and every process below it (the log prefixer of nats leaves root's session)."""
    children: dict[int, list[int]] = {}
    for pid in all_pids():
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def container_pids(container_id: str) -> list[int]:
    found = []
    for pid in all_pids():
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                if container_id in f.read():
                    found.append(pid)
        except OSError:
            continue
    return found


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, Pss) in KiB."""
    rss = pss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pss = rss
    return rss, pss


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


class ProcessGroup:
    """The processes of one peer, QEMU left out: their memory now and CPU over a window."""

    def __init__(self, label: str, find_pids):
        self.label = label
        self.find_pids = find_pids

    def pids(self) -> dict[int, str]:
        named = {pid: program_name(argv_of(pid)) for pid in self.find_pids()}
        return {pid: name for pid, name in named.items() if name != "qemu" and name != "?"}

    def memory(self) -> dict[str, tuple[float, float]]:
        """program -> (RSS MiB, PSS MiB), programs of the same name summed."""
        out: dict[str, tuple[float, float]] = {}
        for pid, name in self.pids().items():
            try:
                rss, pss = memory_kib(pid)
            except OSError:
                continue
            old = out.get(name, (0.0, 0.0))
            out[name] = (old[0] + rss / 1024, old[1] + pss / 1024)
        return out

    def ticks(self) -> dict[int, tuple[str, int]]:
        out = {}
        for pid, name in self.pids().items():
            try:
                out[pid] = (name, cpu_ticks(pid))
            except OSError:
                continue
        return out


def idle_cpu(groups: list[ProcessGroup], seconds: float) -> dict[str, dict[str, float]]:
    """Per group, per program: % of one core over the same window."""
    before = {g.label: g.ticks() for g in groups}
    t0 = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    after = {g.label: g.ticks() for g in groups}
    hz = os.sysconf("SC_CLK_TCK")
    out: dict[str, dict[str, float]] = {}
    for g in groups:
        per: dict[str, float] = {}
        for pid, (name, ticks) in after[g.label].items():
            if pid in before[g.label]:  # a process that came or went in the window is left out
                per[name] = per.get(name, 0.0) + (ticks - before[g.label][pid][1]) / hz / elapsed * 100
        out[g.label] = per
    return out


# --- where qemu-bmc's start-up time goes -------------------------------------------------

# log lines that mark a step of the start, in the order they happen
MILESTONES = (("supervisord up", "supervisord started with pid"), ("programs spawned", "INFO spawned: 'nats'"),
              ("NATS ready", "[INF] Server is ready"), ("IPMI listening", "ipmi: listening on"))


def line_time(line: str) -> float | None:
    """The wall-clock time a log line carries: docker's RFC 3339 prefix, supervisord's or nats-server's own."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z ", line)
    if m:
        stamp = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
        return stamp.timestamp() + float(m.group(2) or 0)
    m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ", line)
    if m:
        return datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp() + int(m.group(2)) / 1000
    m = re.search(r"(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d)(\.\d+) \[", line)
    if m:
        return datetime.datetime.strptime(m.group(1), "%Y/%m/%d %H:%M:%S").timestamp() + float(m.group(2))
    return None


def timeline(log_text: str, t0_wall: float) -> dict[str, float]:
    """Seconds from t0 to each milestone the log shows with a time on its line."""
    found: dict[str, float] = {}
    for line in log_text.splitlines():
        for name, marker in MILESTONES:
            if name not in found and marker in line:
                when = line_time(line)
                if when is not None:
                    found[name] = when - t0_wall
    return {name: found[name] for name, _ in MILESTONES if name in found}


# --- qemu-bmc in Docker ---------------------------------------------------------------

def docker_ok() -> str | None:
    """None when docker answers, else why not."""
    if shutil.which("docker") is None:
        return "no docker client"
    info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                          timeout=30)
    return None if info.returncode == 0 else f"docker does not answer: {info.stderr.strip()[:200]}"


def ensure_image(may_build: bool, rebuild: bool) -> str | None:
    """None when IMAGE is there (built now if missing or asked), else why the Docker row is skipped."""
    problem = docker_ok()
    if problem:
        return problem
    present = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode == 0
    if present and not rebuild:
        return None
    if not may_build:
        return f"image {IMAGE} missing and --quick builds none (the image tests build it; or set QEMU_BMC_BENCH_IMAGE)"
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
    from dockerlab import build_image
    say(f"building {IMAGE} (docker build, as the image tests do)")
    try:
        build_image(IMAGE, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    except (AssertionError, subprocess.SubprocessError, OSError) as exc:
        return f"building {IMAGE} failed: {str(exc)[-500:]}"
    return None


class DockerBmc:
    """The real image: `docker run` with the least privileges the README recommends."""

    def __init__(self):
        self.port = free_port(socket.SOCK_DGRAM)
        self.name = f"qemu-bmc-bench-{uuid.uuid4().hex[:8]}"
        self.container_id = ""
        self.argv = ["docker", "run", "-d", "--name", self.name, "--label", DOCKER_LABEL,
                     "--cap-add", "NET_ADMIN", "--device", "/dev/net/tun"]
        if os.path.exists("/dev/kvm"):
            self.argv += ["--device", "/dev/kvm"]
        self.argv += ["-e", "QEMU_ACCEL=tcg", "-e", f"IPMI_USER={USER}", "-e", f"IPMI_PASSWORD={PASSWORD}",
                      "-p", f"{HOST}:{self.port}:623/udp", IMAGE]
        self.run_returned = 0.0
        self._checked = 0.0  # when check_alive last asked docker

    def start(self) -> float:
        """Runs the container; returns t0 (just before `docker run`)."""
        t0 = time.monotonic()
        result = subprocess.run(self.argv, capture_output=True, text=True, timeout=120)
        self.run_returned = time.monotonic() - t0
        if result.returncode != 0:
            raise BenchmarkError(f"docker run failed: {result.stderr.strip()}")
        self.container_id = result.stdout.strip()
        return t0

    def check_alive(self) -> None:
        """Raises once the container has ended; asks docker at most once a second (the probe
        loop calls this every few milliseconds), and a slow or failed `docker inspect` is no verdict."""
        now = time.monotonic()
        if now - self._checked < 1.0:
            return
        self._checked = now
        state = command_output("docker", "inspect", "-f", "{{.State.Status}}", self.name)
        if state in ("exited", "dead", "removing"):
            raise BenchmarkError(f"the container stopped ({state}):\n{self.logs()}")

    def logs(self) -> str:
        return command_output("docker", "logs", "--tail", "40", self.name)

    def booted(self) -> bool:
        out = subprocess.run(["docker", "exec", self.name, "grep", "-c", BOOT_BANNER, "/var/log/qemu-bmc/console.log"],
                             capture_output=True, text=True, timeout=30)
        return out.returncode == 0

    def stop(self) -> None:
        subprocess.run(["docker", "rm", "-f", "-v", self.name], capture_output=True, timeout=120)


# --- power-on -> first serial byte ---------------------------------------------------

def chassis_control(client: Client, action: int) -> None:
    console = client.console
    completion, _ = console.unseal(client.exchange(console.request(NETFN_CHASSIS, CMD_CHASSIS_CONTROL,
                                                                   bytes((action,)))))
    if completion != 0:
        raise BenchmarkError(f"Chassis Control {action} answered {completion:#04x}")


def watch_serial(sock: socket.socket, t0: float, deadline: float, what: str) -> tuple[float, float]:
    """(seconds to the first byte, seconds to the boot banner) read from a connected socket."""
    seen = bytearray()
    first = None
    sock.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            raise BenchmarkError(f"{what}: the serial stream ended before {BOOT_BANNER!r}: {bytes(seen[-300:])!r}")
        if first is None:
            first = time.monotonic() - t0
        seen += chunk
        if BOOT_BANNER.encode() in seen:
            return first, time.monotonic() - t0
    raise BenchmarkError(f"{what}: no boot banner in time; got {bytes(seen[-300:])!r}")


def connect_tcp(port: int, deadline: float, alive) -> socket.socket:
    """The TCP console (its service may come up after the IPMI one)."""
    while True:
        alive()
        try:
            return socket.create_connection((HOST, port), timeout=10)
        except OSError:
            if time.monotonic() > deadline:
                raise BenchmarkError(f"nothing listens on the console port {HOST}:{port}") from None
            time.sleep(0.1)


def bare_qemu_argv(guest_dir: str, serial_path: str, name: str) -> list[str]:
    """The guest as qemu-bmc's QEMU runs it (q35, TCG, 512 MiB, VGA), serial on a unix socket
    QEMU waits on: no byte is printed before the watcher is there."""
    return ["qemu-system-x86_64", "-name", name, "-machine", "q35,accel=tcg", "-m", "512", "-smp", "1",
            "-nodefaults", "-no-user-config", "-display", "none", "-device", "VGA",
            "-kernel", os.path.join(guest_dir, "vmlinuz"), "-initrd", os.path.join(guest_dir, "initrd.img"),
            "-append", "console=ttyS0 quiet",
            "-chardev", f"socket,id=serial0,path={serial_path},server=on,wait=on", "-serial", "chardev:serial0"]


def connect_unix(path: str, deadline: float, alive) -> socket.socket:
    while time.monotonic() < deadline:
        alive()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except OSError:
            sock.close()
            time.sleep(0.005)
    raise BenchmarkError(f"no QEMU serial socket at {path}")


def bare_qemu_power_on(guest_dir: str, tmp: str, run: int) -> tuple[float, float]:
    path = os.path.join(tmp, f"bare-{run}.sock")
    t0 = time.monotonic()
    proc = subprocess.Popen(bare_qemu_argv(guest_dir, path, f"bare-{run}"), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)

    def alive():
        if proc.poll() is not None:
            raise BenchmarkError(f"bare QEMU exited ({proc.returncode}): {proc.stderr.read().decode()[-1000:]}")

    try:
        sock = connect_unix(path, t0 + 30, alive)
        with sock:
            return watch_serial(sock, t0, t0 + 120, "bare QEMU")
    finally:
        stop_process(proc)
        proc.stderr.close()


class SimWithQemu(IpmiSim):
    """ipmi_sim whose power-on runs the same bare QEMU (lan.conf `startcmd`)."""

    def __init__(self, guest_dir: str):
        super().__init__()
        self.serial_path = os.path.join(self.tmp, "serial.sock")
        argv = bare_qemu_argv(guest_dir, self.serial_path, "ipmi-sim-guest")
        command = " ".join(f"'{a}'" for a in argv)  # the guest paths hold no quote
        # Chassis Control reaches `startcmd` through the system interface (channel 15),
        # which exists once a VM-side serial interface is configured; QEMU never
        # connects to it here (no ipmi-bmc-extern device), so power down is SIGTERM.
        vm_port = free_port(socket.SOCK_STREAM)
        with open(self.lan_conf, "a") as f:
            f.write(f'  serial 15 {HOST} {vm_port} codec VM\n'
                    f'  startcmd "{command}"\n  startnow false\n  poweroff_wait 0\n  kill_wait 5\n')

    def qemu_pids(self) -> list[int]:
        return [pid for pid in session_pids(self.proc.pid) if program_name(argv_of(pid)) == "qemu"]

    def stop(self) -> None:
        # a QEMU ipmi_sim started outlives it: end it too (it shares ipmi_sim's session)
        leftovers = self.qemu_pids() if self.proc is not None else []
        super().stop()
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def sim_power_on(sim: SimWithQemu, run: int) -> tuple[float, float]:
    client = Client(sim.port, SUITE, timeout=2.0)
    try:
        client.open()
        if os.path.exists(sim.serial_path):
            os.unlink(sim.serial_path)
        t0 = time.monotonic()
        chassis_control(client, CHASSIS_POWER_UP)
        sock = connect_unix(sim.serial_path, t0 + 30, sim.check_alive)
        with sock:
            result = watch_serial(sock, t0, t0 + 120, "ipmi_sim's QEMU")
        chassis_control(client, CHASSIS_POWER_DOWN)
        deadline = time.monotonic() + 20
        while sim.qemu_pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        return result
    finally:
        client.close()


def qemu_exec_seen(root: int, t0: float, done: threading.Event, out: list[float]) -> None:
    """Polls until the qemu-system process shows under `root`: seconds after t0 into `out`."""
    while not done.is_set():
        for pid in descendant_pids(root):
            argv = argv_of(pid)
            if argv and os.path.basename(argv[0]).startswith("qemu-system"):
                out.append(time.monotonic() - t0)
                return
        time.sleep(0.01)


def ours_power_on(bmc: QemuBmc, run: int, exec_times: list[float]) -> tuple[float, float]:
    """(first byte, banner) after Chassis Control; appends when QEMU was exec'd to exec_times."""
    client = Client(bmc.port, SUITE, timeout=5.0)
    done = threading.Event()
    try:
        client.open()
        console = connect_tcp(int(bmc.env["CONSOLE_PORT"]), time.monotonic() + 30, bmc.check_alive)
        with console:
            console.setblocking(False)
            try:  # whatever an earlier power-on left buffered
                while console.recv(65536):
                    pass
            except BlockingIOError:
                pass
            t0 = time.monotonic()
            watcher = threading.Thread(target=qemu_exec_seen, args=(bmc.proc.pid, t0, done, exec_times), daemon=True)
            watcher.start()
            chassis_control(client, CHASSIS_POWER_UP)
            return watch_serial(console, t0, t0 + 120, "qemu-bmc's TCP console")
    finally:
        done.set()
        client.close()


def ours_power_off(bmc: QemuBmc) -> None:
    client = Client(bmc.port, SUITE, timeout=5.0)
    try:
        client.open()
        chassis_control(client, CHASSIS_POWER_DOWN)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            qemu = [p for p in session_pids(bmc.proc.pid) if program_name(argv_of(p)) == "qemu"]
            if not qemu:
                return
            time.sleep(0.1)
        raise BenchmarkError("qemu-bmc's QEMU still runs 30 s after power down")
    finally:
        client.close()


# --- the benchmark ---------------------------------------------------------------------

def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def run(args: argparse.Namespace) -> Result:
    quick = args.quick
    repeats = max(1, args.startup_repeats or (1 if quick else 3))
    idle_seconds = args.idle_seconds or (2.0 if quick else 20.0)
    guest_dir = ensure_guest()
    notes: list[str] = []
    versions: dict[str, str] = {}
    starts: dict[str, list[float]] = {}
    docker_returned: list[float] = []

    docker_skip = "--no-docker" if args.no_docker else ensure_image(not quick, args.rebuild_image)
    if docker_skip:
        say(f"qemu-bmc under Docker skipped: {docker_skip}")
        notes.append(f"Start-up under Docker skipped: {docker_skip}.")

    # 1. start -> first IPMI answer, one peer at a time, the peers taking turns
    steps: dict[str, dict[str, float]] = {}  # qemu-bmc: the last start's milestones

    def timed_start(label: str, make, i: int) -> None:
        with ExitStack() as stack:
            peer = make()
            stack.callback(peer.stop)
            t0, t0_wall = time.monotonic(), time.time()
            peer.start()
            starts.setdefault(label, []).append(wait_first_answer(peer.port, t0, t0 + 60, peer.check_alive))
            if isinstance(peer, QemuBmc):
                with open(peer.log_path, errors="replace") as f:
                    steps[label] = timeline(f.read(), t0_wall)
        say(f"{label}: first answer {starts[label][-1]:.2f} s after exec (start {i + 1} of {repeats})")

    docker_group = None
    docker_keep: DockerBmc | None = None
    with ExitStack() as stack:
        for i in range(repeats):
            timed_start("ipmi_sim", IpmiSim, i)
            timed_start("pyghmi", PyghmiServer, i)
            timed_start("qemu-bmc (host)", lambda: QemuBmc(guest_dir), i)
            if docker_skip:
                continue
            box = DockerBmc()
            stack.callback(box.stop)
            t0_wall = time.time()
            t0 = box.start()
            docker_returned.append(box.run_returned)
            starts.setdefault("qemu-bmc (docker)", []).append(
                wait_first_answer(box.port, t0, t0 + 120, box.check_alive))
            steps["qemu-bmc (docker)"] = timeline(command_output("docker", "logs", "-t", box.name), t0_wall)
            say(f"qemu-bmc (docker): first answer {starts['qemu-bmc (docker)'][-1]:.2f} s after `docker run` "
                f"(it returned after {box.run_returned:.2f} s; start {i + 1} of {repeats})")
            if i < repeats - 1:
                box.stop()
            else:
                docker_keep = box  # kept for the idle measurement
        if docker_keep is not None:
            deadline = time.monotonic() + 120  # its TCG boot must not compete with the power-ons
            while not docker_keep.booted():
                docker_keep.check_alive()
                if time.monotonic() > deadline:
                    raise BenchmarkError("the container's guest did not boot within 120 s")
                time.sleep(1)
            docker_group = ProcessGroup("qemu-bmc (docker)", lambda: container_pids(docker_keep.container_id))
            versions["docker"] = command_output("docker", "version", "--format", "{{.Server.Version}}")
            versions["image"] = f"{IMAGE} " + command_output("docker", "image", "inspect", "-f",
                                                             "{{.Id}} built {{.Created}}", IMAGE)

        # 2. power-on -> first serial byte
        tmp = tempfile.mkdtemp(prefix="startup-bench-")
        stack.callback(shutil.rmtree, tmp, True)
        power: dict[str, list[tuple[float, float]]] = {}
        bmc = QemuBmc(guest_dir, no_vm=True)
        stack.callback(bmc.stop)
        sim = SimWithQemu(guest_dir)
        stack.callback(sim.stop)
        pyg = PyghmiServer()
        stack.callback(pyg.stop)
        bmc.start()
        sim.start()
        pyg.start()
        bmc.wait_ready(time.monotonic() + 120)
        sim.wait_ready(time.monotonic() + 15)
        pyg.wait_ready(time.monotonic() + 30)
        sim_problem = None
        qemu_exec: list[float] = []  # qemu-bmc: seconds from Chassis Control to QEMU's exec
        for i in range(repeats):  # interleaved: a change in the machine's load hits every peer alike
            if i:
                ours_power_off(bmc)
            power.setdefault("qemu-bmc", []).append(ours_power_on(bmc, i, qemu_exec))
            power.setdefault("bare QEMU", []).append(bare_qemu_power_on(guest_dir, tmp, i))
            if not sim_problem:
                try:
                    power.setdefault("ipmi_sim", []).append(sim_power_on(sim, i))
                except BenchmarkError as exc:
                    sim_problem = str(exc)
                    say(f"ipmi_sim power-on left out: {exc}")
                    power.pop("ipmi_sim", None)
            say(f"power-on {i + 1} of {repeats}, first serial byte / boot banner after: " + ", ".join(
                f"{k} {v[-1][0]:.2f}/{v[-1][1]:.2f} s" for k, v in power.items()))

        # 3. at rest: VM on and booted (the last power-on above), nothing asked of anyone
        time.sleep(min(3.0, idle_seconds))  # the last answers and log lines settle
        groups = [ProcessGroup("qemu-bmc (host)", lambda: descendant_pids(bmc.proc.pid)),
                  ProcessGroup("ipmi_sim", lambda: [sim.proc.pid]),
                  ProcessGroup("pyghmi", lambda: [pyg.proc.pid])]
        if docker_group is not None:
            groups.insert(0, docker_group)
        say(f"idle: {idle_seconds:g} s window, VM on and booted")
        cpu = idle_cpu(groups, idle_seconds)
        memory = {g.label: g.memory() for g in groups}
        for peer in (bmc, sim, pyg):
            peer.check_alive()
            versions.update(peer.versions())

    def med(label: str) -> float:
        return median(starts.get(label, []))

    def col(values: dict[str, float]) -> dict[str, float]:
        return {k: v for k, v in values.items() if v == v}  # NaN: not measured

    subject_start = "qemu-bmc (docker)" if "qemu-bmc (docker)" in starts else "qemu-bmc (host)"
    rows = [
        Row(NAME, f"start → first Get Device ID ({subject_start.split('(')[1].rstrip(')')})", "s",
            col({"qemu-bmc": med(subject_start), "ipmi_sim": med("ipmi_sim"), "pyghmi": med("pyghmi")}),
            True, FIRST_ANSWER_LIMIT_S, None, "ipmi_sim"),
    ]
    if subject_start != "qemu-bmc (host)":
        rows.append(Row(NAME, "start → first Get Device ID (host, supervisord)", "s",
                        {"qemu-bmc": med("qemu-bmc (host)")}, True, FIRST_ANSWER_LIMIT_S))
    rows += [
        Row(NAME, "power-on → first guest serial byte", "s",
            col({"qemu-bmc": median([p[0] for p in power["qemu-bmc"]]),
                 "ipmi_sim": median([p[0] for p in power.get("ipmi_sim", [])]),
                 BARE: median([p[0] for p in power["bare QEMU"]])}), True, None, None, BARE),
        Row(NAME, "power-on → guest boot banner", "s",
            col({"qemu-bmc": median([p[1] for p in power["qemu-bmc"]]),
                 "ipmi_sim": median([p[1] for p in power.get("ipmi_sim", [])]),
                 BARE: median([p[1] for p in power["bare QEMU"]])}), True, None, None, BARE),
    ]
    subject_idle = "qemu-bmc (docker)" if "qemu-bmc (docker)" in memory else "qemu-bmc (host)"

    def total(label: str, index: int) -> float:
        return sum(v[index] for v in memory[label].values())

    rows += [
        Row(NAME, f"control-plane RSS, all but QEMU ({subject_idle.split('(')[1].rstrip(')')})", "MiB",
            {"qemu-bmc": total(subject_idle, 0), "ipmi_sim": total("ipmi_sim", 0), "pyghmi": total("pyghmi", 0)},
            True, RSS_LIMIT_MIB, None, "ipmi_sim"),
        Row(NAME, f"control-plane PSS, all but QEMU ({subject_idle.split('(')[1].rstrip(')')})", "MiB",
            {"qemu-bmc": total(subject_idle, 1), "ipmi_sim": total("ipmi_sim", 1), "pyghmi": total("pyghmi", 1)},
            True, None, None, "ipmi_sim"),
        Row(NAME, f"control-plane idle CPU, VM on ({subject_idle.split('(')[1].rstrip(')')})", "% of a core",
            {"qemu-bmc": sum(cpu[subject_idle].values()), "ipmi_sim": sum(cpu["ipmi_sim"].values()),
             "pyghmi": sum(cpu["pyghmi"].values())}, True, IDLE_CPU_LIMIT_PCT, None, "ipmi_sim"),
    ]
    if subject_idle != "qemu-bmc (host)":
        rows += [Row(NAME, "control-plane RSS, all but QEMU (host)", "MiB", {"qemu-bmc": total("qemu-bmc (host)", 0)},
                     True, RSS_LIMIT_MIB),
                 Row(NAME, "control-plane idle CPU, VM on (host)", "% of a core",
                     {"qemu-bmc": sum(cpu["qemu-bmc (host)"].values())}, True, IDLE_CPU_LIMIT_PCT)]

    def breakdown(label: str) -> str:
        return ", ".join(f"{name} {rss:.1f}/{pss:.1f} MiB {cpu[label].get(name, 0.0):.2f} %"
                         for name, (rss, pss) in sorted(memory[label].items(), key=lambda kv: -kv[1][0]))

    notes += [
        f"Start-up: median of {repeats} start(s) per peer, each from the exec of the program (`docker run -d` for "
        f"the image) to the first Get Device ID answered inside an RMCP+ session (cipher suite {SUITE}, a fresh "
        f"session per probe, a probe every {POLL * 1000:.0f} ms, each waiting 250 ms for an answer); every start: "
        + "; ".join(f"{k} " + ", ".join(f"{v:.2f}" for v in vs) + " s" for k, vs in starts.items()) + "."
        + (f" `docker run -d` itself returned after {', '.join(f'{v:.2f}' for v in docker_returned)} s."
           if docker_returned else ""),
        "Start-up peers: the image under Docker (`docker run --cap-add NET_ADMIN --device /dev/net/tun "
        "--device /dev/kvm -e QEMU_ACCEL=tcg -p 127.0.0.1:PORT:623/udp`, default POWER_RESTORE_POLICY "
        "always-on, so its VM starts too); the same stack on the host (scripts/entrypoint.sh: check-config, "
        "supervisord, nats-server, the services, QEMU); ipmi_sim (lan.conf and command file of the IPMI "
        "benchmark); the pyghmi server (benchmarks/_pyghmi_bmc.py, a Python process).",
        f"Power-on: median of {repeats}; qemu-bmc: the stack up with POWER_RESTORE_POLICY=always-off, a viewer on "
        "its TCP console, t0 = Chassis Control (power up) sent in an open session; the first byte and the "
        f"boot banner ({BOOT_BANNER!r}) timed on that viewer (with `quiet` the guest prints nothing before the banner, so "
        "both are the boot time). bare QEMU: t0 = exec of `qemu-system-x86_64` "
        "with the same machine, guest and kernel command line (q35, TCG, 512 MiB, VGA, `console=ttyS0 quiet`), "
        "its serial on a unix socket QEMU waits on before it runs (so the watcher misses nothing). "
        + ("ipmi_sim: t0 = the same Chassis Control; its lan.conf `startcmd` execs that bare QEMU command "
           "(lan.conf `serial 15 ... codec VM` gives Chassis Control a system interface to act through; "
           "power down after each). The peers took turns, one power-on each per round." if not sim_problem else
           f"ipmi_sim with `startcmd` did not work here, so its cell is empty: {sim_problem}"),
        "Where qemu-bmc's start goes (the last start of each kind, seconds after the exec, from the times on "
        "its log lines; the host's IPMI line carries none): "
        + "; ".join(f"{label}: " + ", ".join(f"{name} {t:.2f}" for name, t in marks.items())
                    + f", first answer {starts[label][-1]:.2f}" for label, marks in steps.items())
        + ". Between exec and supervisord: the entrypoint's `qemu-bmc check-config` (a Python process) and "
        "supervisord's own start; supervisord then polls once (1 s) before it spawns anything; after the spawn "
        "the services' Python imports run side by side on the 2 CPUs (in the image they also compile every "
        "module first: the Dockerfile removes the venv's .pyc files), and the IPMI service opens sessions once "
        "it has read the persisted users from NATS.",
        "qemu-bmc's QEMU was exec'd " + ", ".join(f"{t:.2f}" for t in qemu_exec) + " s after the Chassis Control "
        "(the power agent asks supervisord, which starts the Python launcher that execs QEMU, paused until the "
        "console relay is attached); its guest then boots with more devices than the bare QEMU's (an IDE CD-ROM "
        "for virtual media, PCIe root ports for NIC hot-plug, the KCS interface, pvpanic, VNC).",
        "Every power-on, first byte / banner in s: "
        + "; ".join(f"{k} " + ", ".join(f"{a:.2f}/{b:.2f}" for a, b in vs) for k, vs in power.items()) + ".",
        f"Control plane at rest: VM on, guest booted and idle, no client; CPU over the same {idle_seconds:g} s "
        "window for every peer (utime+stime from /proc/<pid>/stat, % of one core); memory after it: VmRSS "
        "summed over the processes (the target is on it) and PSS (proportional set size: shared library "
        "pages split among the processes sharing them) from /proc/<pid>/smaps_rollup. QEMU is left out; "
        "ipmi_sim's own QEMU was off by then. Per program (RSS/PSS, CPU): "
        + "; ".join(f"{g.label}: {breakdown(g.label)}" for g in groups) + ".",
    ]
    return Result(rows, notes, versions)
