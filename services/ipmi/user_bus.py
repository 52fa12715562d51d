"""The users contract on the bus: other front ends (Redfish, in-band) log in and
change passwords against the accounts this service owns.

`users.check` is judged like an RMCP+ login: the same store, the same per-address
lock-out (failures through Redfish count towards it, and a locked-out address is
refused on both), the same auth-failed note (bus event and SEL record).
"""

from __future__ import annotations

import hmac
import time
from typing import Awaitable, Callable

from bus import Bus, Subjects
from bus.messages import (ErrorReply, UserCheck, UserCheckResult, UserInfo, UserList, UserPasswordSet,
                          UsersGet)
from services.ipmi.lan import LanEndpoint, SessionNote
from services.ipmi.session import PRIV_ADMIN, PRIV_OEM, PRIV_OPERATOR, PRIV_USER
from services.ipmi.users import PRIV_NO_ACCESS, UserStore

MAX_PASSWORD_BYTES = 20  # IPMI 2.0 (Set User Password, 20-byte form): RAKP keys derive from it


def privilege_of(level: int) -> str:
    """The bus name of an IPMI channel privilege limit; callback users may do nothing elsewhere."""
    if level in (PRIV_ADMIN, PRIV_OEM):
        return "administrator"
    if level == PRIV_OPERATOR:
        return "operator"
    if level == PRIV_USER:
        return "user"
    return "no-access"


def user_list(users: UserStore) -> UserList:
    return UserList(users=[
        UserInfo(id=u.slot, name=u.name.decode(errors="replace"), enabled=u.enabled,
                 privilege=privilege_of(u.privilege) if u.privilege != PRIV_NO_ACCESS else "no-access")
        for u in sorted(users.slots.values(), key=lambda u: u.slot) if u.name])


class UserBus:
    """Serves users.check / users.get / users.password and announces users.changed."""

    def __init__(self, users: UserStore, endpoint: LanEndpoint, save: Callable[[], Awaitable[None]],
                 on_note: Callable[[SessionNote], None], clock: Callable[[], float] = time.monotonic):
        self.users = users
        self.endpoint = endpoint
        self.save = save
        self.on_note = on_note
        self.clock = clock
        self.bus: Bus | None = None
        self.subjects: Subjects | None = None

    async def attach(self, bus: Bus, subjects: Subjects) -> None:
        self.bus, self.subjects = bus, subjects
        await bus.serve(subjects.users_check, UserCheck, self.check)
        await bus.serve(subjects.users_get, UsersGet, self.get)
        await bus.serve(subjects.users_password, UserPasswordSet, self.set_password)

    async def announce(self) -> None:
        """users.changed after any change, whichever front end made it."""
        if self.bus is not None and self.subjects is not None:
            await self.bus.publish(self.subjects.users_changed, user_list(self.users))

    async def check(self, request: UserCheck) -> UserCheckResult:
        ip = request.peer.rsplit(":", 1)[0] if request.peer.count(":") == 1 else request.peer
        ip = ip or "bus"
        now = self.clock()
        # the lock-out belongs to the LAN endpoint: one count per address for every front end
        if self.endpoint._locked_out(ip, now):
            return UserCheckResult(ok=False, reason="locked-out")
        name = request.name.encode()
        user = self.users.lookup(name)
        if user is None:
            known = any(u.name == name for u in self.users.slots.values()) if name else False
            return self._failed(ip, request, now, "disabled" if known else "unknown-user")
        if not hmac.compare_digest(user.password, request.password.encode()):
            return self._failed(ip, request, now, "bad-password")
        privilege = privilege_of(user.privilege)
        if privilege == "no-access":
            return UserCheckResult(ok=False, reason="disabled")
        return UserCheckResult(ok=True, privilege=privilege)

    def _failed(self, ip: str, request: UserCheck, now: float, reason: str) -> UserCheckResult:
        self.endpoint._failed_login(ip, now)
        self.on_note(SessionNote("auth-failed", (ip, 0), request.name))
        return UserCheckResult(ok=False, reason=reason)

    async def get(self, _request: UsersGet) -> UserList:
        return user_list(self.users)

    async def set_password(self, request: UserPasswordSet) -> UserList | ErrorReply:
        password = request.password.encode()
        if not 1 <= len(password) <= MAX_PASSWORD_BYTES:
            return ErrorReply(code="bad-password", message=f"a password is 1..{MAX_PASSWORD_BYTES} bytes "
                              f"(IPMI 2.0), this one is {len(password)}")
        name = request.name.encode()
        user = next((u for u in self.users.slots.values() if name and u.name == name), None)
        if user is None:
            return ErrorReply(code="unknown-user", message=f"no user named {request.name!r}")
        user.password = password
        await self.save()  # the owner's save persists and announces users.changed
        return user_list(self.users)
