"""`qemu-bmc-redfish`: the Redfish front end program run by supervisord."""

from __future__ import annotations

import logging
import ssl

from aiohttp import web

from bus import ConfigError, Subjects, connect
from bus.config import bmc_uuid, system_uuid
from bus.logs import setup_logging
from bus.program import run_service, stop_requested
from qemu_bmc import __version__
from services.redfish.app import RedfishService
from services.redfish.config import RedfishConfig, redfish_config_from_env
from services.redfish.media import media_fetcher
from services.redfish.resources import ServiceInfo
from services.redfish.tls import ensure_self_signed, server_context
from services.redfish.webconsole import WebConsole

log = setup_logging("redfish")


def tls_context(config: RedfishConfig) -> ssl.SSLContext:
    if config.tls_cert:
        cert, key = config.tls_cert, config.tls_key
    else:
        cert, key = ensure_self_signed(config.tls_dir, config.bus.node)
        log.info("self-signed certificate %s (set TLS_CERT/TLS_KEY to use your own)", cert)
    try:
        return server_context(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError("TLS_CERT" if config.tls_cert else "STATE_DIR",
                          f"cannot use {cert} / {key}: {exc}") from None


async def run() -> None:
    config = redfish_config_from_env()
    context = tls_context(config)
    subjects = Subjects(config.bus.node)
    bus = await connect(config.bus.nats_url, "redfish")
    info = ServiceInfo(node=config.bus.node, system_uuid=str(system_uuid(config.bus.node)),
                       bmc_uuid=str(bmc_uuid(config.bus.node)), firmware_version=__version__,
                       redfish_port=config.port, ipmi_port=config.ipmi_port, vnc_port=config.vnc_port,
                       console_port=config.console_port, session_timeout=config.session_timeout)
    service = RedfishService(bus, subjects, info, media_fetcher(config, bus, subjects))
    await service.attach()
    app = service.app()
    # the web console shares the port and the sessions (its routes check them themselves)
    WebConsole(bus, subjects, config.vnc_port, config.novnc_dir, service.session_for).add_routes(app)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, config.listen, config.port, ssl_context=context)
    try:
        await site.start()
    except OSError as exc:
        raise ConfigError("REDFISH_PORT", f"cannot listen on {config.listen}:{config.port}: {exc.strerror}") \
            from None
    log.info("listening on https://%s:%d/redfish/v1", config.listen, config.port)
    await stop_requested()
    for queue in list(service.sse_clients):
        service.sse_clients.discard(queue)
    await runner.cleanup()
    await bus.close()


def main() -> None:
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    run_service(run, log)


if __name__ == "__main__":
    main()
