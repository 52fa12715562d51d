"""Roles, privileges and X-Auth-Token sessions (DSP0266 "Security details"): pure,
no I/O. Passwords are checked by the users' owner over the bus, never here."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

# The bus privilege (IPMI's channel privilege limit) -> Redfish role
ROLE_OF = {"administrator": "Administrator", "operator": "Operator", "user": "ReadOnly"}

# Redfish predefined roles and their privileges (DSP0266 "Roles")
ROLE_PRIVILEGES = {
    "Administrator": ("Login", "ConfigureManager", "ConfigureUsers", "ConfigureSelf", "ConfigureComponents"),
    "Operator": ("Login", "ConfigureSelf", "ConfigureComponents"),
    "ReadOnly": ("Login", "ConfigureSelf"),
    "NoAccess": (),
}


def role_of(privilege: str) -> str:
    return ROLE_OF.get(privilege, "NoAccess")


def allowed(role: str, privilege: str) -> bool:
    return privilege in ROLE_PRIVILEGES.get(role, ())


@dataclass
class Session:
    id: str
    token: str
    user: str
    role: str
    created: float  # unix time, for CreatedTime
    last_used: float  # monotonic
    peer: str = ""


@dataclass
class SessionTable:
    """X-Auth-Token sessions; an idle one ends after `timeout` seconds."""

    timeout: float
    limit: int = 64
    sessions: dict[str, Session] = field(default_factory=dict)  # by id
    _next_id: int = 1

    def create(self, user: str, role: str, peer: str, now: float) -> Session:
        self.expire(now)
        if len(self.sessions) >= self.limit:  # bounded: the oldest idle session makes room
            oldest = min(self.sessions.values(), key=lambda s: s.last_used)
            del self.sessions[oldest.id]
        session = Session(id=str(self._next_id), token=secrets.token_hex(24), user=user, role=role,
                          created=time.time(), last_used=now, peer=peer)
        self._next_id += 1
        self.sessions[session.id] = session
        return session

    def by_token(self, token: str, now: float) -> Session | None:
        self.expire(now)
        for session in self.sessions.values():
            if secrets.compare_digest(session.token, token):
                session.last_used = now
                return session
        return None

    def delete(self, session_id: str) -> bool:
        return self.sessions.pop(session_id, None) is not None

    def expire(self, now: float) -> None:
        for sid in [sid for sid, s in self.sessions.items() if now - s.last_used > self.timeout]:
            del self.sessions[sid]
