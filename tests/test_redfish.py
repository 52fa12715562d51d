"""The Redfish front end against the real stack: real clients (sushy, requests, DMTF's
redfish-service-validator), ipmitool on the other side, the real guest under QEMU."""

from __future__ import annotations

import http.server
import json
import os
import queue
import re
import subprocess
import sys
import tarfile
import threading
import time

import pytest
import requests
import sushy

from helpers import REPO, wait_for
from test_net_modes import lab, netstack  # noqa: F401 (fixtures: a network namespace playing the container)

# the BMC's certificate is self-signed: the clients here do not verify it (that is the point of one test)
pytestmark = [pytest.mark.vm, pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")]

SYSTEM = "/redfish/v1/Systems/1"
CD = "/redfish/v1/Managers/1/VirtualMedia/Cd1"
# DMTF's CSDL (DSP8010 2025.4, BSD-3-Clause, LICENSE.md inside): the validator needs the
# schemas and this machine cannot reach dmtf.org, so the test ships them
CSDL_BUNDLE = os.path.join(REPO, "tests", "redfish-csdl-2025.4.tar.xz")


def base(stack) -> str:
    return f"https://127.0.0.1:{stack.redfish_port}"


def get(stack, path: str, user: str = "admin", password: str = "secret", **kw) -> requests.Response:
    return requests.get(base(stack) + path, auth=(user, password), verify=False, timeout=30, **kw)


def post(stack, path: str, body: dict, user: str = "admin", password: str = "secret", **kw) -> requests.Response:
    return requests.post(base(stack) + path, json=body, auth=(user, password), verify=False, timeout=90, **kw)


def message_id(response: requests.Response) -> str:
    return response.json()["error"]["@Message.ExtendedInfo"][0]["MessageId"]


def client(stack, user: str = "admin", password: str = "secret") -> sushy.Sushy:
    return sushy.Sushy(base(stack) + "/redfish/v1", username=user, password=password, verify=False)


def ensure_on(stack) -> None:
    if "off" in stack.power_state():
        stack.ipmitool("power", "on")
    wait_for(lambda: "on" in stack.power_state(), 60, "power on")


def redfish_power(stack) -> str:
    return get(stack, SYSTEM).json()["PowerState"]


class SseReader:
    """A real SSE client on its own thread: every `data:` line's JSON lands in a queue."""

    def __init__(self, stack, user: str = "viewer", password: str = "viewpw"):
        self.events: queue.Queue = queue.Queue()
        self.response = requests.get(base(stack) + "/redfish/v1/EventService/SSE", auth=(user, password),
                                     verify=False, stream=True, timeout=(10, 60))
        assert self.response.status_code == 200, self.response.text
        assert self.response.headers["Content-Type"].startswith("text/event-stream")
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for line in self.response.iter_lines(decode_unicode=True):
                if line and line.startswith("data:"):
                    self.events.put(json.loads(line[5:]))
        except Exception:  # closed by the test
            pass

    def wait_for_message(self, suffix: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            record = event["Events"][0]
            seen.append(record["MessageId"])
            if record["MessageId"].endswith(suffix):
                return event
        raise AssertionError(f"no {suffix} event within {timeout}s (saw {seen})")

    def close(self) -> None:
        self.response.close()


# --- authentication ------------------------------------------------------------------


def test_service_root_is_open_and_everything_else_needs_credentials(stack):
    root = requests.get(base(stack) + "/redfish/v1/", verify=False, timeout=30)
    assert root.status_code == 200
    assert root.json()["@odata.type"].startswith("#ServiceRoot.")
    assert root.headers["OData-Version"] == "4.0"
    anonymous = requests.get(base(stack) + SYSTEM, verify=False, timeout=30)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
    wrong = get(stack, SYSTEM, password="not-the-password")
    assert wrong.status_code == 401
    assert message_id(wrong).endswith(".NoValidSession")


def test_session_login_use_and_logout(stack):
    created = requests.post(base(stack) + "/redfish/v1/SessionService/Sessions",
                            json={"UserName": "admin", "Password": "secret"}, verify=False, timeout=30)
    assert created.status_code == 201, created.text
    token, location = created.headers["X-Auth-Token"], created.headers["Location"]
    assert location.startswith("/redfish/v1/SessionService/Sessions/")
    assert created.json()["UserName"] == "admin"
    with_token = requests.get(base(stack) + SYSTEM, headers={"X-Auth-Token": token}, verify=False, timeout=30)
    assert with_token.status_code == 200
    listed = requests.get(base(stack) + "/redfish/v1/SessionService/Sessions", headers={"X-Auth-Token": token},
                          verify=False, timeout=30).json()
    assert {"@odata.id": location} in listed["Members"]
    gone = requests.delete(base(stack) + location, headers={"X-Auth-Token": token}, verify=False, timeout=30)
    assert gone.status_code == 204
    after = requests.get(base(stack) + SYSTEM, headers={"X-Auth-Token": token}, verify=False, timeout=30)
    assert after.status_code == 401
    refused = requests.post(base(stack) + "/redfish/v1/SessionService/Sessions",
                            json={"UserName": "admin", "Password": "nope"}, verify=False, timeout=30)
    assert refused.status_code == 401


def test_read_only_user_may_read_but_not_reset_and_operator_may(stack):
    ensure_on(stack)
    assert get(stack, SYSTEM, "viewer", "viewpw").json()["PowerState"] == "On"
    refused = post(stack, f"{SYSTEM}/Actions/ComputerSystem.Reset", {"ResetType": "ForceOff"}, "viewer", "viewpw")
    assert refused.status_code == 403
    assert message_id(refused).endswith(".InsufficientPrivilege")
    assert "on" in stack.power_state()  # nothing happened
    patch = requests.patch(base(stack) + SYSTEM, json={"Boot": {"BootSourceOverrideTarget": "Pxe"}},
                           auth=("viewer", "viewpw"), verify=False, timeout=30)
    assert patch.status_code == 403
    allowed = post(stack, f"{SYSTEM}/Actions/ComputerSystem.Reset", {"ResetType": "On"}, "ops", "opspw")
    assert allowed.status_code == 204, allowed.text
    insert = post(stack, f"{CD}/Actions/VirtualMedia.InsertMedia", {"Image": "http://127.0.0.1:9/x.iso"},
                  "ops", "opspw")
    assert insert.status_code == 403  # virtual media is ConfigureManager (DMTF privilege registry)


# --- power and boot with sushy --------------------------------------------------------


def test_sushy_powers_off_on_and_restarts_the_vm(stack):
    ensure_on(stack)
    system = client(stack).get_system(SYSTEM)
    assert system.power_state == sushy.PowerState.ON
    assert sushy.ResetType.FORCE_RESTART in system.get_allowed_reset_system_values()
    system.reset_system(sushy.ResetType.FORCE_OFF)
    wait_for(lambda: "off" in stack.power_state(), 60, "ipmitool to see the VM off")
    system.refresh()
    assert system.power_state == sushy.PowerState.OFF
    boots = stack.boots()
    system.reset_system(sushy.ResetType.ON)
    wait_for(lambda: stack.boots() > boots, 90, "the guest to boot after On")
    assert "on" in stack.power_state()
    boots = stack.boots()
    system.reset_system(sushy.ResetType.FORCE_RESTART)
    wait_for(lambda: stack.boots() > boots, 90, "the guest to boot again after ForceRestart")
    system.refresh()
    assert system.power_state == sushy.PowerState.ON


def test_graceful_restart_shuts_the_guest_down_and_powers_it_on(stack):
    ensure_on(stack)
    wait_for(lambda: stack.boots() >= 1, 60, "a booted guest")
    boots = stack.boots()
    response = post(stack, f"{SYSTEM}/Actions/ComputerSystem.Reset", {"ResetType": "GracefulRestart"})
    assert response.status_code == 204, response.text
    wait_for(lambda: stack.boots() > boots, 150, "the guest to boot again after GracefulRestart")
    wait_for(lambda: redfish_power(stack) == "On", 30, "PowerState On")


def bootparam5(stack) -> str:
    return stack.ipmitool("chassis", "bootparam", "get", "5").stdout


def test_boot_override_set_with_sushy_is_what_ipmitool_reads(stack):
    system = client(stack).get_system(SYSTEM)
    system.set_system_boot_options(sushy.BootSource.PXE, enabled=sushy.BootSourceOverrideEnabled.ONCE,
                                   mode=sushy.BootSourceOverrideMode.UEFI)
    out = bootparam5(stack)
    assert "Force PXE" in out and "Options apply to only next boot" in out and "BIOS EFI boot" in out, out
    system.set_system_boot_options(sushy.BootSource.HDD, enabled=sushy.BootSourceOverrideEnabled.CONTINUOUS,
                                   mode=sushy.BootSourceOverrideMode.LEGACY)
    out = bootparam5(stack)
    assert "Force Boot from default Hard-Drive" in out and "Options apply to all future boots" in out, out
    assert "BIOS PC Compatible (legacy) boot" in out, out
    system.refresh()
    assert system.boot.target == sushy.BootSource.HDD
    assert system.boot.enabled == sushy.BootSourceOverrideEnabled.CONTINUOUS
    assert system.boot.mode == sushy.BootSourceOverrideMode.LEGACY
    system.set_system_boot_options(enabled=sushy.BootSourceOverrideEnabled.DISABLED)
    assert "No override" in bootparam5(stack)


def test_boot_device_set_with_ipmitool_is_what_redfish_reads(stack):
    stack.ipmitool("chassis", "bootdev", "cdrom", "options=efiboot")
    boot = get(stack, SYSTEM).json()["Boot"]
    assert (boot["BootSourceOverrideTarget"], boot["BootSourceOverrideEnabled"],
            boot["BootSourceOverrideMode"]) == ("Cd", "Once", "UEFI")
    stack.ipmitool("chassis", "bootdev", "bios", "options=persistent")
    boot = get(stack, SYSTEM).json()["Boot"]
    assert (boot["BootSourceOverrideTarget"], boot["BootSourceOverrideEnabled"],
            boot["BootSourceOverrideMode"]) == ("BiosSetup", "Continuous", "Legacy")
    stack.ipmitool("chassis", "bootdev", "none")
    assert get(stack, SYSTEM).json()["Boot"]["BootSourceOverrideEnabled"] == "Disabled"


def test_patch_honours_if_match_and_refuses_bad_values(stack):
    first = get(stack, SYSTEM)
    tag = first.headers["ETag"]
    assert first.json()["@odata.etag"] == tag
    stale = requests.patch(base(stack) + SYSTEM, json={"Boot": {"BootSourceOverrideTarget": "Pxe"}},
                           headers={"If-Match": '"not-the-current-tag"'}, auth=("admin", "secret"), verify=False,
                           timeout=30)
    assert stale.status_code == 412
    assert message_id(stale).endswith(".PreconditionFailed")
    current = requests.patch(base(stack) + SYSTEM, json={"Boot": {"BootSourceOverrideTarget": "Pxe",
                                                                  "BootSourceOverrideEnabled": "Once"}},
                             headers={"If-Match": tag}, auth=("admin", "secret"), verify=False, timeout=30)
    assert current.status_code == 200, current.text
    assert current.json()["Boot"]["BootSourceOverrideTarget"] == "Pxe"
    bad = requests.patch(base(stack) + SYSTEM, json={"Boot": {"BootSourceOverrideTarget": "Floppy"}},
                         auth=("admin", "secret"), verify=False, timeout=30)
    assert bad.status_code == 400 and message_id(bad).endswith(".PropertyValueNotInList")
    missing = post(stack, f"{SYSTEM}/Actions/ComputerSystem.Reset", {})
    assert missing.status_code == 400 and message_id(missing).endswith(".ActionParameterMissing")
    unknown = post(stack, f"{SYSTEM}/Actions/ComputerSystem.Reset", {"ResetType": "Explode"})
    assert unknown.status_code == 400 and message_id(unknown).endswith(".ActionParameterValueNotInList")
    nowhere = get(stack, "/redfish/v1/Systems/2")
    assert nowhere.status_code == 404 and message_id(nowhere).endswith(".ResourceNotFound")
    malformed = requests.patch(base(stack) + SYSTEM, data=b"{not json", auth=("admin", "secret"), verify=False,
                               headers={"Content-Type": "application/json"}, timeout=30)
    assert malformed.status_code == 400 and message_id(malformed).endswith(".MalformedJSON")
    stack.ipmitool("chassis", "bootdev", "none")


# --- events ----------------------------------------------------------------------------


def test_power_change_made_over_ipmi_shows_up_on_the_sse_stream(stack):
    ensure_on(stack)
    reader = SseReader(stack)
    try:
        stack.ipmitool("power", "off")
        off = reader.wait_for_message(".ResourcePoweredOff")
        assert off["Events"][0]["OriginOfCondition"] == {"@odata.id": SYSTEM}
        assert off["@odata.type"].startswith("#Event.")
        stack.ipmitool("power", "on")
        reader.wait_for_message(".ResourcePoweredOn")
    finally:
        reader.close()
    assert redfish_power(stack) == "On"


# --- inventory ---------------------------------------------------------------------------


def test_inventory_comes_from_the_vm_configuration(stack):
    system = get(stack, SYSTEM).json()
    assert system["ProcessorSummary"]["LogicalProcessorCount"] == 1  # VM_CPUS default
    assert system["MemorySummary"]["TotalSystemMemoryGiB"] == 0.5  # VM_MEMORY default 512
    assert get(stack, f"{SYSTEM}/Memory/DIMM1").json()["CapacityMiB"] == 512
    nics = get(stack, f"{SYSTEM}/EthernetInterfaces").json()
    assert nics["Members@odata.count"] == 0  # VM_NICS names an interface this host does not have
    manager = get(stack, "/redfish/v1/Managers/1").json()
    assert manager["GraphicalConsole"]["ConnectTypesSupported"] == ["KVMIP"]
    assert set(manager["SerialConsole"]["ConnectTypesSupported"]) == {"IPMI", "Telnet"}
    protocols = get(stack, "/redfish/v1/Managers/1/NetworkProtocol").json()
    assert protocols["IPMI"]["Port"] == stack.ipmi_port
    assert protocols["KVMIP"]["Port"] == stack.vnc_port
    assert protocols["HTTPS"]["Port"] == stack.redfish_port
    accounts = get(stack, "/redfish/v1/AccountService/Accounts").json()
    roles = {get(stack, m["@odata.id"]).json()["UserName"]: get(stack, m["@odata.id"]).json()["RoleId"]
             for m in accounts["Members"]}
    assert roles == {"admin": "Administrator", "viewer": "ReadOnly", "ops": "Operator"}


def test_password_changed_over_redfish_works_for_ipmi(stack):
    accounts = get(stack, "/redfish/v1/AccountService/Accounts").json()["Members"]
    viewer = next(m["@odata.id"] for m in accounts if get(stack, m["@odata.id"]).json()["UserName"] == "viewer")
    own = requests.patch(base(stack) + viewer, json={"Password": "newview1"}, auth=("viewer", "viewpw"),
                         verify=False, timeout=30)
    assert own.status_code == 200, own.text  # ConfigureSelf: a user may change their own password
    assert "on" in stack.ipmitool("-L", "USER", "power", "status", user="viewer", password="newview1").stdout
    assert stack.ipmitool("-L", "USER", "power", "status", user="viewer", password="viewpw",
                          check=False).returncode != 0
    other = requests.patch(base(stack) + viewer, json={"Password": "x"}, auth=("ops", "opspw"), verify=False,
                           timeout=30)
    assert other.status_code == 403  # someone else's account needs ConfigureUsers
    back = requests.patch(base(stack) + viewer, json={"Password": "viewpw"}, auth=("admin", "secret"),
                          verify=False, timeout=30)
    assert back.status_code == 200
    too_long = requests.patch(base(stack) + viewer, json={"Password": "x" * 21}, auth=("admin", "secret"),
                              verify=False, timeout=30)
    assert too_long.status_code == 400


def redfish_in_namespace(stack, path: str) -> dict:
    """GET over Redfish from inside the stack's network namespace (a real HTTPS client there)."""
    code = ("import json, sys, requests, urllib3\n"
            "urllib3.disable_warnings()\n"
            "r = requests.get(sys.argv[1], auth=('admin', 'secret'), verify=False, timeout=30)\n"
            "print(json.dumps(r.json()))\n")
    out = subprocess.run(["ip", "netns", "exec", stack.ns, sys.executable, "-c", code,
                          f"https://127.0.0.1:{stack.redfish_port}{path}"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return json.loads(out)


def test_ethernet_interfaces_are_the_nics_the_guest_sees(lab, netstack):
    from test_net_modes import guest_nics, wait_booted
    lab.add_data_link("eth2")
    lab.add_data_link("eth3", mtu=9000)
    stack = netstack(VM_MACS="02:00:5e:10:00:aa")
    wait_booted(stack)
    collection = redfish_in_namespace(stack, f"{SYSTEM}/EthernetInterfaces")
    interfaces = [redfish_in_namespace(stack, m["@odata.id"]) for m in collection["Members"]]
    assert [i["Id"] for i in interfaces] == ["NIC0", "NIC1"]
    assert [i["MACAddress"] for i in interfaces] == [mac.upper() for _name, mac in guest_nics(stack)]
    assert interfaces[0]["MACAddress"] == "02:00:5E:10:00:AA"
    assert [i["MTUSize"] for i in interfaces] == [1500, 9000]


# --- virtual media ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def iso_server(tmp_path_factory):
    """A tiny ISO 9660 image made here with xorriso, served over HTTP on loopback."""
    root = tmp_path_factory.mktemp("iso")
    source = root / "source"
    source.mkdir()
    (source / "hello.txt").write_text("qemu-bmc virtual media test\n")
    www = root / "www"
    www.mkdir()
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "QBTEST", "-o", str(www / "test.iso"),
                    str(source)], check=True, capture_output=True)
    (www / "page.html").write_text("<html>not an image</html>")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(www), **kw)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_sushy_inserts_and_ejects_virtual_media(stack, iso_server):
    ensure_on(stack)
    media = client(stack).get_manager("/redfish/v1/Managers/1").virtual_media.get_member(CD)
    assert not media.inserted
    reader = SseReader(stack)
    try:
        media.insert_media(f"{iso_server}/test.iso")
        reader.wait_for_message(".ResourceChanged")
    finally:
        reader.close()
    media.refresh()
    assert media.inserted and media.image == f"{iso_server}/test.iso"
    same = get(stack, f"{SYSTEM}/VirtualMedia/Cd1").json()  # also where current schemas put it
    assert same["Inserted"] and same["Image"] == f"{iso_server}/test.iso"
    media.eject_media()
    media.refresh()
    assert not media.inserted


def test_bad_image_urls_give_redfish_errors_and_change_nothing(stack, iso_server):
    insert = f"{CD}/Actions/VirtualMedia.InsertMedia"
    unreachable = post(stack, insert, {"Image": "http://127.0.0.1:9/nothing.iso"})
    assert unreachable.status_code == 400
    assert message_id(unreachable).endswith(".CouldNotEstablishConnection")
    not_found = post(stack, insert, {"Image": f"{iso_server}/missing.iso"})
    assert not_found.status_code == 400 and "404" in not_found.json()["error"]["message"]
    html = post(stack, insert, {"Image": f"{iso_server}/page.html"})
    assert html.status_code == 400 and message_id(html).endswith(".ActionParameterValueFormatError")
    other_scheme = post(stack, insert, {"Image": "nfs://server/export/x.iso"})
    assert other_scheme.status_code == 400
    missing = post(stack, insert, {})
    assert missing.status_code == 400 and message_id(missing).endswith(".ActionParameterMissing")
    assert get(stack, CD).json()["Inserted"] is False
    assert "on" in stack.power_state()


# --- DMTF's validator ---------------------------------------------------------------------------


def test_dmtf_service_validator_reports_no_errors(stack, tmp_path):
    schemas = tmp_path / "schemas"
    with tarfile.open(CSDL_BUNDLE) as bundle:
        bundle.extractall(schemas, filter="data")
    validator = os.path.join(os.path.dirname(sys.executable), "rf_service_validator")
    result = subprocess.run([validator, "-u", "admin", "-p", "secret", "-r", base(stack), "--authtype", "Session",
                             "--schema_directory", str(schemas), "--skipschema", "--logdir", str(tmp_path / "logs")],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    out = result.stdout + result.stderr
    summary = re.search(r"\|\s*PASS\s*\|\s*WARN\s*\|\s*FAIL\s*\|.*?\n.*?\n\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|",
                        out, re.DOTALL)
    assert summary, out[-3000:]
    passed, warned, failed = map(int, summary.groups())
    resources = re.findall(r"^Validating (\S+)\.\.\.", out, re.MULTILINE)
    warnings = sorted(set(re.findall(r"WARN - (.*)", "".join(
        open(os.path.join(root, f)).read() for root, _, files in os.walk(tmp_path / "logs")
        for f in files if f.endswith(".log")))))
    print(f"validator: {passed} passed, {warned} warnings, {failed} failed over {len(resources)} resources")
    for warning in warnings:
        print("  warning:", warning)
    assert failed == 0, out[-5000:]
    assert result.returncode == 0
    for needed in (SYSTEM, "/redfish/v1/Managers/1", CD, "/redfish/v1/AccountService/Accounts",
                   "/redfish/v1/EventService", "/redfish/v1/Chassis/1"):
        assert needed in resources
    assert passed > 300


# --- the real image -------------------------------------------------------------------------------


@pytest.mark.docker
def test_redfish_in_the_real_image_through_a_port_mapping(image, tmp_path):
    """The image under Docker: 443 published, a self-signed certificate kept in the
    state volume across a restart, sushy driving the VM, ipmitool seeing the result."""
    import ssl
    import uuid

    from dockerlab import docker
    from helpers import ipmitool

    name = f"qemu-bmc-redfish-{uuid.uuid4().hex[:8]}"
    docker("run", "-d", "--name", name, "--hostname", "node1", "--cap-add", "NET_ADMIN",
           "--device", "/dev/net/tun", "-e", "QEMU_ACCEL=tcg", "-e", "IPMI_PASSWORD=secret",
           "-p", "127.0.0.1::443", "-p", "127.0.0.1::623/udp", image)
    try:
        port = int(docker("port", name, "443/tcp").stdout.split(":")[-1])
        ipmi_port = int(docker("port", name, "623/udp").stdout.split(":")[-1])
        url = f"https://127.0.0.1:{port}"
        wait_for(lambda: requests.get(url + "/redfish/v1/", verify=False, timeout=5).ok, 120,
                 "Redfish in the container")
        certificate = ssl.get_server_certificate(("127.0.0.1", port))
        wait_for(lambda: requests.get(url + SYSTEM, auth=("admin", "secret"), verify=False,
                                      timeout=10).json().get("PowerState") == "On", 120, "PowerState On")
        system = sushy.Sushy(url + "/redfish/v1", username="admin", password="secret",
                             verify=False).get_system(SYSTEM)
        system.set_system_boot_options(sushy.BootSource.CD, enabled=sushy.BootSourceOverrideEnabled.ONCE)
        out = ipmitool("127.0.0.1", ipmi_port, "chassis", "bootparam", "get", "5").stdout
        assert "Force Boot from CD/DVD" in out, out
        system.reset_system(sushy.ResetType.FORCE_OFF)
        wait_for(lambda: "off" in ipmitool("127.0.0.1", ipmi_port, "power", "status").stdout, 60, "power off")
        docker("restart", "-t", "30", name, timeout=180)
        port = int(docker("port", name, "443/tcp").stdout.split(":")[-1])
        wait_for(lambda: requests.get(f"https://127.0.0.1:{port}/redfish/v1/", verify=False, timeout=5).ok, 120,
                 "Redfish after the restart")
        assert ssl.get_server_certificate(("127.0.0.1", port)) == certificate  # kept in the state volume
    finally:
        logs = docker("logs", name, check=False)
        os.makedirs(os.path.join(REPO, "artifacts"), exist_ok=True)
        with open(os.path.join(REPO, "artifacts", f"{name}.log"), "w") as f:
            f.write(logs.stdout + logs.stderr)
        docker("rm", "-f", "-v", name, check=False)
