"""Subject names: bmc.<node>.<service>.<verb>.

Commands are request/reply; events are facts in the past tense. Console bytes
are raw payloads, everything else is a message from bus.messages as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Subjects:
    node: str

    def _s(self, service: str, verb: str) -> str:
        return f"bmc.{self.node}.{service}.{verb}"

    # power agent (owner of power state and boot device)
    @property
    def power_set(self) -> str:  # request PowerSet -> PowerStatus | ErrorReply
        return self._s("power", "set")

    @property
    def power_get(self) -> str:  # request PowerGet -> PowerStatus | ErrorReply
        return self._s("power", "get")

    @property
    def power_policy(self) -> str:  # request RestorePolicySet -> PowerStatus | ErrorReply
        return self._s("power", "policy")

    @property
    def power_changed(self) -> str:  # event PowerChanged
        return self._s("power", "changed")

    @property
    def boot_set(self) -> str:  # request BootSet -> BootStatus | ErrorReply
        return self._s("boot", "set")

    @property
    def boot_get(self) -> str:  # request BootGet -> BootStatus | ErrorReply
        return self._s("boot", "get")

    @property
    def vm_event(self) -> str:  # event VmEvent (QMP events as they happen)
        return self._s("vm", "event")

    # console relay
    @property
    def console_out(self) -> str:  # raw bytes the guest printed
        return self._s("console", "out")

    @property
    def console_in(self) -> str:  # raw bytes for the guest's serial port
        return self._s("console", "in")

    @property
    def console_attached(self) -> str:  # event: the relay is reading a (new) serial port
        return self._s("console", "attached")

    @property
    def console_break(self) -> str:  # event: send a break on the guest's serial port
        return self._s("console", "break")

    @property
    def console_history(self) -> str:  # request ConsoleHistoryGet -> raw bytes
        return self._s("console", "history")

    # ipmi front end
    @property
    def ipmi_session(self) -> str:  # event IpmiSessionEvent
        return self._s("ipmi", "session")

    @property
    def ipmi_dropped(self) -> str:  # event IpmiDropped
        return self._s("ipmi", "dropped")

    @property
    def ipmi_stats(self) -> str:  # request StatsGet -> IpmiStats
        return self._s("ipmi", "stats")

    # net
    @property
    def net_link(self) -> str:  # event NetLink
        return self._s("net", "link")

    @property
    def net_nics(self) -> str:  # request NicsGet -> NicPlan
        return self._s("net", "nics")

    @property
    def net_plan(self) -> str:  # event NicPlan: the plan changed (NIC wired or gone, wait over)
        return self._s("net", "plan")

    # users (owned by ipmi: the same accounts for IPMI, Redfish and in-band)
    @property
    def users_check(self) -> str:  # request UserCheck -> UserCheckResult | ErrorReply
        return self._s("users", "check")

    @property
    def users_get(self) -> str:  # request UsersGet -> UserList | ErrorReply
        return self._s("users", "get")

    @property
    def users_password(self) -> str:  # request UserPasswordSet -> UserList | ErrorReply
        return self._s("users", "password")

    @property
    def users_changed(self) -> str:  # event UserList (after any change, from any front end)
        return self._s("users", "changed")

    # virtual media (owned by power: it builds QEMU's drives and speaks QMP)
    @property
    def media_insert(self) -> str:  # request MediaInsert -> MediaStatus | ErrorReply
        return self._s("media", "insert")

    @property
    def media_eject(self) -> str:  # request MediaEject -> MediaStatus | ErrorReply
        return self._s("media", "eject")

    @property
    def media_get(self) -> str:  # request MediaGet -> MediaStatus | ErrorReply
        return self._s("media", "get")

    @property
    def media_changed(self) -> str:  # event MediaStatus
        return self._s("media", "changed")

    @property
    def media_progress(self) -> str:  # event MediaProgress (a front end fetching an image)
        return self._s("media", "progress")

    @staticmethod
    def all_nodes() -> str:
        return "bmc.>"
