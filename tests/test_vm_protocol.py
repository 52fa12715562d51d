"""QEMU's external-BMC wire protocol (services/ipmi/vm_protocol.py), fed bytes.

Byte layouts follow OpenIPMI's lanserv README.vm and QEMU's
hw/ipmi/ipmi_bmc_extern.c; the expected frames are spelled out by hand here."""

from __future__ import annotations

import asyncio
import os
import random

import pytest

from services.ipmi.bmc import build_core
from services.ipmi.commands import DeviceIdentity
from services.ipmi.kcs_server import KcsServer
from services.ipmi.users import UserStore
from services.ipmi.vm_protocol import (Dispatch, MachineReset, PeerHello, SystemInterface, VmControl, VmDecoder,
                                       VmFrameError, VmRequest, Write, checksum, encode_control, encode_request,
                                       encode_response)


def unframe(frame: bytes) -> bytes:
    """One encoded frame back to its raw bytes (escapes undone, end marker off)."""
    out, escaped = bytearray(), False
    for byte in frame[:-1]:
        if byte == 0xAA:
            escaped = True
            continue
        out.append(byte & ~0x10 if escaped else byte)
        escaped = False
    return bytes(out)


def test_a_request_frame_decodes_with_its_checksum():
    # msg_id 7, App netfn (06h) LUN 0 -> 0x18, Get Device ID (01h); 07+18+01 = 0x20 -> checksum 0xE0
    events = VmDecoder().feed(bytes((0x07, 0x18, 0x01, 0xE0, 0xA0)))
    assert events == [VmRequest(msg_id=7, netfn=0x06, lun=0, cmd=0x01, data=b"")]


def test_response_encoding_sets_the_response_netfn_and_checksum():
    frame = encode_response(7, 0x06, 0, 0x01, 0x00, b"\x20")
    # 07, 1C (netfn 07h), 01, cc 00, 20; sum 0x44 -> checksum 0xBC
    assert frame == bytes((0x07, 0x1C, 0x01, 0x00, 0x20, 0xBC, 0xA0))
    assert sum(frame[:-1]) & 0xFF == 0


def test_special_bytes_are_escaped_both_ways():
    # data holding A0, A1 and AA, and a msg_id that is itself special
    frame = encode_request(0xA0, 0x06, 0, 0x45, bytes((0xA0, 0xA1, 0xAA, 0x01)))
    body = bytes((0xA0, 0x18, 0x45, 0xA0, 0xA1, 0xAA, 0x01))
    assert frame.count(0xAA) >= 4 and frame.endswith(b"\xa0") and b"\xa0" not in frame[:-1]
    assert frame.startswith(bytes((0xAA, 0xB0)))  # A0 -> AA B0
    assert VmDecoder().feed(frame) == [VmRequest(0xA0, 0x06, 0, 0x45, body[3:])]
    assert checksum(body) == (-sum(body)) & 0xFF


def test_a_frame_split_anywhere_decodes_the_same():
    frames = encode_request(1, 0x0A, 0, 0x43, bytes(range(0x9C, 0xB0))) + encode_control(0x08, 0x1F)
    whole = VmDecoder().feed(frames)
    for cut in range(1, len(frames)):
        decoder = VmDecoder()
        assert decoder.feed(frames[:cut]) + decoder.feed(frames[cut:]) == whole
    assert whole[1] == VmControl(0x08, b"\x1f")


def test_bad_frames_are_reported_and_the_next_one_still_decodes():
    decoder = VmDecoder()
    good = encode_request(2, 0x06, 0, 0x01)
    bad_sum = bytes((0x02, 0x18, 0x01, 0x00, 0xA0))
    too_short = bytes((0x02, 0x18, 0xA0))
    response = encode_response(3, 0x06, 0, 0x01, 0)  # QEMU never sends one
    dangling_escape = bytes((0x01, 0x18, 0xAA, 0xA0))
    too_long = bytes(400) + b"\xa0"
    events = decoder.feed(bad_sum + too_short + response + dangling_escape + too_long + good)
    assert events == [VmFrameError("checksum"), VmFrameError("too-short"), VmFrameError("response-netfn"),
                      VmFrameError("escape"), VmFrameError("too-long"), VmRequest(2, 0x06, 0, 0x01, b"")]


