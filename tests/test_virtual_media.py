"""Virtual media owned by the power agent: the real stack, real QEMU (TCG) and a
real bootable ISO made here (xorriso + isolinux) holding the test guest, whose
kernel command line carries a marker so the console proves the CD booted."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile

import pytest

from bus import connect
from bus.client import RemoteError
from bus.config import ConfigError
from bus.messages import BootGet, BootStatus, ErrorReply, MediaEject, MediaGet, MediaInsert, MediaStatus, \
    PowerGet, PowerStatus
from conftest import booted_stack
from helpers import REPO, wait_for
from services.power.config import power_config_from_env, vm_config_from_env
from services.power.media import MediaError, allowed_media_dirs, check_image_path
from services.power.qemu_command import BootChoice, RuntimePaths, build_argv

CD_MARKER = "qemu_bmc_booted_from=cd-bios"  # isolinux's kernel command line (SeaBIOS)
EFI_CD_MARKER = "qemu_bmc_booted_from=cd-efi"  # GRUB's (OVMF)
SUPERVISOR_CONF = os.path.join(REPO, "configs", "supervisord.conf")
ISOLINUX_BIN = "/usr/lib/ISOLINUX/isolinux.bin"
LDLINUX_C32 = "/usr/lib/syslinux/modules/bios/ldlinux.c32"


GRUB_EFI_CFG = f"""search --no-floppy --set=root --file /qemu-bmc-test-cd
linux /vmlinuz console=ttyS0 {EFI_CD_MARKER}
initrd /initrd.img
boot
"""


def make_efi_boot_image(path: str, work: str) -> None:
    """The El Torito EFI image: a FAT file system holding EFI/BOOT/BOOTX64.EFI, a
    standalone GRUB that finds the CD by a marker file and boots the guest from it."""
    cfg = os.path.join(work, "grub.cfg")
    with open(cfg, "w") as f:
        f.write(GRUB_EFI_CFG)
    efi = os.path.join(work, "BOOTX64.EFI")
    subprocess.run(["grub-mkstandalone", "-O", "x86_64-efi", "-o", efi,
                    "--install-modules=iso9660 search search_fs_file linux normal configfile fat part_msdos",
                    f"boot/grub/grub.cfg={cfg}"], check=True, capture_output=True)
    sectors = os.path.getsize(efi) // 512 + 2048  # the loader plus room for FAT's own structures
    for cmd in (["mformat", "-i", path, "-C", "-T", str(sectors), "::"],
                ["mmd", "-i", path, "::/EFI", "::/EFI/BOOT"],
                ["mcopy", "-i", path, efi, "::/EFI/BOOT/"]):
        subprocess.run(cmd, check=True, capture_output=True)


def make_bootable_iso(path: str, guest_dir: str) -> None:
    """An ISO with the test guest that boots on legacy BIOS (El Torito, no
    emulation, isolinux) and on UEFI (El Torito EFI image, GRUB); each puts its
    own marker on the kernel command line, which the kernel prints on ttyS0."""
    root = tempfile.mkdtemp(prefix="qbt-iso-")
    work = tempfile.mkdtemp(prefix="qbt-efi-")
    try:
        make_efi_boot_image(os.path.join(root, "efiboot.img"), work)
        open(os.path.join(root, "qemu-bmc-test-cd"), "w").close()
        os.mkdir(os.path.join(root, "isolinux"))
        shutil.copy(ISOLINUX_BIN, os.path.join(root, "isolinux"))
        shutil.copy(LDLINUX_C32, os.path.join(root, "isolinux"))
        shutil.copy(os.path.join(guest_dir, "vmlinuz"), root)
        shutil.copy(os.path.join(guest_dir, "initrd.img"), root)
        with open(os.path.join(root, "isolinux", "isolinux.cfg"), "w") as f:
            f.write("SERIAL 0 115200\nDEFAULT cd\nPROMPT 0\nTIMEOUT 0\nLABEL cd\n"
                    "  KERNEL /vmlinuz\n  INITRD /initrd.img\n"
                    f"  APPEND console=ttyS0 {CD_MARKER}\n")
        subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "QBTESTCD", "-o", path,
                        "-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat",
                        "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table",
                        "-eltorito-alt-boot", "-e", "efiboot.img", "-no-emul-boot", root],
                       check=True, capture_output=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


# --- the command line and the checks, without a VM -------------------------------


@pytest.fixture
def guest(tmp_path):
    for name in ("vmlinuz", "initrd.img"):
        (tmp_path / name).write_bytes(b"x")
    return str(tmp_path)


def cd_args(argv: list[str]) -> tuple[str, str]:
    drive = next(a for a in argv if "id=vmedia-cd," in a and a.startswith("if=none"))
    device = next(a for a in argv if a.startswith("ide-cd,drive=vmedia-cd,"))
    return drive, device


def test_the_cd_drive_is_always_there_and_carries_the_inserted_image(guest):
    paths = RuntimePaths("/run/q/qmp.sock", "/run/q/serial.sock", "/log/console.log", "/run/q/vnc")
    vm = vm_config_from_env({"GUEST_DIR": guest, "QEMU_ACCEL": "tcg"})
    drive, device = cd_args(build_argv(vm, paths, BootChoice("none"), "n1"))
    assert "file=" not in drive and "media=cdrom" in drive and "readonly=on" in drive
    assert "id=vmedia-cd-dev" in device and "bus=ide.3" in device and "bootindex" not in device

    argv = build_argv(vm, paths, BootChoice("cdrom"), "n1", media="/m/a,b.iso")
    drive, device = cd_args(argv)
    assert "file=/m/a,,b.iso,format=raw" in drive  # QEMU's comma escape
    assert "-kernel" not in argv and "-boot once=d" in " ".join(argv)  # SeaBIOS: the CD, this boot only

    # OVMF follows bootindex (fw_cfg "bootorder"), not -boot once=d
    _drive, device = cd_args(build_argv(vm, paths, BootChoice("cdrom", efi=True), "n1", media="/m/x.iso"))
    assert device.endswith(",bootindex=0")
    # the pc machine's IDE has two drives per bus
    pc = vm_config_from_env({"GUEST_DIR": guest, "QEMU_ACCEL": "tcg", "VM_MACHINE": "pc"})
    assert "bus=ide.1,unit=1" in cd_args(build_argv(pc, paths, BootChoice("none"), "n1"))[1]


def test_image_paths_are_checked(tmp_path):
    state, mounted = tmp_path / "state", tmp_path / "isos"
    (state / "media").mkdir(parents=True)
    mounted.mkdir()
    dirs = allowed_media_dirs(str(state), str(mounted))
    (mounted / "ok.iso").write_bytes(b"\0" * 4096)
    (mounted / "empty.iso").write_bytes(b"")
    (tmp_path / "outside.iso").write_bytes(b"\0" * 4096)
    os.symlink(tmp_path / "outside.iso", state / "media" / "escape.iso")
    assert check_image_path(str(mounted / "ok.iso"), dirs) == str(mounted / "ok.iso")
    cases = [("", "bad-path"), ("ok.iso", "bad-path"),
             (str(tmp_path / "outside.iso"), "path-not-allowed"),
             (str(state / "media" / "escape.iso"), "path-not-allowed"),
             (f"{mounted}/../outside.iso", "path-not-allowed"),
             ("/etc/passwd", "path-not-allowed"),
             (str(mounted / "absent.iso"), "not-found"),
             (str(state / "media"), "not-a-file"),
             (str(mounted / "empty.iso"), "empty-image")]
    for path, code in cases:
        with pytest.raises(MediaError) as err:
            check_image_path(path, dirs)
        assert err.value.code == code, (path, err.value)
        assert str(err.value)


def test_media_dir_must_exist(guest, tmp_path):
    with pytest.raises(ConfigError) as err:
        power_config_from_env({"GUEST_DIR": guest, "QEMU_ACCEL": "tcg", "MEDIA_DIR": str(tmp_path / "nope")})
    assert "MEDIA_DIR" in str(err.value)
    config = power_config_from_env({"GUEST_DIR": guest, "QEMU_ACCEL": "tcg", "MEDIA_DIR": str(tmp_path)})
    assert config.media_dir == str(tmp_path)


# --- the real stack ----------------------------------------------------------------


class BusSession:
    """Requests and events on the stack's bus, from synchronous tests."""

    def __init__(self, url: str, node: str):
        self.url = url
        self.prefix = f"bmc.{node}"

    def request(self, subject: str, message, reply_type, timeout: float = 30):
        async def go():
            bus = await connect(self.url, "test")
            try:
                return await bus.request(f"{self.prefix}.{subject}", message, reply_type, timeout=timeout)
            except RemoteError as exc:  # the ErrorReply is what these tests look at
                return exc.reply
            finally:
                await bus.close()
        return asyncio.run(go())

    def request_with_event(self, subject: str, message, reply_type, event: str, event_type):
        """The reply, and the first event on `event` published while it was served."""
        async def go():
            bus = await connect(self.url, "test")
            seen: asyncio.Queue = asyncio.Queue()

            async def on_event(msg) -> None:
                await seen.put(msg)
            try:
                await bus.subscribe(f"{self.prefix}.{event}", event_type, on_event)
                reply = await bus.request(f"{self.prefix}.{subject}", message, reply_type, timeout=30)
                return reply, await asyncio.wait_for(seen.get(), 10)
            finally:
                await bus.close()
        return asyncio.run(go())


