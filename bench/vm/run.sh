#!/bin/bash
# Run bench/run.py's idle scenario at 100,000 connections inside a qemu VM, where the fd limit
# can be raised (the host sandbox caps RLIMIT_NOFILE at 20,000). See bench/vm/README.md.
#
#   sudo bench/vm/run.sh [--servers diesel-js,diesel-py,bun] [--repeat N] [--mem 8G]
#                        [--accel auto|kvm|tcg] [--max-secs S] [--out PREFIX] [--rebuild]
#
# Writes bench/results/vm-idle.md and .json (--out PREFIX: PREFIX.md and PREFIX.json) and keeps
# the VM's console in bench/vm/.cache/console.log.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE="$HERE/.cache"
ROOTFS="$CACHE/rootfs"
IMG="$CACHE/disk.img"
CONSOLE="$CACHE/console.log"
RESULTS="$REPO/bench/results"

SERVERS=diesel-js,diesel-py,bun
REPEAT=3
MEM=8G
ACCEL=auto
REBUILD=0
OUT="$RESULTS/vm-idle"
MAX_SECS=10800  # the VM is killed after this long, whatever it is doing
while [ $# -gt 0 ]; do
    case "$1" in
        --servers) SERVERS=$2; shift 2 ;;
        --repeat) REPEAT=$2; shift 2 ;;
        --mem) MEM=$2; shift 2 ;;
        --accel) ACCEL=$2; shift 2 ;;
        --rebuild) REBUILD=1; shift ;;
        --max-secs) MAX_SECS=$2; shift 2 ;;
        --out) OUT=${2%.md}; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

log() { echo "[vm $(date +%H:%M:%S)] $*"; }
[ "$(id -u)" = 0 ] || { echo "needs root (debootstrap, chroot, /dev/kvm)" >&2; exit 1; }
T0=$(date +%s)

