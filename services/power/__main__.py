"""`qemu-bmc-power`: the power agent program run by supervisord."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from bus import BusUnavailable, ConfigError, connect, key_value
from bus.logs import setup_logging
from services.power.agent import PowerAgent
from services.power.config import power_config_from_env
from services.power.supervisor import SupervisorControl

log = setup_logging("power")


async def run() -> None:
    config = power_config_from_env()
    log.info("node %s, accel %s, %d MiB, %d vCPU, %s, restore policy %s", config.bus.node,
             config.vm.accel, config.vm.memory_mib, config.vm.cpus,
             f"disk {config.vm.disk}" if config.vm.disk else "embedded default guest",
             config.restore_policy)
    bus = await connect(config.bus.nats_url, "power")
    kv = await key_value(bus, "qemu_bmc_power")
    supervisor = SupervisorControl(os.path.join(config.bus.run_dir, "supervisor.sock"))
    agent = PowerAgent(config, bus, supervisor, kv)
    await agent.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    # SIGTERM from a `supervisorctl restart power` leaves the VM alone; SIGTERM while
    # supervisord itself shuts down (docker stop) powers the guest off gracefully
    try:
        supervisord_state = await supervisor.state()
    except Exception as exc:
        supervisord_state = f"unknown ({exc})"
    shutting_down = supervisord_state == "SHUTDOWN"
    log.info("stopping (supervisord %s)", supervisord_state)
    if shutting_down:
        await agent.shutdown_guest(config.soft_off_timeout)
    await agent.close()
    await bus.close()


def main() -> None:
    try:
        asyncio.run(run())
    except ConfigError as exc:
        log.error("bad configuration: %s", exc)
        sys.exit(2)
    except BusUnavailable as exc:
        log.error("%s", exc)
        sys.exit(1)


if __name__ == "__main__":
    main()
