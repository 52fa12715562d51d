"""`qemu-bmc-console`: the serial relay program run by supervisord."""

from __future__ import annotations

import asyncio
import os

from services.lean import leave_out_aiohttp

leave_out_aiohttp()  # before bus (and so nats-py) is imported

from bus import ConfigError, Settings, Subjects, connect
from bus.config import env_int, env_str
from bus.logs import setup_logging
from bus.program import run_service, stop_requested
from services.console.relay import SerialRelay
from services.console.rotation import ConsoleLog, rotate_if_needed
from services.console.tcp import TcpConsole

log = setup_logging("console")


async def rotate_loop(path: str, max_bytes: int, keep: int) -> None:
    while True:
        await asyncio.sleep(5)
        try:
            rotate_if_needed(path, max_bytes, keep)
        except OSError as exc:
            log.warning("cannot rotate %s: %s", path, exc)


async def run() -> None:
    settings = Settings.from_env()
    port = env_int(os.environ, "CONSOLE_PORT", 5000, 0, 65535)
    listen = env_str(os.environ, "CONSOLE_LISTEN", "0.0.0.0")
    log_max = env_int(os.environ, "CONSOLE_LOG_MAX_BYTES", 10 * 1024 * 1024, 64 * 1024, 2 ** 40)
    log_keep = env_int(os.environ, "CONSOLE_LOG_KEEP", 3, 0, 100)
    bus = await connect(settings.nats_url, "console")
    tcp = TcpConsole(send_to_guest=lambda data: relay.to_guest(data))
    console_log = ConsoleLog(os.path.join(settings.log_dir, "console.log"), log_max, log_keep)
    relay = SerialRelay(bus, Subjects(settings.node), os.path.join(settings.run_dir, "serial.sock"),
                        on_output=tcp.broadcast, console_log=console_log)
    await relay.start()
    if port:
        try:
            await tcp.start(listen, port)
        except OSError as exc:
            raise ConfigError("CONSOLE_PORT", f"cannot listen on {listen}:{port}: {exc.strerror}") from None
    task = asyncio.create_task(relay.run())
    rotation = asyncio.create_task(rotate_loop(os.path.join(settings.log_dir, "console.raw.log"), log_max, log_keep))
    await stop_requested()
    task.cancel()
    rotation.cancel()
    await tcp.close()
    await bus.close()


def main() -> None:
    run_service(run, log)


if __name__ == "__main__":
    main()
