"""What a PATCH or an action body asks for, checked and turned into bus requests.
Pure: every refusal is a RedfishError with the Base registry message a client
can act on (DSP0266 "Modification success/error responses")."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from bus.messages import BootSet, BootStatus
from services.redfish.registry import RedfishError
from services.redfish.resources import (BOOT_ENABLED, BOOT_MODES, BOOT_TARGET_TO_DEVICE, RESET_ACTIONS)

RESET = "ComputerSystem.Reset"
INSERT = "VirtualMedia.InsertMedia"
BOOT_KEYS = ("BootSourceOverrideTarget", "BootSourceOverrideEnabled", "BootSourceOverrideMode")


def check_if_match(if_match: str | None, current_etag: str) -> None:
    """If-Match (RFC 7232 3.1): `*`, or one of the listed tags must be the current one."""
    if if_match is None:
        return
    tags = [t.strip() for t in if_match.split(",")]
    # a weak form of our strong tag names the same representation (sushy sends W/"...")
    if "*" in tags or current_etag in tags or f"W/{current_etag}" in tags:
        return
    raise RedfishError(412, "PreconditionFailed")


def reset_type(body: dict) -> str:
    """The ResetType of a ComputerSystem.Reset body."""
    for key in body:
        if key != "ResetType":
            raise RedfishError(400, "ActionParameterNotSupported", key, RESET)
    if "ResetType" not in body:
        raise RedfishError(400, "ActionParameterMissing", RESET, "ResetType")
    value = body["ResetType"]
    if value not in RESET_ACTIONS:
        raise RedfishError(400, "ActionParameterValueNotInList", value, "ResetType", RESET)
    return value


def boot_change(current: BootStatus, body: dict) -> BootSet:
    """The BootSet a PATCH of Systems/1 asks for, starting from the current boot state.

    Disabled (or target None) clears the override; a target given without
    BootSourceOverrideEnabled while the override is off means Once, as on most BMCs.
    """
    for key in body:
        if key != "Boot":
            raise RedfishError(400, "PropertyNotWritable" if key in ("PowerState", "Id", "UUID") else
                               "PropertyUnknown", key, related=[f"#/{key}"])
    boot = body.get("Boot")
    if not isinstance(boot, dict):
        raise RedfishError(400, "PropertyValueTypeError", repr(boot), "Boot", related=["#/Boot"])
    for key, value in boot.items():
        if key not in BOOT_KEYS:
            raise RedfishError(400, "PropertyUnknown", f"Boot/{key}", related=[f"#/Boot/{key}"])
        allowed = {"BootSourceOverrideTarget": BOOT_TARGET_TO_DEVICE, "BootSourceOverrideEnabled": BOOT_ENABLED,
                   "BootSourceOverrideMode": BOOT_MODES}[key]
        if value not in allowed:
            raise RedfishError(400, "PropertyValueNotInList", value, key, related=[f"#/Boot/{key}"])
    if not boot:
        raise RedfishError(400, "PropertyMissing", "Boot/BootSourceOverrideTarget")
    device = current.device
    persistent = current.persistent
    efi = current.efi
    if "BootSourceOverrideMode" in boot:
        efi = boot["BootSourceOverrideMode"] == "UEFI"
    if "BootSourceOverrideTarget" in boot:
        device = BOOT_TARGET_TO_DEVICE[boot["BootSourceOverrideTarget"]]
    enabled = boot.get("BootSourceOverrideEnabled")
    if enabled == "Disabled":
        device = "none"
    elif enabled is not None:
        persistent = enabled == "Continuous"
    elif current.device == "none":
        persistent = False  # a new override without Enabled: Once
    if device == "none":
        persistent = False
    return BootSet(device=device, persistent=persistent, efi=efi)


@dataclass(frozen=True)
class MediaRequest:
    image: str  # as given (shown as Image)
    url: str  # http(s) URL to fetch, or ""
    path: str  # local file in the container, or ""


def insert_media(body: dict, allowed_dirs: tuple[str, ...] = ()) -> MediaRequest:
    """Check an InsertMedia body: an http(s) URL, or a file already in the container
    (file:// URL or absolute path)."""
    known = {"Image", "Inserted", "WriteProtected", "TransferMethod", "TransferProtocolType", "UserName",
             "Password"}
    for key in body:
        if key not in known:
            raise RedfishError(400, "ActionParameterNotSupported", key, INSERT)
    if "Image" not in body:
        raise RedfishError(400, "ActionParameterMissing", INSERT, "Image")
    image = body["Image"]
    if not isinstance(image, str) or not image:
        raise RedfishError(400, "ActionParameterValueFormatError", repr(image), "Image", INSERT)
    if body.get("Inserted", True) is not True:
        raise RedfishError(400, "ActionParameterValueNotInList", str(body["Inserted"]), "Inserted", INSERT)
    if body.get("WriteProtected", True) is not True:  # a CD: read-only
        raise RedfishError(400, "ActionParameterValueNotInList", str(body["WriteProtected"]), "WriteProtected",
                           INSERT)
    if body.get("UserName") or body.get("Password"):
        raise RedfishError(400, "ActionParameterNotSupported", "UserName" if body.get("UserName") else "Password",
                           INSERT)
    parts = urlsplit(image)
    scheme = parts.scheme.lower()
    protocol = body.get("TransferProtocolType")
    if protocol is not None and protocol not in ("HTTP", "HTTPS"):
        raise RedfishError(400, "ActionParameterValueNotInList", str(protocol), "TransferProtocolType", INSERT)
    if scheme in ("http", "https"):
        if not parts.hostname:
            raise RedfishError(400, "ActionParameterValueFormatError", image, "Image", INSERT)
        return MediaRequest(image=image, url=image, path="")
    if scheme == "file" or (not scheme and image.startswith("/")):
        path = os.path.normpath(parts.path if scheme == "file" else image)
        if allowed_dirs and not any(path.startswith(d.rstrip("/") + "/") for d in allowed_dirs):
            raise RedfishError(400, "ActionParameterValueFormatError", image, "Image", INSERT)
        return MediaRequest(image=image, url="", path=path)
    raise RedfishError(400, "ActionParameterValueFormatError", image, "Image", INSERT)


def password_change(body: dict) -> str:
    """The new password of a ManagerAccount PATCH (the only writable property here)."""
    for key in body:
        if key in ("UserName", "RoleId", "Enabled", "Locked"):
            raise RedfishError(400, "PropertyNotWritable", key, related=[f"#/{key}"])
        if key != "Password":
            raise RedfishError(400, "PropertyUnknown", key, related=[f"#/{key}"])
    password = body.get("Password")
    if password is None:
        raise RedfishError(400, "PropertyMissing", "Password")
    if not isinstance(password, str):
        raise RedfishError(400, "PropertyValueTypeError", "(hidden)", "Password", related=["#/Password"])
    if not 1 <= len(password.encode()) <= 20:
        raise RedfishError(400, "PropertyValueFormatError", "(hidden)", "Password", related=["#/Password"])
    return password
