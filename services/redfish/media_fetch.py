"""Fetching a virtual-media image: an http(s) URL into the state volume, or a
file already in the container.

`fetch` is the whole job for one InsertMedia: it checks the URL, streams the
body to a hidden part file in the media directory with a size limit (from
Content-Length before reading, and while reading), checks that the bytes are an
ISO 9660 image (not an HTML error page behind a 200), optionally their SHA-256,
and renames the file into place only then. Every failure is a MediaFetchError
with a stable `code` and a message a user can act on. The HTTP client is
aiohttp; nothing here knows about the bus except ProgressPublisher, which turns
progress calls into media.progress events.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import os
import logging
import re
import secrets
import time
from typing import Awaitable, Callable, Mapping
from urllib.parse import unquote, urlsplit

import aiohttp

from bus.config import env_int
from bus.messages import MediaProgress

log = logging.getLogger("media-fetch")

DEFAULT_MAX_BYTES = 8 * 1024**3  # MEDIA_MAX_BYTES: installer DVDs fit, a runaway download does not
CHUNK = 256 * 1024
CONNECT_TIMEOUT = 15.0  # seconds to reach the server
READ_TIMEOUT = 60.0  # seconds without a byte before the transfer counts as stalled

# ISO 9660 (ECMA-119 8.1): the volume descriptor set starts at sector 16 (2048-byte
# sectors); every descriptor has its type byte, then the standard identifier "CD001"
ISO_ID_OFFSET = 16 * 2048 + 1
ISO_ID = b"CD001"
HEAD_BYTES = ISO_ID_OFFSET + len(ISO_ID)  # what a download must have to be judged

Progress = Callable[[int, int], "Awaitable[None] | None"]  # (received, total or -1)


class MediaFetchError(Exception):
    """An image could not be had; `code` is stable, the message says why."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def media_max_bytes_from_env(env: Mapping[str, str] | None = None) -> int:
    """MEDIA_MAX_BYTES, validated (ConfigError names the variable)."""
    env = os.environ if env is None else env
    return env_int(env, "MEDIA_MAX_BYTES", DEFAULT_MAX_BYTES, 1024 * 1024, 1024**4)


def is_iso9660(head: bytes) -> bool:
    return head[ISO_ID_OFFSET:ISO_ID_OFFSET + len(ISO_ID)] == ISO_ID


def _inside(path: str, directory: str) -> bool:
    directory = os.path.realpath(directory)
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _check_iso_file(path: str, what: str) -> None:
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
    except OSError as exc:
        raise MediaFetchError("not-readable", f"{what}: {exc.strerror}") from None
    if not is_iso9660(head):
        raise MediaFetchError("not-an-image", f"{what} is not an ISO 9660 image (no CD001 at byte 0x8001)")


def local_image(path: str, allowed_dirs: tuple[str, ...]) -> str:
    """A file already in the container: its real path, if it is an ISO inside an allowed directory."""
    real = os.path.realpath(path)
    if not any(_inside(real, d) for d in allowed_dirs):
        raise MediaFetchError("path-not-allowed", f"{path} is outside the media directories "
                                                  f"({', '.join(allowed_dirs) or 'none configured'})")
    if not os.path.isfile(real):
        raise MediaFetchError("not-found", f"{path} does not exist or is not a regular file")
    _check_iso_file(real, path)
    return real


def file_name_for(url: str) -> str:
    """A stable, safe file name for a URL: its last path segment, prefixed by a
    short hash of the whole URL (two URLs ending in boot.iso do not collide)."""
    base = os.path.basename(unquote(urlsplit(url).path)) or "image.iso"
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".")[:100] or "image.iso"
    return f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{base}"


async def _report(progress: Progress | None, received: int, total: int) -> None:
    if progress is None:
        return
    result = progress(received, total)
    if inspect.isawaitable(result):
        await result


