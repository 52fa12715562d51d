"""Chassis commands (IPMI 2.0 section 28): status, control, identify, power
restore policy and system boot options."""

from __future__ import annotations

import time

from services.ipmi.boot_options import BootFlags, UnsupportedBootFlags, decode_boot_flags
from services.ipmi.commands import (CC_INVALID_FIELD, CC_OK, CC_REQUEST_LENGTH, CommandCore,
                                    NETFN_CHASSIS)
from services.ipmi.session import PRIV_OPERATOR, PRIV_USER

CHASSIS_CONTROL_ACTIONS = {0: "off", 1: "on", 2: "cycle", 3: "reset", 4: "nmi", 5: "soft"}
RESTORE_POLICY_BITS = {"always-off": 0, "previous": 1, "always-on": 2}
POLICY_BY_CODE = {0: "always-off", 1: "previous", 2: "always-on"}
CC_PARAMETER_NOT_SUPPORTED = 0x80
CC_SET_IN_PROGRESS = 0x81
CC_READ_ONLY_PARAMETER = 0x82


class Chassis:
    """Chassis command handlers. Boot flags live with the power agent (it applies
    them at power-on); parameters 0, 3 and 4 are bookkeeping kept here."""

    def __init__(self, core: CommandCore):
        self.backend = core.backend
        self.set_in_progress = 0
        self.valid_bit_clearing = 0  # parameter 3
        self.boot_info_ack = (0x00, 0x00)  # parameter 4
        self.identify_until = 0.0
        t = core.table
        t[(NETFN_CHASSIS, 0x00)] = (PRIV_USER, self.get_capabilities)
        t[(NETFN_CHASSIS, 0x01)] = (PRIV_USER, self.get_status)
        t[(NETFN_CHASSIS, 0x02)] = (PRIV_OPERATOR, self.control)
        t[(NETFN_CHASSIS, 0x04)] = (PRIV_OPERATOR, self.identify)
        t[(NETFN_CHASSIS, 0x06)] = (PRIV_OPERATOR, self.set_restore_policy)
        t[(NETFN_CHASSIS, 0x07)] = (PRIV_USER, self.get_restart_cause)
        t[(NETFN_CHASSIS, 0x08)] = (PRIV_OPERATOR, self.set_boot_options)
        t[(NETFN_CHASSIS, 0x09)] = (PRIV_OPERATOR, self.get_boot_options)

    def get_capabilities(self, data: bytes) -> tuple[int, bytes]:
        if data:
            return CC_REQUEST_LENGTH, b""
        # no intrusion/lockout flags; FRU, SDR, SEL, SM device addresses: the BMC (20h)
        return CC_OK, bytes((0x00, 0x20, 0x20, 0x20, 0x20, 0x20))

    def get_status(self, data: bytes) -> tuple[int, bytes]:
        if data:
            return CC_REQUEST_LENGTH, b""
        b = self.backend
        current = (0x01 if b.power_on else 0x00) | (RESTORE_POLICY_BITS.get(b.restore_policy, 3) << 5)
        identify = 0x20 if time.monotonic() < self.identify_until else 0x00  # identify supported
        misc = 0x40 | (0x10 if identify else 0x00)  # bit 6: identify command supported; 5:4 state
        return CC_OK, bytes((current, b.last_power_event & 0x1F, misc))

    async def control(self, data: bytes) -> tuple[int, bytes]:
        if len(data) != 1:
            return CC_REQUEST_LENGTH, b""
        action = CHASSIS_CONTROL_ACTIONS.get(data[0] & 0x0F)
        if action is None:
            return CC_INVALID_FIELD, b""
        await self.backend.power(action)
        return CC_OK, b""

    def identify(self, data: bytes) -> tuple[int, bytes]:
        """Chassis Identify (28.5): interval in seconds (default 15), or force on."""
        if len(data) > 2:
            return CC_REQUEST_LENGTH, b""
        seconds = data[0] if data else 15
        if len(data) == 2 and data[1] & 0x01:
            seconds = 10 ** 9  # forced on until turned off
        self.identify_until = time.monotonic() + seconds
        return CC_OK, b""

    async def set_restore_policy(self, data: bytes) -> tuple[int, bytes]:
        """Set Power Restore Policy (28.8): answers the policies we support."""
        if len(data) != 1:
            return CC_REQUEST_LENGTH, b""
        code = data[0] & 0x07
        if code != 3:  # 3: no change, just report what is supported
            policy = POLICY_BY_CODE.get(code)
            if policy is None:
                return CC_INVALID_FIELD, b""
            await self.backend.set_restore_policy(policy)
        return CC_OK, b"\x07"  # always off, previous and always on are all supported

    def get_restart_cause(self, data: bytes) -> tuple[int, bytes]:
        if data:
            return CC_REQUEST_LENGTH, b""
        return CC_OK, bytes((self.backend.restart_cause & 0x0F, 0x01))

    async def set_boot_options(self, data: bytes) -> tuple[int, bytes]:
        """Set System Boot Options (28.12); parameters 0, 3, 4 and 5."""
        if not data:
            return CC_REQUEST_LENGTH, b""
        param, body = data[0] & 0x7F, data[1:]
        if param == 0:
            if len(body) != 1:
                return CC_REQUEST_LENGTH, b""
            state = body[0] & 0x03
            if state == 3:
                return CC_INVALID_FIELD, b""
            if state == 1 and self.set_in_progress == 1:
                return CC_SET_IN_PROGRESS, b""
            self.set_in_progress = 0 if state == 2 else state  # commit write completes the set
            return CC_OK, b""
        if param == 3:
            if len(body) != 1:
                return CC_REQUEST_LENGTH, b""
            self.valid_bit_clearing = body[0] & 0x1F
            return CC_OK, b""
        if param == 4:
            if len(body) != 2:
                return CC_REQUEST_LENGTH, b""
            mask, value = body
            old = self.boot_info_ack[1]
            self.boot_info_ack = (0, (old & ~mask | value & mask) & 0xFF)
            return CC_OK, b""
        if param == 5:
            try:
                flags = decode_boot_flags(bytes(body))
            except UnsupportedBootFlags:
                return CC_INVALID_FIELD if len(body) == 5 else CC_REQUEST_LENGTH, b""
            await self.backend.boot_set(flags)
            return CC_OK, b""
        if param in (1, 2, 6, 7):
            return CC_READ_ONLY_PARAMETER, b""
        return CC_PARAMETER_NOT_SUPPORTED, b""

    async def get_boot_options(self, data: bytes) -> tuple[int, bytes]:
        """Get System Boot Options (28.13)."""
        if len(data) != 3:
            return CC_REQUEST_LENGTH, b""
        param = data[0] & 0x7F
        header = bytes((0x01, param))  # parameter version 1; bit 7 clear: valid, not locked
        if param == 0:
            return CC_OK, header + bytes((self.set_in_progress,))
        if param == 3:
            return CC_OK, header + bytes((self.valid_bit_clearing,))
        if param == 4:
            return CC_OK, header + bytes(self.boot_info_ack)
        if param == 5:
            flags: BootFlags = await self.backend.boot_get()
            return CC_OK, header + flags.encode()
        return CC_PARAMETER_NOT_SUPPORTED, b""
