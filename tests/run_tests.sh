#!/usr/bin/env bash
# Runs every test. On a fresh Debian 12 machine (as root) it first installs what
# is missing, builds the test guest once into a cache, starts dockerd if none
# runs, makes the base image, then runs pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
log() { printf 'run_tests: %s\n' "$*" >&2; }

packages=(qemu-system-x86 qemu-utils ipmitool freeipmi-tools nats-server docker.io debootstrap
          busybox-static linux-image-amd64 kmod cpio gzip tmux iproute2 python3 python3-venv
          ca-certificates openipmi ovmf dnsmasq-base chromium
          xorriso isolinux syslinux-common grub-efi-amd64-bin mtools)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    log "missing Debian packages (run as root to install): ${missing[*]}"; exit 1
  fi
  log "installing ${missing[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python venv with the pinned runtime and test dependencies
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [[ ! -f $stamp ]]; then
  log "creating the venv (.venv)"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
  touch "$stamp"
fi

# The embedded default guest, built once into a cache (rebuilt when the builder changes)
export QEMU_BMC_GUEST_CACHE=${QEMU_BMC_GUEST_CACHE:-/var/cache/qemu-bmc/guest}
guest_stamp=$QEMU_BMC_GUEST_CACHE/.builder-$(sha256sum scripts/build-guest.sh | cut -c1-16)
if [[ ! -f $guest_stamp ]]; then
  log "building the test guest into $QEMU_BMC_GUEST_CACHE"
  rm -rf "$QEMU_BMC_GUEST_CACHE"
  scripts/build-guest.sh "$QEMU_BMC_GUEST_CACHE" >/dev/null
  touch "$guest_stamp"
fi

# noVNC's browser code for the web console tests (files from Debian's novnc package)
export QEMU_BMC_NOVNC_CACHE=${QEMU_BMC_NOVNC_CACHE:-/var/cache/qemu-bmc/novnc}
if [[ ! -f $QEMU_BMC_NOVNC_CACHE/core/rfb.js ]]; then
  log "fetching noVNC into $QEMU_BMC_NOVNC_CACHE"
  scripts/fetch-novnc.sh "$QEMU_BMC_NOVNC_CACHE" >/dev/null
fi

# A Docker engine for the image tests
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  (setsid dockerd >/var/log/qemu-bmc-tests-dockerd.log 2>&1 &)
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { log "dockerd did not start; see /var/log/qemu-bmc-tests-dockerd.log"; exit 1; }
fi
export QEMU_BMC_BASE_IMAGE=${QEMU_BMC_BASE_IMAGE:-qemu-bmc-base:bookworm}
if ! docker image inspect "$QEMU_BMC_BASE_IMAGE" >/dev/null 2>&1; then
  log "making the base image $QEMU_BMC_BASE_IMAGE with debootstrap"
  scripts/make-base-image.sh "$QEMU_BMC_BASE_IMAGE"
fi
# When PyPI is reached through a TLS-intercepting proxy, pip inside the image
# build needs this machine's CA bundle (see the Dockerfile).
mkdir -p build
if [[ -n ${PIP_CERT:-} && -f ${PIP_CERT} ]]; then
  cp "$PIP_CERT" build/extra-ca-certificates.crt
fi

log "running pytest"
exec .venv/bin/pytest -p no:cacheprovider "$@"