async def fetch(url: str, dest_dir: str, *, max_bytes: int, expected_sha256: str | None = None,
                progress: Progress | None = None, allowed_dirs: tuple[str, ...] = (),
                ssl_verify: bool = True) -> str:
    """The local path of the image `url` names: downloaded into `dest_dir` for
    http(s), or checked in place for file:// URLs and absolute paths (which must
    be inside `allowed_dirs`; `dest_dir` always is one)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file" or (not scheme and url.startswith("/")):
        if scheme == "file" and parts.netloc not in ("", "localhost"):
            raise MediaFetchError("bad-url", f"{url}: file URLs name no host")
        path = unquote(parts.path) if scheme == "file" else url
        real = local_image(path, (dest_dir, *allowed_dirs))
        if expected_sha256:
            digest = await asyncio.to_thread(_sha256_of, real)
            _check_hash(digest, expected_sha256)
        return real
    if scheme not in ("http", "https") or not parts.hostname:
        raise MediaFetchError("bad-url", f"{url!r} is not an http(s) URL, a file:// URL or an absolute path")
    if expected_sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", expected_sha256):
        raise MediaFetchError("bad-hash", "expected SHA-256 must be 64 hex digits")

    os.makedirs(dest_dir, exist_ok=True)
    final = os.path.join(dest_dir, file_name_for(url))
    part = os.path.join(dest_dir, f".{os.path.basename(final)}.{secrets.token_hex(4)}.part")
    try:
        await _download(url, part, max_bytes, expected_sha256, progress, ssl_verify)
        os.replace(part, final)  # atomic: a reader sees the whole image or none
    finally:
        if os.path.exists(part):
            os.unlink(part)
    return final


async def _download(url: str, part: str, max_bytes: int, expected_sha256: str | None,
                    progress: Progress | None, ssl_verify: bool) -> None:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT)
    where = urlsplit(url).netloc
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(url, ssl=None if ssl_verify else False) as response:
                if response.status != 200:
                    raise MediaFetchError("http-status", f"{url}: the server answered HTTP "
                                                         f"{response.status} {response.reason or ''}".rstrip())
                total = response.content_length if response.content_length is not None else -1
                if total > max_bytes:
                    raise MediaFetchError("too-large", f"{url} is {total} bytes; the limit is {max_bytes} "
                                                       "(MEDIA_MAX_BYTES)")
                content_type = response.content_type.lower()
                if content_type.startswith("text/"):
                    # a login or error page served with 200; an image is never text
                    raise MediaFetchError("not-an-image", f"{url} is {content_type}, not a disc image")
                digest = hashlib.sha256()
                received = 0
                head = b""
                await _report(progress, 0, total)
                with open(part, "wb") as f:
                    async for chunk in response.content.iter_chunked(CHUNK):
                        received += len(chunk)
                        if received > max_bytes:
                            raise MediaFetchError("too-large", f"{url} is larger than the limit of "
                                                               f"{max_bytes} bytes (MEDIA_MAX_BYTES)")
                        if len(head) < HEAD_BYTES:
                            head += chunk[:HEAD_BYTES - len(head)]
                            if len(head) == HEAD_BYTES and not is_iso9660(head):
                                raise MediaFetchError("not-an-image", f"{url} is not an ISO 9660 image "
                                                                      "(no CD001 at byte 0x8001)")
                        digest.update(chunk)
                        await asyncio.to_thread(f.write, chunk)
                        await _report(progress, received, total)
                if total >= 0 and received != total:
                    raise MediaFetchError("truncated", f"{url}: got {received} of {total} bytes")
                if not is_iso9660(head):
                    raise MediaFetchError("not-an-image", f"{url} is not an ISO 9660 image "
                                                          f"({received} bytes, no CD001 at byte 0x8001)")
                if expected_sha256:
                    _check_hash(digest.hexdigest(), expected_sha256)
    except MediaFetchError:
        raise
    except aiohttp.ClientConnectorCertificateError as exc:
        raise MediaFetchError("tls-failed", f"{where}: certificate not trusted ({exc.certificate_error})") from None
    except aiohttp.ClientConnectorError as exc:
        raise MediaFetchError("unreachable", f"cannot reach {where}: {exc.os_error.strerror or exc}") from None
    except (aiohttp.ServerTimeoutError, asyncio.TimeoutError):
        raise MediaFetchError("timeout", f"{where} stopped sending (nothing for {READ_TIMEOUT:g}s)") from None
    except aiohttp.ClientPayloadError as exc:
        raise MediaFetchError("truncated", f"{url}: the transfer broke off ({exc})") from None
    except aiohttp.ClientError as exc:
        raise MediaFetchError("http-failed", f"{url}: {exc.__class__.__name__}: {exc}") from None
    except OSError as exc:
        raise MediaFetchError("write-failed", f"cannot store the image: {exc.strerror}") from None


def _sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_hash(actual: str, expected: str) -> None:
    if actual.lower() != expected.lower():
        raise MediaFetchError("hash-mismatch", f"SHA-256 is {actual}, expected {expected.lower()}")


class ProgressPublisher:
    """Progress of one fetch as media.progress events: at most one "downloading"
    per `interval` seconds (plus the first), then one "done" or "failed".

    Use as the `progress` callback of fetch, then call done() or failed()."""

    def __init__(self, bus, subject: str, url: str, *, slot: str = "cd", interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic):
        self.bus = bus
        self.subject = subject
        self.url = url
        self.slot = slot
        self.interval = interval
        self.clock = clock
        self.received = 0
        self.total = -1
        self._last_sent: float | None = None

    async def __call__(self, received: int, total: int) -> None:
        self.received, self.total = received, total
        now = self.clock()
        if self._last_sent is not None and now - self._last_sent < self.interval:
            return
        self._last_sent = now
        await self._publish("downloading")

    async def done(self) -> None:
        await self._publish("done")

    async def failed(self, error: str) -> None:
        await self._publish("failed", error)

    async def _publish(self, state: str, error: str = "") -> None:
        try:
            await self.bus.publish(self.subject, MediaProgress(url=self.url, state=state, slot=self.slot,
                                                               received=self.received, total=self.total,
                                                               error=error))
        except Exception as exc:  # progress is advisory: a bus hiccup must not fail the fetch
            log.warning("media.progress not published: %s", exc)
