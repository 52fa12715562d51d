"""The System Event Log (IPMI 2.0 section 31): records, reservations and the
Storage commands that read and clear it. The log itself is pure state; the
owner persists it after every change through the `save` callback."""

from __future__ import annotations

import struct
import time
from typing import Awaitable, Callable

import msgspec

from services.ipmi.commands import CC_INVALID_FIELD, CC_OK, CC_REQUEST_LENGTH, CommandCore
from services.ipmi.session import PRIV_OPERATOR, PRIV_USER

NETFN_STORAGE = 0x0A
SEL_CAPACITY = 512
RECORD_SIZE = 16
CC_RESERVATION_CANCELLED = 0xC5
CC_NOT_PRESENT = 0xCB
GENERATOR_BMC = 0x0020  # slave address 20h, LUN 0, channel 0

# sensor numbers of the event-only sensors the BMC logs against (see sdr.py)
SENSOR_ACPI_STATE = 0x01
SENSOR_SYSTEM_RESTART = 0x02
SENSOR_OS_STOP = 0x03
SENSOR_SESSION_AUDIT = 0x04

# (sensor type, sensor number, offset) of the events we log (table 42-3)
EVENT_POWER_ON = (0x22, SENSOR_ACPI_STATE, 0x00)  # S0/G0 working
EVENT_POWER_OFF = (0x22, SENSOR_ACPI_STATE, 0x05)  # S5/G2 soft-off
EVENT_HARD_RESET = (0x1D, SENSOR_SYSTEM_RESTART, 0x01)  # boot initiated by hard reset
EVENT_GUEST_RESTART = (0x1D, SENSOR_SYSTEM_RESTART, 0x07)  # system restart
EVENT_CRASH = (0x20, SENSOR_OS_STOP, 0x01)  # run-time critical stop
EVENT_AUTH_FAILURE = (0x2A, SENSOR_SESSION_AUDIT, 0x02)  # invalid user name or password


class PersistedSel(msgspec.Struct):
    v: int = 1
    next_id: int = 1
    last_add: int = 0
    last_erase: int = 0
    records: list[str] = []  # hex, 16 bytes each


class SelLog:
    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock
        self.records: dict[int, bytes] = {}  # record id -> 16 bytes, in insertion order
        self.next_id = 1
        self.last_add = 0
        self.last_erase = 0
        self.reservation = 0
        self.time_offset = 0  # Set SEL Time moves the BMC's clock, not the machine's

    def now(self) -> int:
        return int(self.clock()) + self.time_offset

    def reserve(self) -> int:
        self.reservation = self.reservation % 0xFFFF + 1
        return self.reservation

    def add_raw(self, record: bytes) -> int:
        """Store a 16-byte record under a new ID (bytes 0-1 are rewritten)."""
        while self.next_id in self.records or self.next_id in (0x0000, 0xFFFF):
            self.next_id = self.next_id % 0xFFFE + 1
        record_id = self.next_id
        self.next_id = self.next_id % 0xFFFE + 1
        if len(self.records) >= SEL_CAPACITY:
            self.records.pop(next(iter(self.records)))  # full: the oldest goes
        self.records[record_id] = struct.pack("<H", record_id) + bytes(record[2:16])
        self.last_add = self.now()
        return record_id

    def add_event(self, event: tuple[int, int, int], assertion: bool = True) -> int:
        sensor_type, sensor_number, offset = event
        direction_type = (0x00 if assertion else 0x80) | 0x6F  # sensor-specific discrete
        record = (b"\x00\x00\x02" + struct.pack("<IH", self.now(), GENERATOR_BMC)
                  + bytes((0x04, sensor_type, sensor_number, direction_type, offset & 0x0F, 0xFF, 0xFF)))
        return self.add_raw(record)

    def clear(self) -> None:
        self.records.clear()
        self.last_erase = self.now()

    def to_record(self) -> PersistedSel:
        return PersistedSel(next_id=self.next_id, last_add=self.last_add, last_erase=self.last_erase,
                            records=[r.hex() for r in self.records.values()])

    def restore(self, p: PersistedSel) -> None:
        self.records = {}
        for hexed in p.records:
            raw = bytes.fromhex(hexed)
            if len(raw) == RECORD_SIZE:
                self.records[struct.unpack_from("<H", raw)[0]] = raw
        self.next_id, self.last_add, self.last_erase = p.next_id, p.last_add, p.last_erase


