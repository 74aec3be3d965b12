#!/usr/bin/env bash
# Build vmlet's tiny test guest (kernel + initrd) from Debian packages.
#
#   test/images/build-kernel-guest.sh [OUTDIR]      (default OUTDIR=<repo>/.cache/test-images)
#
# Produces OUTDIR/kernel-guest/{vmlinux,vmlinuz,initrd.img,cmdline,stamp}.
# Packages are fetched with `apt-get download` into OUTDIR/debs/ and unpacked with
# `dpkg-deb -x`; nothing is installed on the host.  See test/images/README.md.
#
# OUTDIR/kernel-guest is a symlink to a fully built directory (.kernel-guest.XXXXXX);
# it is swapped with an atomic rename(2), so a half-built image is never visible.
# A rerun whose inputs (this script's hash + the package versions + SOURCE_DATE_EPOCH)
# match the stamp does nothing.  FORCE=1 rebuilds anyway.
set -euo pipefail
umask 022
export LC_ALL=C

SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
REPO_ROOT=$(cd "$(dirname "$SCRIPT")/../.." && pwd)
OUTDIR=${1:-$REPO_ROOT/.cache/test-images}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
NAME=kernel-guest
DEST=$OUTDIR/$NAME
DEBS=$OUTDIR/debs
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}
export SOURCE_DATE_EPOCH

KERNEL_META=linux-image-amd64
# Kernel modules to put in the initrd (dependencies are added automatically).
MODULES=(virtio_pci virtio_console virtio_blk virtio_net virtio_rng)
# qemu-ga and the packages providing the libraries ld.so lists for it.
QGA_PKGS=(qemu-guest-agent libc6 libgcc-s1 libglib2.0-0 libnuma1 libudev1 liburing2 libpcre2-8-0)
# quiet: fewer slow serial writes; panic=-1: a crashed guest reboots at once (QEMU -no-reboot
# or libvirt on_reboot=destroy then ends it); cryptomgr.notests + rodata=off: skip crypto
# self-tests and the W+X/RO page walk, ~0.3 s less under TCG.
CMDLINE="console=ttyS0 quiet panic=-1 cryptomgr.notests rodata=off"
OUTPUTS=(vmlinux vmlinuz initrd.img cmdline stamp)

step() { printf '==> %s\n' "$*"; }
die() { printf 'build-kernel-guest: error: %s\n' "$*" >&2; exit 1; }

print_outputs() {
  local f
  for f in vmlinux vmlinuz initrd.img cmdline; do printf '%s\n' "$DEST/$f"; done
}

