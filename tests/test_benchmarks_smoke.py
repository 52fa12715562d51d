"""The benchmark code keeps working: a tiny IPMI benchmark run against both peers
(qemu-bmc's whole stack and OpenIPMI's ipmi_sim). Speed is never asserted here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from helpers import REPO

pytestmark = pytest.mark.vm  # the qemu-bmc side boots the test guest under QEMU

MEASURED = ("Get Chassis Status in-session p50", "Get Chassis Status in-session p99",
            "session set-ups, sequential", "workers", "ipmitool power status wall time")


def table_rows(stdout: str) -> tuple[list[str], list[list[str]]]:
    lines = [line for line in stdout.splitlines() if line.startswith("|")]
    assert len(lines) >= 3, f"no table in the output:\n{stdout}"
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    return cells[0], cells[2:]


def test_ipmi_benchmark_quick_runs_against_both_peers(guest_dir):
    if shutil.which("ipmi_sim") is None:
        pytest.fail("ipmi_sim is missing: the IPMI benchmark compares qemu-bmc against OpenIPMI's ipmi_sim. "
                    "Install the Debian package: `apt-get install -y openipmi` (tests/run_tests.sh does).")
    env = dict(os.environ, QEMU_BMC_GUEST_CACHE=guest_dir)
    result = subprocess.run([sys.executable, "-m", "benchmarks", "ipmi", "--quick"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, (f"`python -m benchmarks ipmi --quick` failed ({result.returncode}):\n"
                                    f"{result.stderr[-6000:]}\n{result.stdout}")
    header, rows = table_rows(result.stdout)
    assert "qemu-bmc" in header and "ipmi_sim" in header, header
    ours, theirs = header.index("qemu-bmc"), header.index("ipmi_sim")
    ipmi_rows = [row for row in rows if row[0] == "ipmi"]
    for wanted in MEASURED:
        matching = [row for row in ipmi_rows if wanted in row[1]]
        assert matching, f"no {wanted!r} row in:\n{result.stdout}"
        for row in matching:
            for column in (ours, theirs):
                value = float(row[column])  # a number in both columns, whatever it is
                assert value > 0, row
    assert "cipher suite" in result.stdout  # the notes say which suite was used


CONSOLE_MEASURED = {  # metric -> the columns that must hold a number
    "SOL keystroke echo p50": ("qemu-bmc", "ipmi_sim"), "SOL keystroke echo p99": ("qemu-bmc", "ipmi_sim"),
    "SOL bulk output": ("qemu-bmc", "ipmi_sim"), "SOL bulk lines lost": ("qemu-bmc", "ipmi_sim"),
    "TCP console keystroke echo p50": ("qemu-bmc", "bare QEMU serial"),
    "TCP console keystroke echo p99": ("qemu-bmc", "bare QEMU serial"),
    "TCP console bulk output": ("qemu-bmc", "bare QEMU serial"),
    "TCP console bulk lines lost": ("qemu-bmc", "bare QEMU serial"),
}


def test_console_benchmark_quick_measures_sol_tcp_and_ipmi_sim_sol(guest_dir):
    for tool in ("ipmi_sim", "ipmitool", "qemu-system-x86_64"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: the console benchmark drives SOL with ipmitool and compares with "
                        "OpenIPMI's ipmi_sim wired to a second QEMU (`apt-get install -y openipmi ipmitool "
                        "qemu-system-x86`; tests/run_tests.sh does).")
    env = dict(os.environ, QEMU_BMC_GUEST_CACHE=guest_dir)
    result = subprocess.run([sys.executable, "-m", "benchmarks", "console", "--quick"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, (f"`python -m benchmarks console --quick` failed ({result.returncode}):\n"
                                    f"{result.stderr[-6000:]}\n{result.stdout}")
    header, rows = table_rows(result.stdout)
    console_rows = {row[1].rsplit(" (", 1)[0]: row for row in rows if row[0] == "console"}
    for metric, columns in CONSOLE_MEASURED.items():
        assert metric in console_rows, f"no {metric!r} row in:\n{result.stdout}"
        for column in columns:
            assert column in header, header
            cell = console_rows[metric][header.index(column)]
            value = float(cell)  # a number, whatever it is ("n/a" or "-" would fail here)
            assert value >= 0 if "lost" in metric else value > 0, (metric, column, cell)
    assert "sol \"tcp:127.0.0.1:" in result.stdout  # the notes say how ipmi_sim's SOL was wired
