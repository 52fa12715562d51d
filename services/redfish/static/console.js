// The web console: a Redfish session, the system's power and boot state (polled),
// reset buttons, noVNC for the screen and a serial text view.
import RFB from "/console/novnc/core/rfb.js";

const $ = (id) => document.getElementById(id);
const SYSTEM = "/redfish/v1/Systems/1";
// says "a script asks": a 401 then comes without a Basic challenge, so the browser
// does not put up its own password dialog
const SCRIPT = { "X-Requested-With": "XMLHttpRequest" };
let token = sessionStorage.getItem("qemu-bmc-token") || "";
let sessionUri = sessionStorage.getItem("qemu-bmc-session") || "";
let rfb = null;
let serialSocket = null;
let poller = null;

async function api(method, path, body, headers = {}) {
  const response = await fetch(path, {
    method, headers: { "X-Auth-Token": token, "Content-Type": "application/json", ...SCRIPT, ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) { loggedOut(); throw new Error("the session ended; log in again"); }
  const text = await response.text();
  const data = text ? JSON.parse(text) : {};
  if (!response.ok) {
    const info = (data.error && data.error["@Message.ExtendedInfo"] || [])[0];
    throw new Error((info && info.Message) || (data.error && data.error.message) || response.statusText);
  }
  return { data, etag: response.headers.get("ETag") };
}

function setCookie(value) {
  // the WebSockets below carry it; scoped to /console, never readable cross-site
  document.cookie = `qemu_bmc_token=${value}; path=/console; Secure; SameSite=Strict` + (value ? "" : "; max-age=0");
}

async function login(event) {
  event.preventDefault();
  $("login-error").textContent = "";
  const response = await fetch("/redfish/v1/SessionService/Sessions", {
    method: "POST", headers: { "Content-Type": "application/json", ...SCRIPT },
    body: JSON.stringify({ UserName: $("user").value, Password: $("password").value }),
  });
  if (!response.ok) { $("login-error").textContent = "Login failed: wrong user or password"; return; }
  token = response.headers.get("X-Auth-Token");
  sessionUri = response.headers.get("Location") || "";
  sessionStorage.setItem("qemu-bmc-token", token);
  sessionStorage.setItem("qemu-bmc-session", sessionUri);
  sessionStorage.setItem("qemu-bmc-user", $("user").value);
  start();
}

async function logout() {
  if (sessionUri) { try { await api("DELETE", sessionUri); } catch (e) { /* gone already */ } }
  loggedOut();
}

function loggedOut() {
  token = ""; sessionUri = "";
  sessionStorage.clear();
  setCookie("");
  if (rfb) { rfb.disconnect(); rfb = null; }
  if (serialSocket) { serialSocket.close(); serialSocket = null; }
  if (poller) { clearInterval(poller); poller = null; }
  $("app").hidden = true; $("logout").hidden = true; $("login").hidden = false;
  document.body.dataset.power = "";
}

let resetTypesShown = false;
async function refresh() {
  const { data } = await api("GET", SYSTEM);
  $("power").textContent = data.PowerState;
  $("power").className = `state ${data.PowerState}`;
  document.body.dataset.power = data.PowerState;
  const boot = data.Boot || {};
  $("boot").textContent = `${boot.BootSourceOverrideTarget} (${boot.BootSourceOverrideEnabled}, ${boot.BootSourceOverrideMode})`;
  if (!resetTypesShown) {
    const reset = data.Actions["#ComputerSystem.Reset"];
    for (const type of reset["ResetType@Redfish.AllowableValues"]) {
      const button = document.createElement("button");
      button.textContent = type;
      button.dataset.reset = type;
      button.onclick = () => act(reset.target, type);
      $("reset-buttons").append(button);
    }
    for (const target of boot["BootSourceOverrideTarget@Redfish.AllowableValues"] || ["None", "Pxe", "Hdd", "Cd", "BiosSetup"]) {
      $("boot-target").append(new Option(target, target));
    }
    resetTypesShown = true;
  }
}

async function act(target, type) {
  $("power-error").textContent = "";
  try { await api("POST", target, { ResetType: type }); await refresh(); }
  catch (e) { $("power-error").textContent = e.message; }
}

async function setBoot() {
  $("boot-error").textContent = "";
  try {
    const { etag } = await api("GET", SYSTEM);
    await api("PATCH", SYSTEM, { Boot: {
      BootSourceOverrideTarget: $("boot-target").value,
      BootSourceOverrideEnabled: $("boot-enabled").value,
      BootSourceOverrideMode: $("boot-mode").value } }, etag ? { "If-Match": etag } : {});
    await refresh();
  } catch (e) { $("boot-error").textContent = e.message; }
}

function wsUrl(path) {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
}

function connectScreen() {
  rfb = new RFB($("screen"), wsUrl("/console/vnc"), { wsProtocols: ["binary"] });
  rfb.scaleViewport = true;
  rfb.addEventListener("connect", () => { $("vnc-state").textContent = "screen: connected"; document.body.dataset.vnc = "connected"; });
  rfb.addEventListener("disconnect", () => {
    $("vnc-state").textContent = "screen: disconnected"; document.body.dataset.vnc = "disconnected";
    if (token) setTimeout(() => { if (token) connectScreen(); }, 2000);  // the VM was off, or restarted
  });
}

const ESCAPES = /\x1b\[[0-9;?]*[A-Za-z]/g;  // terminal control sequences mean nothing in a <pre>
function connectSerial() {
  const decoder = new TextDecoder();
  serialSocket = new WebSocket(wsUrl("/console/serial"));
  serialSocket.binaryType = "arraybuffer";
  serialSocket.onmessage = (event) => {
    const view = $("serial");
    const atBottom = view.scrollTop + view.clientHeight >= view.scrollHeight - 4;
    view.textContent = (view.textContent + decoder.decode(event.data, { stream: true }).replace(ESCAPES, "").replace(/\r/g, "")).slice(-200000);
    if (atBottom) view.scrollTop = view.scrollHeight;
  };
  serialSocket.onclose = () => { if (token) setTimeout(() => { if (token) connectSerial(); }, 2000); };
}

function start() {
  setCookie(token);
  $("login").hidden = true; $("app").hidden = false; $("logout").hidden = false;
  $("who").textContent = sessionStorage.getItem("qemu-bmc-user") || "";
  refresh().catch((e) => { $("power-error").textContent = e.message; });
  poller = setInterval(() => refresh().catch(() => {}), 2000);
  connectScreen();
  connectSerial();
}

$("login").addEventListener("submit", login);
$("logout").addEventListener("click", logout);
$("boot-set").addEventListener("click", setBoot);
$("serial-form").addEventListener("submit", (event) => {
  event.preventDefault();
  if (serialSocket && serialSocket.readyState === WebSocket.OPEN) serialSocket.send($("serial-input").value + "\r");
  $("serial-input").value = "";
});
if (token) start();
