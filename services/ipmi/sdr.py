"""The SDR repository and the sensors behind it (IPMI 2.0 sections 33-35, 43).

Only sensors that tell the truth: the ACPI power state of the VM, its vCPU
count and memory size, and the event-only sensors the SEL records refer to.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable

from services.ipmi.commands import CC_INVALID_FIELD, CC_OK, CC_REQUEST_LENGTH, CommandCore
from services.ipmi.sel import (NETFN_STORAGE, SENSOR_ACPI_STATE, SENSOR_OS_STOP, SENSOR_SESSION_AUDIT,
                               SENSOR_SYSTEM_RESTART)
from services.ipmi.session import PRIV_USER

NETFN_SENSOR = 0x04
CC_RESERVATION_CANCELLED = 0xC5
CC_NOT_PRESENT = 0xCB
SENSOR_VCPUS = 0x10
SENSOR_MEMORY = 0x11
ENTITY_SYSTEM_BOARD = 0x07
UNIT_UNSPECIFIED, UNIT_MEGABYTE = 0, 72
MEMORY_M = 64  # memory reading = MiB / 64, so 8 bits reach 16 GiB


@dataclass(frozen=True)
class DiscreteSensor:
    number: int
    name: str
    sensor_type: int
    state: Callable[[], int]  # offset of the asserted state, or -1 for none

    def record(self, record_id: int) -> bytes:
        """Compact sensor record, type 02h (table 43-2)."""
        name = self.name.encode()[:16]
        body = bytes((0x20, 0x00, self.number, ENTITY_SYSTEM_BOARD, 0x01,
                      0x03,  # scanning and events enabled
                      0x40 | 0x03,  # auto re-arm, no thresholds, no event messages
                      self.sensor_type, 0x6F))  # sensor-specific discrete
        body += bytes(6)  # assertion, deassertion and reading masks: none claimed
        body += bytes((0x00, UNIT_UNSPECIFIED, 0x00))  # units
        body += bytes(2 + 2 + 3 + 1)  # record sharing, hysteresis, reserved, OEM
        body += bytes((0xC0 | len(name),)) + name
        return struct.pack("<HBBB", record_id, 0x51, 0x02, len(body)) + body

    def reading(self) -> bytes:
        offset = self.state()
        states = (1 << offset) if offset >= 0 else 0
        return bytes((0x00, 0x40)) + struct.pack("<H", states)[:1] + bytes((0x80 | (states >> 8) & 0x7F,))


@dataclass(frozen=True)
class ThresholdSensor:
    number: int
    name: str
    sensor_type: int
    unit: int
    m: int
    value: Callable[[], int]

    def record(self, record_id: int) -> bytes:
        """Full sensor record, type 01h (table 43-1): linear, unsigned, y = M * x."""
        name = self.name.encode()[:16]
        body = bytes((0x20, 0x00, self.number, ENTITY_SYSTEM_BOARD, 0x01,
                      0x03,  # scanning and events enabled
                      0x40 | 0x03,  # auto re-arm, no hysteresis, no thresholds, no event messages
                      self.sensor_type, 0x01))  # threshold-based
        body += bytes(6)  # event masks: none
        body += bytes((0x00, self.unit, 0x00, 0x00))  # unsigned, unit, no modifier; linear
        body += bytes((self.m & 0xFF, (self.m >> 2) & 0xC0, 0x00, 0x00, 0x00, 0x00))  # M, B=0, exps 0
        body += bytes((0x00, 0x00, 0x00, 0x00, 0xFF, 0x00))  # flags, nominal, normal max/min, max, min
        body += bytes(6 + 2 + 2 + 1)  # thresholds, hysteresis, reserved, OEM
        body += bytes((0xC0 | len(name),)) + name
        return struct.pack("<HBBB", record_id, 0x51, 0x01, len(body)) + body

    def reading(self) -> bytes:
        raw = min(0xFF, max(0, round(self.value() / self.m)))
        return bytes((raw, 0x40, 0x00, 0x80))  # scanning enabled; no threshold crossed


class SdrRepository:
    def __init__(self, core: CommandCore):
        b = core.backend
        self.sensors = [
            DiscreteSensor(SENSOR_ACPI_STATE, "ACPI State", 0x22, lambda: 0 if b.power_on else 5),
            DiscreteSensor(SENSOR_SYSTEM_RESTART, "System Restart", 0x1D, lambda: -1),
            DiscreteSensor(SENSOR_OS_STOP, "OS Stop", 0x20, lambda: -1),
            DiscreteSensor(SENSOR_SESSION_AUDIT, "Session Audit", 0x2A, lambda: -1),
            ThresholdSensor(SENSOR_VCPUS, "VM vCPUs", 0x07, UNIT_UNSPECIFIED, 1, lambda: b.vcpus),
            ThresholdSensor(SENSOR_MEMORY, "VM Memory", 0x0C, UNIT_MEGABYTE, MEMORY_M, lambda: b.memory_mib),
        ]
        self.by_number = {s.number: s for s in self.sensors}
        self.records = [s.record(i + 1) for i, s in enumerate(self.sensors)]
        self.reservation = 0
        t = core.table
        t[(NETFN_STORAGE, 0x20)] = (PRIV_USER, self.get_info)
        t[(NETFN_STORAGE, 0x21)] = (PRIV_USER, self.get_allocation_info)
        t[(NETFN_STORAGE, 0x22)] = (PRIV_USER, self.reserve)
        t[(NETFN_STORAGE, 0x23)] = (PRIV_USER, self.get_sdr)
        t[(NETFN_SENSOR, 0x2D)] = (PRIV_USER, self.get_reading)
        t[(NETFN_SENSOR, 0x27)] = (PRIV_USER, self.get_thresholds)

    def get_info(self, data: bytes) -> tuple[int, bytes]:
        if data:
            return CC_REQUEST_LENGTH, b""
        # free space 0 (no Add SDR); operation support: reserve (bit 1), non-modal update (bits 6:5 = 01)
        return CC_OK, struct.pack("<BHHIIB", 0x51, len(self.records), 0, 0, 0, 0x22)

    def get_allocation_info(self, data: bytes) -> tuple[int, bytes]:
        if data:
            return CC_REQUEST_LENGTH, b""
        return CC_OK, struct.pack("<HHHHB", len(self.records), 64, 0, 0, 4)

    def reserve(self, data: bytes) -> tuple[int, bytes]:
        if data:
            return CC_REQUEST_LENGTH, b""
        self.reservation = self.reservation % 0xFFFF + 1
        return CC_OK, struct.pack("<H", self.reservation)

    def get_sdr(self, data: bytes) -> tuple[int, bytes]:
        if len(data) != 6:
            return CC_REQUEST_LENGTH, b""
        reservation, record_id, offset, count = struct.unpack("<HHBB", data)
        if offset and reservation != self.reservation:
            return CC_RESERVATION_CANCELLED, b""
        if record_id == 0xFFFF:
            record_id = len(self.records)
        index = (record_id or 1) - 1
        if not 0 <= index < len(self.records):
            return CC_NOT_PRESENT, b""
        record = self.records[index]
        if offset > len(record):
            return CC_INVALID_FIELD, b""
        next_id = index + 2 if index + 1 < len(self.records) else 0xFFFF
        end = len(record) if count == 0xFF else min(len(record), offset + count)
        return CC_OK, struct.pack("<H", next_id) + record[offset:end]

    def get_reading(self, data: bytes) -> tuple[int, bytes]:
        if len(data) != 1:
            return CC_REQUEST_LENGTH, b""
        sensor = self.by_number.get(data[0])
        if sensor is None:
            return CC_NOT_PRESENT, b""
        return CC_OK, sensor.reading()

    def get_thresholds(self, data: bytes) -> tuple[int, bytes]:
        if len(data) != 1:
            return CC_REQUEST_LENGTH, b""
        if not isinstance(self.by_number.get(data[0]), ThresholdSensor):
            return CC_NOT_PRESENT, b""
        return CC_OK, bytes(7)  # no thresholds are readable: these are configuration, not limits
