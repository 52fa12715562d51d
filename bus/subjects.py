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

    @staticmethod
    def all_nodes() -> str:
        return "bmc.>"