def test_random_garbage_never_raises():
    rng = random.Random(9)
    decoder = VmDecoder()
    for _ in range(300):
        blob = bytes(rng.choice((0xA0, 0xA1, 0xAA, rng.randrange(256))) for _ in range(rng.randrange(60)))
        for event in decoder.feed(blob):
            assert isinstance(event, (VmRequest, VmControl, VmFrameError))


def test_qemus_hello_and_reset_become_events():
    iface = SystemInterface()
    # what QEMU writes on connect: VERSION 1, CAPABILITIES irq|attn|power|reset|nmi|graceful
    hello = bytes((0xFF, 0x01, 0xA1, 0x08, 0x3F, 0xA1))
    assert iface.receive(hello) == [PeerHello(1, ("power", "reset", "irq", "nmi", "attn", "graceful-shutdown"))]
    assert iface.receive(bytes((0x04, 0xA1))) == [MachineReset()]


def test_the_receive_interrupt_setting_goes_to_qemu_before_the_answer():
    iface = SystemInterface()
    actions = iface.receive(encode_request(5, 0x06, 0, 0x2E, b"\x09"))  # Set BMC Global Enables
    assert actions == [Write(bytes((0x05, 0xA1)), control=True), Write(encode_response(5, 0x06, 0, 0x2E, 0))]
    get = iface.receive(encode_request(6, 0x06, 0, 0x2F))
    assert get == [Write(encode_response(6, 0x06, 0, 0x2F, 0, b"\x09"))]
    off = iface.receive(encode_request(7, 0x06, 0, 0x2E, b"\x08"))
    assert off[0] == Write(bytes((0x06, 0xA1)), control=True)
    iface.receive(encode_request(8, 0x06, 0, 0x2E, b"\x09"))
    iface.receive(bytes((0x04, 0xA1)))  # the machine was reset: the next OS starts from the default
    assert iface.receive(encode_request(9, 0x06, 0, 0x2F)) == [Write(encode_response(9, 0x06, 0, 0x2F, 0, b"\x08"))]


def test_the_system_interface_answers_about_its_own_channel_and_passes_the_rest_on():
    iface = SystemInterface()
    [answer] = iface.receive(encode_request(1, 0x06, 0, 0x42, b"\x0e"))
    raw = unframe(answer.data)
    assert raw[:4] == bytes((1, 0x1C, 0x42, 0x00)) and raw[4:7] == bytes((0x0F, 0x0C, 0x05))
    lan_channel = iface.receive(encode_request(2, 0x06, 0, 0x42, b"\x01"))
    assert lan_channel == [Dispatch(VmRequest(2, 0x06, 0, 0x42, b"\x01"))]
    flags = iface.receive(encode_request(3, 0x06, 0, 0x31))
    assert flags == [Write(encode_response(3, 0x06, 0, 0x31, 0, b"\x00"))]


class _NoBackend:
    power_on = True
    restore_policy = "always-on"
    last_power_event = 0
    restart_cause = 0


