"""`qemu-bmc-net`: the network program run by supervisord.

Watches the interfaces meant for the VM, wires each to a tap or macvtap
(NET_MODE) as it appears, unwires it when it goes, and answers the NIC plan the
power agent builds QEMU's NICs from. A bad configuration exits with status 2
(supervisord does not restart it); the rest of the BMC keeps running.
"""

from __future__ import annotations

import asyncio
import os

from services.lean import leave_out_aiohttp

leave_out_aiohttp()  # before bus (and so nats-py) is imported

from bus import Settings, Subjects, connect
from bus.logs import setup_logging
from bus.program import run_service, stop_requested
from services.net.plan import NetConfig
from services.net.watcher import LinkWatcher
from services.net.wiring import Wiring, check_host

log = setup_logging("net")


async def run() -> None:
    settings = Settings.from_env()
    config = NetConfig.from_env(os.environ)
    check_host(config.mode)
    bus = await connect(settings.nats_url, "net")
    watcher = LinkWatcher(bus, Subjects(settings.node), config, settings.node, Wiring(config.mode))
    await watcher.start()
    task = asyncio.create_task(watcher.run())
    await stop_requested()
    task.cancel()
    await bus.close()


def main() -> None:
    run_service(run, log)


if __name__ == "__main__":
    main()
