"""Builds QEMU's command line for one power-on. Pure: config and boot choice in,
argv out, so every flag can be tested without starting anything."""

from __future__ import annotations

import os
from dataclasses import dataclass

from bus.config import system_uuid
from services.power.config import VmConfig
from services.power.firmware import efi_firmware_args


@dataclass(frozen=True)
class RuntimePaths:
    qmp_socket: str
    serial_socket: str
    console_log: str
    vnc_secret_file: str  # holds VNC_PASSWORD (0600) when one is set
    efi_vars: str = ""  # this node's UEFI variable store (a copy of OVMF_VARS, kept in STATE_DIR)


@dataclass(frozen=True)
class BootChoice:
    device: str  # none | pxe | disk | cdrom | bios
    efi: bool = False
    persistent: bool = False  # once: QEMU's -boot once= reverts to the default order on reset


def build_argv(vm: VmConfig, paths: RuntimePaths, boot: BootChoice, node: str) -> list[str]:
    argv = [
        vm.qemu_binary,
        "-name", f"{node},debug-threads=on",
        "-uuid", str(system_uuid(node)),  # SMBIOS agrees with IPMI's System GUID
        "-machine", f"{vm.machine},accel={vm.accel}",
        "-m", str(vm.memory_mib),
        "-smp", str(vm.cpus),
        "-nodefaults", "-no-user-config",
        "-display", "none",
        "-device", "VGA",
        "-qmp", f"unix:{paths.qmp_socket},server=on,wait=off",
        # QEMU also writes every serial byte to a raw log of its own: the safety
        # net for output while the console relay is down (QEMU 7.2 may repeat a
        # character there when the socket pushes back; console.log has none).
        "-chardev", f"socket,id=serial0,path={paths.serial_socket},server=on,wait=off,"
                    f"logfile={paths.console_log},logappend=on",
        "-serial", "chardev:serial0",
        "-device", "pvpanic",
        "-S",  # start paused: the power agent continues it once the console relay listens
    ]
    if vm.accel == "kvm":
        argv += ["-cpu", "host"]
    display = vm.vnc_port - 5900
    if vm.vnc_password:
        argv += ["-object", f"secret,id=vncpw,file={paths.vnc_secret_file}",
                 "-vnc", f":{display},password-secret=vncpw"]
    else:
        argv += ["-vnc", f":{display}"]

    boots_embedded_guest = not vm.disk and boot.device in ("none", "disk")
    if vm.disk:
        argv += ["-drive", f"file={vm.disk},format={vm.disk_format},if=virtio,index=0"]
    if vm.cdrom:
        argv += ["-drive", f"file={vm.cdrom},media=cdrom,if=ide,index=2,readonly=on"]
    if boots_embedded_guest:
        argv += ["-kernel", os.path.join(vm.guest_dir, "vmlinuz"),
                 "-initrd", os.path.join(vm.guest_dir, "initrd.img"),
                 "-append", vm.guest_append]
    order = {"pxe": "n", "disk": "c", "cdrom": "d"}.get(boot.device)
    if order:
        argv += ["-boot", f"{'order' if boot.persistent else 'once'}={order}"]
    elif boot.device == "bios":
        argv += ["-boot", "menu=on,splash-time=30000"]
    if boot.efi:
        argv += efi_firmware_args(paths.efi_vars)
    argv += list(vm.extra_args)
    return argv