# Cheap fingerprint of everything apt uses to choose candidate versions (stat only).
apt_state() {
  local f files=()
  for f in /var/lib/apt/lists/*_Packages* /var/lib/dpkg/status /etc/apt/sources.list \
           /etc/apt/sources.list.d/* /etc/apt/preferences /etc/apt/preferences.d/*; do
    [[ -e $f ]] && files+=("$f")
  done
  { ((${#files[@]})) && stat -L -c '%n %s %Y' "${files[@]}"; } | sha256sum | cut -c1-64
}

stamp_get() {
  if [[ -f $DEST/stamp ]]; then
    awk -v k="$1" 'index($0, k "=") == 1 { print substr($0, length(k) + 2); exit }' "$DEST/stamp"
  fi
}

outputs_present() {
  local f
  for f in "${OUTPUTS[@]}"; do [[ -s $DEST/$f ]] || return 1; done
}

SCRIPT_SHA=$(sha256sum "$SCRIPT" | cut -c1-64)
APT_STATE=$(apt_state)

# Fast path: same script, same epoch, apt state unchanged since the stamp was written.
fast_up_to_date() {
  [[ -z ${FORCE:-} ]] && outputs_present &&
    [[ $(stamp_get script) == "$SCRIPT_SHA" && $(stamp_get epoch) == "$SOURCE_DATE_EPOCH" &&
       $(stamp_get apt-state) == "$APT_STATE" ]]
}

if fast_up_to_date; then
  step "up to date (stamp $DEST/stamp)"
  print_outputs
  exit 0
fi

for c in apt-get apt-cache dpkg-deb xz cpio gzip tar grep find sort sha256sum flock tail od; do
  command -v "$c" >/dev/null || die "missing tool: $c"
done

# Serialise concurrent builds; re-check once we hold the lock.
exec 9>"$OUTDIR/.lock"
flock 9
if fast_up_to_date; then
  step "up to date (built by a concurrent run)"
  print_outputs
  exit 0
fi

APT_UPDATED=
apt_update_once() {
  [[ -z $APT_UPDATED ]] || return 1
  APT_UPDATED=1
  step "apt-get update (package lists missing or stale)"
  apt-get -q update >/dev/null || die "apt-get update failed"
  APT_STATE=$(apt_state)
}

# --- resolve package versions -------------------------------------------------------
step "resolving package versions ($KERNEL_META)"
declare -A VER=()
resolve_versions() {
  KPKG=$(apt-cache depends "$KERNEL_META" 2>/dev/null |
         awk '$1 == "Depends:" && $2 ~ /^linux-image-/ && k == "" { k = $2 } END { print k }') || true
  [[ -n $KPKG ]] || return 1
  PKGS=("$KPKG" busybox-static "${QGA_PKGS[@]}")
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
  die "cannot resolve $KERNEL_META / package candidates with apt-cache"

PKG_LINES=$(for p in "${PKGS[@]}"; do printf 'pkg=%s=%s\n' "$p" "${VER[$p]}"; done | sort)
KEY=$(printf 'script=%s\nepoch=%s\n%s\n' "$SCRIPT_SHA" "$SOURCE_DATE_EPOCH" "$PKG_LINES" |
      sha256sum | cut -c1-64)

write_stamp() { # dir
  {
    printf 'key=%s\nscript=%s\nepoch=%s\napt-state=%s\n' "$KEY" "$SCRIPT_SHA" "$SOURCE_DATE_EPOCH" "$APT_STATE"
    [[ -n ${KREL:-} ]] && printf 'kernel-release=%s\n' "$KREL"
    printf '%s\n' "$PKG_LINES"
  } > "$1/stamp.tmp"
  mv -f "$1/stamp.tmp" "$1/stamp"
}

if [[ -z ${FORCE:-} ]] && outputs_present && [[ $(stamp_get key) == "$KEY" ]]; then
  KREL=$(stamp_get kernel-release)
  write_stamp "$(readlink -f "$DEST")"   # refresh apt-state for the fast path
  step "up to date (same package versions)"
  print_outputs
  exit 0
fi

# --- download ---------------------------------------------------------------------
mkdir -p "$DEBS"
WORK=$(mktemp -d "$OUTDIR/.build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

deb_of() { # pkg -> path of the cached .deb for the resolved version (may not exist)
  local f=("$DEBS/${1}_${VER[$1]//:/%3a}_"*.deb)
  printf '%s\n' "${f[0]}"
}

missing=()
for p in "${PKGS[@]}"; do [[ -f $(deb_of "$p") ]] || missing+=("$p=${VER[$p]}"); done
if ((${#missing[@]})); then
  step "downloading ${#missing[@]} package(s) into $DEBS"
  mkdir -p "$WORK/dl"
  download() { (cd "$WORK/dl" && apt-get -q -o APT::Sandbox::User=root download "${missing[@]}" >/dev/null); }
  download || { apt_update_once && download; } || die "apt-get download failed: ${missing[*]}"
  mv -f "$WORK/dl/"*.deb "$DEBS/"
else
  step "all ${#PKGS[@]} packages already in $DEBS"
fi
for p in "${PKGS[@]}"; do [[ -f $(deb_of "$p") ]] || die "download of $p=${VER[$p]} produced no .deb"; done

# --- unpack -----------------------------------------------------------------------
step "unpacking $KPKG ${VER[$KPKG]}"
KROOT=$WORK/kernel
mkdir -p "$KROOT"
dpkg-deb -x "$(deb_of "$KPKG")" "$KROOT"
KREL=$(find "$KROOT/lib/modules" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort | head -n1)
[[ -n $KREL && -f $KROOT/boot/vmlinuz-$KREL ]] || die "no kernel image in $KPKG"

step "unpacking busybox-static and qemu-guest-agent (+ libraries)"
UROOT=$WORK/userland
mkdir -p "$UROOT"
for p in busybox-static "${QGA_PKGS[@]}"; do dpkg-deb -x "$(deb_of "$p")" "$UROOT"; done

OUT=$WORK/out
mkdir -p "$OUT"

# --- vmlinux ----------------------------------------------------------------------
step "extracting vmlinux from vmlinuz-$KREL (xz payload)"
cp "$KROOT/boot/vmlinuz-$KREL" "$OUT/vmlinuz"
is_elf() { [[ $(head -c4 "$1" | od -An -tx1 | tr -d ' \n') == 7f454c46 ]]; }
extract_vmlinux() { # in out: decompress from each xz magic (FD 37 7A 58 5A 00) until we get an ELF
  local off
  # shellcheck disable=SC2013 # one decimal offset per line
  for off in $(grep -obUaP '\xFD7zXZ\x00' "$1" | cut -d: -f1); do
    if xz -dc --single-stream < <(tail -c "+$((off + 1))" "$1") > "$2" 2>/dev/null && is_elf "$2"; then
      return 0
    fi
  done
  rm -f "$2"
  return 1
}
extract_vmlinux "$OUT/vmlinuz" "$OUT/vmlinux" || die "no xz-compressed ELF found in vmlinuz-$KREL"
if command -v readelf >/dev/null && ! readelf -n "$OUT/vmlinux" | grep -q 'note type: (0x00000012)'; then
  echo "warning: vmlinux has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); QEMU cannot boot it directly" >&2
fi

# --- initrd tree ------------------------------------------------------------------
ROOT=$WORK/root
step "assembling initrd tree"
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,etc/vmlet,proc,sys,dev,run,tmp,root,var/lib,lib/modules/"$KREL",mnt}
chmod 1777 "$ROOT/tmp"
chmod 0700 "$ROOT/root"
ln -s ../run "$ROOT/var/run"

install -m 0755 "$UROOT/bin/busybox" "$ROOT/bin/busybox"
while read -r applet; do
  [[ $applet == bin/busybox || -e $ROOT/$applet || -L $ROOT/$applet ]] && continue
  mkdir -p "$ROOT/$(dirname "$applet")"
  ln -s /bin/busybox "$ROOT/$applet"
done < <("$UROOT/bin/busybox" --list-full | sort)

step "resolving kernel modules: ${MODULES[*]}"
KMOD=$KROOT/lib/modules/$KREL
declare -A MODPATH=() MODSTATE=()
while read -r f; do
  b=${f##*/}; b=${b%%.ko*}; MODPATH[${b//-/_}]=$f
done < <(find "$KMOD/kernel" -type f \( -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz' \))
is_builtin() {
  [[ -f $KMOD/modules.builtin ]] &&
    sed 's|.*/||; s|\.ko$||; s|-|_|g' "$KMOD/modules.builtin" | grep -qx "$1"
}
MODORDER=()
add_module() { # name: depth-first, dependencies first (from the .modinfo "depends=" tag, as depmod does)
  local m=${1//-/_} f deps d
  case ${MODSTATE[$m]:-} in done) return 0 ;; active) die "module dependency cycle at $m" ;; esac
  f=${MODPATH[$m]:-}
  if [[ -z $f ]]; then
    is_builtin "$m" || die "kernel module $m not found in $KPKG"
    MODSTATE[$m]="done"
    return 0
  fi
  MODSTATE[$m]=active
  case $f in # busybox insmod may not read compressed modules: store them plain
    *.ko.xz) xz -dc "$f" ;; *.ko.zst) zstd -dcq "$f" ;; *.ko.gz) gzip -dc "$f" ;; *) cat "$f" ;;
  esac > "$ROOT/lib/modules/$KREL/$m.ko"
  deps=$(tr '\0' '\n' < "$ROOT/lib/modules/$KREL/$m.ko" |
         awk 'index($0, "depends=") == 1 && !seen { print substr($0, 9); seen = 1 }')
  for d in ${deps//,/ }; do add_module "$d"; done
  MODSTATE[$m]="done"
  MODORDER+=("$m")
}
for m in "${MODULES[@]}"; do add_module "$m"; done
for m in "${MODORDER[@]}"; do printf '/lib/modules/%s/%s.ko\n' "$KREL" "$m"; done > "$ROOT/etc/vmlet/modules"
step "modules (load order): ${MODORDER[*]}"

