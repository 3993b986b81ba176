#!/bin/sh
# symrun guest /sbin/init (busybox sh, PID 1 after switch_root).
# Sets up the pseudo filesystems, hostname and loopback, then keeps the symrun guest agent running.
# PID 1 only reaps orphans (`wait` in busybox ash reaps any child) and never exits.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/symrun/bin
export HOME=/root TERM=linux
# the agent runs as root in the guest; Open MPI refuses root unless told otherwise
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
umask 022

mounted() { grep -q "^[^ ]* $1 " /proc/mounts 2>/dev/null; }
[ -r /proc/mounts ] || mount -t proc proc /proc
mounted /sys || mount -t sysfs sysfs /sys
mounted /dev || mount -t devtmpfs devtmpfs /dev
exec </dev/null >/dev/console 2>&1
mkdir -p /dev/pts /dev/shm
mounted /dev/pts || mount -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts
[ -e /dev/ptmx ] || ln -s pts/ptmx /dev/ptmx
mounted /dev/shm || mount -t tmpfs -o mode=1777,nosuid,nodev shm /dev/shm
mounted /tmp || mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mounted /run || mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
[ -e /dev/stdin ] || ln -s /proc/self/fd/0 /dev/stdin
[ -e /dev/stdout ] || ln -s /proc/self/fd/1 /dev/stdout
[ -e /dev/stderr ] || ln -s /proc/self/fd/2 /dev/stderr

hn=
debug=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    symrun.hostname=*) hn=${arg#symrun.hostname=} ;;
    symrun.debug=1) debug=1 ;;
  esac
done
if [ -n "$hn" ]; then
  hostname "$hn"
  echo "$hn" > /etc/hostname
  echo "127.0.1.1 $hn" >> /etc/hosts
fi
ip link set lo up

# udev is not running: make the /dev/virtio-ports/NAME links ourselves
link_ports() {
  mkdir -p /dev/virtio-ports
  for d in /sys/class/virtio-ports/*; do
    [ -r "$d/name" ] || continue
    n=$(cat "$d/name" 2>/dev/null)
    [ -n "$n" ] && ln -sfn "../${d##*/}" "/dev/virtio-ports/$n"
  done
}
port=/dev/virtio-ports/org.symrun.agent.0
i=0
while link_ports; [ ! -e "$port" ] && [ $i -lt 50 ]; do i=$((i + 1)); sleep 0.1; done

if [ "$debug" = 1 ]; then
  echo "symrun-init: hostname $(hostname), kernel $(uname -r)"
  echo "symrun-init: node --version: $(node --version 2>&1)"
  echo "symrun-init: mpirun --version: $(mpirun --version 2>&1 | head -n 1)"
  echo "symrun-init: root: $(grep '^[^ ]* / ' /proc/mounts | tail -n 1)"
  echo "symrun-init: modprobe -D bonding: $(modprobe -D bonding 2>&1 | tr '\n' ' ')"
  # shellcheck disable=SC2016
  echo "symrun-init: $(cd /tmp && node -e 'const p=require("/opt/symrun/node_modules/node-pty");const t=p.spawn("/bin/sh",["-c","echo pty-ok"],{});let o="";t.onData(d=>o+=d);t.onExit(e=>console.log("node-pty: "+o.trim()+" exit "+e.exitCode))' 2>&1 | tail -n 3)"
fi

agent=/opt/symrun/dist/guest/src/agent.js
echo "symrun-init: starting agent"
(
  while true; do
    link_ports
    if [ -f "$agent" ]; then
      SYMRUN_AGENT_PORT=$port /usr/bin/node "$agent"
      echo "symrun-init: agent exited $?, restarting"
      sleep 1
    else
      echo "symrun-init: agent $agent is missing from the image, retrying in 10 s"
      sleep 10
    fi
  done
) </dev/null >/dev/console 2>&1 &

trap '' HUP INT QUIT TERM USR1 USR2
while true; do
  wait
  sleep 1
done
