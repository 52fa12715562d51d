"""Redfish resources built from bus state: pure functions, dicts in, dicts out.

Schema versions are ones DMTF's bundle (DSP8010) defines; every resource carries
@odata.id, @odata.type and @odata.context (DSP0266 "Resource identifier" and
"Common payload annotations"). The translations between Redfish enums and the
bus's words live here too, one table each way.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from bus.messages import BootStatus, MediaSlot, Nic, PowerStatus, UserInfo
from services.redfish.auth import ROLE_PRIVILEGES, role_of

V1 = "/redfish/v1"
SYSTEM = f"{V1}/Systems/1"
CHASSIS = f"{V1}/Chassis/1"
MANAGER = f"{V1}/Managers/1"
REDFISH_VERSION = "1.17.0"

TYPES = {  # resource -> namespace.version used (all in DSP8010)
    "ServiceRoot": "ServiceRoot.v1_15_0",
    "ComputerSystem": "ComputerSystem.v1_20_0",
    "Chassis": "Chassis.v1_22_0",
    "Manager": "Manager.v1_17_0",
    "ManagerNetworkProtocol": "ManagerNetworkProtocol.v1_9_0",
    "VirtualMedia": "VirtualMedia.v1_6_0",
    "EthernetInterface": "EthernetInterface.v1_9_0",
    "Processor": "Processor.v1_15_0",
    "Memory": "Memory.v1_17_0",
    "AccountService": "AccountService.v1_12_0",
    "ManagerAccount": "ManagerAccount.v1_10_0",
    "Role": "Role.v1_3_1",
    "SessionService": "SessionService.v1_1_8",
    "Session": "Session.v1_5_0",
    "EventService": "EventService.v1_10_0",
    "Event": "Event.v1_7_0",
}
COLLECTIONS = ("ComputerSystemCollection", "ChassisCollection", "ManagerCollection", "VirtualMediaCollection",
               "EthernetInterfaceCollection", "ProcessorCollection", "MemoryCollection",
               "ManagerAccountCollection", "RoleCollection", "SessionCollection",
               "EventDestinationCollection")

# --- enum translations (Redfish <-> bus) -------------------------------------

RESET_ACTIONS = {  # ResetType -> PowerSet.action; GracefulRestart is a sequence (see app.py)
    "On": "on", "ForceOff": "off", "GracefulShutdown": "soft", "GracefulRestart": "soft",
    "ForceRestart": "reset", "PowerCycle": "cycle", "Nmi": "nmi",
}
RESET_TYPES = list(RESET_ACTIONS)
BOOT_TARGET_TO_DEVICE = {"None": "none", "Pxe": "pxe", "Hdd": "disk", "Cd": "cdrom", "BiosSetup": "bios"}
BOOT_DEVICE_TO_TARGET = {v: k for k, v in BOOT_TARGET_TO_DEVICE.items()}
BOOT_ENABLED = ("Once", "Continuous", "Disabled")
BOOT_MODES = ("UEFI", "Legacy")
MEDIA_SLOTS = {"Cd1": "cd"}  # VirtualMedia Id -> bus slot


def odata(path: str, type_name: str) -> dict:
    """The three annotations every resource starts with. `type_name`: a key of TYPES
    or a collection name."""
    if type_name in TYPES:
        namespace = TYPES[type_name]
        full = f"#{namespace}.{type_name}"
        context = f"{V1}/$metadata#{type_name}.{type_name}"
    else:
        full = f"#{type_name}.{type_name}"
        context = f"{V1}/$metadata#{type_name}.{type_name}"
    return {"@odata.id": path, "@odata.type": full, "@odata.context": context}


def link(path: str) -> dict:
    return {"@odata.id": path}


def collection(path: str, type_name: str, name: str, members: list[str]) -> dict:
    return {**odata(path, type_name), "Name": name, "Members@odata.count": len(members),
            "Members": [link(m) for m in members]}


def etag(resource: dict) -> str:
    """A strong ETag over the representation (without its own @odata.etag)."""
    body = {k: v for k, v in resource.items() if k != "@odata.etag"}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:20]
    return f'"{digest}"'


def with_etag(resource: dict) -> dict:
    resource["@odata.etag"] = etag(resource)
    return resource


@dataclass(frozen=True)
class ServiceInfo:
    """What does not change while the service runs."""

    node: str
    system_uuid: str
    bmc_uuid: str
    firmware_version: str
    redfish_port: int
    ipmi_port: int
    vnc_port: int
    console_port: int  # 0: the TCP console is off
    session_timeout: int


@dataclass
class Snapshot:
    """The bus state a response is built from (None: the owner did not answer)."""

    power: PowerStatus | None = None
    boot: BootStatus | None = None
    nics: list[Nic] = field(default_factory=list)
    media: list[MediaSlot] = field(default_factory=list)
    users: list[UserInfo] = field(default_factory=list)


# --- service root and OData ---------------------------------------------------


def service_root(info: ServiceInfo) -> dict:
    return {
        **odata(f"{V1}/", "ServiceRoot"), "Id": "RootService", "Name": "qemu-bmc Redfish service",
        "RedfishVersion": REDFISH_VERSION, "UUID": info.bmc_uuid, "Vendor": "qemu-bmc", "Product": "qemu-bmc",
        "Systems": link(f"{V1}/Systems"), "Chassis": link(f"{V1}/Chassis"), "Managers": link(f"{V1}/Managers"),
        "SessionService": link(f"{V1}/SessionService"), "AccountService": link(f"{V1}/AccountService"),
        "EventService": link(f"{V1}/EventService"),
        "Links": {"Sessions": link(f"{V1}/SessionService/Sessions")},
        "ProtocolFeaturesSupported": {"ExpandQuery": {"ExpandAll": False, "Levels": False, "Links": False,
                                                      "NoLinks": False},
                                      "FilterQuery": False, "SelectQuery": False, "OnlyMemberQuery": False},
    }


SINGLETONS = ("Systems", "Chassis", "Managers", "SessionService", "AccountService", "EventService")


def odata_document() -> dict:
    """The OData service document (DSP0266 "OData service document")."""
    value = [{"name": "Service", "kind": "Singleton", "url": f"{V1}/"}]
    value += [{"name": n, "kind": "Singleton", "url": f"{V1}/{n}"} for n in SINGLETONS]
    value.append({"name": "Sessions", "kind": "Singleton", "url": f"{V1}/SessionService/Sessions"})
    return {"@odata.context": f"{V1}/$metadata", "value": value}


def metadata_document() -> str:
    """$metadata: references to DMTF's CSDL for every namespace we use (DSP0266 "Service metadata")."""
    namespaces = sorted({n.split(".")[0] for n in TYPES.values()} | set(COLLECTIONS)
                        | {"ActionInfo", "Message", "Resource", "RedfishExtensions"})
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<edmx:Edmx xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx" Version="4.0">']
    versions = {n.split(".")[0]: n for n in TYPES.values()}
    for ns in namespaces:
        lines.append(f'  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/{ns}_v1.xml">')
        lines.append(f'    <edmx:Include Namespace="{ns}"/>')
        if ns in versions:
            lines.append(f'    <edmx:Include Namespace="{versions[ns]}"/>')
        if ns == "RedfishExtensions":
            lines[-1] = '    <edmx:Include Namespace="RedfishExtensions.v1_0_0" Alias="Redfish"/>'
        lines.append("  </edmx:Reference>")
    lines += ["  <edmx:DataServices>",
              '    <Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" Namespace="Service">',
              f'      <EntityContainer Name="Service" Extends="{TYPES["ServiceRoot"]}.ServiceContainer"/>',
              "    </Schema>", "  </edmx:DataServices>", "</edmx:Edmx>", ""]
    return "\n".join(lines)