step "adding qemu-ga and its shared libraries"
install -D -m 0755 "$UROOT/usr/sbin/qemu-ga" "$ROOT/usr/sbin/qemu-ga"
LDSO=$UROOT/lib64/ld-linux-x86-64.so.2
[[ -x $LDSO ]] || die "dynamic loader not found in libc6"
LIBPATH="$UROOT/lib/x86_64-linux-gnu:$UROOT/usr/lib/x86_64-linux-gnu"
# `ldd` equivalent, run with the packaged loader against the packaged libraries only.
LDD_OUT=$("$LDSO" --library-path "$LIBPATH" --list "$UROOT/usr/sbin/qemu-ga") || die "ld.so --list qemu-ga failed"
if grep -q 'not found' <<<"$LDD_OUT"; then
  die "qemu-ga needs libraries not in QGA_PKGS: $(grep 'not found' <<<"$LDD_OUT" | tr -s ' \t\n' ' ')"
fi
while read -r lib; do
  rel=${lib#"$UROOT"}
  install -D -m 0755 "$(readlink -f "$lib")" "$ROOT$rel"
done < <(grep -o "$UROOT/[^ ]*" <<<"$LDD_OUT" | sort -u)
[[ -e $ROOT/lib64/ld-linux-x86-64.so.2 ]] || die "dynamic loader missing from the ld.so --list output"

# --- guest files --------------------------------------------------------------------
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$ROOT/etc/passwd"
printf 'root:x:0:\ntty:x:5:\n' > "$ROOT/etc/group"
printf 'vmlet-guest\n' > "$ROOT/etc/hostname"
printf 'export PS1='\''vmlet-guest:\\w# '\''\n' > "$ROOT/etc/profile"
: > "$ROOT/etc/resolv.conf"

cat > "$ROOT/etc/vmlet/udhcpc.script" <<'EOF'
#!/bin/sh
# busybox udhcpc event script
# shellcheck disable=SC2154 # interface, ip, mask, router, dns, ... come from udhcpc
case "$1" in
  deconfig)
    ip link set "$interface" up
    ip -4 addr flush dev "$interface"
    ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} dev "$interface"
    if [ -n "$router" ]; then
      while ip route del default dev "$interface" 2>/dev/null; do :; done
      for r in $router; do ip route add default via "$r" dev "$interface"; break; done
    fi
    : > /etc/resolv.conf
    [ -n "$domain" ] && echo "search $domain" >> /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    echo "VMLET-DHCP $interface $ip" > /dev/console
    ;;
