#!/bin/sh
# PID 1 of the benchmark VM (booted by bench/vm/run.sh with init=/opt/vm-init.sh).
# Raises the limits the host sandbox cannot, runs bench/run.py once, prints the report between
# markers on the serial console and powers off. Arguments for run.py come from /opt/vm-args.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 PYTHONUNBUFFERED=1

# The initramfs has moved /proc, /sys and /dev here already; mount what is missing.
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mountpoint -q /dev/pts || mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -o remount,rw /
hostname dieselvm

ip link set lo up

# No fd cap: one process may hold a few hundred thousand sockets.
sysctl -q -w fs.nr_open=1048576 fs.file-max=4194304
sysctl -q -w net.ipv4.ip_local_port_range="1024 65535"
sysctl -q -w net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535
ulimit -Hn 300000
ulimit -Sn 300000

echo "=== vm: kernel $(uname -r), $(nproc) vCPUs, $(awk '/MemTotal/ {print int($2/1024) " MiB"}' /proc/meminfo), $(/opt/venv/bin/python --version), ulimit -n $(ulimit -n)"

cd /opt/dieselengine
. /opt/venv/bin/activate
ARGS=$(cat /opt/vm-args)
OUT=/opt/dieselengine/bench/results/vm-idle.md
echo "=== vm: python bench/run.py $ARGS --out $OUT"
# shellcheck disable=SC2086
python bench/run.py $ARGS --out "$OUT"
echo "=== vm: run.py exit $?"

echo "=== vm: memory after the run"
free -m
sync
echo "=====BEGIN-VM-IDLE-MD====="
cat "$OUT" 2>/dev/null
echo "=====END-VM-IDLE-MD====="
sync
mount -o remount,ro / 2>/dev/null
echo "=== vm: powering off"
poweroff -f 2>/dev/null
echo o > /proc/sysrq-trigger
sleep 30
