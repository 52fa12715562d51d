"""IPMI front end configuration (environment variables, validated at start)."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Mapping

from bus.config import ConfigError, Settings, bmc_uuid, env_choice, env_int, env_str, system_uuid
from services.ipmi.crypto import SUITES
from services.ipmi.wire import AUTH_MD5, AUTH_NONE, AUTH_PASSWORD
from services.ipmi.users import UserStore

# RFC 5612 reserves enterprise number 32473 for documentation and examples: we
# claim no real vendor's identity by default.
DEFAULT_MANUFACTURER_ID = 32473
FIRMWARE_VERSION = (0, 1)


@dataclass(frozen=True)
class IpmiConfig:
    bus: Settings
    listen: str
    port: int
    suites: tuple[int, ...]
    session_limit: int
    session_timeout: float
    manufacturer_id: int
    product_id: int
    users: UserStore
    warnings: tuple[str, ...]
    v15_auth_types: tuple[int, ...]
    lan_interface: str  # the interface `lan print` describes ("" = the default route's)
    sol_port: int  # the UDP port clients reach the BMC on, reported when SOL activates
    auth_failure_limit: int  # failed logins from one address in 30 s before it is locked out
    kcs_socket: str = ""  # unix socket QEMU's ipmi-bmc-extern connects to ("" = no in-band IPMI)

    def system_guid(self) -> uuid.UUID:
        return system_uuid(self.bus.node)

    def device_guid(self) -> uuid.UUID:
        return bmc_uuid(self.bus.node)


def _suites(env: Mapping[str, str], warnings: list[str]) -> tuple[int, ...]:
    raw = env.get("IPMI_CIPHER_SUITES", "").strip() or "17,3,2,1"
    try:
        suites = tuple(int(s) for s in raw.split(","))
    except ValueError:
        raise ConfigError("IPMI_CIPHER_SUITES", f"{raw!r} is not a comma-separated list of numbers") from None
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise ConfigError("IPMI_CIPHER_SUITES", f"unsupported suite(s) {unknown}; "
                          f"choose from {sorted(SUITES)}")
    if 0 in suites:
        warnings.append("IPMI_CIPHER_SUITES offers suite 0: RMCP+ sessions without any authentication")
    return suites


V15_AUTH_NAMES = {"md5": AUTH_MD5, "password": AUTH_PASSWORD, "none": AUTH_NONE}


def _v15_auth(env: Mapping[str, str], warnings: list[str]) -> tuple[int, ...]:
    raw = env.get("IPMI_V15_AUTH", "").strip().lower() or "md5,password"
    if raw == "off":
        return ()
    names = [n.strip() for n in raw.split(",")]
    unknown = [n for n in names if n not in V15_AUTH_NAMES]
    if unknown:
        raise ConfigError("IPMI_V15_AUTH", f"{unknown} not among md5, password, none (or 'off')")
    if "none" in names:
        warnings.append("IPMI_V15_AUTH allows auth type none: IPMI 1.5 sessions without any authentication")
    return tuple(V15_AUTH_NAMES[n] for n in names)


KCS_SOCKET_NAME = "ipmi-kcs.sock"  # in RUN_DIR; the power agent points QEMU at it


def ipmi_config_from_env(env: Mapping[str, str] | None = None) -> IpmiConfig:
    env = os.environ if env is None else env
    users, warnings = UserStore.from_env(env)
    v15 = _v15_auth(env, warnings)
    bus = Settings.from_env(env)
    kcs = env_choice(env, "VM_IPMI_KCS", "on", ("on", "off")) == "on"
    return IpmiConfig(
        bus=bus,
        kcs_socket=os.path.join(bus.run_dir, KCS_SOCKET_NAME) if kcs else "",
        listen=env_str(env, "IPMI_LISTEN", "0.0.0.0"),
        port=env_int(env, "IPMI_PORT", 623, 1, 65535),
        suites=_suites(env, warnings),
        session_limit=env_int(env, "IPMI_SESSION_LIMIT", 32, 1, 1024),
        session_timeout=float(env_int(env, "IPMI_SESSION_TIMEOUT", 60, 5, 3600)),
        manufacturer_id=env_int(env, "IPMI_MANUFACTURER_ID", DEFAULT_MANUFACTURER_ID, 0, 0xFFFFF),
        product_id=env_int(env, "IPMI_PRODUCT_ID", 1, 0, 0xFFFF),
        users=users,
        warnings=tuple(warnings),
        v15_auth_types=v15,
        lan_interface=env.get("IPMI_LAN_INTERFACE", "").strip(),
        auth_failure_limit=env_int(env, "IPMI_AUTH_FAILURE_LIMIT", 5, 0, 1000),
        sol_port=env_int(env, "IPMI_SOL_PORT", env_int(env, "IPMI_PORT", 623, 1, 65535), 1, 65535),
    )
