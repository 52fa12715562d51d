"""Fetching virtual-media images: real HTTP servers on loopback (the stdlib's
http.server for plain files, aiohttp.web for streams without a length), real
ISO images made with xorriso, and media.progress on a real nats-server."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import http.server
import os
import subprocess
import threading

import msgspec
import pytest
from aiohttp import web

from bus import connect
from bus.config import ConfigError
from bus.messages import MediaProgress
from helpers import free_port
from services.redfish.media_fetch import (MediaFetchError, ProgressPublisher, fetch, file_name_for,
                                          media_max_bytes_from_env)

MiB = 1024 * 1024


def make_iso(path, payload_bytes: int = 0) -> bytes:
    """A real ISO 9660 image (xorriso) holding a readme and `payload_bytes` of data."""
    root = path.parent / f"{path.name}.root"
    root.mkdir()
    (root / "README.TXT").write_text("qemu-bmc virtual media test\n")
    if payload_bytes:
        (root / "payload.bin").write_bytes(os.urandom(payload_bytes))
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "QBTEST", "-o", str(path), str(root)],
                   check=True, capture_output=True)
    return path.read_bytes()


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        """A client hanging up mid-body is what the size-limit tests do on purpose."""
        import sys
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@pytest.fixture
def served(tmp_path):
    """A stdlib HTTP server on loopback serving tmp_path/www: yields (www dir, base URL)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a: None
    server = QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def no_leftovers(dest) -> bool:
    return not os.path.exists(dest) or os.listdir(dest) == []


async def test_good_iso_is_stored_whole_with_progress_and_hash(served, tmp_path):
    www, base = served
    data = make_iso(www / "boot.iso", payload_bytes=3 * MiB)
    dest = tmp_path / "media"
    calls = []
    path = await fetch(f"{base}/boot.iso", str(dest), max_bytes=64 * MiB,
                       expected_sha256=hashlib.sha256(data).hexdigest().upper(),
                       progress=lambda received, total: calls.append((received, total)))
    assert os.path.dirname(path) == str(dest) and path.endswith("-boot.iso")
    with open(path, "rb") as f:
        assert f.read() == data
    assert os.listdir(dest) == [os.path.basename(path)]  # no part file left behind
    assert calls[0] == (0, len(data)) and calls[-1] == (len(data), len(data))
    assert [r for r, _ in calls] == sorted(r for r, _ in calls) and len(calls) > 2


async def test_too_large_by_content_length_is_refused_before_reading(served, tmp_path):
    www, base = served
    data = make_iso(www / "big.iso", payload_bytes=2 * MiB)
    with pytest.raises(MediaFetchError) as err:
        await fetch(f"{base}/big.iso", str(tmp_path / "media"), max_bytes=MiB)
    assert err.value.code == "too-large" and str(len(data)) in str(err.value)
    assert "MEDIA_MAX_BYTES" in str(err.value)
    assert no_leftovers(tmp_path / "media")


async def test_too_large_while_streaming_without_a_length(tmp_path):
    """A chunked response gives no Content-Length: the limit holds while reading."""
    iso = make_iso(tmp_path / "stream.iso", payload_bytes=3 * MiB)

    async def stream(request):
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for i in range(0, len(iso), 64 * 1024):
            await response.write(iso[i:i + 64 * 1024])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/stream.iso", stream)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        url = f"http://127.0.0.1:{port}/stream.iso"
        with pytest.raises(MediaFetchError) as err:
            await fetch(url, str(tmp_path / "media"), max_bytes=MiB)
        assert err.value.code == "too-large"
        assert no_leftovers(tmp_path / "media")
        # the same stream under a limit it fits: stored, total unknown (-1) throughout
        totals = set()
        path = await fetch(url, str(tmp_path / "media"), max_bytes=64 * MiB,
                           progress=lambda _r, total: totals.add(total))
        assert open(path, "rb").read() == iso and totals == {-1}
    finally:
        await runner.cleanup()


