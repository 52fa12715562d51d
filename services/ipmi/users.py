"""IPMI users: slots 1..N with a name, a password and a privilege limit.

Slot 1 is the anonymous (null) user by convention and stays disabled; the
configured user takes slot 2, like on most BMCs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from bus.config import ConfigError
from services.ipmi.session import PRIV_ADMIN, PRIV_CALLBACK, PRIV_OEM, PRIV_OPERATOR, PRIV_USER

MAX_USERS = 15
PRIVILEGE_BY_NAME = {"callback": PRIV_CALLBACK, "user": PRIV_USER, "operator": PRIV_OPERATOR,
                     "admin": PRIV_ADMIN, "administrator": PRIV_ADMIN, "oem": PRIV_OEM}
DEFAULT_USER, DEFAULT_PASSWORD = "admin", "password"


@dataclass
class User:
    slot: int
    name: bytes
    password: bytes  # at most 20 bytes (IPMI 2.0)
    privilege: int
    enabled: bool = True


class UserStore:
    def __init__(self, users: list[User]):
        self.slots: dict[int, User] = {u.slot: u for u in users}

    def lookup(self, name: bytes) -> User | None:
        if not name:
            return None  # null user names are not enabled (Get Channel Auth Caps says so)
        for user in self.slots.values():
            if user.enabled and user.name == name:
                return user
        return None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> tuple["UserStore", list[str]]:
        """Users from IPMI_USER/IPMI_PASSWORD(_FILE) and IPMI_USERS; returns warnings too."""
        warnings: list[str] = []
        name = env.get("IPMI_USER", "") or DEFAULT_USER
        password = env.get("IPMI_PASSWORD", "")
        if env.get("IPMI_PASSWORD_FILE"):
            try:
                with open(env["IPMI_PASSWORD_FILE"]) as f:
                    password = f.read().rstrip("\r\n")
            except OSError as exc:
                raise ConfigError("IPMI_PASSWORD_FILE", f"cannot read: {exc.strerror}") from None
        if not password:
            password = DEFAULT_PASSWORD
            warnings.append(f"IPMI user {name!r} has the default password; set IPMI_PASSWORD")
        users = [_user(2, name, password, PRIV_ADMIN, "IPMI_USER/IPMI_PASSWORD")]
        for i, item in enumerate(filter(None, (s.strip() for s in env.get("IPMI_USERS", "").split(","))), 3):
            parts = item.split(":")
            if len(parts) != 3:
                raise ConfigError("IPMI_USERS", f"{parts[0]!r}: write name:password:privilege")
            uname, upass, upriv = parts
            if upriv.lower() not in PRIVILEGE_BY_NAME:
                raise ConfigError("IPMI_USERS", f"{uname!r}: privilege {upriv!r} is not one of "
                                  "callback, user, operator, admin")
            if i > MAX_USERS:
                raise ConfigError("IPMI_USERS", f"at most {MAX_USERS - 2} extra users")
            if any(u.name == uname.encode() for u in users):
                raise ConfigError("IPMI_USERS", f"user {uname!r} is named twice")
            users.append(_user(i, uname, upass, PRIVILEGE_BY_NAME[upriv.lower()], "IPMI_USERS"))
        return cls(users), warnings


def _user(slot: int, name: str, password: str, privilege: int, variable: str) -> User:
    raw_name, raw_password = name.encode(), password.encode()
    if not 1 <= len(raw_name) <= 16:
        raise ConfigError(variable, f"user name {name!r} must be 1..16 bytes")
    if len(raw_password) > 20:
        raise ConfigError(variable, f"password of {name!r} is longer than 20 bytes (IPMI 2.0 limit)")
    return User(slot, raw_name, raw_password, privilege)
