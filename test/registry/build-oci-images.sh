#!/usr/bin/env bash
# Build vmlet's test OCI images (image layouts) from Debian packages and local files.
#
#   test/registry/build-oci-images.sh [OUTDIR]      (default OUTDIR=<repo>/.cache/test-images)
#
# Produces OUTDIR/oci/<name>/ (OCI image layouts, tag "latest"), OUTDIR/oci/images.json
# and OUTDIR/oci/stamp, and prints one line per image with its manifest and config digests.
# See test/registry/README.md for what each image is for.
#
# Inputs: the kernel guest (built first by test/images/build-kernel-guest.sh into the same
# OUTDIR), busybox from the same busybox-static .deb the kernel guest uses, syslinux + mtools
# + qemu-img for the bootable containerDisk, python3 (oci.py) for exact tar/JSON control.
#
# Reproducible: tar mtimes = SOURCE_DATE_EPOCH (default 0), FAT timestamps = max(epoch,
# 1980-01-01), fixed FAT serial / MBR signature, gzip -n: two builds give the same digests.
# OUTDIR/oci is a symlink to a fully built directory swapped with an atomic rename(2).
# A rerun whose inputs match the stamp does nothing (FORCE=1 rebuilds these images anyway,
# not the kernel guest).
set -euo pipefail
umask 022
export LC_ALL=C TZ=UTC

SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
HERE=$(dirname "$SCRIPT")
REPO_ROOT=$(cd "$HERE/../.." && pwd)
OUTDIR=${1:-$REPO_ROOT/.cache/test-images}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
NAME=oci
DEST=$OUTDIR/$NAME
KGUEST=$OUTDIR/kernel-guest
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}
export SOURCE_DATE_EPOCH
# FAT cannot store dates before 1980; mtools (and syslinux, through mtools) honour this.
FAT_EPOCH=$(( SOURCE_DATE_EPOCH > 315532800 ? SOURCE_DATE_EPOCH : 315532800 ))
# Packages whose tools shape the output bytes: their versions go into the stamp.
TOOL_PKGS=(gzip mtools syslinux qemu-utils python3)
RAW_DISK_MIB=8

step() { printf '==> %s\n' "$*" >&2; }
# shellcheck source=../images/publish.sh
. "$HERE/../images/publish.sh"
die() { printf 'build-oci-images: error: %s\n' "$*" >&2; exit 1; }
stamp_val() { [[ -f $2 ]] && awk -v k="$1" 'index($0, k "=") == 1 { print substr($0, length(k) + 2); exit }' "$2"; }

# KEY: hash of everything the output depends on; cheap (no apt, no hashing of big files).
compute_key() {
  local kkey tools
  KGUEST_KEY=$(stamp_val key "$KGUEST/stamp") || return 1
  BUSYBOX_VER=$(stamp_val pkg=busybox-static "$KGUEST/stamp") || return 1
  [[ -n $KGUEST_KEY && -n $BUSYBOX_VER ]] || return 1
  tools=$(dpkg-query -W -f='${Package}=${Version}\n' "${TOOL_PKGS[@]}" 2>/dev/null | sort) || return 1
  INPUTS=$(printf 'script=%s\noci.py=%s\nepoch=%s\nkernel-guest=%s\nbusybox-static=%s\n%s\n' \
    "$(sha256sum "$SCRIPT" | cut -c1-64)" "$(sha256sum "$HERE/oci.py" | cut -c1-64)" \
    "$SOURCE_DATE_EPOCH" "$KGUEST_KEY" "$BUSYBOX_VER" "$tools")
  KEY=$(sha256sum <<<"$INPUTS" | cut -c1-64)
}

up_to_date() {
  [[ -z ${FORCE:-} && -s $DEST/images.json ]] && compute_key && [[ $(stamp_val key "$DEST/stamp") == "$KEY" ]]
}

if up_to_date; then
  step "up to date (stamp $DEST/stamp)"
  python3 "$HERE/oci.py" --list "$DEST/images.json"
  exit 0
fi

for c in python3 gzip mformat mcopy syslinux qemu-img dpkg-deb dpkg-query apt-get flock truncate sha256sum; do
  command -v "$c" >/dev/null || die "missing tool: $c (node-install/install.sh --with-test-deps installs it)"
done
MBR_BIN=
for f in /usr/lib/SYSLINUX/mbr.bin /usr/lib/syslinux/mbr/mbr.bin; do [[ -f $f ]] && { MBR_BIN=$f; break; }; done
[[ -n $MBR_BIN ]] || die "syslinux mbr.bin not found (package syslinux)"

# Serialise concurrent builds (own lock: the kernel guest script takes OUTDIR/.lock itself).
exec 9>"$OUTDIR/.oci-lock"
flock 9
FORCE_ONCE=${FORCE:-}
if up_to_date; then
  step "up to date (built by a concurrent run)"
  python3 "$HERE/oci.py" --list "$DEST/images.json"
  exit 0
fi

step "kernel guest (test/images/build-kernel-guest.sh)"
FORCE= bash "$REPO_ROOT/test/images/build-kernel-guest.sh" "$OUTDIR" >&2   # FORCE is for this script only
compute_key || die "kernel guest stamp $KGUEST/stamp lacks key= or pkg=busybox-static="
if [[ -z $FORCE_ONCE && -s $DEST/images.json && $(stamp_val key "$DEST/stamp") == "$KEY" ]]; then
  python3 "$HERE/oci.py" --list "$DEST/images.json"
  exit 0
