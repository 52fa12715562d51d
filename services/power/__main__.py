"""`qemu-bmc-power`: the power agent program run by supervisord."""

from __future__ import annotations

import os

from services.lean import leave_out_aiohttp

leave_out_aiohttp()  # before bus (and so nats-py) is imported

from bus import connect, key_value
from bus.logs import setup_logging
from bus.program import run_service, stop_requested
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
    await stop_requested()
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
    run_service(run, log)


if __name__ == "__main__":
    main()