# --- the system ----------------------------------------------------------------


def power_state(power: PowerStatus | None) -> str | None:
    if power is None:
        return None
    if power.state == "on":
        return "Paused" if power.vm_status == "paused" else "On"
    return "Off"


def boot_properties(boot: BootStatus | None) -> dict:
    props: dict = {
        "BootSourceOverrideTarget@Redfish.AllowableValues": list(BOOT_TARGET_TO_DEVICE),
        "BootSourceOverrideEnabled@Redfish.AllowableValues": list(BOOT_ENABLED),
        "BootSourceOverrideMode@Redfish.AllowableValues": list(BOOT_MODES),
    }
    if boot is None:
        return props
    if boot.device == "none":
        enabled = "Disabled"
    else:
        enabled = "Continuous" if boot.persistent else "Once"
    props.update({"BootSourceOverrideTarget": BOOT_DEVICE_TO_TARGET[boot.device],
                  "BootSourceOverrideEnabled": enabled,
                  "BootSourceOverrideMode": "UEFI" if boot.efi else "Legacy"})
    return props


def system(info: ServiceInfo, snap: Snapshot) -> dict:
    state = power_state(snap.power)
    vcpus = snap.power.vcpus if snap.power else 0
    memory_mib = snap.power.memory_mib if snap.power else 0
    body = {
        **odata(SYSTEM, "ComputerSystem"), "Id": "1", "Name": info.node, "HostName": info.node,
        "SystemType": "Virtual", "Manufacturer": "QEMU", "Model": "QEMU Virtual Machine",
        "UUID": info.system_uuid, "SerialNumber": info.node,
        "Status": {"State": "Enabled" if state in ("On", "Paused") else "StandbyOffline", "Health": "OK"},
        "Boot": boot_properties(snap.boot),
        "ProcessorSummary": {"Count": 1, "LogicalProcessorCount": vcpus},
        "MemorySummary": {"TotalSystemMemoryGiB": round(memory_mib / 1024, 3)},
        "Processors": link(f"{SYSTEM}/Processors"), "Memory": link(f"{SYSTEM}/Memory"),
        "VirtualMedia": link(f"{SYSTEM}/VirtualMedia"),
        "EthernetInterfaces": link(f"{SYSTEM}/EthernetInterfaces"),
        "Links": {"Chassis": [link(CHASSIS)], "ManagedBy": [link(MANAGER)]},
        "Actions": {"#ComputerSystem.Reset": {
            "target": f"{SYSTEM}/Actions/ComputerSystem.Reset",
            "ResetType@Redfish.AllowableValues": RESET_TYPES}},
    }
    if state is not None:
        body["PowerState"] = state
    return with_etag(body)