# ---------------------------------------------------------------- host tools
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v mkfs.ext4 >/dev/null && command -v debugfs >/dev/null || need+=(e2fsprogs)
if [ ${#need[@]} -gt 0 ]; then
    log "apt-get install ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# ---------------------------------------------------------------- chroot helpers
MOUNTED=()
chroot_mount() {
    for d in proc sys dev dev/pts; do
        mkdir -p "$ROOTFS/$d"
        case $d in
            proc) mount -t proc proc "$ROOTFS/proc" ;;
            sys) mount -t sysfs sysfs "$ROOTFS/sys" ;;
            dev) mount --bind /dev "$ROOTFS/dev" ;;
            dev/pts) mount -t devpts devpts "$ROOTFS/dev/pts" ;;
        esac
        MOUNTED=("$ROOTFS/$d" "${MOUNTED[@]}")
    done
}
chroot_umount() {
    local m
    for m in "${MOUNTED[@]}"; do umount -l "$m" 2>/dev/null || true; done
    MOUNTED=()
    # Nothing may stay mounted under the rootfs (mkfs.ext4 -d, rm -rf).
    if grep -q " $ROOTFS/" /proc/mounts; then
        grep " $ROOTFS/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l
    fi
}
QEMU_PID=
cleanup() {
    chroot_umount
    if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then kill "$QEMU_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
in_chroot() { chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }

# ---------------------------------------------------------------- rootfs (cached)
mkdir -p "$CACHE"
if [ "$REBUILD" = 1 ] && [ -d "$ROOTFS" ]; then
    chroot_umount
    log "--rebuild: removing the cached rootfs"
    rm -rf --one-file-system "$ROOTFS"
fi
if [ ! -f "$ROOTFS/.vm-debootstrap-done" ]; then
    chroot_umount
    rm -rf --one-file-system "$ROOTFS"
    log "debootstrap bookworm into $ROOTFS (a few minutes)"
    debootstrap --include=linux-image-amd64,udev,kmod,iproute2,procps,python3,python3-venv,python3-dev,gcc,libc6-dev,ca-certificates \
        bookworm "$ROOTFS" http://deb.debian.org/debian
    # Load the virtio block driver and ext4 from the initramfs whatever udev finds.
    printf 'virtio_pci\nvirtio_blk\next4\n' >> "$ROOTFS/etc/initramfs-tools/modules"
    echo "/dev/vda / ext4 rw 0 1" > "$ROOTFS/etc/fstab"
    chroot_mount
    in_chroot update-initramfs -u -k all
    chroot_umount
    touch "$ROOTFS/.vm-debootstrap-done"
fi
if [ ! -f "$ROOTFS/.vm-rootfs-complete" ]; then
    log "venv /opt/venv: the project's dependencies and run.py's Python peers"
    chroot_mount
    cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
    # The host's CA bundle, in case HTTPS goes through an intercepting proxy; removed afterwards.
    cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/root/host-ca.crt"
    rm -rf --one-file-system "$ROOTFS/opt/venv"
    in_chroot python3 -m venv /opt/venv
    in_chroot PIP_CERT=/root/host-ca.crt /opt/venv/bin/pip install -q --upgrade pip
    in_chroot PIP_CERT=/root/host-ca.crt /opt/venv/bin/pip install -q "setuptools>=74.1" wheel \
        "uvloop>=0.19" "websockets>=13" "quickjs-ng>=0.17" "redis>=5" "prometheus-client>=0.20" \
        python-socketio uvicorn httptools
    rm -f "$ROOTFS/root/host-ca.crt"
    chroot_umount
    touch "$ROOTFS/.vm-rootfs-complete"
fi

# ---------------------------------------------------------------- the project, fresh each run
log "copying the working tree of $REPO into the rootfs"
rm -rf --one-file-system "$ROOTFS/opt/dieselengine"
mkdir -p "$ROOTFS/opt/dieselengine"
(cd "$REPO" && git ls-files -z -co --exclude-standard | while IFS= read -r -d '' f; do
    [ -e "$f" ] && printf '%s\0' "$f"; done | tar --null -T - -cf -) | tar -xf - -C "$ROOTFS/opt/dieselengine"
REV="$(cd "$REPO" && git rev-parse --short HEAD)$(cd "$REPO" && git diff --quiet HEAD -- src bench/run.py bench/loadgen bench/servers || echo '+uncommitted changes')"
if [[ ",$SERVERS," == *,bun,* || ",$SERVERS," == *,node-ws,* || ",$SERVERS," == *,socketio,* ]]; then
    [ -x "$REPO/bench/peers/node_modules/.bin/bun" ] || {
        echo "bench/peers/node_modules has no bun: run 'npm install --prefix bench/peers' on the host first" >&2; exit 1; }
    log "copying bench/peers/node_modules (Bun) into the rootfs"
    cp -a "$REPO/bench/peers/node_modules" "$ROOTFS/opt/dieselengine/bench/peers/"
fi
log "pip install -e /opt/dieselengine (builds the C wire with the VM's gcc)"
chroot_mount
in_chroot /opt/venv/bin/pip install -q --no-deps --no-build-isolation -e /opt/dieselengine > "$CACHE/pip.log" 2>&1 \
    || { cat "$CACHE/pip.log"; exit 1; }
in_chroot /opt/venv/bin/diesel --help >/dev/null
chroot_umount

cp "$HERE/vm-init.sh" "$ROOTFS/opt/vm-init.sh"
chmod +x "$ROOTFS/opt/vm-init.sh"
echo "--scenarios idle --servers $SERVERS --repeat $REPEAT" > "$ROOTFS/opt/vm-args"

# ---------------------------------------------------------------- disk image
SIZE_MB=$(( $(du -sm --one-file-system "$ROOTFS" | cut -f1) + 2048 ))
log "mkfs.ext4 -d rootfs -> $IMG (${SIZE_MB} MiB)"
rm -f "$IMG"
mkfs.ext4 -q -F -L dieselvm -d "$ROOTFS" "$IMG" "${SIZE_MB}M"

KERNEL=$(ls -1 "$ROOTFS"/boot/vmlinuz-* | sort -V | tail -1)
INITRD=$(ls -1 "$ROOTFS"/boot/initrd.img-* | sort -V | tail -1)

# ---------------------------------------------------------------- boot
# A working KVM boots to the init script in seconds. Here (nested in a Firecracker VM on AMD EPYC)
# /dev/kvm opens and runs the BIOS, but `-cpu host` dies on MSR 0x10a and with
# `host,-arch-capabilities` the kernel crawls (30 s to reach "Memory:") and then stops with a KVM
# emulation failure: so --accel auto tries KVM for BOOT_DEADLINE seconds, then falls back to TCG.
BOOT_DEADLINE=60
boot() {  # boot ACCEL DEADLINE: 0 = ran to the end, 3 = not booted within DEADLINE s (killed)
    local accel=$1 deadline=$2 args
    if [ "$accel" = kvm ]; then
        args=(-accel kvm -cpu host,-arch-capabilities)
    else
        args=(-accel tcg,thread=multi -cpu max)
    fi
    log "booting $(basename "$KERNEL") with $accel, 2 vCPUs, $MEM; console -> $CONSOLE"
    : > "$CONSOLE"
    timeout "$MAX_SECS" qemu-system-x86_64 "${args[@]}" -smp 2 -m "$MEM" -display none -nodefaults -no-reboot \
        -serial "file:$CONSOLE" -monitor none \
        -kernel "$KERNEL" -initrd "$INITRD" \
        -append "root=/dev/vda rw rootfstype=ext4 console=ttyS0 panic=-1 quiet init=/opt/vm-init.sh" \
        -drive "file=$IMG,if=virtio,format=raw" &
    QEMU_PID=$!
    tail -n +1 -f "$CONSOLE" --pid=$QEMU_PID &
    local tail_pid=$! t=0 rc=0
    if [ "$deadline" -gt 0 ]; then
        while kill -0 $QEMU_PID 2>/dev/null && ! grep -aq '^=== vm: kernel' "$CONSOLE"; do
            sleep 1; t=$((t + 1))
            if [ $t -ge "$deadline" ]; then
                log "$accel: not booted after $deadline s, stopping it"
                kill $QEMU_PID 2>/dev/null || true; wait $QEMU_PID 2>/dev/null || true
                wait $tail_pid 2>/dev/null || true
                QEMU_PID=
                return 3
            fi
        done
    fi
    wait $QEMU_PID || rc=$?
    QEMU_PID=
    wait $tail_pid 2>/dev/null || true
    [ $rc = 0 ] || log "qemu exited with $rc"
    return 0
}
if [ "$ACCEL" = auto ]; then
    ACCEL=tcg
    if [ -w /dev/kvm ] && boot kvm "$BOOT_DEADLINE"; then ACCEL=kvm; else
        # A killed boot may have left the image unclean: make it afresh.
        mkfs.ext4 -q -F -L dieselvm -d "$ROOTFS" "$IMG" "${SIZE_MB}M"
        boot tcg 0
    fi
else
    boot "$ACCEL" 0
fi

# ---------------------------------------------------------------- results
mkdir -p "$(dirname "$OUT")"
TMP=$(mktemp -d)
for ext in md json; do
    debugfs -R "dump /opt/dieselengine/bench/results/vm-idle.$ext $TMP/vm-idle.$ext" "$IMG" >/dev/null 2>&1 || true
done
if [ ! -s "$TMP/vm-idle.md" ]; then
    # Fall back on the console copy.
    sed -n '/=====BEGIN-VM-IDLE-MD=====/,/=====END-VM-IDLE-MD=====/p' "$CONSOLE" | sed '1d;$d' | tr -d '\r' > "$TMP/vm-idle.md"
fi
if [ ! -s "$TMP/vm-idle.md" ]; then
    echo "no results: see $CONSOLE" >&2
    rm -rf "$TMP"
    exit 1
fi
VMLINE=$(grep -a '^=== vm: kernel' "$CONSOLE" | tr -d '\r' | sed 's/^=== vm: //' | head -1)
WALL=$(( $(date +%s) - T0 ))
{
    echo "> Run inside a qemu VM by \`bench/vm/run.sh\` (host: $(uname -r), $(nproc) cores; qemu $ACCEL," \
         "2 vCPUs, $MEM; VM: $VMLINE). Project: the working tree at $REV. The VM is root with no fd" \
         "cap, so the 100k step is not capped. bench/vm/run.sh took $WALL s in all."
    if [ "$ACCEL" = tcg ]; then
        echo ">"
        echo "> qemu TCG emulates the CPU: handshakes/s and the us per handshake are about 10x worse than" \
             "on the host and are not comparable with host runs (nor is gen CPU: the generator saturates)." \
             "KiB per connection (RSS) is what this run is for."
    fi
    echo
    cat "$TMP/vm-idle.md"
} > "$OUT.md"
[ -s "$TMP/vm-idle.json" ] && cp "$TMP/vm-idle.json" "$OUT.json"
rm -rf "$TMP"
log "written: $OUT.md $( [ -f "$OUT.json" ] && echo "and $OUT.json"); ${WALL} s in all"