fi

WORK=$(mktemp -d "$OUTDIR/.oci-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# --- busybox ------------------------------------------------------------------------------
# The kernel guest's build keeps it in the node's .deb cache (build-kernel-guest.sh).
BB_DEB=${VMLET_DEB_CACHE:-/var/cache/vmlet/test-debs}/busybox-static_${BUSYBOX_VER//:/%3a}_amd64.deb
if [[ ! -f $BB_DEB ]]; then
  step "downloading busybox-static=$BUSYBOX_VER"
  (cd "$WORK" && apt-get -q -o APT::Sandbox::User=root download "busybox-static=$BUSYBOX_VER" >/dev/null) ||
    die "apt-get download busybox-static=$BUSYBOX_VER failed"
  BB_DEB=$(echo "$WORK"/busybox-static_*.deb)
fi
dpkg-deb -x "$BB_DEB" "$WORK/bb"
[[ -x $WORK/bb/bin/busybox ]] || die "no /bin/busybox in $BB_DEB"

# --- disks ----------------------------------------------------------------------------------
export MTOOLS_SKIP_CHECK=1
mt() { SOURCE_DATE_EPOCH=$FAT_EPOCH "$@"; }
PART_LBA=2048                      # partition at 1 MiB, as partitioning tools do
PART_OFF=$((PART_LBA * 512))

# new_fat_disk FILE TOTAL_MIB LABEL: MBR (one active FAT16-LBA partition from 1 MiB to the
# end, fixed disk signature) and a FAT file system on it, written with mtools at an offset:
# no loop device, no mount, no root needed.
new_fat_disk() {
  local file=$1 mib=$2 label=$3 sectors
  sectors=$(( (mib - 1) * 2048 ))
  truncate -s "${mib}M" "$file"
  python3 - "$file" "$PART_LBA" "$sectors" <<'EOF'
import struct, sys
path, lba, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(path, 'r+b') as f:
    f.seek(440)
    f.write(b'vmlt' + b'\0\0')                              # disk signature, reserved
    f.write(bytes([0x80, 0xfe, 0xff, 0xff, 0x0e, 0xfe, 0xff, 0xff]) + struct.pack('<II', lba, n))
    f.write(b'\0' * 48 + b'\x55\xaa')
EOF
  mt mformat -i "$file@@$PART_OFF" -T "$sectors" -h 64 -s 32 -H "$PART_LBA" -N 766d6c74 -v "$label" ::
}

step "bootable containerDisk: MBR + FAT + syslinux + guest kernel/initrd -> qcow2"
DISK=$WORK/disk
mkdir -p "$DISK"
cp "$KGUEST/vmlinuz" "$KGUEST/initrd.img" "$DISK/"
printf 'DEFAULT vmlet\nPROMPT 0\nTIMEOUT 0\nLABEL vmlet\n  LINUX /vmlinuz\n  INITRD /initrd.img\n  APPEND %s\n' \
  "$(cat "$KGUEST/cmdline")" > "$DISK/syslinux.cfg"
content=$(stat -c %s "$DISK/vmlinuz" "$DISK/initrd.img" | awk '{ s += $1 } END { print s }')
boot_mib=$(( (content + 4 * 1048576 + 1048575) / 1048576 + 1 ))   # files + 4 MiB slack + MBR gap
new_fat_disk "$DISK/boot.raw" "$boot_mib" VMLET
dd if="$MBR_BIN" of="$DISK/boot.raw" bs=440 count=1 conv=notrunc status=none
mt mcopy -i "$DISK/boot.raw@@$PART_OFF" "$DISK/vmlinuz" "$DISK/initrd.img" "$DISK/syslinux.cfg" ::
mt syslinux --install --offset "$PART_OFF" "$DISK/boot.raw"
qemu-img convert -f raw -O qcow2 "$DISK/boot.raw" "$DISK/disk.qcow2"

step "small raw disk (${RAW_DISK_MIB} MiB, FAT with /vmlet.txt)"
new_fat_disk "$DISK/disk.img" "$RAW_DISK_MIB" VMLETRAW
printf 'vmlet containerdisk-raw test disk\n' > "$DISK/vmlet.txt"
mt mcopy -i "$DISK/disk.img@@$PART_OFF" "$DISK/vmlet.txt" ::

# --- layouts --------------------------------------------------------------------------------
step "writing OCI image layouts"
python3 "$HERE/oci.py" --work "$WORK/out" --final "$DEST" \
  --busybox "$WORK/bb/bin/busybox" --vmlinux "$KGUEST/vmlinux" --vmlinuz "$KGUEST/vmlinuz" --initrd "$KGUEST/initrd.img" \
  --cmdline "$KGUEST/cmdline" --qcow2 "$DISK/disk.qcow2" --raw "$DISK/disk.img"
printf 'key=%s\n%s\n' "$KEY" "$INPUTS" > "$WORK/out/stamp"
find "$WORK/out" -type d -exec chmod 0755 {} + ; find "$WORK/out" -type f -exec chmod 0644 {} +

# --- publish atomically ---------------------------------------------------------------------
publish_dir "$WORK/out" "$OUTDIR" "$NAME" "$WORK"
step "done: $(du -sh "$PUBLISHED" | cut -f1) in $DEST"
