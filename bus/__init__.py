"""The qemu-bmc bus contract: subject names, message types and the one client.

Every service imports this package and its own, never another service. What is
said here is the interface; anything that speaks these subjects with these
messages can replace a service.
"""

from bus.client import Bus, BusError, BusUnavailable, BusTimeout, RemoteError, connect, key_value
from bus.config import ConfigError, Settings
from bus.subjects import Subjects

__all__ = [
    "Bus", "BusError", "BusUnavailable", "BusTimeout", "RemoteError", "connect", "key_value",
    "ConfigError", "Settings", "Subjects",
]
