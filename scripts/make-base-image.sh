#!/bin/sh
# Makes a Debian bookworm base image without a registry:
#   debootstrap --variant=minbase bookworm DIR | docker import
# usage: make-base-image.sh [NAME]   (default qemu-bmc-base:bookworm)
set -eu
name=${1:-qemu-bmc-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
debootstrap --variant=minbase bookworm "$dir" "$mirror" >/dev/null
tar -C "$dir" -c . | docker import - "$name" >/dev/null
echo "make-base-image: $name"
