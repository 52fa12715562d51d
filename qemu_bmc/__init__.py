"""The `qemu-bmc` command: status, power, trace and configuration checks."""

__version__ = "0.1.0"
