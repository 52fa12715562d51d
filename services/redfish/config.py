"""Redfish front end configuration (environment variables, validated at start)."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from typing import Mapping

from bus.config import ConfigError, Settings, env_int, env_str


@dataclass(frozen=True)
class RedfishConfig:
    bus: Settings
    listen: str
    port: int
    tls_cert: str  # "" = generate a self-signed one into STATE_DIR/redfish at first start
    tls_key: str
    session_timeout: int  # seconds an idle X-Auth-Token session lives (SessionService.SessionTimeout)
    # the other front ends, described under Managers/1/NetworkProtocol and the consoles
    ipmi_port: int
    vnc_port: int
    console_port: int
    media_mount_dir: str = ""  # MEDIA_DIR: images mounted into the container that may be inserted
    novnc_dir: str = "/usr/share/novnc"  # NOVNC_DIR: noVNC's files, served by the web console

    @property
    def tls_dir(self) -> str:
        return os.path.join(self.bus.state_dir, "redfish")

    @property
    def media_dir(self) -> str:
        return os.path.join(self.bus.state_dir, "media")


def redfish_config_from_env(env: Mapping[str, str] | None = None) -> RedfishConfig:
    env = os.environ if env is None else env
    cert, key = env.get("TLS_CERT", "").strip(), env.get("TLS_KEY", "").strip()
    if bool(cert) != bool(key):
        raise ConfigError("TLS_KEY" if cert else "TLS_CERT", "set TLS_CERT and TLS_KEY together")
    for variable, path in (("TLS_CERT", cert), ("TLS_KEY", key)):
        if path and not os.path.isfile(path):
            raise ConfigError(variable, f"{path} does not exist (mount it into the container)")
    if cert:
        try:  # a wrong file is found now, not at the first TLS handshake
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError("TLS_CERT", f"{cert} with {key}: not a usable PEM certificate and key ({exc})") \
                from None
    return RedfishConfig(
        bus=Settings.from_env(env),
        listen=env_str(env, "REDFISH_LISTEN", "0.0.0.0"),
        port=env_int(env, "REDFISH_PORT", 443, 1, 65535),
        tls_cert=cert,
        tls_key=key,
        session_timeout=env_int(env, "REDFISH_SESSION_TIMEOUT", 1800, 30, 86400),
        ipmi_port=env_int(env, "IPMI_PORT", 623, 1, 65535),
        vnc_port=env_int(env, "VNC_PORT", 5900, 1, 65535),
        console_port=env_int(env, "CONSOLE_PORT", 5000, 0, 65535),
        media_mount_dir=env.get("MEDIA_DIR", "").strip(),
        novnc_dir=env_str(env, "NOVNC_DIR", "/usr/share/novnc"),
    )