async def test_https_checks_the_certificate(tmp_path):
    """HTTPS from a server with a self-signed certificate: refused by default
    (naming the certificate problem), fetched when verification is turned off."""
    import ssl
    iso = make_iso(tmp_path / "secure.iso")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))

    async def image(_request):
        return web.Response(body=iso, content_type="application/x-iso9660-image")

    app = web.Application()
    app.router.add_get("/secure.iso", image)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    try:
        url = f"https://127.0.0.1:{port}/secure.iso"
        with pytest.raises(MediaFetchError) as err:
            await fetch(url, str(tmp_path / "media"), max_bytes=64 * MiB)
        assert err.value.code == "tls-failed" and "certificate" in str(err.value)
        assert no_leftovers(tmp_path / "media")
        path = await fetch(url, str(tmp_path / "media"), max_bytes=64 * MiB, ssl_verify=False)
        assert open(path, "rb").read() == iso
    finally:
        await runner.cleanup()


async def test_html_error_page_is_not_an_image(served, tmp_path):
    www, base = served
    (www / "login.html").write_text("<html><body>Please log in</body></html>" * 2000)
    with pytest.raises(MediaFetchError) as err:
        await fetch(f"{base}/login.html", str(tmp_path / "media"), max_bytes=64 * MiB)
    assert err.value.code == "not-an-image" and "text/html" in str(err.value)
    assert no_leftovers(tmp_path / "media")


async def test_binary_that_is_not_iso9660_is_refused(served, tmp_path):
    www, base = served
    (www / "random.iso").write_bytes(os.urandom(100 * 1024))
    (www / "tiny.iso").write_bytes(b"\0" * 100)
    for name in ("random.iso", "tiny.iso"):
        with pytest.raises(MediaFetchError) as err:
            await fetch(f"{base}/{name}", str(tmp_path / "media"), max_bytes=64 * MiB)
        assert err.value.code == "not-an-image" and "CD001" in str(err.value)
    assert no_leftovers(tmp_path / "media")


async def test_http_404_names_the_status(served, tmp_path):
    _www, base = served
    with pytest.raises(MediaFetchError) as err:
        await fetch(f"{base}/missing.iso", str(tmp_path / "media"), max_bytes=64 * MiB)
    assert err.value.code == "http-status" and "404" in str(err.value)


async def test_unreachable_port_is_a_clear_error(tmp_path):
    port = free_port()  # nothing listens there
    with pytest.raises(MediaFetchError) as err:
        await fetch(f"http://127.0.0.1:{port}/x.iso", str(tmp_path / "media"), max_bytes=64 * MiB)
    assert err.value.code == "unreachable" and f"127.0.0.1:{port}" in str(err.value)
    assert no_leftovers(tmp_path / "media")


async def test_hash_mismatch_keeps_nothing(served, tmp_path):
    www, base = served
    make_iso(www / "boot.iso")
    with pytest.raises(MediaFetchError) as err:
        await fetch(f"{base}/boot.iso", str(tmp_path / "media"), max_bytes=64 * MiB, expected_sha256="0" * 64)
    assert err.value.code == "hash-mismatch" and "0" * 64 in str(err.value)
    assert no_leftovers(tmp_path / "media")
    with pytest.raises(MediaFetchError) as err:
        await fetch(f"{base}/boot.iso", str(tmp_path / "media"), max_bytes=64 * MiB, expected_sha256="abc")
    assert err.value.code == "bad-hash"


