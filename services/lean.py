"""What a service program does before its first import of `bus`."""

from __future__ import annotations

import os
import sys


def leave_out_aiohttp() -> None:
    """nats-py imports aiohttp at start for its websocket transport alone: ~11 MiB and
    0.1-0.3 s of CPU per process (benchmarks/startup.py). A service that has no use
    for aiohttp itself calls this first; nats-py then runs without it (it treats
    aiohttp as optional), unless NATS_URL asks for a websocket."""
    if not os.environ.get("NATS_URL", "").startswith(("ws://", "wss://")):
        sys.modules.setdefault("aiohttp", None)