@pytest.fixture(scope="module")
def media_stack(guest_dir):
    mounted = tempfile.mkdtemp(prefix="qemu-bmc-media-isos-")  # a directory mounted into the container

    def prepare(s) -> None:
        os.makedirs(os.path.join(s.env["STATE_DIR"], "media"))
        make_bootable_iso(os.path.join(mounted, "guest-cd.iso"), guest_dir)

    try:
        with booted_stack(guest_dir, "qemu-bmc-media-", prepare, MEDIA_DIR=mounted) as s:
            yield s
    finally:
        shutil.rmtree(mounted, ignore_errors=True)


def planned_cd_drive(stack) -> str:
    """The virtual CD's -drive in the plan the agent wrote for the running QEMU."""
    with open(os.path.join(stack.env["RUN_DIR"], "qemu-plan.json")) as f:
        argv = json.load(f)["argv"]
    return next(a for a in argv if a.startswith("if=none,id=vmedia-cd,"))


def power_cycle_and_wait_boot(stack, boots_before: int) -> None:
    stack.ipmitool("power", "cycle")
    wait_for(lambda: stack.boots() >= boots_before + 1, 120, "the guest to boot after the power cycle")


def test_bad_paths_are_refused_and_the_vm_is_untouched(media_stack):
    s = media_stack
    bus = BusSession(s.nats_url, s.env["NODE_NAME"])
    before = bus.request("power.get", PowerGet(), PowerStatus)
    boots = s.boots()
    empty = bus.request("media.get", MediaGet(), MediaStatus)
    assert [(m.slot, m.inserted) for m in empty.slots] == [("cd", False)]
    mounted = s.env["MEDIA_DIR"]
    os.makedirs(os.path.join(mounted, "a-directory.iso"))
    cases = [("/etc/passwd", "path-not-allowed"),
             (os.path.join(mounted, "absent.iso"), "not-found"),
             (os.path.join(mounted, "a-directory.iso"), "not-a-file"),
             ("relative.iso", "bad-path")]
    for path, code in cases:
        reply = bus.request("media.insert", MediaInsert(path=path, source="test"), MediaStatus)
        assert isinstance(reply, ErrorReply) and reply.code == code, (path, reply)
    after = bus.request("power.get", PowerGet(), PowerStatus)
    assert after.state == "on" and after.vm_status == "running" and after.since == before.since
    assert s.boots() == boots
    assert not bus.request("media.get", MediaGet(), MediaStatus).slots[0].inserted


