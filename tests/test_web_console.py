"""The web console on the Redfish port, driven by a real headless Chromium (Debian's
chromium over the DevTools protocol): log in, see the power state and the guest's
screen over noVNC, press a reset button, type into the serial view."""

from __future__ import annotations

import asyncio
import json
import os
import ssl

import aiohttp
import pytest

from cdp import Browser
from conftest import booted_stack
from helpers import REPO, wait_for

pytestmark = pytest.mark.vm

NOVNC_CACHE = os.environ.get("QEMU_BMC_NOVNC_CACHE", "/var/cache/qemu-bmc/novnc")
ARTIFACTS = os.environ.get("QEMU_BMC_TEST_ARTIFACTS", os.path.join(REPO, "build", "test-artifacts"))


@pytest.fixture(scope="module")
def stack(guest_dir):
    if not os.path.isfile(os.path.join(NOVNC_CACHE, "core", "rfb.js")):
        import subprocess
        subprocess.run([os.path.join(REPO, "scripts", "fetch-novnc.sh"), NOVNC_CACHE], check=True)
    with booted_stack(guest_dir, "qemu-bmc-web-", NOVNC_DIR=NOVNC_CACHE) as s:
        yield s


def url(stack, path: str = "/console") -> str:
    return f"https://127.0.0.1:{stack.redfish_port}{path}"


async def log_in(page, stack, user: str, password: str) -> None:
    await page.goto(url(stack))
    await page.wait_for("document.getElementById('login') && !document.getElementById('login').hidden", 20,
                        "the login form")
    await page.evaluate(f"""(() => {{
        document.getElementById('user').value = {json.dumps(user)};
        document.getElementById('password').value = {json.dumps(password)};
        document.getElementById('login').requestSubmit();
    }})()""")


# Non-black pixels in the noVNC canvas: the guest's screen, not an empty frame
CANVAS_INK = """(() => {
    const canvas = document.querySelector('#screen canvas');
    if (!canvas || !canvas.width) return 0;
    const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let ink = 0;
    for (let i = 0; i < pixels.length; i += 4) if (pixels[i] + pixels[i + 1] + pixels[i + 2] > 60) ink++;
    return ink;
})()"""


async def test_operator_sees_power_screen_and_serial_and_can_reset(stack):
    async with Browser() as page:
        await log_in(page, stack, "ops", "opspw")
        await page.wait_for("document.body.dataset.power === 'On'", 30, "the power state On")
        await page.wait_for("document.body.dataset.vnc === 'connected'", 30, "noVNC connected to the guest")
        size = await page.wait_for("(() => { const c = document.querySelector('#screen canvas');"
                                   " const shown = c && c.getBoundingClientRect();"
                                   " return c && c.width > 0 && [c.width, c.height, shown.width, shown.height]; })()",
                                   20, "the VNC canvas")
        assert size[0] >= 320 and size[1] >= 200, size  # the guest's resolution
        assert size[2] >= 320 and size[3] >= 150, size  # and it is on the page, scaled to fit
        # the guest's screen is drawn, not a blank frame: its tty1 banner and prompt are
        # a few hundred lit pixels at least
        await page.wait_for(f"{CANVAS_INK} > 300", 30, "the guest's text on the canvas")
        await page.screenshot(os.path.join(ARTIFACTS, "web-console.png"))

        # the serial view: history first, then a command typed in the page runs in the guest
        await page.wait_for("document.getElementById('serial').textContent.includes('boot complete')", 20,
                            "the console history in the serial view")
        await page.evaluate("""(() => {
            document.getElementById('serial-input').value = 'echo web-$((6*7))';
            document.getElementById('serial-form').requestSubmit();
        })()""")
        await page.wait_for("document.getElementById('serial').textContent.includes('web-42')", 30,
                            "the command's output in the serial view")

        # a reset button does what Redfish does: ForceOff, then On
        await page.evaluate("document.querySelector('button[data-reset=\"ForceOff\"]').click()")
        await page.wait_for("document.body.dataset.power === 'Off'", 30, "Off after ForceOff")
        assert "off" in stack.power_state()
        await page.evaluate("document.querySelector('button[data-reset=\"On\"]').click()")
        await page.wait_for("document.body.dataset.power === 'On'", 30, "On again")
        wait_for(lambda: stack.boots() >= 2, 90, "the guest to boot again")
        await page.wait_for("document.body.dataset.vnc === 'connected'", 60, "noVNC back after the power cycle")
        await page.screenshot(os.path.join(ARTIFACTS, "web-console-after-power-on.png"))


async def test_a_wrong_password_shows_an_error_and_opens_nothing(stack):
    async with Browser() as page:
        await log_in(page, stack, "ops", "not-the-password")
        await page.wait_for("document.getElementById('login-error').textContent.includes('Login failed')", 20,
                            "the login error")
        assert await page.evaluate("document.getElementById('app').hidden") is True


async def test_the_consoles_need_a_session_with_operator_rights(stack):
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure)) as http:
        for path in ("/console/vnc", "/console/serial"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(url(stack, path))
            assert refused.value.status == 401, path

        async def token_for(user: str, password: str) -> str:
            async with http.post(url(stack, "/redfish/v1/SessionService/Sessions"),
                                 json={"UserName": user, "Password": password}) as resp:
                assert resp.status == 201, await resp.text()
                return resp.headers["X-Auth-Token"]

        viewer = await token_for("viewer", "viewpw")  # IPMI user level: Redfish ReadOnly
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url(stack, "/console/vnc"), headers={"Cookie": f"qemu_bmc_token={viewer}"})
        assert refused.value.status == 403

        operator = await token_for("ops", "opspw")
        ws = await http.ws_connect(url(stack, "/console/vnc"), protocols=("binary",),
                                   headers={"Cookie": f"qemu_bmc_token={operator}"})
        banner = await asyncio.wait_for(ws.receive(), 10)
        assert banner.data.startswith(b"RFB 003."), banner  # QEMU's VNC server, through the proxy
        await ws.close()
