"""What every service program does around its own work: wait for SIGTERM/SIGINT,
and turn the two start-up failures into clear exit statuses for supervisord."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Awaitable, Callable

from bus.client import BusUnavailable
from bus.config import ConfigError


async def stop_requested() -> None:
    """Return once supervisord (or a person) asks the program to stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def run_service(run: Callable[[], Awaitable[None]], log: logging.Logger) -> None:
    """Run a service; exit 2 on bad configuration (supervisord does not retry it),
    1 when NATS cannot be reached (it does)."""
    try:
        asyncio.run(run())
    except ConfigError as exc:
        log.error("bad configuration: %s", exc)
        sys.exit(2)
    except BusUnavailable as exc:
        log.error("%s", exc)
        sys.exit(1)