async def test_local_files_only_inside_the_allowed_directories(tmp_path):
    media, mounted, elsewhere = tmp_path / "media", tmp_path / "isos", tmp_path / "elsewhere"
    for d in (media, mounted, elsewhere):
        d.mkdir()
    make_iso(mounted / "a.iso")
    make_iso(elsewhere / "b.iso")
    (mounted / "notes.txt").write_text("not an image")
    os.symlink(elsewhere / "b.iso", mounted / "link.iso")
    allowed = (str(mounted),)
    assert await fetch(f"file://{mounted}/a.iso", str(media), max_bytes=MiB, allowed_dirs=allowed) \
        == str(mounted / "a.iso")
    assert await fetch(str(mounted / "a.iso"), str(media), max_bytes=MiB, allowed_dirs=allowed) \
        == str(mounted / "a.iso")
    cases = [(f"file://{elsewhere}/b.iso", "path-not-allowed"),
             (str(mounted / "link.iso"), "path-not-allowed"),  # a symlink out does not count as inside
             (f"{mounted}/../elsewhere/b.iso", "path-not-allowed"),
             (str(mounted / "absent.iso"), "not-found"),
             (str(mounted / "notes.txt"), "not-an-image"),
             ("ftp://127.0.0.1/x.iso", "bad-url"),
             ("http:///x.iso", "bad-url"),
             ("relative/x.iso", "bad-url"),
             ("file://otherhost/x.iso", "bad-url")]
    for url, code in cases:
        with pytest.raises(MediaFetchError) as err:
            await fetch(url, str(media), max_bytes=MiB, allowed_dirs=allowed)
        assert err.value.code == code, (url, err.value)


def test_file_names_are_safe_and_distinct():
    a = file_name_for("http://a.example/x/boot.iso")
    b = file_name_for("http://b.example/x/boot.iso")
    assert a != b and a.endswith("-boot.iso") and b.endswith("-boot.iso")
    evil = file_name_for("http://h/..%2F..%2Fetc%2Fpasswd")
    assert "/" not in evil and not evil.startswith(".")
    assert file_name_for("http://h/").endswith("-image.iso")


def test_media_max_bytes_is_validated():
    assert media_max_bytes_from_env({}) == 8 * 1024**3
    assert media_max_bytes_from_env({"MEDIA_MAX_BYTES": str(100 * MiB)}) == 100 * MiB
    for bad in ("lots", "10"):
        with pytest.raises(ConfigError) as err:
            media_max_bytes_from_env({"MEDIA_MAX_BYTES": bad})
        assert "MEDIA_MAX_BYTES" in str(err.value)


async def test_progress_reaches_the_bus_rate_limited(served, tmp_path, nats_server):
    www, base = served
    data = make_iso(www / "boot.iso", payload_bytes=4 * MiB)
    url = f"{base}/boot.iso"
    subject = "bmc.n1.media.progress"
    bus = await connect(nats_server, "test")
    seen: list[MediaProgress] = []
    got_final = asyncio.Event()

    async def on_progress(msg: MediaProgress) -> None:
        seen.append(msg)
        if msg.state != "downloading":
            got_final.set()
    await bus.subscribe(subject, MediaProgress, on_progress)
    try:
        chunks = []
        publisher = ProgressPublisher(bus, subject, url, interval=3600)

        async def progress(received, total):
            chunks.append(received)
            await publisher(received, total)
        await fetch(url, str(tmp_path / "media"), max_bytes=64 * MiB, progress=progress)
        await publisher.done()
        await asyncio.wait_for(got_final.wait(), 10)
        # many chunks, one "downloading" within the interval, then "done" with the full count
        assert len(chunks) > 5
        assert [m.state for m in seen] == ["downloading", "done"]
        assert seen[-1].received == len(data) and seen[-1].total == len(data) and seen[-1].url == url

        seen.clear()
        got_final.clear()
        failing = ProgressPublisher(bus, subject, f"{base}/missing.iso", interval=0)
        with pytest.raises(MediaFetchError) as err:
            await fetch(f"{base}/missing.iso", str(tmp_path / "media"), max_bytes=MiB, progress=failing)
        await failing.failed(str(err.value))
        await asyncio.wait_for(got_final.wait(), 10)
        assert seen[-1].state == "failed" and "404" in seen[-1].error
        assert msgspec.json.decode(msgspec.json.encode(seen[-1]), type=MediaProgress) == seen[-1]
    finally:
        await bus.close()
