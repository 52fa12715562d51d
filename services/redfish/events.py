"""Redfish events from bus events, and their Server-Sent Events framing (DSP0266
"Server-sent events"; message ids from the ResourceEvent registry). Pure."""

from __future__ import annotations

import datetime
import json

from bus.messages import MediaStatus, PowerChanged
from services.redfish.registry import resource_event_message
from services.redfish.resources import SYSTEM, TYPES, V1


class EventBuilder:
    """Numbers events (the SSE `id`, so a client can tell what it missed) and builds payloads."""

    def __init__(self) -> None:
        self.next_id = 1

    def _event(self, message_id: str, origin: str, args: list[str], now: float) -> dict:
        full_id, text, severity = resource_event_message(message_id, *args)
        event_id = str(self.next_id)
        self.next_id += 1
        stamp = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).isoformat(timespec="seconds")
        return {
            "@odata.type": f"#{TYPES['Event']}.Event", "Id": event_id, "Name": "Event",
            "Context": "qemu-bmc",
            "Events": [{"EventId": event_id, "EventTimestamp": stamp, "MessageId": full_id, "Message": text,
                        "MessageArgs": args, "MessageSeverity": severity,
                        "OriginOfCondition": {"@odata.id": origin}}],
        }

    def power_changed(self, event: PowerChanged, now: float) -> dict:
        message_id = "ResourcePoweredOn" if event.state == "on" else "ResourcePoweredOff"
        return self._event(message_id, SYSTEM, [SYSTEM], now)

    def boot_changed(self, now: float) -> dict:
        return self._event("ResourceChanged", SYSTEM, [], now)

    def media_changed(self, _status: MediaStatus, now: float) -> dict:
        return self._event("ResourceChanged", f"{SYSTEM}/VirtualMedia/Cd1", [], now)

    def accounts_changed(self, now: float) -> dict:
        return self._event("ResourceChanged", f"{V1}/AccountService/Accounts", [], now)


def sse_frame(event: dict) -> bytes:
    """One SSE message: `id` is the event's Id, `data` its JSON on one line."""
    return f"id: {event['Id']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


SSE_KEEPALIVE = b": keep-alive\n\n"  # a comment line: proxies and clients see the stream is alive
