"""Get/Set SOL Configuration Parameters (IPMI 2.0 section 26.7-26.8, table 26-5),
shared with the LAN endpoint that activates the SOL payload."""

from __future__ import annotations

import struct

from services.ipmi.commands import CC_INVALID_FIELD, CC_OK, CC_REQUEST_LENGTH, CommandCore
from services.ipmi.session import PRIV_ADMIN, PRIV_CALLBACK, PRIV_OEM, PRIV_USER
from services.ipmi.sol import SolSettings

NETFN_TRANSPORT = 0x0C
LAN_CHANNEL = 1
CC_PARAMETER_NOT_SUPPORTED = 0x80
CC_READ_ONLY = 0x82
REVISION = 0x11
BIT_RATES = (0x00, 0x06, 0x07, 0x08, 0x09, 0x0A)  # serial default, 9.6 ... 115.2 kbps


class SolConfig:
    def __init__(self, core: CommandCore, settings: SolSettings):
        self.s = settings
        self.set_in_progress = 0
        core.table[(NETFN_TRANSPORT, 0x21)] = (PRIV_ADMIN, self.set_parameter)
        core.table[(NETFN_TRANSPORT, 0x22)] = (PRIV_USER, self.get_parameter)

    def _value(self, param: int) -> bytes | None:
        s = self.s
        return {
            0: bytes((self.set_in_progress,)),
            1: bytes((0x01 if s.enabled else 0x00,)),
            2: bytes(((0x80 if s.force_encryption else 0) | (0x40 if s.force_auth else 0) | s.privilege,)),
            3: bytes((s.accumulate_5ms, s.send_threshold)),
            4: bytes((s.retry_count & 0x07, s.retry_interval_10ms)),
            5: bytes((s.bit_rate,)),
            6: bytes((s.bit_rate,)),
            7: bytes((LAN_CHANNEL,)),
            8: struct.pack("<H", s.port),
        }.get(param)

    def get_parameter(self, data: bytes) -> tuple[int, bytes]:
        if len(data) != 4:
            return CC_REQUEST_LENGTH, b""
        if data[0] & 0x0F not in (LAN_CHANNEL, 0x0E):
            return CC_INVALID_FIELD, b""
        if data[0] & 0x80:
            return CC_OK, bytes((REVISION,))
        value = self._value(data[1])
        if value is None:
            return CC_PARAMETER_NOT_SUPPORTED, b""
        return CC_OK, bytes((REVISION,)) + value

    def set_parameter(self, data: bytes) -> tuple[int, bytes]:
        if len(data) < 3:
            return CC_REQUEST_LENGTH, b""
        if data[0] & 0x0F not in (LAN_CHANNEL, 0x0E):
            return CC_INVALID_FIELD, b""
        param, value, s = data[1], data[2:], self.s
        expected = {0: 1, 1: 1, 2: 1, 3: 2, 4: 2, 5: 1, 6: 1, 7: 1, 8: 2}.get(param)
        if expected is None:
            return CC_PARAMETER_NOT_SUPPORTED, b""
        if len(value) != expected:
            return CC_REQUEST_LENGTH, b""
        if param == 0:
            self.set_in_progress = 0 if value[0] & 0x03 == 2 else value[0] & 0x03
        elif param == 1:
            s.enabled = bool(value[0] & 0x01)
        elif param == 2:
            if not PRIV_CALLBACK < value[0] & 0x0F <= PRIV_OEM:
                return CC_INVALID_FIELD, b""
            s.force_encryption, s.force_auth = bool(value[0] & 0x80), bool(value[0] & 0x40)
            s.privilege = value[0] & 0x0F
        elif param == 3:
            if value[0] == 0:
                return CC_INVALID_FIELD, b""
            s.accumulate_5ms, s.send_threshold = value[0], value[1]
        elif param == 4:
            s.retry_count, s.retry_interval_10ms = value[0] & 0x07, max(1, value[1])
        elif param in (5, 6):
            if value[0] & 0x0F not in BIT_RATES:
                return CC_INVALID_FIELD, b""
            s.bit_rate = value[0] & 0x0F
        else:  # channel and port are where the BMC listens: not movable over IPMI
            return CC_READ_ONLY, b""
        return CC_OK, b""
