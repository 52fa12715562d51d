"""The bus contract against a real nats-server: typed request/reply, errors,
timeouts, events and the key-value state (no mocked bus)."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from bus import BusTimeout, BusUnavailable, RemoteError, Subjects, connect, key_value
from bus.messages import ErrorReply, PowerChanged, PowerGet, PowerSet, PowerStatus

S = Subjects("n1")


async def settled(client, subject: str) -> None:
    """Wait until the server's subscription is visible to this client (seen flaky
    right after start on a loaded machine, although serve() flushes)."""
    for _ in range(50):
        try:
            await client.nc.request(subject, b"{}", timeout=2)
            return
        except Exception:
            await asyncio.sleep(0.05)


async def test_typed_request_and_reply(nats_server):
    server = await connect(nats_server, "server")
    client = await connect(nats_server, "client")

    async def on_get(_req: PowerGet) -> PowerStatus:
        return PowerStatus(state="on", vm_status="running", restore_policy="always-on")
    await server.serve(S.power_get, PowerGet, on_get)
    await settled(client, S.power_get)
    status = await client.request(S.power_get, PowerGet(), PowerStatus, timeout=2)
    assert status.state == "on" and status.vm_status == "running"
    await client.close()
    await server.close()


async def test_error_reply_raises_remote_error_with_its_code(nats_server):
    server = await connect(nats_server, "server")
    client = await connect(nats_server, "client")

    async def on_set(req: PowerSet):
        return ErrorReply(code="powered-off", message=f"power {req.action} needs power on")
    await server.serve(S.power_set, PowerSet, on_set)
    await settled(client, S.power_set)
    with pytest.raises(RemoteError) as err:
        await client.request(S.power_set, PowerSet(action="reset"), PowerStatus, timeout=2)
    assert err.value.code == "powered-off" and "reset" in str(err.value)
    await client.close()
    await server.close()


async def test_malformed_request_gets_bad_request_and_the_server_survives(nats_server):
    server = await connect(nats_server, "server")
    client = await connect(nats_server, "client")

    async def on_set(req: PowerSet) -> PowerStatus:
        return PowerStatus(state="on", vm_status="running", restore_policy="always-on")
    await server.serve(S.power_set, PowerSet, on_set)
    await settled(client, S.power_set)
    reply = await client.nc.request(S.power_set, b'{"type":"power.set","action":"explode"}', timeout=2)
    error = msgspec.json.decode(reply.data, type=ErrorReply)
    assert error.code == "bad-request" and "explode" in error.message
    assert (await client.request(S.power_set, PowerSet(action="on"), PowerStatus, 2)).state == "on"
    await client.close()
    await server.close()


async def test_handler_exception_becomes_an_internal_error_reply(nats_server):
    server = await connect(nats_server, "server")
    client = await connect(nats_server, "client")

    async def broken(_req: PowerGet):
        raise RuntimeError("disk on fire")
    await server.serve(S.power_get, PowerGet, broken)
    await settled(client, S.power_get)
    with pytest.raises(RemoteError) as err:
        await client.request(S.power_get, PowerGet(), PowerStatus, timeout=2)
    assert err.value.code == "internal" and "disk on fire" in str(err.value)
    await client.close()
    await server.close()


async def test_nobody_listening_and_slow_service(nats_server):
    client = await connect(nats_server, "client")
    with pytest.raises(BusUnavailable, match="no service answers"):
        await client.request(S.power_get, PowerGet(), PowerStatus, timeout=1)

    async def slow(_req: PowerGet) -> PowerStatus:
        await asyncio.sleep(2)
        return PowerStatus(state="on", vm_status="running", restore_policy="always-on")
    await client.serve(S.boot_get, PowerGet, slow)
    with pytest.raises(BusTimeout):
        await client.request(S.boot_get, PowerGet(), PowerStatus, timeout=0.3)
    await client.close()


async def test_connect_to_an_absent_server_names_the_url():
    with pytest.raises(BusUnavailable, match=r"nats://127\.0\.0\.1:1 \(NATS_URL\)"):
        await connect("nats://127.0.0.1:1", "client", wait=0.5)


async def test_events_reach_typed_subscribers_and_junk_is_skipped(nats_server):
    bus = await connect(nats_server, "a")
    got: asyncio.Queue = asyncio.Queue()

    async def on_changed(event: PowerChanged) -> None:
        await got.put(event)
    await bus.subscribe(S.power_changed, PowerChanged, on_changed)
    await bus.publish(S.power_changed, b"not json")
    await bus.publish(S.power_changed, PowerChanged(state="off", cause="power-off"))
    event = await asyncio.wait_for(got.get(), 2)
    assert (event.state, event.cause) == ("off", "power-off")
    await bus.close()


async def test_unknown_fields_are_ignored_by_consumers(nats_server):
    bus = await connect(nats_server, "a")
    got: asyncio.Queue = asyncio.Queue()

    async def on_changed(event: PowerChanged) -> None:
        await got.put(event)
    await bus.subscribe(S.power_changed, PowerChanged, on_changed)
    await bus.publish(S.power_changed, b'{"type":"power.changed","v":2,"state":"on","cause":"x","new":1}')
    assert (await asyncio.wait_for(got.get(), 2)).state == "on"
    await bus.close()


async def test_key_value_state_survives_a_reconnect(nats_server):
    bus = await connect(nats_server, "owner")
    kv = await key_value(bus, "qemu_bmc_test")
    await kv.put("power", b'{"last_state":"on"}')
    await bus.close()
    bus = await connect(nats_server, "owner")
    kv = await key_value(bus, "qemu_bmc_test")
    assert (await kv.get("power")).value == b'{"last_state":"on"}'
    await bus.close()


def test_subjects_are_namespaced_by_node():
    s = Subjects("rack1-node3")
    assert s.power_set == "bmc.rack1-node3.power.set"
    assert s.console_out == "bmc.rack1-node3.console.out"
    assert Subjects.all_nodes() == "bmc.>"
