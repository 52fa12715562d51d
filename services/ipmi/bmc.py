"""Assembles the command core from its parts: device (App), chassis, and the rest.

One place that says which commands exist; the LAN endpoint (and in-band
interfaces later) only ever see the assembled core.
"""

from __future__ import annotations

from typing import Awaitable, Callable

from services.ipmi.chassis import Chassis
from services.ipmi.commands import Backend, CommandCore, DeviceIdentity
from services.ipmi.user_commands import UserCommands
from services.ipmi.users import UserStore


async def _nothing_to_save() -> None:
    return None


def build_core(identity: DeviceIdentity, backend: Backend, users: UserStore,
               save_users: Callable[[], Awaitable[None]] = _nothing_to_save) -> CommandCore:
    core = CommandCore(identity, backend)
    core.chassis = Chassis(core)
    core.user_commands = UserCommands(core, users, save_users)
    return core
