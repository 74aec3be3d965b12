#!/usr/bin/env bash
# Build vmlet's guest kit: what a sandboxed pod's micro-VM boots from.
#
#   node-install/build-guest-kit.sh OUTDIR
#
# Writes OUTDIR/{vmlinux,initrd.img,cmdline,VERSION,features,stamp}:
#   vmlinux     Debian's kernel (linux-image-amd64) as an uncompressed ELF with the PVH entry note
#               (QEMU boots it directly; under TCG much faster than the bzImage)
#   initrd.img  gzip'd newc cpio: static busybox, the kernel modules the guest needs (virtio,
#               9p, overlay, ext4 and their dependencies), /init (node-install/guest/init) and
#               /sbin/vmlet-agent (built by src/guest/agent/build.sh)
#   cmdline     the kernel command line, without a trailing newline
#   VERSION     <content hash>-<Debian kernel version>, e.g. 1a2b3c4d5e6f-6.1.176-1
#   features    what this kit's guest can do that older kits' cannot, one per line, which vmlet
#               reads (src/guest/kit.ts): erofs (the loop and erofs modules: an image's rootfs
#               as one EROFS file, config imageRootfs)
#   stamp       the build inputs
#
# Reproducible: fixed SOURCE_DATE_EPOCH (default 0), sorted cpio, gzip -n; two builds from the
# same inputs give the same bytes. A rerun whose inputs (hashes of this script, of
# node-install/guest/* and of src/guest/agent/**, the package versions and the Go version)
# match the stamp does nothing; FORCE=1 rebuilds anyway.
#
# OUTDIR is a symlink to a fully built sibling directory (.NAME.XXXXXX), swapped with one
# rename(2): a reader sees the old kit or the new one, never half of one.
#
# Packages are fetched with `apt-get download` into $VMLET_DEB_CACHE (default
# /var/cache/vmlet/debs) and unpacked with `dpkg-deb -x`: nothing is installed on the host.
# The agent needs Go (golang-go; node-install/install.sh installs it). While the agent's
# sources are not there (no src/guest/agent/build.sh), or with VMLET_GUEST_AGENT=standin, the
# kit gets a stand-in agent (node-install/guest/agent-standin.sh) and VERSION ends in -standin.
set -euo pipefail
umask 022
export LC_ALL=C

SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
# Functions shared with test/images/build-kernel-guest.sh.
HERE_LIB=$(dirname "$SCRIPT")/kit-lib.sh
# shellcheck source=kit-lib.sh
. "$HERE_LIB"
HERE=$(dirname "$SCRIPT")
REPO_ROOT=$(cd "$HERE/.." && pwd)
GUEST_SRC=$HERE/guest
AGENT_SRC=$REPO_ROOT/src/guest/agent

die() { printf 'build-guest-kit: error: %s\n' "$*" >&2; exit 1; }
step() { printf '==> %s\n' "$*"; }

