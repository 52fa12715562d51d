"""IPMI users: slots 1..N with a name, a password and a privilege limit.

Slot 1 is the anonymous (null) user by convention and stays disabled; the
configured user takes slot 2, like on most BMCs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Mapping

import msgspec

from bus.config import ConfigError
from services.ipmi.session import PRIV_ADMIN, PRIV_CALLBACK, PRIV_OEM, PRIV_OPERATOR, PRIV_USER

MAX_USERS = 15
PRIVILEGE_BY_NAME = {"callback": PRIV_CALLBACK, "user": PRIV_USER, "operator": PRIV_OPERATOR,
                     "admin": PRIV_ADMIN, "administrator": PRIV_ADMIN, "oem": PRIV_OEM}
DEFAULT_USER, DEFAULT_PASSWORD = "admin", "password"


PRIV_NO_ACCESS = 0x0F


@dataclass
class User:
    slot: int
    name: bytes
    password: bytes  # at most 20 bytes (IPMI 2.0)
    privilege: int  # the channel privilege limit; 0x0F: no access
    enabled: bool = True
    link_auth: bool = True
    ipmi_messaging: bool = True
    callback_only: bool = False


class UserRecord(msgspec.Struct):
    """A user as kept in the key-value store (passwords must stay usable for RAKP)."""

    slot: int
    name: str
    password: str  # hex
    privilege: int
    enabled: bool
    link_auth: bool = True
    ipmi_messaging: bool = True
    callback_only: bool = False


class PersistedUsers(msgspec.Struct):
    v: int = 1
    env_fingerprint: str = ""  # which IPMI_USER/IPMI_PASSWORD/IPMI_USERS seeded these users
    users: list[UserRecord] = []


class UserStore:
    def __init__(self, users: list[User]):
        self.slots: dict[int, User] = {u.slot: u for u in users}
        self.env_fingerprint = ""

    def get(self, slot: int) -> User:
        """The user in `slot`, an empty disabled one if none was ever set."""
        if slot not in self.slots:
            self.slots[slot] = User(slot, b"", b"", PRIV_NO_ACCESS, enabled=False)
        return self.slots[slot]

    def enabled_count(self) -> int:
        return sum(1 for u in self.slots.values() if u.enabled and u.name)

    def name_taken(self, name: bytes, slot: int) -> bool:
        return any(u.name == name and u.slot != slot for u in self.slots.values() if name)

    # --- persistence -----------------------------------------------------------

    def to_record(self) -> PersistedUsers:
        return PersistedUsers(env_fingerprint=self.env_fingerprint, users=[
            UserRecord(u.slot, u.name.decode(errors="replace"), u.password.hex(), u.privilege, u.enabled,
                       u.link_auth, u.ipmi_messaging, u.callback_only)
            for u in sorted(self.slots.values(), key=lambda u: u.slot) if u.name or u.password])

    def restore(self, record: PersistedUsers) -> None:
        """Take the persisted users, unless the configuration changed since they were
        seeded: then the configured users are laid over them again."""
        if record.env_fingerprint != self.env_fingerprint:
            configured = dict(self.slots)
            self.slots = {r.slot: _from_record(r) for r in record.users}
            for user in configured.values():
                for other in [u for u in self.slots.values() if u.name == user.name and u.slot != user.slot]:
                    del self.slots[other.slot]  # a configured name moves to its configured slot
                self.slots[user.slot] = user
            return
        self.slots = {r.slot: _from_record(r) for r in record.users}

    def lookup(self, name: bytes) -> User | None:
        if not name:
            return None  # null user names are not enabled (Get Channel Auth Caps says so)
        for user in self.slots.values():
            if user.name == name:
                usable = user.enabled and user.ipmi_messaging and user.privilege != PRIV_NO_ACCESS
                return user if usable else None
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
        store = cls(users)
        store.env_fingerprint = hashlib.sha256(repr(
            [(u.slot, u.name, u.password, u.privilege) for u in users]).encode()).hexdigest()[:16]
        return store, warnings


def _user(slot: int, name: str, password: str, privilege: int, variable: str) -> User:
    raw_name, raw_password = name.encode(), password.encode()
    if not 1 <= len(raw_name) <= 16:
        raise ConfigError(variable, f"user name {name!r} must be 1..16 bytes")
    if len(raw_password) > 20:
        raise ConfigError(variable, f"password of {name!r} is longer than 20 bytes (IPMI 2.0 limit)")
    return User(slot, raw_name, raw_password, privilege)


def _from_record(r: UserRecord) -> User:
    return User(r.slot, r.name.encode(), bytes.fromhex(r.password), r.privilege, r.enabled,
                r.link_auth, r.ipmi_messaging, r.callback_only)
