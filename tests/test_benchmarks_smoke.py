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
