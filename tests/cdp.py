"""Headless Chromium driven over the Chrome DevTools Protocol (CDP), for the web
console tests: Debian's chromium, no Playwright download, one small client."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile

import aiohttp

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"


class CdpError(Exception):
    pass


class Browser:
    """One headless Chromium with one page. Use as `async with Browser() as page:`."""

    def __init__(self, width: int = 1280, height: int = 900):
        self.width, self.height = width, height
        self.profile = tempfile.mkdtemp(prefix="qemu-bmc-chromium-")
        self.proc: asyncio.subprocess.Process | None = None
        self.http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "Page":
        # root in a container: Chromium's sandbox needs user namespaces it may not get
        self.proc = await asyncio.create_subprocess_exec(
            CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--ignore-certificate-errors", "--no-first-run", "--no-default-browser-check",
            f"--window-size={self.width},{self.height}", "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0", f"--user-data-dir={self.profile}", "about:blank",
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        endpoint = await self._devtools_endpoint()
        self.http = aiohttp.ClientSession()
        port = re.match(r"ws://[^:]+:(\d+)/", endpoint).group(1)
        async with self.http.get(f"http://127.0.0.1:{port}/json/list") as resp:
            targets = await resp.json(content_type=None)
        page_url = next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")
        page = Page(await self.http.ws_connect(page_url, max_msg_size=64 * 1024 * 1024))
        page.start()
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        return page

    async def _devtools_endpoint(self) -> str:
        assert self.proc and self.proc.stderr
        lines = []
        while True:
            line = await asyncio.wait_for(self.proc.stderr.readline(), 30)
            if not line:
                raise CdpError("chromium exited before offering DevTools: " + b"".join(lines).decode(errors="replace"))
            lines.append(line)
            found = re.search(rb"DevTools listening on (ws://\S+)", line)
            if found:
                # keep draining stderr so Chromium never blocks on a full pipe
                asyncio.get_running_loop().create_task(self._drain_stderr())
                return found.group(1).decode()

    async def _drain_stderr(self) -> None:
        assert self.proc and self.proc.stderr
        while await self.proc.stderr.read(65536):
            pass

    async def __aexit__(self, *exc) -> None:
        if self.http:
            await self.http.close()
        if self.proc and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future] = {}
        self.console: list[str] = []  # the page's console messages and exceptions, for failures
        self._reader: asyncio.Task | None = None

    def start(self) -> None:
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self._waiting:
                self._waiting.pop(data["id"]).set_result(data)
            elif data.get("method") == "Runtime.consoleAPICalled":
                args = data["params"].get("args", [])
                self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
            elif data.get("method") == "Runtime.exceptionThrown":
                details = data["params"]["exceptionDetails"]
                self.console.append("exception: " + details.get("exception", {}).get("description", details.get("text", "")))

    async def send(self, method: str, **params) -> dict:
        msg_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._waiting[msg_id] = future
        await self.ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params}))
        reply = await asyncio.wait_for(future, 30)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete'", 30)

    async def evaluate(self, expression: str):
        result = await self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise CdpError(f"{expression}: {result['exceptionDetails'].get('exception', {}).get('description')}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float, what: str = "") -> object:
        """Poll a JavaScript expression until it is truthy; return its value."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                value = await self.evaluate(expression)
            except CdpError:
                value = None
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what or expression}; "
                                     f"page console: {self.console[-10:]}")
            await asyncio.sleep(0.2)

    async def screenshot(self, path: str) -> None:
        result = await self.send("Page.captureScreenshot", format="png")
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(result["data"]))
