"""`qemu-bmc-console`: the serial relay program run by supervisord."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from bus import BusUnavailable, ConfigError, Settings, Subjects, connect
from bus.logs import setup_logging
from services.console.relay import SerialRelay

log = setup_logging("console")


async def run() -> None:
    settings = Settings.from_env()
    bus = await connect(settings.nats_url, "console")
    relay = SerialRelay(bus, Subjects(settings.node), os.path.join(settings.run_dir, "serial.sock"))
    await relay.start()
    task = asyncio.create_task(relay.run())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    task.cancel()
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
