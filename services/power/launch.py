"""The `qemu` program's command: read the plan the power agent wrote for this
power-on and exec QEMU with it. supervisord's static command line therefore
never limits what a power-on can change (boot order, media, NICs).

A plan may name devices to hand QEMU as open file descriptors (macvtap NICs:
`-netdev tap,fd=N`). They are opened after the log prefixer has forked, so only
QEMU holds them (a second holder of a macvtap would be a second queue that
nobody reads), and inherited across exec.
"""

from __future__ import annotations

import json
import os
import shlex
import sys

from bus.config import Settings
from bus.logs import exec_with_prefix

PLAN_NAME = "qemu-plan.json"
OPEN_FDS_FLAG = "--open-fds-and-exec"


def plan_path(run_dir: str) -> str:
    return os.path.join(run_dir, PLAN_NAME)


def write_plan(run_dir: str, argv: list[str], fds: dict[str, str] | None = None) -> None:
    """Write the plan; `fds` maps placeholders in argv to device paths to open."""
    path = plan_path(run_dir)
    tmp = path + ".tmp"
    plan: dict = {"v": 1, "argv": argv}
    if fds:
        plan["fds"] = fds
    with open(tmp, "w") as f:
        json.dump(plan, f)
    os.replace(tmp, path)


def read_plan(run_dir: str) -> dict:
    try:
        with open(plan_path(run_dir)) as f:
            plan = json.load(f)
        plan["argv"]  # noqa: B018 - a plan without argv is no plan
        return plan
    except (OSError, ValueError, KeyError, TypeError) as exc:
        sys.exit(f"qemu: no usable plan at {plan_path(run_dir)} ({exc}); "
                 "power the VM on with `qemu-bmc power on`, not `supervisorctl start qemu`")


def open_fds(argv: list[str], fds: dict[str, str]) -> list[str]:
    """Open each device (inheritable) and put its fd number where its placeholder is."""
    for placeholder, path in fds.items():
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError as exc:
            sys.exit(f"qemu: cannot open {path} for the VM: {exc}")
        os.set_inheritable(fd, True)
        argv = [arg.replace(placeholder, str(fd)) for arg in argv]
    return argv


def main() -> None:
    settings = Settings.from_env()
    plan = read_plan(settings.run_dir)
    argv, fds = plan["argv"], plan.get("fds") or {}
    if sys.argv[1:2] == [OPEN_FDS_FLAG]:
        # second stage, already behind the prefixer: open the devices, then QEMU
        argv = open_fds(argv, fds)
        print(shlex.join(argv), flush=True)  # the prefixer puts "qemu: " in front
        os.execvp(argv[0], argv)
    if fds:
        exec_with_prefix("qemu", [sys.executable, "-m", "services.power.launch", OPEN_FDS_FLAG])
    print("qemu: " + shlex.join(argv), flush=True)  # the exact command line, for the log
    exec_with_prefix("qemu", argv)


if __name__ == "__main__":
    main()
