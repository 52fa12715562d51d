"""Message types on the bus: msgspec Structs encoded as JSON.

Each carries a version field `v`; consumers ignore fields they do not know, so
a field can be added without a flag day. Replies are a tagged union: the reply
type a request names, or ErrorReply.
"""

from __future__ import annotations

from typing import Literal

import msgspec

PowerAction = Literal["on", "off", "soft", "reset", "cycle", "nmi"]
PowerStateName = Literal["on", "off"]
BootDevice = Literal["none", "pxe", "disk", "cdrom", "bios"]
RestorePolicy = Literal["always-off", "previous", "always-on"]


class Message(msgspec.Struct, kw_only=True, forbid_unknown_fields=False, tag_field="type"):
    v: int = 1


class ErrorReply(Message, tag="error"):
    """A request failed. `code` is stable and machine-readable."""

    code: str
    message: str


# --- power -----------------------------------------------------------------


class PowerSet(Message, tag="power.set"):
    action: PowerAction
    source: str = ""  # who asked: "ipmi", "cli", ... (for the log and trace)


class PowerGet(Message, tag="power.get"):
    pass


class PowerStatus(Message, tag="power.status"):
    state: PowerStateName
    vm_status: str  # QMP query-status ("running", "paused", ...) or "stopped"
    restore_policy: RestorePolicy
    last_cause: str = ""  # why the state last changed
    since: float = 0.0  # unix time of the last change
    vcpus: int = 0  # the VM's configuration, for sensors and inventories
    memory_mib: int = 0


class RestorePolicySet(Message, tag="power.policy.set"):
    """Power restore policy, applied when the container starts (persisted by power)."""

    policy: RestorePolicy


class PowerChanged(Message, tag="power.changed"):
    state: PowerStateName
    cause: str  # "power-on", "power-off", "guest-poweroff", "crashed", "restore-policy", ...
    action: str = ""  # the requested action that led here, if any


class VmEvent(Message, tag="vm.event"):
    event: str  # QMP event name: RESET, SHUTDOWN, POWERDOWN, GUEST_PANICKED ...
    data: dict = {}
    guest: bool = False  # initiated by the guest


# --- boot ------------------------------------------------------------------


class BootSet(Message, tag="boot.set"):
    device: BootDevice
    persistent: bool = False
    efi: bool = False


class BootGet(Message, tag="boot.get"):
    pass


class BootStatus(Message, tag="boot.status"):
    device: BootDevice
    persistent: bool
    efi: bool


# --- console ---------------------------------------------------------------


class ConsoleHistoryGet(Message, tag="console.history"):
    max_bytes: int = 65536


# --- ipmi ------------------------------------------------------------------


class IpmiSessionEvent(Message, tag="ipmi.session"):
    what: Literal["opened", "closed", "expired", "auth-failed"]
    peer: str
    user: str = ""
    privilege: str = ""
    cipher_suite: int = -1


class IpmiDropped(Message, tag="ipmi.dropped"):
    """Datagrams dropped since start (malformed, unauthenticated, replays ...), by reason."""

    counts: dict[str, int]
    total: int


class StatsGet(Message, tag="stats.get"):
    pass


class IpmiStats(Message, tag="ipmi.stats"):
    datagrams: int
    dropped: dict[str, int]
    sessions_active: int
    sessions_opened: int
    auth_failures: int


# --- net -------------------------------------------------------------------


class NetLink(Message, tag="net.link"):
    ifname: str
    change: Literal["added", "removed", "up", "down"]
    mac: str = ""
    mtu: int = 0


class NicsGet(Message, tag="nics.get"):
    pass


class Nic(msgspec.Struct, kw_only=True):
    ifname: str  # the container interface (eth2, eth3, ...)
    mac: str  # the VM NIC's MAC
    mtu: int
    up: bool
    index: int = -1  # stable VM NIC index (eth2+ -> 0 for eth2; a list -> its position)
    wired: bool = False  # net has connected it to a tap (or macvtap): QEMU can use it
    tap: str = ""  # tc/bridge: the tap QEMU opens by name (-netdev tap,ifname=...)
    tap_device: str = ""  # macvtap: the character device QEMU gets as an fd (/dev/tapN)


class NicPlan(Message, tag="net.nics"):
    nics: list[Nic]
    waiting_for: list[str] = []  # non-empty while net still waits for CLAB_INTFS interfaces
    mode: str = ""  # NET_MODE: tc, bridge or macvtap
    missing: list[str] = []  # expected interfaces that are not there (while waiting, or after it)


# --- users (owner: ipmi) -----------------------------------------------------

Privilege = Literal["user", "operator", "administrator"]


class UserCheck(Message, tag="users.check"):
    """Check a name and password the way an RMCP+ login would (lock-out included)."""

    name: str
    password: str
    peer: str = ""  # the client's address, for lock-out and the session event


class UserCheckResult(Message, tag="users.check.result"):
    ok: bool
    privilege: Privilege | Literal[""] = ""  # the user's channel privilege when ok
    reason: str = ""  # when not ok: "unknown-user", "bad-password", "disabled", "locked-out"


class UsersGet(Message, tag="users.get"):
    pass


class UserInfo(msgspec.Struct, kw_only=True):
    id: int  # IPMI user slot (1..15; 1 is the anonymous slot)
    name: str
    enabled: bool
    privilege: Privilege | Literal["no-access"]


class UserList(Message, tag="users.list"):
    users: list[UserInfo]


class UserPasswordSet(Message, tag="users.password.set"):
    name: str
    password: str  # 1..20 bytes (IPMI 2.0 limit)
    source: str = ""


# --- virtual media (owner: power) ---------------------------------------------

MediaSlotName = Literal["cd"]


class MediaInsert(Message, tag="media.insert"):
    """Put a local image file (already in the container) into a slot.

    Front ends that accept URLs fetch the file themselves first (into
    STATE_DIR/media) and publish media.progress while they do."""

    path: str
    slot: MediaSlotName = "cd"
    image_name: str = ""  # what to show (the URL or file name the user gave)
    source: str = ""


class MediaEject(Message, tag="media.eject"):
    slot: MediaSlotName = "cd"
    source: str = ""


class MediaGet(Message, tag="media.get"):
    pass


class MediaSlot(msgspec.Struct, kw_only=True):
    slot: MediaSlotName
    inserted: bool
    path: str = ""
    image_name: str = ""
    write_protected: bool = True


class MediaStatus(Message, tag="media.status"):
    slots: list[MediaSlot]


class MediaProgress(Message, tag="media.progress"):
    url: str
    state: Literal["downloading", "done", "failed"]
    slot: MediaSlotName = "cd"
    received: int = 0
    total: int = -1  # -1 while unknown
    error: str = ""


encode = msgspec.json.encode


def decode(data: bytes, type_):
    return msgspec.json.decode(data, type=type_)
