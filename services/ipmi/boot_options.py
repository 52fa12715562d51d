"""System boot options (IPMI 2.0 section 28.12/28.13, table 28-14): the byte
layout of parameter 5 (boot flags) and our device names. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass

# boot device selector, data byte 2 bits 5:2 (already shifted into place)
DEVICE_TO_SELECTOR = {"none": 0x00, "pxe": 0x04, "disk": 0x08, "cdrom": 0x14, "bios": 0x18}
SELECTOR_TO_DEVICE = {0x00: "none", 0x04: "pxe", 0x08: "disk", 0x0C: "disk", 0x14: "cdrom", 0x18: "bios"}

FLAG_VALID = 0x80
FLAG_PERSISTENT = 0x40
FLAG_EFI = 0x20


@dataclass(frozen=True)
class BootFlags:
    device: str
    persistent: bool
    efi: bool

    def encode(self) -> bytes:
        """The five data bytes of parameter 5."""
        if self.device == "none":
            return bytes((FLAG_EFI if self.efi else 0, 0, 0, 0, 0))
        first = FLAG_VALID | (FLAG_PERSISTENT if self.persistent else 0) | (FLAG_EFI if self.efi else 0)
        return bytes((first, DEVICE_TO_SELECTOR[self.device], 0, 0, 0))


class UnsupportedBootFlags(ValueError):
    pass


def decode_boot_flags(data: bytes) -> BootFlags:
    """Parameter 5 data (5 bytes) -> BootFlags; a cleared valid bit means no override."""
    if len(data) != 5:
        raise UnsupportedBootFlags("boot flags are 5 bytes")
    first, second = data[0], data[1]
    efi = bool(first & FLAG_EFI)
    if not first & FLAG_VALID:
        return BootFlags("none", False, efi)
    device = SELECTOR_TO_DEVICE.get(second & 0x3C)
    if device is None:
        raise UnsupportedBootFlags(f"boot device selector {second & 0x3C:#04x}")
    return BootFlags(device, bool(first & FLAG_PERSISTENT), efi)
