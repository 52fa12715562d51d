"""Builds QEMU's command line for one power-on. Pure: config and boot choice in,
argv out, so every flag can be tested without starting anything."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Sequence

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
    ipmi_socket: str = ""  # the IPMI service's in-band (KCS) socket, in RUN_DIR


@dataclass(frozen=True)
class BootChoice:
    device: str  # none | pxe | disk | cdrom | bios
    efi: bool = False
    persistent: bool = False  # once: QEMU's -boot once= reverts to the default order on reset


@dataclass(frozen=True)
class VmNic:
    """One VM NIC as QEMU sees it, from the net service's plan.

    QEMU's ids come from the container interface: netdev `net-eth2`, device
    `nic-eth2`; the same ids serve the command line and hot-plug (QMP).
    """

    ifname: str
    mac: str
    mtu: int = 1500
    tap: str = ""  # tc/bridge: QEMU opens this tap by name
    tap_device: str = ""  # macvtap: /dev/tapN, opened by the launcher (or the agent) and passed as an fd
    port: str = ""  # the PCIe root port it sits in (q35), "" on the root bus

    @property
    def key(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]", "_", self.ifname)

    @property
    def netdev_id(self) -> str:
        return f"net-{self.key}"

    @property
    def device_id(self) -> str:
        return f"nic-{self.key}"

    @property
    def fd_placeholder(self) -> str:
        """Stands for the fd number in the plan's argv; the launcher puts the real one in."""
        return f"@fd:{self.netdev_id}@"


NIC_PORT_PREFIX = "nicport"
NIC_PORT_CHASSIS = 64  # chassis numbers of the NIC root ports start here (unique per port)


def has_pcie_ports(vm: VmConfig) -> bool:
    """q35 has no hot-plug on its root bus: NICs sit in PCIe root ports there."""
    return "q35" in vm.machine


def nic_ports(vm: VmConfig, initial: int) -> list[str]:
    """Root port ids: one per NIC at power-on plus VM_NIC_HOTPLUG_SLOTS spares."""
    if not has_pcie_ports(vm):
        return []
    return [f"{NIC_PORT_PREFIX}{i}" for i in range(initial + vm.nic_hotplug_slots)]


def netdev_options(nic: VmNic, fd: str | None = None) -> dict:
    """The tap backend, as QMP netdev_add arguments (fd: a number or a getfd name)."""
    if nic.tap_device:
        return {"type": "tap", "id": nic.netdev_id, "fd": fd if fd is not None else nic.fd_placeholder}
    return {"type": "tap", "id": nic.netdev_id, "ifname": nic.tap, "script": "no", "downscript": "no"}


def device_options(nic: VmNic, model: str) -> dict:
    """The guest-visible NIC, as QMP device_add arguments."""
    opts: dict = {"driver": model, "id": nic.device_id, "netdev": nic.netdev_id, "mac": nic.mac}
    if nic.port:
        opts["bus"] = nic.port
    if model == "virtio-net-pci" and 68 <= nic.mtu <= 65535:
        opts["host_mtu"] = nic.mtu  # the guest's MTU follows the container interface
    return opts


def _opts_arg(opts: dict, first: str) -> str:
    head = str(opts[first])
    rest = ",".join(f"{k}={v}" for k, v in opts.items() if k not in (first,))
    return f"{head},{rest}" if rest else head


def nic_argv(vm: VmConfig, nics: Sequence[VmNic], ports: Sequence[str]) -> list[str]:
    argv: list[str] = []
    for i, port in enumerate(ports):
        argv += ["-device", f"pcie-root-port,id={port},chassis={NIC_PORT_CHASSIS + i},slot=0"]
    for nic in nics:
        argv += ["-netdev", _opts_arg(netdev_options(nic), "type"),
                 "-device", _opts_arg(device_options(nic, vm.nic_model), "driver")]
    return argv


def nic_fds(nics: Sequence[VmNic]) -> dict[str, str]:
    """Placeholder -> device path, for the launcher to open (macvtap NICs)."""
    return {nic.fd_placeholder: nic.tap_device for nic in nics if nic.tap_device}


def ipmi_kcs_argv(vm: VmConfig, paths: RuntimePaths) -> list[str]:
    """In-band IPMI: a KCS interface whose BMC is the IPMI service, over QEMU's
    external-BMC protocol. QEMU is the socket's client and reconnects every
    second when the IPMI service restarts (or is not there yet)."""
    if not vm.ipmi_kcs or not paths.ipmi_socket:
        return []
    return ["-chardev", f"socket,id=ipmi0,path={paths.ipmi_socket},reconnect=1",
            "-device", "ipmi-bmc-extern,id=bmc0,chardev=ipmi0",
            "-device", "isa-ipmi-kcs,bmc=bmc0"]


VIRTUAL_CD_DRIVE = "vmedia-cd"  # block backend of the virtual-media CD (always present, maybe empty)
VIRTUAL_CD_DEVICE = "vmedia-cd-dev"  # its guest-visible drive: QMP blockdev-change-medium/eject take this id


def _qemu_opt(value: str) -> str:
    """A value inside a QEMU option list: commas are doubled (QEMU's escape)."""
    return value.replace(",", ",,")


def virtual_cd_argv(vm: VmConfig, boot: BootChoice, media: str) -> list[str]:
    """The virtual-media CD drive: present at every power-on so an image can be
    inserted into the running VM, and holding `media` when one is inserted.

    q35's AHCI has one drive per port (ide.0-ide.5; VM_CDROM takes ide.2), the pc
    machine's IDE two per bus: the CD sits on a port nothing else uses. OVMF boots
    in the order of the "bootorder" fw_cfg file (bootindex), not -boot once=d."""
    drive = f"if=none,id={VIRTUAL_CD_DRIVE},media=cdrom,readonly=on"
    if media:
        drive += f",file={_qemu_opt(media)},format=raw"
    bus = "bus=ide.3" if has_pcie_ports(vm) else "bus=ide.1,unit=1"
    device = f"ide-cd,drive={VIRTUAL_CD_DRIVE},id={VIRTUAL_CD_DEVICE},{bus}"
    if boot.device == "cdrom" and boot.efi:
        device += ",bootindex=0"
    return ["-drive", drive, "-device", device]


def build_argv(vm: VmConfig, paths: RuntimePaths, boot: BootChoice, node: str,
               nics: Sequence[VmNic] = (), ports: Sequence[str] = (), media: str = "") -> list[str]:
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
    argv += virtual_cd_argv(vm, boot, media)
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
    argv += nic_argv(vm, nics, ports)
    argv += ipmi_kcs_argv(vm, paths)
    argv += list(vm.extra_args)
    return argv
