#!/bin/sh
# symrun initramfs /init (busybox sh, PID 1).
# Loads the modules the root needs (list written by the image builder, dependencies first), mounts the
# root disk read-only as the lower layer of an overlay whose upper layer is a tmpfs (all writes stay in
# guest RAM, so the disk can be attached readonly=on on both ends of a migration), then switch_root.
# If anything fails it says why on the console and powers the VM off instead of hanging.
export PATH=/bin

mkdir -p /proc /sys /dev /lower /rw /newroot
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1

fail() {
  echo "symrun-initrd: FATAL: $*"
  echo "symrun-initrd: kernel cmdline: $(cat /proc/cmdline)"
  echo "symrun-initrd: powering off"
  sync
  poweroff -f
  sleep 2
  echo o > /proc/sysrq-trigger 2>/dev/null
  while true; do sleep 60; done
}

root=/dev/vda
rootfstype=ext4
rootwait=15
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    root=*) root=${arg#root=} ;;
    rootfstype=*) rootfstype=${arg#rootfstype=} ;;
    symrun.rootwait=*) rootwait=${arg#symrun.rootwait=} ;;
  esac
done

kver=$(uname -r)
if [ -f /etc/symrun-modules ]; then
  while read -r m; do
    [ -n "$m" ] || continue
    insmod "/lib/modules/$kver/$m" 2>/tmp/insmod.err || {
      grep -q 'File exists' /tmp/insmod.err || echo "symrun-initrd: warning: insmod $m: $(cat /tmp/insmod.err)"
    }
  done < /etc/symrun-modules
fi

case "$root" in
  LABEL=*|UUID=*)
    dev=""
    i=0
    while [ -z "$dev" ]; do
      dev=$(findfs "$root" 2>/dev/null)
      [ -n "$dev" ] && break
      i=$((i + 1)); [ $i -gt $((rootwait * 10)) ] && fail "no disk with $root appeared within ${rootwait}s (is root.ext4 attached as a virtio-blk disk?)"
      sleep 0.1
    done ;;
  *)
    dev=$root
    i=0
    while [ ! -b "$dev" ]; do
      i=$((i + 1)); [ $i -gt $((rootwait * 10)) ] && fail "root device $dev did not appear within ${rootwait}s (is root.ext4 attached as a virtio-blk disk?)"
      sleep 0.1
    done ;;
esac

mount -t "$rootfstype" -o ro "$dev" /lower || fail "cannot mount the root disk $dev ($rootfstype, read-only)"
mount -t tmpfs -o mode=0755 symrun-rw /rw || fail "cannot mount the tmpfs for the writable layer"
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work symrun-root /newroot \
  || fail "cannot mount the overlay root (is the overlay module in the initrd?)"
# a disk a user brought may lack symrun's guest agent: say so now (the host reports ESYM_IMAGE_NO_AGENT)
# instead of booting a guest nobody answers for
[ -e /newroot/opt/symrun/dist/guest/src/agent.js ] || fail "no symrun guest agent in the root image on $dev (/opt/symrun/dist/guest/src/agent.js is missing)"
[ -x /newroot/sbin/init ] || fail "/sbin/init is missing in the root image on $dev"

# keep the layers reachable for debugging: /run is a tmpfs in the final root, so use /.symrun
if [ -d /newroot/.symrun/lower ] && [ -d /newroot/.symrun/rw ]; then
  mount --move /lower /newroot/.symrun/lower
  mount --move /rw /newroot/.symrun/rw
fi
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
exec switch_root /newroot /sbin/init
fail "switch_root failed"