def processors(info: ServiceInfo) -> dict:
    return collection(f"{SYSTEM}/Processors", "ProcessorCollection", "Processors", [f"{SYSTEM}/Processors/CPU1"])


def processor(snap: Snapshot) -> dict:
    vcpus = snap.power.vcpus if snap.power else 0
    return {**odata(f"{SYSTEM}/Processors/CPU1", "Processor"), "Id": "CPU1", "Name": "Virtual CPU socket",
            "ProcessorType": "CPU", "ProcessorArchitecture": "x86", "InstructionSet": "x86-64",
            "Manufacturer": "QEMU", "TotalCores": vcpus, "TotalThreads": vcpus,
            "Status": {"State": "Enabled", "Health": "OK"}}


def memory_collection() -> dict:
    return collection(f"{SYSTEM}/Memory", "MemoryCollection", "Memory", [f"{SYSTEM}/Memory/DIMM1"])


def memory(snap: Snapshot) -> dict:
    memory_mib = snap.power.memory_mib if snap.power else 0
    return {**odata(f"{SYSTEM}/Memory/DIMM1", "Memory"), "Id": "DIMM1", "Name": "Virtual memory",
            "MemoryType": "DRAM", "CapacityMiB": memory_mib, "Status": {"State": "Enabled", "Health": "OK"}}


def nic_id(nic: Nic) -> str:
    return f"NIC{nic.index}" if nic.index >= 0 else nic.ifname


def ethernet_interfaces(snap: Snapshot) -> dict:
    return collection(f"{SYSTEM}/EthernetInterfaces", "EthernetInterfaceCollection", "Ethernet interfaces",
                      [f"{SYSTEM}/EthernetInterfaces/{nic_id(n)}" for n in snap.nics])


