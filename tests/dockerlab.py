"""Docker helpers the image tests share: one `docker` runner and the image builds
(each image is built once per test session; see the fixtures in conftest.py)."""

from __future__ import annotations

import os
import subprocess

from helpers import REPO

IMAGE = os.environ.get("QEMU_BMC_TEST_IMAGE", "qemu-bmc:test")
PROVISIONER_IMAGE = os.environ.get("QEMU_BMC_TEST_PROVISIONER_IMAGE", "qemu-bmc-provisioner:test")
BASE_IMAGE = os.environ.get("QEMU_BMC_BASE_IMAGE", "qemu-bmc-base:bookworm")


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr}{result.stdout}")
    return result


def ensure_base_image() -> str:
    """The debootstrap base (no registry here): made once, then reused."""
    if docker("image", "inspect", BASE_IMAGE, check=False).returncode != 0:
        subprocess.run([os.path.join(REPO, "scripts", "make-base-image.sh"), BASE_IMAGE], check=True, timeout=900)
    return BASE_IMAGE


def build_image(tag: str, context: str) -> str:
    build = subprocess.run(["docker", "build", "--build-arg", f"BASE_IMAGE={ensure_base_image()}", "-t", tag, context],
                           capture_output=True, text=True, timeout=1800)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    return tag
