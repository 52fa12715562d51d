#!/bin/sh
# Puts noVNC's browser code (core/ and vendor/, ES modules) into OUTDIR, taken from
# Debian's novnc package without installing it (or its nodejs and numpy
# dependencies): the web console serves these files itself.
#
# usage: fetch-novnc.sh OUTDIR      (needs apt-get and dpkg-deb: any Debian)
set -eu
out=${1:?usage: fetch-novnc.sh OUTDIR}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"  # apt's download user must be able to write there
(cd "$work" && apt-get download -q novnc >/dev/null 2>&1) || {
  apt-get update -q >/dev/null && (cd "$work" && apt-get download -q novnc >/dev/null)
}
dpkg-deb -x "$work"/novnc_*.deb "$work/x"
src=$work/x/usr/share/novnc
[ -f "$src/core/rfb.js" ] || { echo "fetch-novnc: core/rfb.js missing from the package" >&2; exit 1; }
mkdir -p "$out"
rm -rf "$out/core" "$out/vendor"
cp -r "$src/core" "$src/vendor" "$out/"
cp "$work/x/usr/share/doc/novnc/copyright" "$out/COPYRIGHT" 2>/dev/null || true
echo "fetch-novnc: noVNC $(dpkg-deb -f "$work"/novnc_*.deb Version) in $out"