def ethernet_interface(nic: Nic) -> dict:
    path = f"{SYSTEM}/EthernetInterfaces/{nic_id(nic)}"
    mac = nic.mac.upper()
    return {**odata(path, "EthernetInterface"), "Id": nic_id(nic),
            "Name": f"VM NIC {nic.index} (container {nic.ifname})",
            "Description": f"the VM's NIC wired to the container interface {nic.ifname}",
            "MACAddress": mac, "PermanentMACAddress": mac, "MTUSize": nic.mtu,
            "InterfaceEnabled": True, "LinkStatus": "LinkUp" if nic.up and nic.wired else "LinkDown",
            "Status": {"State": "Enabled" if nic.wired else "StandbyOffline", "Health": "OK"}}


# --- chassis and manager ---------------------------------------------------------


def chassis(info: ServiceInfo, snap: Snapshot) -> dict:
    body = {**odata(CHASSIS, "Chassis"), "Id": "1", "Name": f"{info.node} chassis", "ChassisType": "RackMount",
            "Manufacturer": "qemu-bmc", "Model": "QEMU Virtual Server", "SerialNumber": info.node,
            "Status": {"State": "Enabled", "Health": "OK"},
            "Links": {"ComputerSystems": [link(SYSTEM)], "ManagedBy": [link(MANAGER)]}}
    state = power_state(snap.power)
    if state is not None:
        body["PowerState"] = "On" if state == "Paused" else state
    return with_etag(body)


def manager(info: ServiceInfo) -> dict:
    serial_types = ["IPMI"] + (["Telnet"] if info.console_port else [])
    return with_etag({
        **odata(MANAGER, "Manager"), "Id": "1", "Name": "qemu-bmc", "ManagerType": "BMC",
        "Manufacturer": "qemu-bmc", "Model": "qemu-bmc", "FirmwareVersion": info.firmware_version,
        "UUID": info.bmc_uuid, "PowerState": "On", "Status": {"State": "Enabled", "Health": "OK"},
        "SerialConsole": {"ServiceEnabled": True, "MaxConcurrentSessions": 1 + (8 if info.console_port else 0),
                          "ConnectTypesSupported": serial_types},
        "GraphicalConsole": {"ServiceEnabled": True, "MaxConcurrentSessions": 4,
                             "ConnectTypesSupported": ["KVMIP"]},
        "NetworkProtocol": link(f"{MANAGER}/NetworkProtocol"),
        "VirtualMedia": link(f"{MANAGER}/VirtualMedia"),
        "Links": {"ManagerForServers": [link(SYSTEM)], "ManagerForChassis": [link(CHASSIS)]},
    })


def network_protocol(info: ServiceInfo) -> dict:
    return {
        **odata(f"{MANAGER}/NetworkProtocol", "ManagerNetworkProtocol"), "Id": "NetworkProtocol",
        "Name": "BMC network protocols", "HostName": info.node,
        "Status": {"State": "Enabled", "Health": "OK"},
        "HTTPS": {"ProtocolEnabled": True, "Port": info.redfish_port},
        "HTTP": {"ProtocolEnabled": False},
        "IPMI": {"ProtocolEnabled": True, "Port": info.ipmi_port},
        "KVMIP": {"ProtocolEnabled": True, "Port": info.vnc_port},
        "Telnet": {"ProtocolEnabled": bool(info.console_port), "Port": info.console_port or None},
        "SSH": {"ProtocolEnabled": False},
        "VirtualMedia": {"ProtocolEnabled": True, "Port": info.redfish_port},
    }


# Virtual media sits under the system (current schemas) and under the manager
# (deprecated there, but where older clients look): the same slots, both places.
MEDIA_PARENTS = (SYSTEM, MANAGER)


def virtual_media_collection(parent: str) -> dict:
    return collection(f"{parent}/VirtualMedia", "VirtualMediaCollection", "Virtual media",
                      [f"{parent}/VirtualMedia/{vid}" for vid in MEDIA_SLOTS])


