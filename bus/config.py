"""Settings every service shares, read from the environment.

Bad values fail fast with a ConfigError that names the variable, so a typo in a
compose file is one line in `docker logs`, not a crash loop with a traceback.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from dataclasses import dataclass
from typing import Mapping


class ConfigError(ValueError):
    """A configuration variable has a value we cannot use."""

    def __init__(self, variable: str, problem: str):
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


_NODE_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def env_str(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "")
    return value if value != "" else default


def env_int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw, 0)
    except ValueError:
        raise ConfigError(name, f"{raw!r} is not a whole number") from None
    if not lo <= value <= hi:
        raise ConfigError(name, f"{value} is outside {lo}..{hi}")
    return value


def env_choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, "").strip().lower() or default
    if value not in choices:
        raise ConfigError(name, f"{value!r} is not one of {', '.join(choices)}")
    return value


def node_name_from(raw: str) -> str:
    """NATS subject tokens cannot hold '.', '*', '>' or spaces: map them to '-'."""
    name = re.sub(r"[^A-Za-z0-9_-]", "-", raw.strip())[:64]
    return name or "node"


@dataclass(frozen=True)
class Settings:
    node: str
    nats_url: str
    state_dir: str
    run_dir: str
    log_dir: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        raw_node = env.get("NODE_NAME", "") or env.get("CLAB_LABEL_CLAB_NODE_NAME", "") or socket.gethostname()
        node = node_name_from(raw_node)
        if env.get("NODE_NAME") and not _NODE_RE.match(env["NODE_NAME"]):
            raise ConfigError("NODE_NAME", "use letters, digits, '-' and '_' only (at most 64)")
        nats_url = env_str(env, "NATS_URL", f"nats://{env_str(env, 'NATS_LISTEN', '127.0.0.1:4222')}")
        if not nats_url.startswith(("nats://", "tls://", "ws://", "wss://")):
            raise ConfigError("NATS_URL", f"{redact_url(nats_url)!r} is not a nats:// URL")
        check_nats_exposure(env)
        return cls(
            node=node,
            nats_url=nats_url,
            state_dir=env_str(env, "STATE_DIR", "/var/lib/qemu-bmc"),
            run_dir=env_str(env, "RUN_DIR", "/run/qemu-bmc"),
            log_dir=env_str(env, "LOG_DIR", "/var/log/qemu-bmc"),
        )


_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
# Credentials go into nats-server's config and into URLs verbatim: keep them to
# characters that need no quoting or URL escaping.
_SECRET_RE = re.compile(r"^[A-Za-z0-9._~-]{8,128}$")
_USER_RE = re.compile(r"^[A-Za-z0-9._~-]{1,64}$")


def redact_url(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    return re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", url)


def _check_credentials(user_var: str, user: str, password_var: str, password: str, why: str) -> None:
    if not _USER_RE.match(user):
        raise ConfigError(user_var, "use 1-64 letters, digits, '.', '_', '~' or '-'")
    if not password:
        raise ConfigError(password_var, f"required {why}")
    if not _SECRET_RE.match(password):
        raise ConfigError(password_var, "use 8-128 letters, digits, '.', '_', '~' or '-'")


def check_nats_exposure(env: Mapping[str, str]) -> None:
    """The embedded NATS carries power control and console bytes: it stays on
    loopback, and whatever reaches it from outside must bring credentials."""
    listen = env_str(env, "NATS_LISTEN", "127.0.0.1:4222")
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("NATS_LISTEN", f"{listen!r} is not host:port")
    if host not in _LOOPBACK_HOSTS:
        _check_credentials("NATS_USER", env_str(env, "NATS_USER", "qemu-bmc"),
                           "NATS_PASSWORD", env.get("NATS_PASSWORD", ""), f"when NATS_LISTEN ({host}) is not loopback")
    leaf_url = env.get("NATS_LEAF_URL", "")
    if leaf_url:
        if not re.match(r"^(nats-leaf|nats|tls|ws|wss)://[^/@\s]+:\d+/?$", leaf_url):
            raise ConfigError("NATS_LEAF_URL", f"{redact_url(leaf_url)!r} is not nats-leaf://host:port "
                                               "(credentials go in NATS_LEAF_USER / NATS_LEAF_PASSWORD)")
        _check_credentials("NATS_LEAF_USER", env_str(env, "NATS_LEAF_USER", "qemu-bmc"),
                           "NATS_LEAF_PASSWORD", env.get("NATS_LEAF_PASSWORD", ""), "with NATS_LEAF_URL")


_GUID_NAMESPACE = uuid.UUID("7d1b6a52-2a1b-4f1e-9a57-0c3e5b4d9f10")


def system_uuid(node: str) -> uuid.UUID:
    """The VM's system UUID: stable per node; QEMU's SMBIOS and IPMI's System GUID agree."""
    return uuid.uuid5(_GUID_NAMESPACE, f"system:{node}")


def bmc_uuid(node: str) -> uuid.UUID:
    """The BMC's own device GUID, stable per node."""
    return uuid.uuid5(_GUID_NAMESPACE, f"bmc:{node}")
