"""FRU inventory device 0 (Platform Management FRU Information Storage
Definition v1.0): chassis, board and product areas built from configuration."""

from __future__ import annotations

import datetime
import struct
from dataclasses import dataclass
from typing import Mapping

from services.ipmi.commands import CC_INVALID_FIELD, CC_OK, CC_REQUEST_LENGTH, CommandCore
from services.ipmi.sel import NETFN_STORAGE
from services.ipmi.session import PRIV_OPERATOR, PRIV_USER

CC_WRITE_PROTECTED = 0x80
CC_NOT_PRESENT = 0xCB
FRU_EPOCH = datetime.datetime(1996, 1, 1, tzinfo=datetime.timezone.utc)
CHASSIS_TYPE_RACK_MOUNT = 0x17


@dataclass(frozen=True)
class FruInfo:
    chassis_part: str
    chassis_serial: str
    board_manufacturer: str
    board_product: str
    board_serial: str
    board_part: str
    product_manufacturer: str
    product_name: str
    product_part: str
    product_version: str
    product_serial: str
    asset_tag: str

    @classmethod
    def from_env(cls, env: Mapping[str, str], node: str, version: str) -> "FruInfo":
        def get(name: str, default: str) -> str:
            return env.get(name, "") or default
        return cls(
            chassis_part=get("FRU_CHASSIS_PART", "QB-CHASSIS"),
            chassis_serial=get("FRU_CHASSIS_SERIAL", node),
            board_manufacturer=get("FRU_BOARD_MANUFACTURER", "qemu-bmc"),
            board_product=get("FRU_BOARD_PRODUCT", "QEMU Virtual Board"),
            board_serial=get("FRU_BOARD_SERIAL", node),
            board_part=get("FRU_BOARD_PART", "QB-BOARD"),
            product_manufacturer=get("FRU_PRODUCT_MANUFACTURER", "qemu-bmc"),
            product_name=get("FRU_PRODUCT_NAME", "QEMU Virtual Server"),
            product_part=get("FRU_PRODUCT_PART", "QB-SERVER"),
            product_version=get("FRU_PRODUCT_VERSION", version),
            product_serial=get("FRU_PRODUCT_SERIAL", node),
            asset_tag=get("FRU_ASSET_TAG", ""),
        )


def _field(text: str) -> bytes:
    raw = text.encode("ascii", "replace")[:63]
    return bytes((0xC0 | len(raw),)) + raw  # 8-bit ASCII + Latin 1


def _area(body: bytes) -> bytes:
    """Close an area: end-of-fields marker, pad to 8 bytes, length byte, checksum."""
    body = body + b"\xc1"
    total = (len(body) + 1 + 7) // 8 * 8
    body = body.ljust(total - 1, b"\x00")
    body = body[:1] + bytes((total // 8,)) + body[2:]
    return body + bytes((-sum(body) & 0xFF,))


def build_fru(info: FruInfo, made: datetime.datetime | None = None) -> bytes:
    chassis = _area(bytes((0x01, 0x00, CHASSIS_TYPE_RACK_MOUNT)) + _field(info.chassis_part)
                    + _field(info.chassis_serial))
    minutes = int(((made or datetime.datetime.now(datetime.timezone.utc)) - FRU_EPOCH).total_seconds() // 60)
    board = _area(bytes((0x01, 0x00, 0x00)) + struct.pack("<I", minutes)[:3]
                  + _field(info.board_manufacturer) + _field(info.board_product) + _field(info.board_serial)
                  + _field(info.board_part) + _field(""))
    product = _area(bytes((0x01, 0x00, 0x00)) + _field(info.product_manufacturer) + _field(info.product_name)
                    + _field(info.product_part) + _field(info.product_version) + _field(info.product_serial)
                    + _field(info.asset_tag) + _field(""))
    chassis_at = 1
    board_at = chassis_at + len(chassis) // 8
    product_at = board_at + len(board) // 8
    header = bytes((0x01, 0x00, chassis_at, board_at, product_at, 0x00, 0x00))
    return header + bytes((-sum(header) & 0xFF,)) + chassis + board + product


class FruCommands:
    def __init__(self, core: CommandCore, fru: bytes):
        self.fru = fru
        t = core.table
        t[(NETFN_STORAGE, 0x10)] = (PRIV_USER, self.get_area_info)
        t[(NETFN_STORAGE, 0x11)] = (PRIV_USER, self.read)
        t[(NETFN_STORAGE, 0x12)] = (PRIV_OPERATOR, self.write)

    def get_area_info(self, data: bytes) -> tuple[int, bytes]:
        if len(data) != 1:
            return CC_REQUEST_LENGTH, b""
        if data[0] != 0:
            return CC_NOT_PRESENT, b""
        return CC_OK, struct.pack("<HB", len(self.fru), 0x00)  # accessed by bytes

    def read(self, data: bytes) -> tuple[int, bytes]:
        if len(data) != 4:
            return CC_REQUEST_LENGTH, b""
        device, offset, count = data[0], struct.unpack_from("<H", data, 1)[0], data[3]
        if device != 0:
            return CC_NOT_PRESENT, b""
        if offset >= len(self.fru):
            return CC_INVALID_FIELD, b""
        chunk = self.fru[offset:offset + min(count, 64)]
        return CC_OK, bytes((len(chunk),)) + chunk

    def write(self, data: bytes) -> tuple[int, bytes]:
        if len(data) < 3:
            return CC_REQUEST_LENGTH, b""
        return CC_WRITE_PROTECTED, b""  # set it with FRU_* variables instead