esac
exit 0
EOF
chmod 0755 "$ROOT/etc/vmlet/udhcpc.script"

# qemu-ga's guest-shutdown runs /sbin/shutdown (not a busybox applet).
cat > "$ROOT/sbin/shutdown" <<'EOF'
#!/bin/sh
# Minimal shutdown(8) for qemu-ga guest-shutdown: -r reboot, -H halt, otherwise power off.
action=poweroff
for a in "$@"; do
  case "$a" in -r) action=reboot ;; -H) action=halt ;; esac
done
( sleep 0.2; sync; "$action" -f ) </dev/null >/dev/null 2>&1 &
exit 0
EOF
chmod 0755 "$ROOT/sbin/shutdown"

cat > "$ROOT/init" <<'EOF'
#!/bin/sh
# vmlet test guest init (busybox ash, PID 1).
# Kernel command line: vmlet.test=poweroff | vmlet.test=echo  (see test/images/README.md)
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=linux

mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /dev/shm
ln -sf /proc/self/fd /dev/fd

while read -r m; do
  insmod "$m" || echo "vmlet-init: insmod $m failed"
done < /etc/vmlet/modules

hostname -F /etc/hostname
ip link set lo up

if [ -e /sys/class/net/eth0 ]; then
  udhcpc -i eth0 -t 3 -T 1 -n -q -s /etc/vmlet/udhcpc.script >/run/udhcpc.log 2>&1 </dev/null &
fi

