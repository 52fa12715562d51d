"""`qemu-bmc`: the operator's command inside the container.

  qemu-bmc status            power state, services, IPMI counters
  qemu-bmc power ACTION      on | off | soft | reset | cycle | nmi | status
  qemu-bmc trace [SUBJECT]   print every bus message as it passes (default bmc.>)
  qemu-bmc console           the serial console over the bus: history, then live (Ctrl-] leaves)
  qemu-bmc check-config      validate the environment; exit 2 naming a bad variable
  qemu-bmc health            exit 0 when every program runs and the BMC answers IPMI (HEALTHCHECK)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import sys

from bus import BusError, ConfigError, Settings, Subjects, connect
from bus.messages import IpmiStats, PowerGet, PowerSet, PowerStatus, StatsGet


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        sys.exit(f"qemu-bmc: bad configuration: {exc}")


async def _status(args) -> int:
    settings = _settings()
    subjects = Subjects(settings.node)
    print(f"node      {settings.node}")
    try:
        bus = await connect(settings.nats_url, "cli", wait=args.timeout)
    except BusError as exc:
        print(f"bus       unreachable: {exc}")
        return 1
    code = 0
    try:
        try:
            power = await bus.request(subjects.power_get, PowerGet(), PowerStatus, args.timeout)
            since = datetime.datetime.fromtimestamp(power.since).isoformat(timespec="seconds")
            print(f"power     {power.state} (vm {power.vm_status}, last change: {power.last_cause or '-'} "
                  f"at {since}, restore policy {power.restore_policy})")
        except BusError as exc:
            print(f"power     unknown: {exc}")
            code = 1
        try:
            stats = await bus.request(subjects.ipmi_stats, StatsGet(), IpmiStats, args.timeout)
            dropped = ", ".join(f"{k} {v}" for k, v in sorted(stats.dropped.items())) or "none"
            print(f"ipmi      {stats.sessions_active} session(s) active, {stats.sessions_opened} opened, "
                  f"{stats.auth_failures} auth failure(s), {stats.datagrams} datagrams, dropped: {dropped}")
        except BusError as exc:
            print(f"ipmi      unknown: {exc}")
            code = 1
    finally:
        await bus.close()
    sock = os.path.join(settings.run_dir, "supervisor.sock")
    try:
        from services.power.supervisor import SupervisorControl
        for proc in await SupervisorControl(sock).all_processes():
            print(f"program   {proc['name']:<8} {proc['statename']:<8} {proc['description']}")
    except Exception as exc:
        print(f"programs  unknown: {exc}")
    return code


async def _power(args) -> int:
    settings = _settings()
    subjects = Subjects(settings.node)
    try:
        bus = await connect(settings.nats_url, "cli", wait=args.timeout)
    except BusError as exc:
        print(f"qemu-bmc: {exc}", file=sys.stderr)
        return 1
    try:
        if args.action == "status":
            status = await bus.request(subjects.power_get, PowerGet(), PowerStatus, args.timeout)
        else:
            status = await bus.request(subjects.power_set, PowerSet(action=args.action, source="cli"),
                                       PowerStatus, max(args.timeout, 30))
        print(f"power {status.state}")
        return 0
    except BusError as exc:
        print(f"qemu-bmc: power {args.action}: {exc}", file=sys.stderr)
        return 1
    finally:
        await bus.close()


def _render(subject: str, data: bytes) -> str:
    if ".console." in subject and not subject.endswith(".history"):
        return repr(data)[1:]  # raw bytes, escaped so control characters stay visible
    try:
        return json.dumps(json.loads(data), separators=(",", ":"))
    except ValueError:
        return repr(data)[1:]


async def _trace(args) -> int:
    settings = _settings()
    try:
        bus = await connect(settings.nats_url, "trace", wait=args.timeout)
    except BusError as exc:
        print(f"qemu-bmc: {exc}", file=sys.stderr)
        return 1
    done = asyncio.Event()
    count = 0

    async def show(msg) -> None:
        nonlocal count
        stamp = datetime.datetime.now().strftime("%H:%M:%S.%f")[:-3]
        kind = "reply" if msg.subject.startswith("_INBOX.") else ("request" if msg.reply else "event")
        print(f"{stamp} {kind:<7} {msg.subject} {_render(msg.subject, msg.data)}", flush=True)
        count += 1
        if args.count and count >= args.count:
            done.set()

    for subject in args.subjects or ["bmc.>"]:
        await bus.subscribe_raw(subject, show)
    if not args.no_replies:
        await bus.subscribe_raw("_INBOX.>", show)
    try:
        if args.seconds:
            await asyncio.wait_for(done.wait(), args.seconds)
        else:
            await done.wait()
    except asyncio.TimeoutError:
        pass
    finally:
        await bus.close()
    return 0


ESCAPE = b"\x1d"  # Ctrl-], as in telnet


async def _console(args) -> int:
    """Attach to the serial console over the bus: the recent history, then live output;
    keystrokes go to the guest. Ctrl-] leaves."""
    import termios
    import tty

    settings = _settings()
    subjects = Subjects(settings.node)
    try:
        bus = await connect(settings.nats_url, "console-cli", wait=args.timeout)
    except BusError as exc:
        print(f"qemu-bmc: {exc}", file=sys.stderr)
        return 1
    out = sys.stdout.buffer
    live: list[bytes] = []
    history_done = False

    async def on_output(msg) -> None:
        if history_done:
            out.write(msg.data)
            out.flush()
        else:
            live.append(msg.data)

    await bus.subscribe_raw(subjects.console_out, on_output)  # first, so nothing falls between
    try:
        reply = await bus.nc.request(subjects.console_history, b"{}", timeout=args.timeout)
        out.write(reply.data)
    except Exception as exc:  # no history is no reason not to show the live console
        print(f"qemu-bmc: no console history ({exc.__class__.__name__})", file=sys.stderr)
    for chunk in live:
        out.write(chunk)
    history_done = True
    out.flush()

    loop = asyncio.get_running_loop()
    leave = asyncio.Event()
    stdin = sys.stdin.fileno()
    saved = termios.tcgetattr(stdin) if os.isatty(stdin) else None
    if saved is not None:
        # raw before the banner invites typing, and without TCSAFLUSH: keys typed
        # right after the banner must reach the guest, not be echoed and discarded
        tty.setraw(stdin, termios.TCSANOW)
    sys.stderr.write("\r\n[qemu-bmc console: Ctrl-] leaves]\r\n")
    sys.stderr.flush()

    def on_stdin() -> None:
        data = os.read(stdin, 1024)
        if not data or ESCAPE in data:
            data = data.split(ESCAPE, 1)[0]
            leave.set()
        if data:
            loop.create_task(bus.publish(subjects.console_in, data))

    try:
        loop.add_reader(stdin, on_stdin)
        if args.seconds:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(leave.wait(), args.seconds)
        else:
            await leave.wait()
    finally:
        loop.remove_reader(stdin)
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        await bus.close()
    sys.stderr.write("\r\n[qemu-bmc console: left]\r\n")
    return 0


def _health(args) -> int:
    """Healthy: supervisord's programs are up (qemu may be off) and the BMC answers a
    local IPMI request (Get Channel Authentication Capabilities, no session needed)."""
    import socket

    from services.ipmi import wire
    from services.power.supervisor import SupervisorControl

    settings = _settings()
    problems = []
    try:
        processes = asyncio.run(SupervisorControl(os.path.join(settings.run_dir, "supervisor.sock")).all_processes())
        for proc in processes:
            if proc["name"] != "qemu" and proc["statename"] != "RUNNING":
                problems.append(f"{proc['name']} is {proc['statename']}")
            if proc["name"] == "qemu" and proc["statename"] in ("FATAL", "BACKOFF"):
                problems.append(f"qemu is {proc['statename']}")
    except Exception as exc:
        problems.append(f"supervisord: {exc}")
    port = int(os.environ.get("IPMI_PORT", "623") or 623)
    request = wire.build_v15(wire.build_ipmi_request(0x06, 0x38, b"\x8e\x04"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(args.timeout)
        try:
            sock.sendto(request, ("127.0.0.1", port))
            answer = wire.parse_v15(wire.parse_rmcp(sock.recv(512)).body).message
            if answer[6] != 0:
                problems.append(f"IPMI answered completion code {answer[6]:#04x}")
        except (OSError, wire.MalformedPacket) as exc:
            problems.append(f"no IPMI answer on 127.0.0.1:{port}/udp: {exc}")
    if problems:
        print("unhealthy: " + "; ".join(problems))
        return 1
    print("healthy")
    return 0


def _check_config(_args) -> int:
    """Validate every service's configuration the way each service will at start."""
    from services.ipmi.config import ipmi_config_from_env
    from services.net.plan import NetConfig
    from services.power.config import power_config_from_env
    from services.redfish.config import redfish_config_from_env
    try:
        power_config_from_env()
        config = ipmi_config_from_env()
        redfish_config_from_env()
    except ConfigError as exc:
        print(f"qemu-bmc: bad configuration: {exc}", file=sys.stderr)
        return 2
    try:
        NetConfig.from_env(os.environ)
    except ConfigError as exc:
        # the net program stops on it by itself; the BMC keeps answering IPMI
        print(f"qemu-bmc: warning: bad network configuration, the VM gets no NICs: {exc}", file=sys.stderr)
    for warning in config.warnings:
        print(f"qemu-bmc: warning: {warning}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="qemu-bmc", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the bus (default 5)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="power state, programs and IPMI counters")
    p = sub.add_parser("power", help="power control")
    p.add_argument("action", choices=["on", "off", "soft", "reset", "cycle", "nmi", "status"])
    t = sub.add_parser("trace", help="print bus messages as they pass")
    t.add_argument("subjects", nargs="*", help="subjects to watch (default: bmc.>)")
    t.add_argument("--seconds", type=float, default=0, help="stop after this long")
    t.add_argument("--count", type=int, default=0, help="stop after this many messages")
    t.add_argument("--no-replies", action="store_true", help="leave out request replies")
    c = sub.add_parser("console", help="the serial console over the bus (Ctrl-] leaves)")
    c.add_argument("--seconds", type=float, default=0, help="leave after this long")
    sub.add_parser("check-config", help="validate the configuration variables")
    sub.add_parser("health", help="exit 0 when the programs run and the BMC answers IPMI")
    args = parser.parse_args(argv)
    if args.command == "check-config":
        sys.exit(_check_config(args))
    if args.command == "health":
        sys.exit(_health(args))
    runner = {"status": _status, "power": _power, "trace": _trace, "console": _console}[args.command]
    try:
        sys.exit(asyncio.run(runner(args)))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
