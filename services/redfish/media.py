"""InsertMedia's image: an http(s) URL fetched into STATE_DIR/media (media_fetch.py
downloads and checks it, media.progress tells the bus how far it got), or a file
already in the container (STATE_DIR/media or MEDIA_DIR). Either way power gets a
local path; every failure becomes the Redfish error a client can act on."""

from __future__ import annotations

import logging
from typing import Awaitable, Callable

from bus import Bus, Subjects
from services.redfish.changes import INSERT
from services.redfish.config import RedfishConfig
from services.redfish.media_fetch import MediaFetchError, ProgressPublisher, fetch, media_max_bytes_from_env
from services.redfish.registry import RedfishError

log = logging.getLogger("redfish.media")

# MediaFetchError.code -> the Base message that names the problem best
CONNECTION_FAILURES = {"unreachable", "timeout", "tls-failed", "http-status", "http-failed", "truncated"}


def redfish_error_for(exc: MediaFetchError, image: str) -> RedfishError:
    if exc.code in CONNECTION_FAILURES:
        return RedfishError(400, "CouldNotEstablishConnection", image, detail=str(exc))
    if exc.code == "write-failed":
        return RedfishError(500, "InternalError", detail=str(exc))
    return RedfishError(400, "ActionParameterValueFormatError", image, "Image", INSERT, detail=str(exc))


def media_fetcher(config: RedfishConfig, bus: Bus, subjects: Subjects) -> Callable[[str], Awaitable[str]]:
    """An async image -> local path function for InsertMedia (raises RedfishError)."""
    max_bytes = media_max_bytes_from_env()
    allowed = (config.media_mount_dir,) if config.media_mount_dir else ()

    async def fetch_image(image: str) -> str:
        remote = image.lower().startswith(("http://", "https://"))
        progress = ProgressPublisher(bus, subjects.media_progress, image) if remote else None
        try:
            path = await fetch(image, config.media_dir, max_bytes=max_bytes, progress=progress,
                               allowed_dirs=allowed)
        except MediaFetchError as exc:
            log.warning("InsertMedia %s: %s", image, exc)
            if progress is not None:
                await progress.failed(str(exc))
            raise redfish_error_for(exc, image) from None
        if progress is not None:
            await progress.done()
            log.info("fetched %s (%d bytes) into %s", image, progress.received, path)
        return path

    return fetch_image