def virtual_media(parent: str, media_id: str, slot: MediaSlot | None) -> dict:
    path = f"{parent}/VirtualMedia/{media_id}"
    inserted = bool(slot and slot.inserted)
    image = (slot.image_name or slot.path) if slot and inserted else None
    return with_etag({
        **odata(path, "VirtualMedia"), "Id": media_id, "Name": "Virtual CD",
        "MediaTypes": ["CD", "DVD"], "Image": image,
        "ImageName": image.rstrip("/").rsplit("/", 1)[-1] if image else None,
        "Inserted": inserted, "WriteProtected": slot.write_protected if slot else True,
        "ConnectedVia": "URI" if inserted else "NotConnected",
        "TransferMethod": "Upload",  # a URL is fetched into the BMC first, then attached
        "TransferProtocolType@Redfish.AllowableValues": ["HTTP", "HTTPS"],
        "Status": {"State": "Enabled", "Health": "OK"},
        "Actions": {
            "#VirtualMedia.InsertMedia": {"target": f"{path}/Actions/VirtualMedia.InsertMedia"},
            "#VirtualMedia.EjectMedia": {"target": f"{path}/Actions/VirtualMedia.EjectMedia"},
        },
    })


# --- accounts, sessions, events ----------------------------------------------------

ACCOUNTS = f"{V1}/AccountService/Accounts"
ROLES = f"{V1}/AccountService/Roles"
SESSIONS = f"{V1}/SessionService/Sessions"


def account_service() -> dict:
    return {**odata(f"{V1}/AccountService", "AccountService"), "Id": "AccountService",
            "Name": "Account service", "ServiceEnabled": True, "MinPasswordLength": 1, "MaxPasswordLength": 20,
            "Status": {"State": "Enabled", "Health": "OK"},
            "Accounts": link(ACCOUNTS), "Roles": link(ROLES)}


def accounts(users: list[UserInfo]) -> dict:
    return collection(ACCOUNTS, "ManagerAccountCollection", "Accounts", [f"{ACCOUNTS}/{u.id}" for u in users])


def account(user: UserInfo) -> dict:
    role = role_of(user.privilege)
    return with_etag({**odata(f"{ACCOUNTS}/{user.id}", "ManagerAccount"), "Id": str(user.id),
                      "Name": f"User account {user.id}", "UserName": user.name, "RoleId": role,
                      "Enabled": user.enabled, "Locked": False, "Password": None,
                      "AccountTypes": ["Redfish", "IPMI"],
                      "Links": {"Role": link(f"{ROLES}/{role}")}})


def roles() -> dict:
    return collection(ROLES, "RoleCollection", "Roles", [f"{ROLES}/{r}" for r in ROLE_PRIVILEGES])


def role(role_id: str) -> dict:
    return {**odata(f"{ROLES}/{role_id}", "Role"), "Id": role_id, "Name": f"{role_id} role",
            "RoleId": role_id, "IsPredefined": True, "AssignedPrivileges": list(ROLE_PRIVILEGES[role_id])}


def session_service(info: ServiceInfo) -> dict:
    return {**odata(f"{V1}/SessionService", "SessionService"), "Id": "SessionService",
            "Name": "Session service", "ServiceEnabled": True, "SessionTimeout": info.session_timeout,
            "Status": {"State": "Enabled", "Health": "OK"}, "Sessions": link(SESSIONS)}


def sessions(ids: list[str]) -> dict:
    return collection(SESSIONS, "SessionCollection", "Sessions", [f"{SESSIONS}/{i}" for i in ids])


def session(session_id: str, user: str, created_iso: str) -> dict:
    return {**odata(f"{SESSIONS}/{session_id}", "Session"), "Id": session_id, "Name": f"Session {session_id}",
            "UserName": user, "Password": None, "CreatedTime": created_iso}


def event_service() -> dict:
    return {**odata(f"{V1}/EventService", "EventService"), "Id": "EventService", "Name": "Event service",
            "ServiceEnabled": True, "Status": {"State": "Enabled", "Health": "OK"},
            "DeliveryRetryAttempts": 0, "DeliveryRetryIntervalSeconds": 0,
            "ServerSentEventUri": f"{V1}/EventService/SSE",
            "SSEFilterPropertiesSupported": {"MessageId": False, "OriginResource": False,
                                             "MetricReportDefinition": False, "RegistryPrefix": False,
                                             "ResourceType": False, "EventFormatType": False,
                                             "SubordinateResources": False},
            "Subscriptions": link(f"{V1}/EventService/Subscriptions")}


def subscriptions() -> dict:
    return collection(f"{V1}/EventService/Subscriptions", "EventDestinationCollection", "Subscriptions", [])
