"""Keeps the console logs bounded.

console.log is written by the relay (ConsoleLog below): rotation closes it,
moves it to console.log.1 (older ones move up) and opens a new one, losing
nothing. console.raw.log is QEMU's own copy; QEMU keeps its descriptor, so that
one is copied and truncated in place (rotate_if_needed)."""

from __future__ import annotations

import logging
import os
import shutil

log = logging.getLogger("rotation")


def rotate_if_needed(path: str, max_bytes: int, keep: int) -> bool:
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        return False
    if size <= max_bytes:
        return False
    for n in range(keep - 1, 0, -1):
        older = f"{path}.{n}"
        if os.path.exists(older):
            os.replace(older, f"{path}.{n + 1}")
    if keep >= 1:
        shutil.copyfile(path, f"{path}.1")
    with open(path, "r+b") as f:
        f.truncate(0)
    log.info("rotated %s at %d bytes", path, size)
    return True


class ConsoleLog:
    """The console log the relay writes: exactly the bytes the serial port sent."""

    def __init__(self, path: str, max_bytes: int, keep: int):
        self.path, self.max_bytes, self.keep = path, max_bytes, keep
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.file = open(path, "ab", buffering=0)
        self.size = self.file.tell()

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.size += len(data)
        if self.size > self.max_bytes:
            self.rotate()

    def rotate(self) -> None:
        self.file.close()
        for n in range(self.keep - 1, 0, -1):
            older = f"{self.path}.{n}"
            if os.path.exists(older):
                os.replace(older, f"{self.path}.{n + 1}")
        if self.keep >= 1:
            os.replace(self.path, f"{self.path}.1")
        else:
            os.unlink(self.path)
        log.info("rotated %s at %d bytes", self.path, self.size)
        self.file = open(self.path, "ab", buffering=0)
        self.size = 0

    def close(self) -> None:
        self.file.close()
