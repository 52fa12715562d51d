#!/bin/sh
# Builds the embedded default guest: Debian's generic kernel plus a busybox
# initramfs that prints to ttyS0, loads the virtio, ACPI and IPMI modules, brings
# up its NICs and offers a root shell with ipmitool (in-band IPMI over KCS).
# Used by the Dockerfile and by the tests.
#
# usage: build-guest.sh OUTDIR      (writes OUTDIR/vmlinuz and OUTDIR/initrd.img)
# needs: linux-image-amd64, busybox-static, kmod, cpio, ipmitool (Debian packages)
set -eu

out=${1:?usage: build-guest.sh OUTDIR}
# the generic kernel, not the cloud one: the cloud kernel is built without IPMI
kver=${GUEST_KERNEL_VERSION:-$(ls /lib/modules | grep -E -- '-amd64$' | grep -v -- '-cloud-' | sort -V | tail -n 1)}
[ -n "$kver" ] || { echo "build-guest: no generic kernel under /lib/modules (apt-get install linux-image-amd64)" >&2; exit 1; }
[ -r "/boot/vmlinuz-$kver" ] || { echo "build-guest: /boot/vmlinuz-$kver is missing or unreadable" >&2; exit 1; }
busybox=$(command -v busybox || true)
[ -n "$busybox" ] && "$busybox" --list | grep -qx cttyhack || { echo "build-guest: busybox-static is needed" >&2; exit 1; }
ipmitool=$(command -v ipmitool || true)
[ -n "$ipmitool" ] || { echo "build-guest: ipmitool is needed (apt-get install ipmitool)" >&2; exit 1; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/bin "$root"/sbin "$root"/usr/bin "$root"/usr/sbin "$root"/proc "$root"/sys \
         "$root"/dev "$root"/tmp "$root"/root "$root"/var/log "$root"/var/run "$root"/etc/acpi/PWRF "$root"/usr/share/udhcpc \
         "$root/lib/modules/$kver"
cp "$busybox" "$root/bin/busybox"

# ipmitool with the shared libraries and the dynamic loader it names (ldd)
cp "$ipmitool" "$root/usr/bin/ipmitool"
for lib in $(ldd "$ipmitool" | grep -oE '/[^ ]+'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
# ipmitool names vendors from IANA's registry (4.7 MB): its header and the
# documentation number (32473, our default manufacturer) are enough
registry=/usr/share/misc/enterprise-numbers.txt
if [ -r "$registry" ]; then
  mkdir -p "$root/usr/share/misc"
  awk 'NR <= 15 { print; next } /^[0-9]+$/ { keep = ($0 == "0" || $0 == "32473") } keep' "$registry" \
    > "$root$registry"
fi

# Modules the guest needs, with everything they depend on (modules.dep order).
# virtio is modular in Debian's kernels; button+evdev make ACPI soft-off work;
# ipmi_si drives QEMU's isa-ipmi-kcs and ipmi_devintf gives /dev/ipmi0.
wanted="virtio_pci virtio_net virtio_blk virtio_scsi button evdev sr_mod isofs ahci ata_piix e1000 e1000e ipmi_si ipmi_devintf"
moddir=/lib/modules/$kver
for name in $wanted; do
  line=$(grep -E "/$name\.ko(\.[a-z]+)?:" "$moddir/modules.dep" || true)
  [ -n "$line" ] || continue
  for rel in $(echo "$line" | tr -d ':'); do
    mkdir -p "$root/lib/modules/$kver/$(dirname "$rel")"
    cp "$moddir/$rel" "$root/lib/modules/$kver/$rel"
  done
done
cp "$moddir/modules.order" "$moddir/modules.builtin" "$moddir/modules.builtin.modinfo" \
   "$root/lib/modules/$kver/" 2>/dev/null || true
depmod -b "$root" "$kver"

cat > "$root/etc/acpi/PWRF/00000080" <<'ACPI'
#!/bin/sh
echo "qemu-bmc-guest: power button pressed, powering off"
poweroff -f
ACPI
chmod +x "$root/etc/acpi/PWRF/00000080"

cat > "$root/usr/share/udhcpc/default.script" <<'DHCP'
#!/bin/sh
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "${router:-}" ] && ip route add default via "${router%% *}" dev "$interface"
    echo "qemu-bmc-guest: $interface got $ip" ;;
esac
DHCP
chmod +x "$root/usr/share/udhcpc/default.script"

cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
hostname guest
for m in virtio_pci virtio_net virtio_blk virtio_scsi button evdev ahci ata_piix sr_mod isofs e1000 e1000e; do
  modprobe "$m" 2>/dev/null
done
# in-band IPMI: ipmi_si finds the KCS interface through ACPI/SMBIOS when the VM has one
if modprobe ipmi_si 2>/dev/null && modprobe ipmi_devintf 2>/dev/null && [ -e /dev/ipmi0 ]; then
  echo "qemu-bmc-guest: ipmi /dev/ipmi0"
fi
mkdir -p /var/log /var/run
acpid -c /etc/acpi -l /dev/null
ip link set lo up
for dev in /sys/class/net/*; do
  name=${dev##*/}
  [ "$name" = lo ] && continue
  ip link set "$name" up
  echo "qemu-bmc-guest: nic $name $(cat "$dev/address")"
done
echo "qemu-bmc-guest: boot complete, kernel $(uname -r)"
# the screen (VNC, the web console) gets a banner and a shell of its own on tty1
if [ -c /dev/tty1 ]; then
  printf '\nqemu-bmc guest, kernel %s\nThis is the screen (tty1); the serial console is ttyS0.\n\n' "$(uname -r)" > /dev/tty1
  (while true; do setsid sh -c 'exec sh -l <>/dev/tty1 >&0 2>&1'; sleep 1; done) &
fi
while true; do
  setsid cttyhack sh -l
done
INIT
chmod +x "$root/init"
echo 'export PS1="guest# "' > "$root/etc/profile"

mkdir -p "$out"
cp "/boot/vmlinuz-$kver" "$out/vmlinuz.tmp"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) > "$out/initrd.img.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$out/initrd.img.tmp" "$out/initrd.img"
echo "build-guest: $out/vmlinuz and $out/initrd.img (kernel $kver)"
