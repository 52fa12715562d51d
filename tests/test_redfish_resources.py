"""The pure parts of the Redfish front end (resources, request checks, events, sessions)
and the ipmi side of the users contract, without sockets."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET

import pytest

from bus.messages import BootSet, BootStatus, MediaSlot, Nic, PowerChanged, PowerStatus, UserCheck, UserPasswordSet
from services.ipmi.lan import LanEndpoint, SessionNote
from services.ipmi.user_bus import UserBus, user_list
from services.ipmi.users import UserStore
from services.redfish import changes, resources as rs
from services.redfish.auth import SessionTable, allowed, role_of
from services.redfish.events import EventBuilder, sse_frame
from services.redfish.registry import RedfishError, error_body

INFO = rs.ServiceInfo(node="n1", system_uuid="93108c5b-f19b-53e2-a4cb-1d33cb318473",
                      bmc_uuid="275c5755-f3d3-5442-a1d0-70ac9d4bdc80", firmware_version="0.1.0", redfish_port=443,
                      ipmi_port=623, vnc_port=5900, console_port=5000, session_timeout=1800)


def power(state="on", vm_status="running") -> PowerStatus:
    return PowerStatus(state=state, vm_status=vm_status, restore_policy="always-on", vcpus=2, memory_mib=2048)


# --- boot override: Redfish <-> bus ---------------------------------------------------

NONE = BootStatus(device="none", persistent=False, efi=False)


@pytest.mark.parametrize("current, boot, expected", [
    (NONE, {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}, ("pxe", False, False)),
    (NONE, {"BootSourceOverrideTarget": "Hdd", "BootSourceOverrideEnabled": "Continuous",
            "BootSourceOverrideMode": "UEFI"}, ("disk", True, True)),
    (NONE, {"BootSourceOverrideTarget": "Cd"}, ("cdrom", False, False)),  # no Enabled: Once
    (BootStatus(device="pxe", persistent=True, efi=True), {"BootSourceOverrideTarget": "BiosSetup"},
     ("bios", True, True)),  # the rest is kept
    (BootStatus(device="pxe", persistent=True, efi=True), {"BootSourceOverrideEnabled": "Disabled"},
     ("none", False, True)),
    (BootStatus(device="disk", persistent=False, efi=False), {"BootSourceOverrideTarget": "None"},
     ("none", False, False)),
    (BootStatus(device="disk", persistent=False, efi=False), {"BootSourceOverrideMode": "UEFI"},
     ("disk", False, True)),
])
def test_boot_change_maps_redfish_to_the_bus(current, boot, expected):
    wanted = changes.boot_change(current, {"Boot": boot})
    assert isinstance(wanted, BootSet)
    assert (wanted.device, wanted.persistent, wanted.efi) == expected


@pytest.mark.parametrize("device, persistent, efi, expected", [
    ("none", False, False, ("None", "Disabled", "Legacy")),
    ("pxe", False, True, ("Pxe", "Once", "UEFI")),
    ("disk", True, False, ("Hdd", "Continuous", "Legacy")),
    ("cdrom", False, False, ("Cd", "Once", "Legacy")),
    ("bios", True, True, ("BiosSetup", "Continuous", "UEFI")),
])
def test_boot_status_shows_as_redfish(device, persistent, efi, expected):
    boot = rs.boot_properties(BootStatus(device=device, persistent=persistent, efi=efi))
    assert (boot["BootSourceOverrideTarget"], boot["BootSourceOverrideEnabled"],
            boot["BootSourceOverrideMode"]) == expected


@pytest.mark.parametrize("body, message", [
    ({"Boot": {"BootSourceOverrideTarget": "Floppy"}}, "PropertyValueNotInList"),
    ({"Boot": {"BootSourceOverrideEnabled": "Sometimes"}}, "PropertyValueNotInList"),
    ({"Boot": {"Colour": "red"}}, "PropertyUnknown"),
    ({"Boot": "Pxe"}, "PropertyValueTypeError"),
    ({"PowerState": "Off"}, "PropertyNotWritable"),
    ({"AssetTag": "x"}, "PropertyUnknown"),
    ({"Boot": {}}, "PropertyMissing"),
])
def test_bad_boot_patches_are_refused_with_the_right_message(body, message):
    with pytest.raises(RedfishError) as caught:
        changes.boot_change(NONE, body)
    assert caught.value.status == 400
    assert caught.value.body["error"]["@Message.ExtendedInfo"][0]["MessageId"].endswith("." + message)


def test_reset_types_map_to_power_actions():
    assert {t: rs.RESET_ACTIONS[changes.reset_type({"ResetType": t})] for t in rs.RESET_TYPES} == {
        "On": "on", "ForceOff": "off", "GracefulShutdown": "soft", "GracefulRestart": "soft",
        "ForceRestart": "reset", "PowerCycle": "cycle", "Nmi": "nmi"}
    for body, message in (({}, "ActionParameterMissing"), ({"ResetType": "Off"}, "ActionParameterValueNotInList"),
                          ({"ResetType": "On", "Delay": 3}, "ActionParameterNotSupported")):
        with pytest.raises(RedfishError) as caught:
            changes.reset_type(body)
        assert caught.value.body["error"]["code"].endswith("." + message)


def test_if_match():
    changes.check_if_match(None, '"abc"')
    changes.check_if_match('"abc"', '"abc"')
    changes.check_if_match('W/"abc"', '"abc"')
    changes.check_if_match('"zzz", "abc"', '"abc"')
    changes.check_if_match("*", '"abc"')
    with pytest.raises(RedfishError) as caught:
        changes.check_if_match('"old"', '"abc"')
    assert caught.value.status == 412


def test_etag_follows_the_representation():
    on = rs.system(INFO, rs.Snapshot(power=power("on"), boot=NONE))
    again = rs.system(INFO, rs.Snapshot(power=power("on"), boot=NONE))
    off = rs.system(INFO, rs.Snapshot(power=power("off"), boot=NONE))
    assert on["@odata.etag"] == again["@odata.etag"] != off["@odata.etag"]
    assert rs.etag(on) == on["@odata.etag"]


# --- resources ----------------------------------------------------------------------------


def test_system_carries_power_inventory_and_actions():
    body = rs.system(INFO, rs.Snapshot(power=power("on", "paused"), boot=NONE))
    assert body["@odata.id"] == "/redfish/v1/Systems/1"
    assert body["@odata.type"] == "#ComputerSystem.v1_20_0.ComputerSystem"
    assert body["PowerState"] == "Paused"
    assert body["ProcessorSummary"]["LogicalProcessorCount"] == 2
    assert body["MemorySummary"]["TotalSystemMemoryGiB"] == 2
    assert body["Actions"]["#ComputerSystem.Reset"]["ResetType@Redfish.AllowableValues"] == rs.RESET_TYPES
    assert "PowerState" not in rs.system(INFO, rs.Snapshot())  # unknown is left out, not guessed


def test_nics_come_from_the_net_plan():
    nic = Nic(ifname="eth2", mac="02:aa:bb:cc:dd:01", mtu=9000, up=True, index=0, wired=True, tap="tap-eth2")
    collection = rs.ethernet_interfaces(rs.Snapshot(nics=[nic]))
    assert collection["Members"] == [{"@odata.id": "/redfish/v1/Systems/1/EthernetInterfaces/NIC0"}]
    body = rs.ethernet_interface(nic)
    assert (body["MACAddress"], body["MTUSize"], body["LinkStatus"]) == ("02:AA:BB:CC:DD:01", 9000, "LinkUp")


def test_virtual_media_shows_the_slot():
    empty = rs.virtual_media(rs.MANAGER, "Cd1", MediaSlot(slot="cd", inserted=False))
    assert (empty["Inserted"], empty["Image"], empty["ConnectedVia"]) == (False, None, "NotConnected")
    full = rs.virtual_media(rs.SYSTEM, "Cd1", MediaSlot(slot="cd", inserted=True, path="/s/media/x.iso",
                                                       image_name="http://h/boot/x.iso"))
    assert full["@odata.id"] == "/redfish/v1/Systems/1/VirtualMedia/Cd1"
    assert (full["Image"], full["ImageName"], full["ConnectedVia"]) == ("http://h/boot/x.iso", "x.iso", "URI")
    assert full["Actions"]["#VirtualMedia.InsertMedia"]["target"].endswith("/Cd1/Actions/VirtualMedia.InsertMedia")


def test_metadata_is_csdl_that_references_every_type_used():
    root = ET.fromstring(rs.metadata_document())
    ns = {"edmx": "http://docs.oasis-open.org/odata/ns/edmx"}
    included = {inc.get("Namespace") for inc in root.iterfind("edmx:Reference/edmx:Include", ns)}
    assert set(rs.TYPES.values()) <= included
    assert set(rs.COLLECTIONS) <= included


def test_insert_media_checks_the_body():
    assert changes.insert_media({"Image": "http://h/x.iso", "Inserted": True}).url == "http://h/x.iso"
    assert changes.insert_media({"Image": "/var/lib/qemu-bmc/media/x.iso"}).path == "/var/lib/qemu-bmc/media/x.iso"
    for body, message in (({}, "ActionParameterMissing"),
                          ({"Image": "nfs://h/x.iso"}, "ActionParameterValueFormatError"),
                          ({"Image": "http:///x.iso"}, "ActionParameterValueFormatError"),
                          ({"Image": "http://h/x.iso", "WriteProtected": False}, "ActionParameterValueNotInList"),
                          ({"Image": "http://h/x.iso", "UserName": "u"}, "ActionParameterNotSupported"),
                          ({"Image": "http://h/x.iso", "TransferProtocolType": "NFS"},
                           "ActionParameterValueNotInList")):
        with pytest.raises(RedfishError) as caught:
            changes.insert_media(body)
        assert caught.value.body["error"]["code"].endswith("." + message), body


def test_password_change_body():
    assert changes.password_change({"Password": "secret1"}) == "secret1"
    for body in ({"Password": "x" * 21}, {"Password": ""}, {"RoleId": "Administrator"}, {"Password": 5}, {}):
        with pytest.raises(RedfishError):
            changes.password_change(body)


def test_error_body_follows_dsp0266():
    body = error_body("ResourceNotFound", "ComputerSystem", "2", detail="only Systems/1 exists")
    info = body["error"]["@Message.ExtendedInfo"][0]
    assert body["error"]["code"] == info["MessageId"] == "Base.1.16.0.ResourceNotFound"
    assert info["Message"] == "The requested resource of type ComputerSystem named '2' was not found."
    assert info["MessageArgs"] == ["ComputerSystem", "2"]
    assert body["error"]["message"].endswith("only Systems/1 exists")


# --- events and sessions -------------------------------------------------------------------


def test_power_events_become_resource_events_on_sse():
    builder = EventBuilder()
    on = builder.power_changed(PowerChanged(state="on", cause="power-on"), 1_800_000_000)
    off = builder.power_changed(PowerChanged(state="off", cause="power-off"), 1_800_000_001)
    assert on["Events"][0]["MessageId"] == "ResourceEvent.1.3.0.ResourcePoweredOn"
    assert on["Events"][0]["Message"] == "The resource `/redfish/v1/Systems/1` has powered on."
    assert off["Events"][0]["MessageId"].endswith(".ResourcePoweredOff")
    assert int(off["Id"]) == int(on["Id"]) + 1
    frame = sse_frame(off).decode()
    assert frame.startswith(f"id: {off['Id']}\ndata: ") and frame.endswith("\n\n")
    assert json.loads(frame.split("data: ", 1)[1]) == off


def test_sessions_expire_when_idle_and_stay_bounded():
    table = SessionTable(timeout=60, limit=2)
    first = table.create("admin", "Administrator", "127.0.0.1", now=0)
    assert table.by_token(first.token, now=30) is first
    assert table.by_token("wrong", now=30) is None
    assert table.by_token(first.token, now=200) is None  # idle past the timeout
    a = table.create("a", "ReadOnly", "", now=300)
    table.create("b", "ReadOnly", "", now=301)
    table.create("c", "ReadOnly", "", now=302)
    assert a.id not in table.sessions and len(table.sessions) == 2


def test_roles_follow_the_ipmi_privilege():
    assert [role_of(p) for p in ("administrator", "operator", "user", "no-access")] == [
        "Administrator", "Operator", "ReadOnly", "NoAccess"]
    assert allowed("Operator", "ConfigureComponents") and not allowed("ReadOnly", "ConfigureComponents")
    assert allowed("Administrator", "ConfigureManager") and not allowed("Operator", "ConfigureManager")


# --- the ipmi side: users.check and users.password ---------------------------------------------


def user_bus(limit: int = 3):
    users, _ = UserStore.from_env({"IPMI_USER": "admin", "IPMI_PASSWORD": "secret",
                                   "IPMI_USERS": "viewer:viewpw:user,ops:opspw:operator,cb:cbpw:callback"})
    endpoint = LanEndpoint(users, b"\x00" * 16, auth_failure_limit=limit)
    notes: list[SessionNote] = []
    saved: list[int] = []

    async def save():
        saved.append(1)

    clock = [100.0]
    return UserBus(users, endpoint, save, notes.append, clock=lambda: clock[0]), notes, saved, clock


def test_users_check_grants_the_ipmi_privilege():
    bus, notes, _, _ = user_bus()
    check = lambda name, pw: asyncio.run(bus.check(UserCheck(name=name, password=pw, peer="192.0.2.7")))
    assert (check("admin", "secret").ok, check("admin", "secret").privilege) == (True, "administrator")
    assert check("ops", "opspw").privilege == "operator"
    assert check("viewer", "viewpw").privilege == "user"
    assert check("cb", "cbpw").ok is False  # a callback account may do nothing over Redfish
    assert check("admin", "nope").reason == "bad-password"
    assert check("ghost", "x").reason == "unknown-user"
    assert [n.what for n in notes] == ["auth-failed", "auth-failed"]


def test_users_check_shares_the_rmcp_lock_out():
    bus, _, _, clock = user_bus(limit=3)
    check = lambda pw, peer="192.0.2.7": asyncio.run(bus.check(UserCheck(name="admin", password=pw, peer=peer)))
    for _ in range(3):
        assert check("wrong").reason == "bad-password"
    assert check("secret").reason == "locked-out"  # even the right password, from that address
    assert check("secret", "192.0.2.8").ok  # another address is not affected
    assert bus.endpoint._locked_out("192.0.2.7", clock[0])  # RMCP+ logins from it are refused too
    clock[0] += 31  # the 30 s window passes
    assert check("secret").ok


def test_password_set_checks_length_and_saves():
    bus, _, saved, _ = user_bus()
    reply = asyncio.run(bus.set_password(UserPasswordSet(name="viewer", password="brandnew")))
    assert [u.name for u in reply.users] == ["admin", "viewer", "ops", "cb"]
    assert saved and bus.users.lookup(b"viewer").password == b"brandnew"
    assert asyncio.run(bus.set_password(UserPasswordSet(name="viewer", password="x" * 21))).code == "bad-password"
    assert asyncio.run(bus.set_password(UserPasswordSet(name="ghost", password="abc"))).code == "unknown-user"
    assert [u.privilege for u in user_list(bus.users).users] == ["administrator", "user", "operator", "no-access"]


# --- configuration and the certificate ------------------------------------------------------


def test_tls_configuration_fails_fast_naming_the_variable(tmp_path):
    from bus.config import ConfigError
    from services.redfish.config import redfish_config_from_env
    from services.redfish.tls import ensure_self_signed

    base_env = {"NODE_NAME": "n1", "STATE_DIR": str(tmp_path)}
    with pytest.raises(ConfigError) as caught:
        redfish_config_from_env({**base_env, "TLS_CERT": "/etc/hostname"})
    assert caught.value.variable == "TLS_KEY"
    with pytest.raises(ConfigError) as caught:
        redfish_config_from_env({**base_env, "TLS_CERT": "/etc/hostname", "TLS_KEY": "/etc/hostname"})
    assert caught.value.variable == "TLS_CERT"
    with pytest.raises(ConfigError) as caught:
        redfish_config_from_env({**base_env, "REDFISH_PORT": "70000"})
    assert caught.value.variable == "REDFISH_PORT"
    cert, key = ensure_self_signed(str(tmp_path / "redfish"), "n1")
    assert ensure_self_signed(str(tmp_path / "redfish"), "n1") == (cert, key)  # made once, then kept
    with open(cert, "rb") as f:
        first = f.read()
    ensure_self_signed(str(tmp_path / "redfish"), "n1")
    with open(cert, "rb") as f:
        assert f.read() == first
    config = redfish_config_from_env({**base_env, "TLS_CERT": cert, "TLS_KEY": key, "REDFISH_PORT": "8443"})
    assert (config.port, config.tls_cert) == (8443, cert)
