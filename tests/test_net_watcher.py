"""The net service's link watcher over real netlink and a real nats-server:
veth pairs appear and disappear, the NIC plan and link events follow."""

from __future__ import annotations

import asyncio
import os
import subprocess

import pytest

from bus import Subjects, connect
from bus.messages import NetLink, NicPlan, NicsGet
from services.net.plan import NetConfig, stable_mac
from services.net.watcher import LinkWatcher

S = Subjects("n1")


@pytest.fixture
def names():
    """Two veth names unique to this run; no addresses, so no traffic anywhere."""
    base = f"qbt{os.getpid() % 10000}"
    yield f"{base}a", f"{base}b"
    for n in (f"{base}a", f"{base}b"):
        subprocess.run(["ip", "link", "del", n], capture_output=True)


async def test_plan_and_events_follow_the_interfaces(nats_server, names):
    first, second = names
    subprocess.run(["ip", "link", "add", first, "type", "veth", "peer", "name", f"{first}p"], check=True)
    bus = await connect(nats_server, "net")
    config = NetConfig.from_env({"VM_NICS": f"{first},{second}", "CLAB_INTFS": "2"})
    watcher = LinkWatcher(bus, S, config, "n1")
    await watcher.start()
    task = asyncio.create_task(watcher.run())
    viewer = await connect(nats_server, "viewer")
    events: asyncio.Queue = asyncio.Queue()

    async def on_link(event: NetLink):
        await events.put(event)
    await viewer.subscribe(S.net_link, NetLink, on_link)

    plan = await viewer.request(S.net_nics, NicsGet(), NicPlan, 2)
    assert [n.ifname for n in plan.nics] == [first]
    assert plan.nics[0].mac == stable_mac("n1", 0)
    assert plan.waiting_for == ["1 more interface(s)"]

    subprocess.run(["ip", "link", "add", second, "type", "veth", "peer", "name", f"{second}p"], check=True)
    event = await asyncio.wait_for(events.get(), 5)
    assert (event.ifname, event.change) == (second, "added")
    plan = await viewer.request(S.net_nics, NicsGet(), NicPlan, 2)
    assert [n.ifname for n in plan.nics] == [first, second] and plan.waiting_for == []

    subprocess.run(["ip", "link", "del", first], check=True)
    event = await asyncio.wait_for(events.get(), 5)
    assert (event.ifname, event.change) == (first, "removed")
    task.cancel()
    await viewer.close()
    await bus.close()