[[ $# -eq 1 && -n $1 ]] || die "usage: $0 OUTDIR"
DEST=${1%/}
PARENT=$(dirname "$DEST")
NAME=$(basename "$DEST")
mkdir -p "$PARENT"
PARENT=$(cd "$PARENT" && pwd)
DEST=$PARENT/$NAME
DEBS=${VMLET_DEB_CACHE:-/var/cache/vmlet/debs}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}
export SOURCE_DATE_EPOCH
AGENT_MODE=${VMLET_GUEST_AGENT:-auto}   # auto | standin
[[ $AGENT_MODE == auto || $AGENT_MODE == standin ]] || die "VMLET_GUEST_AGENT must be auto or standin"

KERNEL_META=linux-image-amd64
# Kernel modules in the initramfs, loaded by /init in this order after their dependencies
# (resolved from each module's .modinfo "depends=", as depmod does). Debian 12's kernel has
# built in: virtio core bits excepted, PCI/MSI, devtmpfs, tmpfs, cgroups (cpu, memory, pids,
# ...), namespaces, unix, packet, IPv6, 8250 console, PVH, hw_random core. As modules:
#   virtio_pci virtio_console virtio_blk virtio_net virtio_rng virtio_balloon: the devices
#   crc32c_generic: ext4/jbd2 ask the crypto API for crc32c (metadata_csum): without it loaded
#     first, the kernel would call modprobe at mount time
#   virtiofs (with fuse): the image share and the pod's shared dir, where the node has virtiofsd
#   overlay: the containers' root file systems; ext4: the scratch disk
MODULES=(virtio_pci virtio_console virtio_blk virtio_net virtio_rng virtio_balloon
         crc32c_generic virtiofs overlay ext4)
# The same shares over 9p where the node has no virtiofsd (9p needs netfs and fscache:
# CONFIG_9P_FSCACHE=y): /init loads these (/etc/vmlet/modules-9p) only when a virtiofs mount
# fails, ~0.1 s of a boot under TCG that a virtiofs node does not spend.
NINEP_MODULES=(9pnet_virtio 9p)
# In the initramfs but not loaded at boot: the kernel loads them when a container asks (it runs
# /sbin/modprobe, which reads modules.dep and modules.alias): bridge (brctl addbr, with stp and
# llc), veth and dummy (ip link add), tun (/dev/net/tun); and loop and erofs, which the agent
# loads at a pod's first container of an image made as an EROFS image (config imageRootfs).
ON_DEMAND_MODULES=(bridge veth dummy tun loop erofs)
# console=ttyS0 quiet: fewer slow serial writes; panic=-1: a crashed guest reboots at once
# (QEMU -no-reboot or libvirt on_reboot=destroy then ends it); cryptomgr.notests + rodata=off:
# no crypto self-tests and no W+X/RO page walk. initcall_blacklist: the two slowest initcalls
# under TCG (initcall_debug): crypto_kdf108_init, 180-240 ms, only a self-test of SP800-108
# KDF (its functions work without it), and init_kprobe_trace, 50-90 ms, kprobe trace events,
# which the guest has no use for. Measured and left out (no gain beyond the noise under TCG):
# tsc=reliable, no_timer_check, i8042.noaux/nomux/nopnp/dumbkbd, 8250.nr_uarts=1,
# mitigations=off.
CMDLINE="console=ttyS0 quiet panic=-1 cryptomgr.notests rodata=off initcall_blacklist=crypto_kdf108_init,init_kprobe_trace"
OUTPUTS=(vmlinux initrd.img cmdline VERSION features stamp)

for c in apt-get apt-cache dpkg-deb xz cpio gzip find sort sha256sum flock tail od grep awk; do
  command -v "$c" >/dev/null || die "missing tool: $c"
done

# --- input fingerprints ---------------------------------------------------------------------
# tree_sha DIR: one hash over the relative path, mode and content of every file under DIR.
tree_sha() {
  [[ -d $1 ]] || { echo none; return; }
  (cd "$1" && find . -type f -print0 | sort -z |
     xargs -0r sh -c 'for f; do printf "%s %s " "$f" "$(stat -c %a "$f")"; sha256sum < "$f"; done' sh) |
    sha256sum | cut -c1-64
}
agent_kind() {
  if [[ $AGENT_MODE == standin || ! -f $AGENT_SRC/build.sh ]]; then echo standin; else echo go; fi
}
AGENT_KIND=$(agent_kind)
SCRIPT_SHA=$(cat "$SCRIPT" "$HERE_LIB" | sha256sum | cut -c1-64)
GUEST_SHA=$(tree_sha "$GUEST_SRC")
if [[ $AGENT_KIND == go ]]; then
  command -v go >/dev/null || die "go not found: the agent needs golang-go (node-install/install.sh installs it)"
  AGENT_SHA=$(tree_sha "$AGENT_SRC")
  GO_VERSION=$(go version | awk '{ print $3 }')
else
  AGENT_SHA=standin GO_VERSION=none
fi

APT_STATE=$(apt_state)

outputs_present() {
  local f
  for f in "${OUTPUTS[@]}"; do [[ -s $DEST/$f ]] || return 1; done
}
# Fast path: same sources, same epoch, and apt's state unchanged since the stamp was written.
fast_up_to_date() {
  [[ -z ${FORCE:-} ]] && outputs_present &&
    [[ $(stamp_get script) == "$SCRIPT_SHA" && $(stamp_get guest) == "$GUEST_SHA" &&
       $(stamp_get agent) == "$AGENT_SHA" && $(stamp_get go) == "$GO_VERSION" &&
       $(stamp_get epoch) == "$SOURCE_DATE_EPOCH" && $(stamp_get apt-state) == "$APT_STATE" ]]
}
done_msg() { step "$1: $DEST ($(cat "$DEST/VERSION"))"; }

if fast_up_to_date; then done_msg "up to date"; exit 0; fi

# Serialise concurrent builds of the same OUTDIR; re-check once we hold the lock.
exec 9>"$PARENT/.$NAME.lock"
flock 9
if fast_up_to_date; then done_msg "up to date (built by a concurrent run)"; exit 0; fi

APT_UPDATED=

# --- package versions -----------------------------------------------------------------------
declare -A VER=()
resolve_versions() {
  KPKG=$(apt-cache depends "$KERNEL_META" 2>/dev/null |
         awk '$1 == "Depends:" && $2 ~ /^linux-image-/ && k == "" { k = $2 } END { print k }') || true
  [[ -n $KPKG ]] || return 1
  PKGS=("$KPKG" busybox-static)
  VER=()
  local pkg ver
  while read -r pkg ver; do
    [[ $ver != "(none)" ]] && VER[$pkg]=$ver
  done < <(apt-cache policy "${PKGS[@]}" 2>/dev/null |
           awk '/^[^ ]/ { p = $1; sub(/:$/, "", p); sub(/:amd64$/, "", p) }
                /^  Candidate:/ { print p, $2 }')
  for pkg in "${PKGS[@]}"; do [[ -n ${VER[$pkg]:-} ]] || return 1; done
}
resolve_versions || { apt_update_once && resolve_versions; } ||
  die "cannot resolve $KERNEL_META / busybox-static candidates with apt-cache"

PKG_LINES=$(for p in "${PKGS[@]}"; do printf 'pkg=%s=%s\n' "$p" "${VER[$p]}"; done | sort)
KEY=$(printf 'script=%s\nguest=%s\nagent=%s\ngo=%s\nepoch=%s\n%s\n' "$SCRIPT_SHA" "$GUEST_SHA" \
        "$AGENT_SHA" "$GO_VERSION" "$SOURCE_DATE_EPOCH" "$PKG_LINES" | sha256sum | cut -c1-64)

write_stamp() { # dir
  {
    printf 'key=%s\nscript=%s\nguest=%s\nagent=%s\ngo=%s\nepoch=%s\napt-state=%s\n' "$KEY" \
      "$SCRIPT_SHA" "$GUEST_SHA" "$AGENT_SHA" "$GO_VERSION" "$SOURCE_DATE_EPOCH" "$APT_STATE"
    printf '%s\n' "$PKG_LINES"
  } > "$1/stamp.tmp"
  mv -f "$1/stamp.tmp" "$1/stamp"
}

if [[ -z ${FORCE:-} ]] && outputs_present && [[ $(stamp_get key) == "$KEY" ]]; then
  write_stamp "$(readlink -f "$DEST")"   # refresh apt-state for the fast path
  done_msg "up to date (same inputs)"
  exit 0
fi

# --- download -------------------------------------------------------------------------------
mkdir -p "$DEBS"
WORK=$(mktemp -d "$PARENT/.$NAME.build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# The same .deb may already be on the node: the test image builder's cache, apt's archive.
# (cp -l: a hard link when on the same file system.)
OTHER_DEBS=(/var/cache/vmlet/debs /var/cache/vmlet/test-debs /var/cache/apt/archives)
missing=()
for p in "${PKGS[@]}"; do
  [[ -f $(deb_of "$p") ]] && continue
  for d in "${OTHER_DEBS[@]}"; do
    f=("$d/${p}_${VER[$p]//:/%3a}_"*.deb)
    if [[ $d != "$DEBS" && -f ${f[0]} ]]; then
      cp -l "${f[0]}" "$DEBS/" 2>/dev/null || cp "${f[0]}" "$DEBS/"
      break
    fi
  done
  [[ -f $(deb_of "$p") ]] || missing+=("$p=${VER[$p]}")
done
if ((${#missing[@]})); then
  step "downloading ${missing[*]} into $DEBS"
  mkdir -p "$WORK/dl"
  download() { (cd "$WORK/dl" && apt-get -q -o APT::Sandbox::User=root download "${missing[@]}" >/dev/null); }
  download || { apt_update_once && download; } || die "apt-get download failed: ${missing[*]}"
  mv -f "$WORK/dl/"*.deb "$DEBS/"
fi
for p in "${PKGS[@]}"; do [[ -f $(deb_of "$p") ]] || die "download of $p=${VER[$p]} produced no .deb"; done

# --- the agent (first: the slowest step, and the likeliest to fail) -------------------------
OUT=$WORK/out ROOT=$WORK/root
mkdir -p "$OUT" "$ROOT/sbin"
if [[ $AGENT_KIND == go ]]; then
  step "building vmlet-agent ($GO_VERSION): bash src/guest/agent/build.sh"
  mkdir -p "$WORK/agent"
  # Go's build cache is content-addressed: keeping it per node only makes rebuilds faster.
  VMLET_AGENT_GOCACHE=${VMLET_AGENT_GOCACHE:-/var/cache/vmlet/agent-gocache} \
    bash "$AGENT_SRC/build.sh" "$WORK/agent/vmlet-agent" || die "src/guest/agent/build.sh failed"
  agent=$WORK/agent/vmlet-agent
  [[ -d $agent ]] && agent=$agent/vmlet-agent    # build.sh took OUT as a directory
  [[ -f $agent ]] || die "src/guest/agent/build.sh produced no vmlet-agent"
  [[ $(head -c4 "$agent" | od -An -tx1 | tr -d ' \n') == 7f454c46 ]] || die "vmlet-agent is not an ELF binary"
  if command -v readelf >/dev/null && readelf -l "$agent" | grep -q INTERP; then
    die "vmlet-agent is dynamically linked: the initramfs has no libc (build it with CGO_ENABLED=0)"
  fi
  install -m 0755 "$agent" "$ROOT/sbin/vmlet-agent"
else
  echo "build-guest-kit: warning: no src/guest/agent/build.sh (or VMLET_GUEST_AGENT=standin): the kit gets the stand-in agent" >&2
  install -m 0755 "$GUEST_SRC/agent-standin.sh" "$ROOT/sbin/vmlet-agent"
fi

# --- kernel ---------------------------------------------------------------------------------
step "unpacking $KPKG ${VER[$KPKG]} and busybox-static ${VER[busybox-static]}"
KROOT=$WORK/kernel UROOT=$WORK/userland
mkdir -p "$KROOT" "$UROOT"
dpkg-deb -x "$(deb_of "$KPKG")" "$KROOT"
dpkg-deb -x "$(deb_of busybox-static)" "$UROOT"
KREL=$(find "$KROOT/lib/modules" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort | head -n1)
[[ -n $KREL && -f $KROOT/boot/vmlinuz-$KREL ]] || die "no kernel image in $KPKG"

step "extracting vmlinux from vmlinuz-$KREL"
extract_vmlinux "$KROOT/boot/vmlinuz-$KREL" "$OUT/vmlinux" || die "no xz-compressed ELF in vmlinuz-$KREL"
if command -v readelf >/dev/null && ! readelf -n "$OUT/vmlinux" | grep -q 'note type: (0x00000012)'; then
  die "vmlinux has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY): QEMU cannot boot it directly"
fi

# --- initramfs tree -------------------------------------------------------------------------
step "assembling the initramfs"
mkdir -p "$ROOT"/{bin,usr/bin,usr/sbin,etc/vmlet,proc,sys,dev,run,tmp,root,mnt,lib/modules/"$KREL"}
chmod 1777 "$ROOT/tmp"
chmod 0700 "$ROOT/root"
mkdir -p "$ROOT/var"
ln -s ../run "$ROOT/var/run"
install -m 0755 "$UROOT/bin/busybox" "$ROOT/bin/busybox"
while read -r applet; do
  [[ $applet == bin/busybox || -e $ROOT/$applet || -L $ROOT/$applet ]] && continue
  mkdir -p "$ROOT/$(dirname "$applet")"
  ln -s /bin/busybox "$ROOT/$applet"
done < <("$UROOT/bin/busybox" --list-full | sort)

KMOD=$KROOT/lib/modules/$KREL
index_modules
for m in "${MODULES[@]}"; do add_module "$m"; done
for m in "${MODORDER[@]}"; do printf '%s/%s.ko\n' "$KREL" "$m"; done > "$ROOT/etc/vmlet/modules"
booted=${#MODORDER[@]}
for m in "${NINEP_MODULES[@]}"; do add_module "$m"; done
ninep=$((${#MODORDER[@]} - booted))
for m in "${MODORDER[@]:booted:ninep}"; do printf '%s/%s.ko\n' "$KREL" "$m"; done > "$ROOT/etc/vmlet/modules-9p"
for m in "${ON_DEMAND_MODULES[@]}"; do add_module "$m"; done
# modules.alias: what the kernel asks for (e.g. rtnl-link-veth, char-major-10-200) → module.
for m in "${MODORDER[@]}"; do
  tr '\0' '\n' < "$ROOT/lib/modules/$KREL/$m.ko" | awk -v m="$m" 'index($0, "alias=") == 1 { print "alias " substr($0, 7) " " m }'
done | sort > "$ROOT/lib/modules/$KREL/modules.alias"
# modules.dep (busybox modprobe reads it): so `modprobe NAME` works in the guest too. A module's
# dependencies are listed so that each comes before its own dependencies: modprobe loads them
# from the end of the line (as from depmod's file). E.g. bridge.ko: stp.ko llc.ko.
load_order() { # name: its dependencies, transitively, each after its own (post-order)
  local d
  for d in ${MODDEPS[$1]:-}; do load_order "$d"; printf '%s\n' "$d"; done
}
for m in "${MODORDER[@]}"; do
  printf '%s.ko:' "$m"
  load_order "$m" | awk '!seen[$0]++' | tac | awk '{ printf " %s.ko", $0 }'
  printf '\n'
done | sort > "$ROOT/lib/modules/$KREL/modules.dep"
cp "$KMOD/modules.builtin" "$ROOT/lib/modules/$KREL/" 2>/dev/null || true
step "modules (load order): ${MODORDER[*]:0:booted}; for 9p: ${MODORDER[*]:booted:ninep}; on demand: ${MODORDER[*]:booted+ninep}"

install -m 0755 "$GUEST_SRC/init" "$ROOT/init"
install -m 0755 "$GUEST_SRC/selftest.sh" "$ROOT/etc/vmlet/selftest.sh"
install -m 0644 "$GUEST_SRC/net.sh" "$ROOT/etc/vmlet/net.sh"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$ROOT/etc/passwd"
printf 'root:x:0:\ntty:x:5:\n' > "$ROOT/etc/group"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' > "$ROOT/etc/hosts"
: > "$ROOT/etc/resolv.conf"

step "writing initrd.img (newc cpio, gzip -n, mtime @$SOURCE_DATE_EPOCH)"
find "$ROOT" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
{
  (cd "$ROOT" && find . -mindepth 1 -printf '%P\n' | sort |
     cpio -o -H newc --owner=0:0 --reproducible --quiet)
  # /dev/console as a device node (no root needed): a second archive the kernel unpacks after
  # the first, so the initial console exists before /init runs.
  newc_entry dev/console 020600 5 1 1048577
  newc_entry TRAILER!!! 0 0 0 0
} | gzip -n -9 > "$OUT/initrd.img"

printf '%s' "$CMDLINE" > "$OUT/cmdline"
HASH=$(cd "$OUT" && sha256sum vmlinux initrd.img cmdline | sha256sum | cut -c1-12)
printf '%s-%s%s\n' "$HASH" "${VER[$KPKG]}" "$([[ $AGENT_KIND == standin ]] && echo -standin)" > "$OUT/VERSION"
printf 'erofs\n' > "$OUT/features"
write_stamp "$OUT"
chmod 0644 "$OUT"/*
chmod 0755 "$OUT"

# --- publish atomically ---------------------------------------------------------------------
publish_dir "$OUT" "$PARENT" "$NAME" "$WORK"

# Drop cached .debs of other versions of our packages (other builders may share the cache).
for p in "${PKGS[@]}"; do
  for f in "$DEBS/${p}"_*.deb; do
    [[ -e $f && $f != "$(deb_of "$p")" ]] && rm -f "$f"
  done
done

step "done: $DEST -> ${PUBLISHED##*/}, VERSION $(cat "$DEST/VERSION"), kernel $KREL, initrd $(stat -c %s "$DEST/initrd.img") bytes"