class SelCommands:
    def __init__(self, core: CommandCore, sel: SelLog, save: Callable[[], Awaitable[None]]):
        self.sel = sel
        self.save = save
        t = core.table
        t[(NETFN_STORAGE, 0x40)] = (PRIV_USER, self.get_info)
        t[(NETFN_STORAGE, 0x41)] = (PRIV_USER, self.get_allocation_info)
        t[(NETFN_STORAGE, 0x42)] = (PRIV_USER, self.reserve)
        t[(NETFN_STORAGE, 0x43)] = (PRIV_USER, self.get_entry)
        t[(NETFN_STORAGE, 0x44)] = (PRIV_OPERATOR, self.add_entry)
        t[(NETFN_STORAGE, 0x46)] = (PRIV_OPERATOR, self.delete_entry)
        t[(NETFN_STORAGE, 0x47)] = (PRIV_OPERATOR, self.clear)
        t[(NETFN_STORAGE, 0x48)] = (PRIV_USER, self.get_time)
        t[(NETFN_STORAGE, 0x49)] = (PRIV_OPERATOR, self.set_time)

    def _check_reservation(self, data: bytes) -> bool:
        return struct.unpack_from("<H", data)[0] == self.sel.reservation != 0

    def get_info(self, data: bytes) -> tuple[int, bytes]:
        if data:
            return CC_REQUEST_LENGTH, b""
        s = self.sel
        free = (SEL_CAPACITY - len(s.records)) * RECORD_SIZE
        # operation support: delete (bit 3), reserve (bit 1), get allocation info (bit 0)
        return CC_OK, struct.pack("<BHHIIB", 0x51, len(s.records), min(free, 0xFFFE), s.last_add,
                                  s.last_erase, 0x0B)

    def get_allocation_info(self, data: bytes) -> tuple[int, bytes]:
        if data:
            return CC_REQUEST_LENGTH, b""
        free = SEL_CAPACITY - len(self.sel.records)
        return CC_OK, struct.pack("<HHHHB", SEL_CAPACITY, RECORD_SIZE, free, free, RECORD_SIZE)

    def reserve(self, data: bytes) -> tuple[int, bytes]:
        if data:
            return CC_REQUEST_LENGTH, b""
        return CC_OK, struct.pack("<H", self.sel.reserve())

    def get_entry(self, data: bytes) -> tuple[int, bytes]:
        if len(data) != 6:
            return CC_REQUEST_LENGTH, b""
        reservation, record_id, offset, count = struct.unpack("<HHBB", data)
        if offset and reservation != self.sel.reservation:
            return CC_RESERVATION_CANCELLED, b""  # a partial read needs the current reservation
        ids = list(self.sel.records)
        if not ids:
            return CC_NOT_PRESENT, b""
        if record_id == 0x0000:
            record_id = ids[0]
        elif record_id == 0xFFFF:
            record_id = ids[-1]
        if record_id not in self.sel.records:
            return CC_NOT_PRESENT, b""
        position = ids.index(record_id)
        next_id = ids[position + 1] if position + 1 < len(ids) else 0xFFFF
        if offset >= RECORD_SIZE:
            return CC_INVALID_FIELD, b""
        end = RECORD_SIZE if count == 0xFF else min(RECORD_SIZE, offset + count)
        return CC_OK, struct.pack("<H", next_id) + self.sel.records[record_id][offset:end]

    async def add_entry(self, data: bytes) -> tuple[int, bytes]:
        if len(data) != RECORD_SIZE:
            return CC_REQUEST_LENGTH, b""
        record = bytearray(data)
        if record[2] < 0xE0:  # timestamped record types: the BMC stamps the time of arrival
            record[3:7] = struct.pack("<I", self.sel.now())
        record_id = self.sel.add_raw(bytes(record))
        await self.save()
        return CC_OK, struct.pack("<H", record_id)

    async def delete_entry(self, data: bytes) -> tuple[int, bytes]:
        if len(data) != 4:
            return CC_REQUEST_LENGTH, b""
        if not self._check_reservation(data):
            return CC_RESERVATION_CANCELLED, b""
        record_id = struct.unpack_from("<H", data, 2)[0]
        ids = list(self.sel.records)
        if record_id == 0x0000 and ids:
            record_id = ids[0]
        elif record_id == 0xFFFF and ids:
            record_id = ids[-1]
        if self.sel.records.pop(record_id, None) is None:
            return CC_NOT_PRESENT, b""
        await self.save()
        return CC_OK, struct.pack("<H", record_id)

    async def clear(self, data: bytes) -> tuple[int, bytes]:
        if len(data) != 6:
            return CC_REQUEST_LENGTH, b""
        if data[2:5] != b"CLR":
            return CC_INVALID_FIELD, b""
        if not self._check_reservation(data):
            return CC_RESERVATION_CANCELLED, b""
        if data[5] == 0xAA:
            self.sel.clear()
            await self.save()
        elif data[5] != 0x00:
            return CC_INVALID_FIELD, b""
        return CC_OK, b"\x01"  # erasure completed

    def get_time(self, data: bytes) -> tuple[int, bytes]:
        if data:
            return CC_REQUEST_LENGTH, b""
        return CC_OK, struct.pack("<I", self.sel.now())

    def set_time(self, data: bytes) -> tuple[int, bytes]:
        if len(data) != 4:
            return CC_REQUEST_LENGTH, b""
        self.sel.time_offset = struct.unpack("<I", data)[0] - int(self.sel.clock())
        return CC_OK, b""