def test_insert_boot_from_cd_once_survive_restart_and_eject(media_stack):
    s = media_stack
    bus = BusSession(s.nats_url, s.env["NODE_NAME"])
    iso = os.path.join(s.env["MEDIA_DIR"], "guest-cd.iso")
    assert "qemu_bmc_booted_from" not in s.console_log

    # inserted into the running VM (QMP), announced on media.changed
    reply, event = bus.request_with_event("media.insert", MediaInsert(path=iso, image_name="http://x/guest-cd.iso",
                                                                      source="test"),
                                          MediaStatus, "media.changed", MediaStatus)
    assert isinstance(reply, MediaStatus), reply
    slot = reply.slots[0]
    assert (slot.inserted, slot.path, slot.image_name) == (True, iso, "http://x/guest-cd.iso")
    assert event.slots[0].path == iso
    assert "insert" in s.output() and "virtual CD" in s.output()

    # boot from CD, once, chosen by a real IPMI client: the power cycle boots the ISO
    s.ipmitool("chassis", "bootdev", "cdrom")
    assert bus.request("boot.get", BootGet(), BootStatus).device == "cdrom"
    boots = s.boots()
    power_cycle_and_wait_boot(s, boots)
    wait_for(lambda: CD_MARKER in s.console_log, 30, "the CD's kernel command line on the console")
    assert f"file={iso}" in planned_cd_drive(s)
    cd_boots = s.console_log.count(CD_MARKER)

    # the one-time choice is used up: the next cycle boots the embedded guest, media stays in
    boots = s.boots()
    power_cycle_and_wait_boot(s, boots)
    assert s.console_log.count(CD_MARKER) == cd_boots
    assert bus.request("boot.get", BootGet(), BootStatus).device == "none"
    assert bus.request("media.get", MediaGet(), MediaStatus).slots[0].path == iso
    assert f"file={iso}" in planned_cd_drive(s)  # in QEMU's command line of this power-on too

    # a restarted power agent still knows the image, and it boots under UEFI too (OVMF)
    s.run("supervisorctl", "-c", SUPERVISOR_CONF, "restart", "power")
    wait_for(lambda: "re-attached to running QEMU" in s.output(), 30, "the agent to re-attach")
    wait_for(lambda: bus.request("media.get", MediaGet(), MediaStatus, timeout=3).slots[0].path == iso, 30,
             "media.get after the restart")
    s.ipmitool("chassis", "bootdev", "cdrom", "options=efiboot")
    assert bus.request("boot.get", BootGet(), BootStatus) == BootStatus(device="cdrom", persistent=False, efi=True)
    boots = s.boots()
    power_cycle_and_wait_boot(s, boots)
    wait_for(lambda: EFI_CD_MARKER in s.console_log, 30, "GRUB's kernel command line on the console")
    assert s.console_log.count(CD_MARKER) == cd_boots

    # and it outlives a container restart (power's key-value bucket in STATE_DIR)
    boots = s.boots()
    s.stop()
    s.start()
    wait_for(lambda: s.boots() >= boots + 1, 120, "the guest to boot after the container restart")
    assert bus.request("media.get", MediaGet(), MediaStatus).slots[0].path == iso
    assert f"file={iso}" in planned_cd_drive(s)

    # eject from the running VM
    reply, event = bus.request_with_event("media.eject", MediaEject(source="test"), MediaStatus,
                                          "media.changed", MediaStatus)
    assert isinstance(reply, MediaStatus) and not reply.slots[0].inserted and not event.slots[0].inserted
    assert not bus.request("media.get", MediaGet(), MediaStatus).slots[0].inserted

    # an image that vanishes while inserted is ejected at the next power-on, which boots normally
    copy = os.path.join(s.env["STATE_DIR"], "media", "fetched.iso")
    shutil.copy(iso, copy)
    reply = bus.request("media.insert", MediaInsert(path=copy), MediaStatus)
    assert isinstance(reply, MediaStatus) and reply.slots[0].path == copy
    os.unlink(copy)
    cd_boots = s.console_log.count("qemu_bmc_booted_from")
    boots = s.boots()
    power_cycle_and_wait_boot(s, boots)
    assert s.console_log.count("qemu_bmc_booted_from") == cd_boots
    assert not bus.request("media.get", MediaGet(), MediaStatus).slots[0].inserted
    assert "file=" not in planned_cd_drive(s)
    assert "virtual CD image unusable, ejected" in s.output()

    # inserted while the server is off (the usual provisioning order), then booted
    s.ipmitool("power", "off")
    wait_for(lambda: s.power_state() == "Chassis Power is off", 60, "power off")
    reply = bus.request("media.insert", MediaInsert(path=iso), MediaStatus)
    assert isinstance(reply, MediaStatus) and reply.slots[0].path == iso
    s.ipmitool("chassis", "bootdev", "cdrom")
    cd_boots = s.console_log.count(CD_MARKER)
    s.ipmitool("power", "on")
    wait_for(lambda: s.console_log.count(CD_MARKER) > cd_boots, 120, "a boot from the CD inserted while off")
