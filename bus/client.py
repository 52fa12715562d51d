"""The one NATS client every service uses.

`connect()` waits a bounded time for the server and then raises BusUnavailable
with the URL in the message; after that nats-py reconnects forever in the
background. `request()` is typed: it returns the reply type asked for or raises
RemoteError (the other side answered ErrorReply), BusTimeout or BusUnavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Awaitable, Callable, TypeVar

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from bus.config import redact_url
from bus.messages import ErrorReply, Message

log = logging.getLogger("bus")

R = TypeVar("R", bound=Message)
Q = TypeVar("Q", bound=Message)


class BusError(Exception):
    """Base of every error the bus client raises."""


class BusUnavailable(BusError):
    """NATS cannot be reached, or nobody serves the subject."""


class BusTimeout(BusError):
    """The request went out but no reply came in time."""


class RemoteError(BusError):
    """The service answered with an ErrorReply."""

    def __init__(self, reply: ErrorReply):
        super().__init__(f"{reply.code}: {reply.message}")
        self.code = reply.code
        self.reply = reply


class Bus:
    """A connected bus. Use `connect()` to get one."""

    def __init__(self, nc: NatsClient, name: str):
        self.nc = nc
        self.name = name
        self.closing = False

    @property
    def connected(self) -> bool:
        return self.nc.is_connected

    async def publish(self, subject: str, message: Message | bytes) -> None:
        """Publish an event; while NATS is away nats-py buffers it (bounded).

        A burst that fills the outbound buffer waits for it to drain instead of
        losing the message (console output comes in bursts of small pieces).
        """
        payload = bytes(message) if isinstance(message, (bytes, bytearray)) else msgspec.json.encode(message)
        for attempt in range(50):
            try:
                await self.nc.publish(subject, payload)
                return
            except nats.errors.OutboundBufferLimitError:
                if not self.nc.is_connected:
                    break  # reconnecting: the buffer will not drain now
                with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError):
                    await self.nc.flush(timeout=2)
            except nats.errors.ConnectionClosedError:
                break
        log.warning("could not publish on %s: the outbound buffer stays full", subject)

    async def request(self, subject: str, message: Message, reply_type: type[R], timeout: float = 5.0) -> R:
        """Send a request and wait up to `timeout` seconds for its typed reply.

        Raises RemoteError when the service answered with an error, BusTimeout
        when nobody answered in time, BusUnavailable when NATS is down or no
        service listens on `subject`.
        """
        payload = msgspec.json.encode(message)
        try:
            msg = await self.nc.request(subject, payload, timeout=timeout)
        except nats.errors.NoRespondersError:
            raise BusUnavailable(f"no service answers on {subject}") from None
        except nats.errors.TimeoutError:
            raise BusTimeout(f"no reply on {subject} within {timeout:g}s") from None
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError,
                nats.errors.OutboundBufferLimitError) as exc:
            raise BusUnavailable(f"NATS is not connected ({exc.__class__.__name__})") from None
        try:
            reply = msgspec.json.decode(msg.data, type=reply_type | ErrorReply)
        except msgspec.DecodeError as exc:
            raise BusError(f"malformed reply on {subject}: {exc}") from None
        if isinstance(reply, ErrorReply):
            raise RemoteError(reply)
        return reply

    async def serve(self, subject: str, request_type: type[Q],
                    handler: Callable[[Q], Awaitable[Message]]) -> None:
        """Answer requests on `subject`: decode, call `handler`, encode its reply.

        A request that does not decode gets ErrorReply(code="bad-request"); an
        exception in the handler gets ErrorReply(code="internal") and is logged.
        """

        async def on_msg(msg: Msg) -> None:
            try:
                request = msgspec.json.decode(msg.data, type=request_type)
            except msgspec.DecodeError as exc:
                reply: Message = ErrorReply(code="bad-request", message=f"{subject}: {exc}")
            else:
                try:
                    reply = await handler(request)
                except Exception as exc:  # the reply must go out whatever happened
                    log.exception("handler for %s failed", subject)
                    reply = ErrorReply(code="internal", message=f"{exc.__class__.__name__}: {exc}")
            if msg.reply:
                try:
                    await msg.respond(msgspec.json.encode(reply))
                except nats.errors.Error as exc:
                    log.warning("could not answer on %s: %s", subject, exc)

        await self.nc.subscribe(subject, cb=on_msg)
        await self._flush()  # the server knows the subscription when serve() returns

    async def _flush(self) -> None:
        try:
            await self.nc.flush(timeout=10)  # a loaded machine can take a while
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            log.debug("flush after subscribe: %s", exc)

    async def subscribe_raw(self, subject: str, callback: Callable[[Msg], Awaitable[None]]):
        """Subscribe to raw payloads (console bytes, or replies built by hand)."""
        sub = await self.nc.subscribe(subject, cb=callback)
        await self._flush()
        return sub

    async def subscribe(self, subject: str, message_type: type[Q],
                        callback: Callable[[Q], Awaitable[None]]):
        """Subscribe to typed events; events that do not decode are logged and skipped."""

        async def on_msg(msg: Msg) -> None:
            try:
                event = msgspec.json.decode(msg.data, type=message_type)
            except msgspec.DecodeError as exc:
                log.warning("ignoring malformed event on %s: %s", msg.subject, exc)
                return
            await callback(event)

        sub = await self.nc.subscribe(subject, cb=on_msg)
        await self._flush()
        return sub

    async def close(self) -> None:
        self.closing = True
        if not self.nc.is_closed:
            await self.nc.drain()


async def connect(url: str, name: str, wait: float = 30.0) -> Bus:
    """Connect to NATS at `url`, retrying for up to `wait` seconds.

    Raises BusUnavailable naming the URL when the server never answered. Once
    connected, the client reconnects by itself for as long as the process lives.
    """
    shown = redact_url(url)  # a URL may carry a password (an exposed NATS_LISTEN): never log it

    async def on_disconnect() -> None:
        if not (made and made[0].closing):
            log.warning("lost NATS at %s, reconnecting", shown)

    async def on_reconnect() -> None:
        log.info("reconnected to NATS at %s", shown)

    async def on_error(exc: Exception) -> None:
        log.debug("NATS client error: %s", exc)

    made: list[Bus] = []  # the Bus once connected: its close() is not a lost connection

    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    last_error: Exception | None = None
    while True:
        remaining = max(0.5, deadline - loop.time())
        try:
            # nats-py keeps retrying a first connection that fails while
            # reconnecting is allowed: bound it here so the error is ours to say
            nc = await asyncio.wait_for(nats.connect(
                servers=[url], name=name, connect_timeout=2, allow_reconnect=True,
                max_reconnect_attempts=-1, reconnect_time_wait=0.25,
                disconnected_cb=on_disconnect, reconnected_cb=on_reconnect, error_cb=on_error,
            ), remaining)
            made.append(Bus(nc, name))
            return made[0]
        except (OSError, nats.errors.Error, asyncio.TimeoutError) as exc:
            last_error = exc
        if loop.time() >= deadline:
            why = str(last_error) or last_error.__class__.__name__
            raise BusUnavailable(f"cannot reach NATS at {shown} (NATS_URL) after {wait:g}s: {why}")
        await asyncio.sleep(0.2)


async def key_value(bus: Bus, bucket: str, history: int = 1):
    """Bind to a JetStream key-value bucket, creating it on first use.

    State that outlives a restart lives here (in the state directory); each
    bucket has exactly one owning service that writes it.
    """
    js = bus.nc.jetstream(timeout=5)
    try:
        return await js.key_value(bucket)
    except nats.js.errors.BucketNotFoundError:
        return await js.create_key_value(bucket=bucket, history=history)
