"""Assembles the command core from its parts: device (App), chassis, and the rest.

One place that says which commands exist; the LAN endpoint (and in-band
interfaces later) only ever see the assembled core.
"""

from __future__ import annotations

from typing import Awaitable, Callable

from services.ipmi.chassis import Chassis
from services.ipmi.commands import Backend, CommandCore, DeviceIdentity
from services.ipmi.fru import FruCommands, FruInfo, build_fru
from services.ipmi.lan_config import LanConfig
from services.ipmi.sdr import SdrRepository
from services.ipmi.sel import SelCommands, SelLog
from services.ipmi.sol import SolSettings
from services.ipmi.sol_config import SolConfig
from services.ipmi.user_commands import UserCommands
from services.ipmi.users import UserStore


async def _nothing_to_save() -> None:
    return None


def build_core(identity: DeviceIdentity, backend: Backend, users: UserStore,
               save_users: Callable[[], Awaitable[None]] = _nothing_to_save,
               sel: SelLog | None = None, save_sel: Callable[[], Awaitable[None]] = _nothing_to_save,
               fru: bytes = b"", lan_interface: str = "", suites: tuple[int, ...] = (17, 3, 2, 1),
               v15_auth_types: tuple[int, ...] = (2, 4), sol_settings: SolSettings | None = None) -> CommandCore:
    core = CommandCore(identity, backend)
    core.chassis = Chassis(core)
    core.user_commands = UserCommands(core, users, save_users)
    core.sel = SelCommands(core, sel or SelLog(), save_sel)
    core.sdr = SdrRepository(core)
    core.fru = FruCommands(core, fru or build_fru(FruInfo.from_env({}, "node", "0.1.0")))
    core.lan_config = LanConfig(core, lan_interface, suites, v15_auth_types)
    core.sol_config = SolConfig(core, sol_settings or SolSettings())
    return core
