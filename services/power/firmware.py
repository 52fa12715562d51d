"""UEFI firmware (OVMF) for an EFI boot; SeaBIOS, QEMU's default, for legacy.

The boot flags of IPMI and Redfish choose between them per power-on. OVMF comes
from Debian's `ovmf` package; its variable store is per node, copied once.
"""

from __future__ import annotations

import logging
import os
import shutil

log = logging.getLogger("firmware")

OVMF_CANDIDATES = (
    ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
    ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"),
)


def ovmf_paths() -> tuple[str, str] | None:
    for code, vars_template in OVMF_CANDIDATES:
        if os.path.isfile(code) and os.path.isfile(vars_template):
            return code, vars_template
    return None


def efi_firmware_args(vars_path: str) -> list[str]:
    """QEMU arguments for OVMF, or [] (legacy boot, with a warning) when it is absent."""
    found = ovmf_paths()
    if found is None or not vars_path:
        log.warning("EFI boot requested but OVMF is not installed; booting legacy BIOS")
        return []
    code, vars_template = found
    if not os.path.exists(vars_path):
        os.makedirs(os.path.dirname(vars_path), exist_ok=True)
        shutil.copyfile(vars_template, vars_path)
    return ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
            "-drive", f"if=pflash,format=raw,unit=1,file={vars_path}"]
