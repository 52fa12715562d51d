"""The benchmark code keeps working: tiny runs of each benchmark against its peers
(qemu-bmc's whole stack, OpenIPMI's ipmi_sim, pyghmi's BMC server, a bare QEMU).
Speed is never asserted here: only that every row holds a number."""

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


def test_ipmi_benchmark_quick_runs_against_ipmi_sim_and_pyghmi(guest_dir):
    if shutil.which("ipmi_sim") is None:
        pytest.fail("ipmi_sim is missing: the IPMI benchmark compares qemu-bmc against OpenIPMI's ipmi_sim. "
                    "Install the Debian package: `apt-get install -y openipmi` (tests/run_tests.sh does).")
    env = dict(os.environ, QEMU_BMC_GUEST_CACHE=guest_dir)
    result = subprocess.run([sys.executable, "-m", "benchmarks", "ipmi", "--quick"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, (f"`python -m benchmarks ipmi --quick` failed ({result.returncode}):\n"
                                    f"{result.stderr[-6000:]}\n{result.stdout}")
    header, rows = table_rows(result.stdout)
    for peer in ("qemu-bmc", "ipmi_sim", "pyghmi"):
        assert peer in header, header
    columns = [header.index(peer) for peer in ("qemu-bmc", "ipmi_sim", "pyghmi")]
    ipmi_rows = [row for row in rows if row[0] == "ipmi"]
    for wanted in MEASURED:
        matching = [row for row in ipmi_rows if wanted in row[1]]
        assert matching, f"no {wanted!r} row in:\n{result.stdout}"
        for row in matching:
            for column in columns:
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


STARTUP_MEASURED = {  # metric (up to its first parenthesis) -> the columns that must hold a number
    "start → first Get Device ID": ("qemu-bmc", "ipmi_sim", "pyghmi"),
    "power-on → first guest serial byte": ("qemu-bmc", "ipmi_sim", "bare QEMU serial"),
    "control-plane RSS, all but QEMU": ("qemu-bmc", "ipmi_sim", "pyghmi"),
    "control-plane idle CPU, VM on": ("qemu-bmc", "ipmi_sim", "pyghmi"),
}


def test_startup_benchmark_quick_measures_start_power_on_and_idle_control_plane(guest_dir):
    for tool in ("ipmi_sim", "qemu-system-x86_64"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: the start-up benchmark compares with OpenIPMI's ipmi_sim and a bare "
                        "QEMU (`apt-get install -y openipmi qemu-system-x86`; tests/run_tests.sh does).")
    env = dict(os.environ, QEMU_BMC_GUEST_CACHE=guest_dir)
    # the image under Docker is measured when it was built already (--quick builds none)
    result = subprocess.run([sys.executable, "-m", "benchmarks", "startup", "--quick"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (f"`python -m benchmarks startup --quick` failed ({result.returncode}):\n"
                                    f"{result.stderr[-6000:]}\n{result.stdout}")
    header, rows = table_rows(result.stdout)
    startup_rows = [row for row in rows if row[0] == "startup"]
    for metric, columns in STARTUP_MEASURED.items():
        matching = [row for row in startup_rows if row[1].startswith(metric)]
        assert matching, f"no {metric!r} row in:\n{result.stdout}"
        row = matching[0]
        for column in columns:
            assert column in header, header
            cell = row[header.index(column)]
            value = float(cell)  # a number, whatever it is ("n/a" or "-" would fail here)
            assert value >= 0 if "CPU" in metric else value > 0, (metric, column, cell)
    # the per-process breakdown names every program of the control plane
    for program in ("supervisord", "nats-server", "ipmi", "power", "console"):
        assert f" {program} " in result.stdout, f"{program} missing from the breakdown:\n{result.stdout}"
