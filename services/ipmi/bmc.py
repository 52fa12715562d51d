"""Assembles the command core from its parts: device (App), chassis, and the rest.

One place that says which commands exist; the LAN endpoint (and in-band
interfaces later) only ever see the assembled core.
"""

from __future__ import annotations

from services.ipmi.chassis import Chassis
from services.ipmi.commands import Backend, CommandCore, DeviceIdentity


def build_core(identity: DeviceIdentity, backend: Backend) -> CommandCore:
    core = CommandCore(identity, backend)
    core.chassis = Chassis(core)
    return core
