"""Power agent configuration (environment variables, validated at start)."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from typing import Mapping

from bus.config import ConfigError, Settings, env_choice, env_int, env_str

DEFAULT_GUEST_DIR = "/usr/share/qemu-bmc/guest"
# NIC models QEMU's x86 machines offer; e1000 for guests without virtio drivers
NIC_MODELS = ("virtio-net-pci", "e1000", "e1000e", "rtl8139", "vmxnet3")


@dataclass(frozen=True)
class VmConfig:
    """What the VM is made of; read once when the power agent starts."""

    accel: str  # "kvm" or "tcg" (auto is resolved here)
    memory_mib: int
    cpus: int
    machine: str
    disk: str  # path or ""
    disk_format: str
    cdrom: str  # path or ""
    guest_dir: str  # embedded default guest (vmlinuz, initrd.img), used when disk is ""
    guest_append: str
    vnc_port: int  # TCP port, 5900 + display
    vnc_password: str
    extra_args: tuple[str, ...]
    qemu_binary: str
    nic_model: str = "virtio-net-pci"  # QEMU device of every NIC (VM_NIC_MODEL)
    nic_hotplug_slots: int = 4  # spare PCIe root ports for NICs added while the VM runs
    ipmi_kcs: bool = True  # VM_IPMI_KCS: a KCS interface wired to the IPMI service (in-band IPMI)


@dataclass(frozen=True)
class PowerConfig:
    bus: Settings
    vm: VmConfig
    restore_policy: str
    soft_off_timeout: float  # container stop: how long the guest may take to power off
    net_wait_timeout: int = 120  # NET_WAIT_TIMEOUT: how long a power-on waits for CLAB_INTFS NICs
    media_dir: str = ""  # MEDIA_DIR: images mounted into the container that may be inserted


def kvm_usable(path: str = "/dev/kvm") -> bool:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def _memory_mib(env: Mapping[str, str]) -> int:
    raw = env.get("VM_MEMORY", "").strip() or "512"
    units = {"M": 1, "G": 1024}
    number, unit = (raw[:-1], raw[-1].upper()) if raw[-1:].upper() in units else (raw, "M")
    try:
        mib = int(number) * units[unit]
    except ValueError:
        raise ConfigError("VM_MEMORY", f"{raw!r} is not a size like 512, 512M or 2G") from None
    if not 64 <= mib <= 1024 * 1024:
        raise ConfigError("VM_MEMORY", f"{raw!r} is outside 64M..1024G")
    return mib


def vm_config_from_env(env: Mapping[str, str]) -> VmConfig:
    accel = env_choice(env, "QEMU_ACCEL", "auto", ("auto", "kvm", "tcg"))
    if accel == "auto":
        accel = "kvm" if kvm_usable() else "tcg"
    disk = env.get("VM_DISK", "").strip()
    if disk and not os.path.isfile(disk):
        raise ConfigError("VM_DISK", f"{disk} does not exist (mount the image into the container)")
    disk_format = env_choice(env, "VM_DISK_FORMAT", "qcow2" if disk.endswith(".qcow2") else "raw",
                             ("qcow2", "raw"))
    cdrom = env.get("VM_CDROM", "").strip()
    if cdrom and not os.path.isfile(cdrom):
        raise ConfigError("VM_CDROM", f"{cdrom} does not exist (mount the ISO into the container)")
    guest_dir = env_str(env, "GUEST_DIR", DEFAULT_GUEST_DIR)
    if not disk and not (os.path.isfile(os.path.join(guest_dir, "vmlinuz"))
                         and os.path.isfile(os.path.join(guest_dir, "initrd.img"))):
        raise ConfigError("GUEST_DIR", f"{guest_dir} lacks vmlinuz/initrd.img and VM_DISK is not set")
    try:
        extra = tuple(shlex.split(env.get("QEMU_EXTRA_ARGS", "")))
    except ValueError as exc:
        raise ConfigError("QEMU_EXTRA_ARGS", f"cannot split: {exc}") from None
    vnc_password = env.get("VNC_PASSWORD", "")
    if len(vnc_password) > 8:
        # RFB's DES authentication uses only the first 8 characters; say so rather than surprise
        raise ConfigError("VNC_PASSWORD", "VNC authentication allows at most 8 characters")
    return VmConfig(
        accel=accel,
        memory_mib=_memory_mib(env),
        cpus=env_int(env, "VM_CPUS", 1, 1, 64),
        machine=env_str(env, "VM_MACHINE", "q35"),
        disk=disk,
        disk_format=disk_format,
        cdrom=cdrom,
        guest_dir=guest_dir,
        guest_append=env_str(env, "GUEST_APPEND", "console=ttyS0 quiet"),
        vnc_port=env_int(env, "VNC_PORT", 5900, 5900, 65535),
        vnc_password=vnc_password,
        extra_args=extra,
        qemu_binary=env_str(env, "QEMU_BINARY", "qemu-system-x86_64"),
        nic_model=env_choice(env, "VM_NIC_MODEL", "virtio-net-pci", NIC_MODELS),
        nic_hotplug_slots=env_int(env, "VM_NIC_HOTPLUG_SLOTS", 4, 0, 32),
        ipmi_kcs=env_choice(env, "VM_IPMI_KCS", "on", ("on", "off")) == "on",
    )


def power_config_from_env(env: Mapping[str, str] | None = None) -> PowerConfig:
    env = os.environ if env is None else env
    return PowerConfig(
        bus=Settings.from_env(env),
        vm=vm_config_from_env(env),
        restore_policy=env_choice(env, "POWER_RESTORE_POLICY", "always-on",
                                  ("always-on", "always-off", "previous")),
        soft_off_timeout=float(env_int(env, "SOFT_OFF_TIMEOUT", 20, 1, 3600)),
        net_wait_timeout=env_int(env, "NET_WAIT_TIMEOUT", 120, 0, 3600),
        media_dir=_media_dir(env),
    )


def _media_dir(env: Mapping[str, str]) -> str:
    media_dir = env.get("MEDIA_DIR", "").strip()
    if media_dir and not os.path.isdir(media_dir):
        raise ConfigError("MEDIA_DIR", f"{media_dir} is not a directory (mount it into the container)")
    return media_dir
