"""The `qemu` program's command: read the plan the power agent wrote for this
power-on and exec QEMU with it. supervisord's static command line therefore
never limits what a power-on can change (boot order, media, NICs)."""

from __future__ import annotations

import json
import os
import shlex
import sys

from bus.config import Settings
from bus.logs import exec_with_prefix

PLAN_NAME = "qemu-plan.json"


def plan_path(run_dir: str) -> str:
    return os.path.join(run_dir, PLAN_NAME)


def write_plan(run_dir: str, argv: list[str]) -> None:
    path = plan_path(run_dir)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"v": 1, "argv": argv}, f)
    os.replace(tmp, path)


def main() -> None:
    settings = Settings.from_env()
    try:
        with open(plan_path(settings.run_dir)) as f:
            argv = json.load(f)["argv"]
    except (OSError, ValueError, KeyError) as exc:
        sys.exit(f"qemu: no usable plan at {plan_path(settings.run_dir)} ({exc}); "
                 "power the VM on with `qemu-bmc power on`, not `supervisorctl start qemu`")
    print("qemu: " + shlex.join(argv), flush=True)  # the exact command line, for the log
    exec_with_prefix("qemu", argv)


if __name__ == "__main__":
    main()