# qemu-ga on the org.qemu.guest_agent.0 virtio-serial port. Port names arrive
# asynchronously from the host, so poll for a few seconds in the background.
has_virtio_serial() {
  for d in /sys/bus/virtio/devices/*/device; do
    [ "$(cat "$d" 2>/dev/null)" = 0x0003 ] && return 0
  done
  return 1
}
start_qga() {
  i=0
  while [ $i -lt 100 ]; do
    for p in /sys/class/virtio-ports/*; do
      [ -r "$p/name" ] || continue
      n=$(cat "$p/name")
      if [ -z "$n" ] || [ ! -c "/dev/${p##*/}" ]; then continue; fi
      mkdir -p /dev/virtio-ports
      [ -e "/dev/virtio-ports/$n" ] || ln -s "../${p##*/}" "/dev/virtio-ports/$n"
    done
    if [ -e /dev/virtio-ports/org.qemu.guest_agent.0 ]; then
      exec qemu-ga -m virtio-serial -p /dev/virtio-ports/org.qemu.guest_agent.0 \
        -t /run -l /run/qemu-ga.log
    fi
    i=$((i + 1))
    sleep 0.1
  done
}
if has_virtio_serial; then
  start_qga </dev/null >/dev/null 2>&1 &
fi

# Leading newline: firmware output before the kernel has no trailing newline.
printf '\nVMLET-READY\n'

mode=
# shellcheck disable=SC2013 # words, not lines
for p in $(cat /proc/cmdline); do
  case "$p" in vmlet.test=*) mode=${p#vmlet.test=} ;; esac
done
case "$mode" in
  poweroff)
    echo VMLET-POWEROFF
    sync
    poweroff -f
    ;;
  echo)
    n=0
    while :; do
      n=$((n + 1))
      echo "VMLET-TICK $n"
      sleep 1
    done
    ;;
esac

while :; do
  setsid cttyhack sh -l
  sleep 1
done
EOF
chmod 0755 "$ROOT/init"

# --- initrd.img -------------------------------------------------------------------
newc_entry() { # name mode(octal) rdevmajor rdevminor ino: one header-only newc record
  local name=$1 mode=$(( 8#$2 )) namesize=$(( ${#1} + 1 )) pad
  printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
    "$5" "$mode" 0 0 1 "$SOURCE_DATE_EPOCH" 0 0 0 "$3" "$4" "$namesize" 0
  printf '%s\0' "$name"
  pad=$(( (4 - (110 + namesize) % 4) % 4 ))
  ((pad)) && head -c "$pad" /dev/zero
  return 0
}

step "writing initrd.img (newc cpio, gzip -n, mtime @$SOURCE_DATE_EPOCH)"
find "$ROOT" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
{
  (cd "$ROOT" && find . -mindepth 1 -printf '%P\n' | sort |
     cpio -o -H newc --owner=0:0 --reproducible --quiet)
  # /dev/console as a device node (needs no root): a second archive the kernel
  # unpacks after the first, so the initial console exists before /init runs.
  newc_entry dev/console 020600 5 1 1048577
  newc_entry TRAILER!!! 0 0 0 0
} | gzip -n -9 > "$OUT/initrd.img"

printf '%s' "$CMDLINE" > "$OUT/cmdline"
write_stamp "$OUT"
chmod 0644 "$OUT"/*

# --- publish atomically -------------------------------------------------------------
step "publishing $DEST"
FINAL=$(mktemp -d "$OUTDIR/.$NAME.XXXXXX")
rmdir "$FINAL"
mv "$OUT" "$FINAL"
chmod 0755 "$FINAL"
if [[ -e $DEST && ! -L $DEST ]]; then mv "$DEST" "$WORK/old-dest"; fi
ln -s "${FINAL##*/}" "$OUTDIR/.$NAME.link.$$"
mv -T "$OUTDIR/.$NAME.link.$$" "$DEST"
for d in "$OUTDIR/.$NAME".*; do
  [[ $d == "$FINAL" ]] || rm -rf "$d"
done

# Drop cached .debs of versions no longer used.
declare -A KEEP=()
for p in "${PKGS[@]}"; do KEEP[$(deb_of "$p")]=1; done
for f in "$DEBS"/*.deb; do [[ -n ${KEEP[$f]:-} ]] || rm -f "$f"; done

step "done: kernel $KREL ($KPKG ${VER[$KPKG]}), initrd $(stat -c %s "$DEST/initrd.img") bytes"
print_outputs
