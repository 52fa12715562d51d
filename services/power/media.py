"""Virtual media of the power agent: which image is in the virtual CD, and
whether a path may go in. Pure: the agent does the QMP and the bus.

An image is a local file inside an allowed directory (STATE_DIR/media, where
front ends put what they fetch, and MEDIA_DIR when set). The choice outlives
power cycles and container restarts (the agent's key-value record) until it is
ejected, and goes into QEMU's command line at every power-on.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from bus.messages import MediaSlot, MediaStatus

MEDIA_SUBDIR = "media"  # under STATE_DIR: where fetched images land


class MediaError(Exception):
    """A media request that cannot be done; `code` goes into the ErrorReply."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class InsertedMedia:
    path: str = ""  # the resolved file; "" when the drive is empty
    image_name: str = ""  # what the user gave (URL or file name), for display


def allowed_media_dirs(state_dir: str, media_dir: str = "") -> tuple[str, ...]:
    dirs = [os.path.join(state_dir, MEDIA_SUBDIR)]
    if media_dir:
        dirs.append(media_dir)
    return tuple(os.path.realpath(d) for d in dirs)


def check_image_path(path: str, allowed_dirs: tuple[str, ...]) -> str:
    """The real path of an image that may be inserted, or MediaError saying why not.

    Symlinks are resolved first, so a link inside an allowed directory cannot
    hand QEMU a file outside it."""
    if not path or "\0" in path:
        raise MediaError("bad-path", "an image path is needed")
    if not os.path.isabs(path):
        raise MediaError("bad-path", f"{path!r} is not an absolute path")
    real = os.path.realpath(path)
    if not any(real == d or real.startswith(d.rstrip("/") + "/") for d in allowed_dirs):
        raise MediaError("path-not-allowed",
                         f"{path} is outside the media directories ({', '.join(allowed_dirs)})")
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise MediaError("not-found", f"{path} does not exist") from None
    except OSError as exc:
        raise MediaError("not-readable", f"{path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise MediaError("not-a-file", f"{path} is not a regular file")
    if st.st_size == 0:
        raise MediaError("empty-image", f"{path} is empty")
    if not os.access(real, os.R_OK):
        raise MediaError("not-readable", f"{path} is not readable")
    return real


def media_status(inserted: InsertedMedia) -> MediaStatus:
    return MediaStatus(slots=[MediaSlot(slot="cd", inserted=bool(inserted.path), path=inserted.path,
                                        image_name=inserted.image_name, write_protected=True)])


def change_medium_args(device_id: str, path: str) -> dict:
    """QMP blockdev-change-medium: open the tray even if the guest locked it (a
    BMC's virtual media wins over the guest), insert read-only, close it."""
    return {"id": device_id, "filename": path, "format": "raw", "read-only-mode": "read-only",
            "force": True}


def eject_args(device_id: str) -> dict:
    return {"id": device_id, "force": True}