def test_the_unix_socket_edge_answers_with_the_shared_core(tmp_path):
    """The edge over a real unix socket: QEMU's hello, then requests; user changes
    land in the same UserStore the LAN endpoint uses."""
    users, _ = UserStore.from_env({"IPMI_PASSWORD": "secret"})
    identity = DeviceIdentity(0x20, 1, (0, 1), 32473, 1, bytes(16), bytes(16))
    core = build_core(identity, _NoBackend(), users)
    path = str(tmp_path / "ipmi-kcs.sock")

    async def exchange():
        server = KcsServer(core, path)
        await server.start()
        reader, writer = await asyncio.open_unix_connection(path)

        async def ask(msg_id, netfn, cmd, data=b""):
            writer.write(encode_request(msg_id, netfn, 0, cmd, data))
            await writer.drain()
            raw = unframe(await asyncio.wait_for(reader.readuntil(b"\xa0"), 10))
            assert sum(raw) & 0xFF == 0
            return raw

        writer.write(bytes((0xFF, 0x01, 0xA1, 0x08, 0x1F, 0xA1)))
        device_id = await ask(1, 0x06, 0x01)
        assert device_id[:4] == bytes((1, 0x1C, 0x01, 0x00)) and device_id[4] == 0x20
        name = b"maas".ljust(16, b"\x00")
        assert (await ask(2, 0x06, 0x45, bytes((3,)) + name))[3] == 0x00  # Set User Name, slot 3
        assert users.get(3).name == b"maas"
        assert (await ask(3, 0x06, 0xC0))[3] == 0xC1  # unknown command: an answer, not silence
        writer.close()
        await server.close()
        assert not os.path.exists(path)

    asyncio.run(exchange())


@pytest.mark.parametrize("value", ["maybe", "1"])
def test_vm_ipmi_kcs_must_be_on_or_off(value, tmp_path):
    from bus.config import ConfigError
    from services.ipmi.config import ipmi_config_from_env
    from services.power.config import vm_config_from_env
    with pytest.raises(ConfigError, match="VM_IPMI_KCS"):
        ipmi_config_from_env({"VM_IPMI_KCS": value, "IPMI_PASSWORD": "x"})
    for name in ("vmlinuz", "initrd.img"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(ConfigError, match="VM_IPMI_KCS"):
        vm_config_from_env({"VM_IPMI_KCS": value, "GUEST_DIR": str(tmp_path), "QEMU_ACCEL": "tcg"})


def test_qemu_gets_the_kcs_interface_unless_turned_off(tmp_path):
    from services.power.config import vm_config_from_env
    from services.power.qemu_command import BootChoice, RuntimePaths, build_argv
    for name in ("vmlinuz", "initrd.img"):
        (tmp_path / name).write_bytes(b"")
    paths = RuntimePaths("/r/qmp.sock", "/r/serial.sock", "/l/console.raw.log", "/r/vnc",
                         ipmi_socket="/r/ipmi-kcs.sock")
    env = {"GUEST_DIR": str(tmp_path), "QEMU_ACCEL": "tcg"}
    argv = build_argv(vm_config_from_env(env), paths, BootChoice("none"), "n1")
    chardev = argv[argv.index("socket,id=ipmi0,path=/r/ipmi-kcs.sock,reconnect=1") - 1]
    assert chardev == "-chardev"
    assert "ipmi-bmc-extern,id=bmc0,chardev=ipmi0" in argv and "isa-ipmi-kcs,bmc=bmc0" in argv
    off = build_argv(vm_config_from_env({**env, "VM_IPMI_KCS": "off"}), paths, BootChoice("none"), "n1")
    assert not [a for a in off if "ipmi" in a]


def test_an_unusable_kcs_socket_path_fails_fast_naming_the_variable(tmp_path):
    import socket
    import subprocess
    import sys

    from helpers import free_port
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")  # RUN_DIR is a file: the socket cannot be made under it
    env = {"PATH": os.environ["PATH"], "RUN_DIR": str(blocked), "IPMI_PORT": str(free_port(socket.SOCK_DGRAM)),
           "IPMI_LISTEN": "127.0.0.1", "IPMI_PASSWORD": "x", "NODE_NAME": "t", "NATS_URL": "nats://127.0.0.1:1"}
    program = os.path.join(os.path.dirname(sys.executable), "qemu-bmc-ipmi")
    result = subprocess.run([program], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "RUN_DIR" in result.stdout + result.stderr and "VM_IPMI_KCS=off" in result.stdout + result.stderr
