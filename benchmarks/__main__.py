"""`python -m benchmarks [NAME ...] [--quick] [--doc PATH]`: run the benchmark modules,
print one table, optionally write it with the machine and versions to a Markdown file."""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import pkgutil
import platform
import signal
import sys
import time

import benchmarks
from benchmarks import Result, table


def discover() -> dict:
    """Every module of this package with a `run(args)`: name -> module."""
    found = {}
    for info in pkgutil.iter_modules(benchmarks.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"benchmarks.{info.name}")
        if callable(getattr(module, "run", None)):
            found[getattr(module, "NAME", info.name)] = module
    return found


def machine() -> dict[str, str]:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib = "?"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_gib = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                    break
    except OSError:
        pass
    distro = "?"
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    distro = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return {"CPUs (nproc)": str(os.cpu_count()), "CPU": model, "memory": mem_gib,
            "OS": f"{distro}, Linux {platform.release()}", "Python": platform.python_version(),
            "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def write_doc(path: str, results: dict[str, Result], started: datetime.datetime, seconds: float,
              host: dict[str, str]) -> None:
    rows = [row for r in results.values() for row in r.rows]
    versions: dict[str, str] = {}
    for r in results.values():
        versions.update(r.versions)
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `./benchmarks/run.sh` on {started:%Y-%m-%d %H:%M} UTC ({seconds:.0f} s for the whole run).",
        "Every number below comes from that one run; run it again to refresh this page.",
        "",
        table(rows),
        "",
        f"\"{benchmarks.SUBJECT} slowdown\" is how many times worse qemu-bmc is than the reference column "
        "(its latency divided by the reference's, or the reference's rate divided by its rate): below 1 "
        "qemu-bmc is faster. Targets (from the benchmark issues: p50 ≤ 1 ms in-session, ≥ 200 session "
        "set-ups/s, qemu-bmc within 1.5× of ipmi_sim; first IPMI answer ≤ 2 s after start; control plane "
        "≤ 150 MiB RSS and < 1 % of a core when idle) are checked on the qemu-bmc column; they are never "
        "asserted in tests.",
        "",
        "## Machine",
        "",
        *(f"- {k}: {v}" for k, v in host.items()),
        "",
        "## Versions",
        "",
        *(f"- {k}: {v}" for k, v in versions.items()),
        "",
        "## How",
        "",
        *(f"- {note}" for r in results.values() for note in r.notes),
        "",
        "The machine was shared: other people's builds and test suites (QEMU guests among them) ran on the "
        "same 2 CPUs during this run, which the load averages above show. "
        "The peers ran on the same machine in the same run, each measurement against one peer then the "
        "next; the load generator (Python, tests/rmcp_console.py) shares the CPUs with them. Absolute "
        "numbers move with the machine and what else runs on it (see the load average above: on a shared "
        "machine the p99s mostly measure scheduling noise); the side-by-side ratios are the stabler figures.",
        "",
    ]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    modules = discover()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run (default all: {', '.join(modules)})")
    parser.add_argument("--quick", action="store_true", help="a handful of requests: checks the code, not the speed")
    parser.add_argument("--doc", metavar="PATH", help="also write the table, machine and versions to this Markdown file")
    for module in modules.values():
        if hasattr(module, "add_arguments"):
            module.add_arguments(parser)
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in modules]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)} (have: {', '.join(modules)})")
    selected = args.names or list(modules)

    def interrupted(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")  # unwinds: every benchmark stops what it started

    signal.signal(signal.SIGTERM, interrupted)
    started = datetime.datetime.now(datetime.timezone.utc)
    host = machine()
    t0 = time.monotonic()
    results: dict[str, Result] = {}
    failed = []
    for name in selected:
        try:
            results[name] = modules[name].run(args)
        except KeyboardInterrupt as exc:
            print(f"benchmark {name} interrupted ({exc or 'Ctrl-C'}); stopped what it started", file=sys.stderr)
            return 130
        except Exception as exc:  # one broken benchmark must not hide the others
            print(f"benchmark {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed.append(name)
    rows = [row for r in results.values() for row in r.rows]
    if rows:
        print(table(rows))
        print()
        for r in results.values():
            for note in r.notes:
                print(f"- {note}")
    if args.doc and not failed:
        host["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        write_doc(args.doc, results, started, time.monotonic() - t0, host)
        print(f"\nwrote {args.doc}", file=sys.stderr)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
