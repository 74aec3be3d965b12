#!/usr/bin/env bash
# Build vmlet's tiny test guest (kernel + initrd) from Debian packages.
#
#   test/images/build-kernel-guest.sh [OUTDIR]      (default OUTDIR=<repo>/.cache/test-images)
#
# Produces OUTDIR/kernel-guest/{vmlinux,vmlinuz,initrd.img,cmdline,stamp}.
# Packages are fetched with `apt-get download` into $VMLET_DEB_CACHE (default
# /var/cache/vmlet/test-debs, shared by every checkout) and unpacked with
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
# Functions shared with node-install/build-guest-kit.sh.
HERE_LIB=$(dirname "$SCRIPT")/../../node-install/kit-lib.sh
# shellcheck source=../../node-install/kit-lib.sh
. "$HERE_LIB"
REPO_ROOT=$(cd "$(dirname "$SCRIPT")/../.." && pwd)
OUTDIR=${1:-$REPO_ROOT/.cache/test-images}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
NAME=kernel-guest
DEST=$OUTDIR/$NAME
# Downloaded .debs are kept per node, not per checkout: every clone (and CI's fresh one) reuses
# them, and builds work while the package mirror does not answer.
DEBS=${VMLET_DEB_CACHE:-/var/cache/vmlet/test-debs}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}
export SOURCE_DATE_EPOCH

KERNEL_META=linux-image-amd64
# Kernel modules to put in the initrd (dependencies are added automatically).
# MODULES are loaded by /init before VMLET-READY (the NIC must exist for DHCP);
# LATE_MODULES in the background after it: CD-ROM/ISO9660 and the SATA (ahci) and
# virtio-scsi buses for the NoCloud seed, sd_mod for SCSI/SATA disks, virtio_balloon for
# live memory resizing (UpdateContainerResources). The disk drivers come
# after sr_mod/sd_mod so their (synchronous, see README) scan binds the devices directly.
# No af_packet: CONFIG_PACKET=y (built in) in Debian's kernel, as are raw ICMP sockets.
MODULES=(virtio_pci virtio_console virtio_blk virtio_net virtio_rng)
LATE_MODULES=(isofs sr_mod sd_mod ahci virtio_scsi virtio_balloon)
# NINEP_MODULES: the 9p client (9pnet_virtio, 9p and what they need: 9pnet, netfs, fscache),
# stored xz'd and loaded by /etc/vmlet/cloud-config.sh only when the cloud-config mounts a 9p
# share, so a boot without shares does not pay for them.
NINEP_MODULES=(9pnet_virtio 9p)
# VIRTIOFS_MODULES: the virtiofs client (and fuse), the same way, for a virtiofs share.
VIRTIOFS_MODULES=(virtiofs)
# qemu-ga and the packages providing the libraries ld.so lists for it.
QGA_PKGS=(qemu-guest-agent libc6 libgcc-s1 libglib2.0-0 libnuma1 libudev1 liburing2 libpcre2-8-0)
# ISC dhclient (vmlet.dhcp=dhclient, vmlet.dhcp6=dhclient) and the packages providing the
# libraries ld.so lists for it (bookworm: libc only). Not its dhclient-script: the guest has
# its own. Stored xz-compressed in the initrd and unpacked by the guest only when asked for.
DHCLIENT_PKGS=(isc-dhcp-client libc6)
# Dynamically linked programs taken from the packages: path (in the package and in the
# initrd) and the package list that must provide its libraries.
declare -A ELF_BINS=([usr/sbin/qemu-ga]=QGA_PKGS [sbin/dhclient]=DHCLIENT_PKGS)
# quiet: fewer slow serial writes; panic=-1: a crashed guest reboots at once (QEMU -no-reboot
# or libvirt on_reboot=destroy then ends it); cryptomgr.notests + rodata=off: skip crypto
# self-tests and the W+X/RO page walk, ~0.3 s less under TCG.
CMDLINE="console=ttyS0 quiet panic=-1 cryptomgr.notests rodata=off"
OUTPUTS=(vmlinux vmlinuz initrd.img cmdline stamp)

step() { printf '==> %s\n' "$*"; }
# shellcheck source=publish.sh
. "$(dirname "$SCRIPT")/publish.sh"
die() { printf 'build-kernel-guest: error: %s\n' "$*" >&2; exit 1; }

print_outputs() {
  local f
  for f in vmlinux vmlinuz initrd.img cmdline; do printf '%s\n' "$DEST/$f"; done
}



outputs_present() {
  local f
  for f in "${OUTPUTS[@]}"; do [[ -s $DEST/$f ]] || return 1; done
}

SCRIPT_SHA=$(cat "$SCRIPT" "$HERE_LIB" | sha256sum | cut -c1-64)
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

# --- resolve package versions -------------------------------------------------------
step "resolving package versions ($KERNEL_META)"
declare -A VER=()
resolve_versions() {
  KPKG=$(apt-cache depends "$KERNEL_META" 2>/dev/null |
         awk '$1 == "Depends:" && $2 ~ /^linux-image-/ && k == "" { k = $2 } END { print k }') || true
  [[ -n $KPKG ]] || return 1
  mapfile -t PKGS < <(printf '%s\n' "$KPKG" busybox-static "${QGA_PKGS[@]}" "${DHCLIENT_PKGS[@]}" |
                      awk '!seen[$0]++')
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

step "unpacking busybox-static, qemu-guest-agent and isc-dhcp-client (+ libraries)"
UROOT=$WORK/userland
mkdir -p "$UROOT"
for p in "${PKGS[@]}"; do [[ $p == "$KPKG" ]] || dpkg-deb -x "$(deb_of "$p")" "$UROOT"; done

OUT=$WORK/out
mkdir -p "$OUT"

# --- vmlinux ----------------------------------------------------------------------
step "extracting vmlinux from vmlinuz-$KREL (xz payload)"
cp "$KROOT/boot/vmlinuz-$KREL" "$OUT/vmlinuz"
extract_vmlinux "$OUT/vmlinuz" "$OUT/vmlinux" || die "no xz-compressed ELF found in vmlinuz-$KREL"
if command -v readelf >/dev/null && ! readelf -n "$OUT/vmlinux" | grep -q 'note type: (0x00000012)'; then
  echo "warning: vmlinux has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); QEMU cannot boot it directly" >&2
fi

# --- initrd tree ------------------------------------------------------------------
ROOT=$WORK/root
step "assembling initrd tree"
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,usr/lib/vmlet,etc/vmlet,proc,sys,dev,run,tmp,root,var/lib/dhcp,lib/modules/"$KREL",mnt}
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
index_modules
for m in "${MODULES[@]}"; do add_module "$m"; done
for m in "${MODORDER[@]}"; do printf '/lib/modules/%s/%s.ko\n' "$KREL" "$m"; done > "$ROOT/etc/vmlet/modules"
step "modules (load order): ${MODORDER[*]}"
MODORDER=()   # MODSTATE is kept: modules already loaded early are not listed again
for m in "${LATE_MODULES[@]}"; do add_module "$m"; done
for m in "${MODORDER[@]}"; do printf '/lib/modules/%s/%s.ko\n' "$KREL" "$m"; done > "$ROOT/etc/vmlet/modules.late"
step "late modules (load order): ${MODORDER[*]}"
# share_modules FS MODULE...: FS's client modules (and what they need) stored xz'd in
# /usr/lib/vmlet/FS (0.8 MB plain, 0.2 MB so for 9p), as dhclient is: every boot unpacks the
# initramfs, few pods mount a share. The same fixed xz settings as dhclient.xz. Listed, in load
# order, in /etc/vmlet/modules.FS for /etc/vmlet/cloud-config.sh.
share_modules() {
  local fs=$1 m
  shift
  MODORDER=()
  for m in "$@"; do add_module "$m"; done
  mkdir -p "$ROOT/usr/lib/vmlet/$fs"
  for m in "${MODORDER[@]}"; do
    xz -T1 --check=crc32 --lzma2=preset=9e,dict=4MiB -c "$ROOT/lib/modules/$KREL/$m.ko" > "$ROOT/usr/lib/vmlet/$fs/$m.ko.xz"
    rm "$ROOT/lib/modules/$KREL/$m.ko"
    printf '/usr/lib/vmlet/%s/%s.ko.xz\n' "$fs" "$m"
  done > "$ROOT/etc/vmlet/modules.$fs"
  step "$fs modules (load order, stored xz'd): ${MODORDER[*]}"
}
share_modules 9p "${NINEP_MODULES[@]}"
share_modules virtiofs "${VIRTIOFS_MODULES[@]}"

step "adding qemu-ga, dhclient and their shared libraries"
LDSO=$UROOT/lib64/ld-linux-x86-64.so.2
[[ -x $LDSO ]] || die "dynamic loader not found in libc6"
LIBPATH="$UROOT/lib/x86_64-linux-gnu:$UROOT/usr/lib/x86_64-linux-gnu"
LIBS=()
for bin in $(printf '%s\n' "${!ELF_BINS[@]}" | sort); do
  [[ -f $UROOT/$bin ]] || die "/$bin not found in ${ELF_BINS[$bin]}"
  # `ldd` equivalent, run with the packaged loader against the packaged libraries only.
  LDD_OUT=$("$LDSO" --library-path "$LIBPATH" --list "$UROOT/$bin") || die "ld.so --list /$bin failed"
  if grep -q 'not found' <<<"$LDD_OUT"; then
    die "/$bin needs libraries not in ${ELF_BINS[$bin]}: $(grep 'not found' <<<"$LDD_OUT" | tr -s ' \t\n' ' ')"
  fi
  mapfile -t -O "${#LIBS[@]}" LIBS < <(grep -o "$UROOT/[^ ]*" <<<"$LDD_OUT")
done
while read -r lib; do
  rel=${lib#"$UROOT"}
  install -D -m 0755 "$(readlink -f "$lib")" "$ROOT$rel"
done < <(printf '%s\n' "${LIBS[@]}" | sort -u)
[[ -e $ROOT/lib64/ld-linux-x86-64.so.2 ]] || die "dynamic loader missing from the ld.so --list output"
install -D -m 0755 "$UROOT/usr/sbin/qemu-ga" "$ROOT/usr/sbin/qemu-ga"
# dhclient (2.7 MB) would add ~20 % to the kernel's initramfs unpacking on every boot (about
# 50 ms under TCG); xz'd it is stored almost as is and /etc/vmlet/dhclient.sh unpacks it when
# a vmlet.dhcp* parameter asks for it. Single-threaded xz with a fixed dictionary: the same
# bytes every build, and busybox's unxz needs only 4 MiB for it (busybox has no x86 BCJ filter).
xz -T1 --check=crc32 --lzma2=preset=9e,dict=4MiB -c "$UROOT/sbin/dhclient" > "$ROOT/usr/lib/vmlet/dhclient.xz"

# --- guest files --------------------------------------------------------------------
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$ROOT/etc/passwd"
printf 'root:x:0:\ntty:x:5:\n' > "$ROOT/etc/group"
printf 'vmlet-guest\n' > "$ROOT/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' > "$ROOT/etc/hosts"
printf 'export PS1='\''vmlet-guest:\\w# '\''\n' > "$ROOT/etc/profile"
: > "$ROOT/etc/resolv.conf"
mkdir -p "$ROOT/www"

# Shell helpers shared by /init, late.sh and the udhcpc script.
cat > "$ROOT/etc/vmlet/lib.sh" <<'EOF'
# shellcheck shell=sh
# say LINE: print a marker line on the console. /init creates /run/vmlet/prompt just before
# it starts the console shell; the first marker after that starts with a newline, so a
# marker never shares a line with the shell prompt.
say() {
  if [ -e /run/vmlet/prompt ] && rm /run/vmlet/prompt 2>/dev/null; then
    printf '\n%s\n' "$*" > /dev/console
  else
    printf '%s\n' "$*" > /dev/console
  fi
}
# say_early LINE: say, for a marker that may come before VMLET-READY: until /init has printed
# that (/run/vmlet/ready), start with a newline, as firmware output may not end with one.
say_early() {
  [ -e /run/vmlet/ready ] || [ -e /run/vmlet/prompt ] || printf '\n' > /dev/console
  say "$@"
}
# commas WORDS...: the words joined with commas ("" when there are none).
commas() (
  set -f
  # shellcheck disable=SC2048,SC2086 # word splitting wanted
  set -- $*
  IFS=,
  printf '%s' "$*"
)
# getv KEY FILE: the value of KEY in a flattened (yaml.awk) file, as flattened (escaped).
getv() { awk -v k="$1" 'index($0, k "=") == 1 { print substr($0, length(k) + 2); exit }' "$2"; }
# getl KEY FILE: the items KEY.0, KEY.1, ... one a line.
getl() {
  awk -v k="$1." 'index($0, k) == 1 { r = substr($0, length(k) + 1)
    if (r ~ /^[0-9]+=/) { sub(/^[0-9]+=/, "", r); print r } }' "$2"
}
# getraw KEY FILE: the value of KEY exactly (yaml.awk's \\ and \n undone), no newline added.
getraw() {
  awk -v k="$1" 'index($0, k "=") == 1 {
    n = split(substr($0, length(k) + 2), a, /\\/); printf "%s", a[1]
    for (i = 2; i <= n; i++) {
      if (a[i] == "" && i < n) { printf "\\%s", a[i + 1]; i++ }
      else if (substr(a[i], 1, 1) == "n") printf "\n%s", substr(a[i], 2)
      else printf "\\%s", a[i]
    }
    exit }' "$2"
}
lower() { printf '%s' "$1" | tr '[:upper:]' '[:lower:]'; }
# shq VALUE: VALUE quoted for sh.
shq() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
# lease_done IF IP ROUTERS DNS SEARCH HOSTNAME MTU [quiet]: what every DHCP client script does
# once the address is set: resolv.conf (unless the seed gave DNS), /run/vmlet/dhcp.env, and the
# VMLET-DHCP marker (not with "quiet": a renewal).
lease_done() {
  if [ ! -e /run/vmlet/dns.static ]; then
    {
      for d in $4; do echo "nameserver $d"; done
      [ -n "$5" ] && echo "search $5"
    } > /etc/resolv.conf
  fi
  {
    echo "dhcp_interface=$(shq "$1")"
    echo "dhcp_ip=$(shq "$2")"
    echo "dhcp_router=$(shq "$3")"
    echo "dhcp_dns=$(shq "$4")"
    echo "dhcp_search=$(shq "$5")"
    echo "dhcp_hostname=$(shq "$6")"
    echo "dhcp_mtu=$(shq "$7")"
  } > /run/vmlet/dhcp.env
  [ "${8:-}" = quiet ] || say "VMLET-DHCP $1 $2 router=$(commas "$3") dns=$(commas "$4") search=$(commas "$5") hostname=$6 mtu=$7"
}
EOF

# YAML subset -> "path=value" lines, for meta-data, network-config and user-data.
cat > "$ROOT/etc/vmlet/yaml.awk" <<'EOF'
# Flatten the YAML subset cloud-init NoCloud files use into "path=value" lines, e.g.
#   ethernets.eth0.addresses.0=10.89.0.5/16
#   ethernets.eth0.routes.0.via=10.89.0.1
#   mounts.0.1=/etc/app                       (a list of lists: mounts: [[tag, path, ...]])
# Handles block mappings and sequences (also "- key: v" items and unindented "- " items
# under a key), flow collections ({a: 1, b: [x, y]}, also spanning lines, so JSON works),
# single/double quoted scalars (double-quoted: the \\ \" \n \t \r escapes), block scalars
# (| and >, with chomping - + and an indentation digit) and "# comments". Not handled:
# anchors, tags, multi-line plain or quoted scalars, multiple documents. Sequence items are
# numbered from 0. A value is one line: a backslash in it is written \\ and a newline \n
# (getraw in /etc/vmlet/lib.sh reads it back).
function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
function dq(s,    i, c, out) { # the body of a double-quoted scalar, escapes resolved
  if (!index(s, "\\")) return s
  out = ""
  for (i = 1; i <= length(s); i++) {
    c = substr(s, i, 1)
    if (c == "\\" && i < length(s)) {
      c = substr(s, ++i, 1)
      if (c == "n") c = "\n"; else if (c == "t") c = "\t"; else if (c == "r") c = "\r"
      else if (c != "\\" && c != "\"" && c != "/") c = "\\" c
    }
    out = out c
  }
  return out
}
function unquote(s) {
  s = trim(s)
  if (s ~ /^".*"$/) s = dq(substr(s, 2, length(s) - 2))
  else if (s ~ /^'.*'$/) { s = substr(s, 2, length(s) - 2); gsub(/''/, "'", s) }
  return s
}
function esc(s,    n, a, i, out) { # no gsub: its replacement's backslashes differ between awks
  if (index(s, "\\")) { n = split(s, a, /\\/); out = a[1]; for (i = 2; i <= n; i++) out = out "\\\\" a[i]; s = out }
  if (index(s, "\n")) { n = split(s, a, /\n/); out = a[1]; for (i = 2; i <= n; i++) out = out "\\n" a[i]; s = out }
  return s
}
function emitraw(path, v) { print path "=" esc(v) }
function emit(path, v) { emitraw(path, unquote(v)) }
function rep(s, n,    out) { out = ""; while (n-- > 0) out = out s; return out }
# --- block scalars: "key: |" / "- >-" and the lines after it, indented more than CURIND ---
# BLK = "|" or ">" while collecting, BCH = chomping ("", "-", "+"), BIND = content indent
# (0 until the first non-blank line), BL[1..BN] = the lines with that indent removed.
function blockstart(path, h) {
  BLK = substr(h, 1, 1); BPATH = path; BN = 0; BCH = ""; BIND = 0
  if (h ~ /[-+]/) BCH = substr(h, match(h, /[-+]/), 1)
  if (h ~ /[1-9]/) BIND = CURIND + substr(h, match(h, /[1-9]/), 1)
}
function blockline(l,    n) { # l: a raw line; 0 when it ends the block
  match(l, /^ */); n = RLENGTH
  if (l ~ /^[ \t]*$/) { BL[++BN] = substr(l, BIND + 1); if (n <= BIND || BIND == 0) BL[BN] = ""; return 1 }
  if (BIND == 0) { if (n <= CURIND) return 0; BIND = n }
  if (n < BIND) return 0
  BL[++BN] = substr(l, BIND + 1)
  return 1
}
# Written piece by piece (esc'd), not joined first: joining thousands of lines is quadratic.
function blockend(    i, last, nl, more, prevmore, started) {
  last = BN
  while (last > 0 && BL[last] == "") last--
  printf "%s=", BPATH
  if (BLK == "|") {
    for (i = 1; i <= last; i++) printf "%s%s", (i > 1 ? "\\n" : ""), esc(BL[i])
  } else { # folded: a single line break between two plain lines becomes a space
    nl = 0; started = 0; prevmore = 0
    for (i = 1; i <= last; i++) {
      if (BL[i] == "") { nl++; continue }
      more = BL[i] ~ /^[ \t]/
      if (!started) printf "%s", rep("\\n", nl)
      else if (nl == 0 && !more && !prevmore) printf " "
      else if (!more && !prevmore) printf "%s", rep("\\n", nl)
      else printf "%s", rep("\\n", nl + 1)
      printf "%s", esc(BL[i]); started = 1; nl = 0; prevmore = more
    }
  }
  if (last > 0 && BCH != "-") printf "\\n"
  if (BCH == "+") printf "%s", rep("\\n", BN - last)
  printf "\n"
  BLK = ""
}
function join(p, k) { return p == "" ? k : p "." k }
# Strip a trailing comment: "#" at the start or after a blank, outside quotes.
function nocomment(s,    i, c, q, out) {
  if (!index(s, "#")) return s # a long line (base64 content) is not walked byte by byte
  q = ""; out = ""
  for (i = 1; i <= length(s); i++) {
    c = substr(s, i, 1)
    if (q != "") { if (c == q) q = "" }
    else if (c == "\"" || c == "'") q = c
    else if (c == "#" && (i == 1 || substr(s, i - 1, 1) ~ /[ \t]/)) break
    out = out c
  }
  return out
}
# Bracket depth change of a line, outside quotes.
function depth(s,    i, c, q, d) {
  q = ""; d = 0
  for (i = 1; i <= length(s); i++) {
    c = substr(s, i, 1)
    if (q != "") { if (c == q) q = "" }
    else if (c == "\"" || c == "'") q = c
    else if (c == "[" || c == "{") d++
    else if (c == "]" || c == "}") d--
  }
  return d
}
# --- flow parser over the global string F, position P ---
function ws() { while (P <= length(F) && substr(F, P, 1) ~ /[ \t\n]/) P++ }
function scalar(stop,    c, q, s) { # up to an unquoted char in stop
  ws(); s = ""
  c = substr(F, P, 1)
  if (c == "\"" || c == "'") {
    q = c; s = c; P++
    while (P <= length(F)) {
      c = substr(F, P, 1); s = s c; P++
      if (c == "\\" && q == "\"") { s = s substr(F, P, 1); P++; continue }
      if (c == q) break
    }
    return s
  }
  while (P <= length(F) && index(stop, substr(F, P, 1)) == 0) { s = s substr(F, P, 1); P++ }
  return trim(s)
}
function fvalue(path,    c) {
  ws(); c = substr(F, P, 1)
  if (c == "{") fmap(path)
  else if (c == "[") fseq(path)
  else emit(path, scalar(",]}"))
}
function fmap(path,    k) {
  P++
  for (;;) {
    ws()
    if (P > length(F)) return
    if (substr(F, P, 1) == "}") { P++; return }
    if (substr(F, P, 1) == ",") { P++; continue }
    k = unquote(scalar(":,}"))
    ws()
    if (substr(F, P, 1) == ":") { P++; fvalue(join(path, k)) }
    else emit(join(path, k), "")
  }
}
function fseq(path,    n) {
  P++; n = 0
  for (;;) {
    ws()
    if (P > length(F)) return
    if (substr(F, P, 1) == "]") { P++; return }
    if (substr(F, P, 1) == ",") { P++; continue }
    fvalue(join(path, n)); n++
  }
}
function flow(path, text) { F = text; P = 1; fvalue(path) }
# --- block structure: stack of open keys/items, I = indent, K = key, T = kind ---
function curpath(    i, p) { p = ""; for (i = 1; i <= D; i++) p = join(p, K[i]); return p }
function value(path, v) { # a value after "key:" or "- ": scalar, block scalar, or the start of a flow collection
  v = trim(v)
  if (v ~ /^[|>][-+1-9]*$/) { blockstart(path, v); return }
  if (v ~ /^[\[{]/) {
    if (depth(v) > 0) { PEND = v; PPATH = path; return }
    flow(path, v)
  } else emit(path, v)
}
function keyline(ind, s,    k, v) { # s = "key: value" or "key:" at indent ind
  match(s, /^("[^"]*"|'[^']*'|[^:]*[^: \t]):([ \t]|$)/)
  k = substr(s, 1, RLENGTH); sub(/[ \t]$/, "", k); sub(/:$/, "", k); k = unquote(k)
  v = trim(substr(s, RLENGTH + 1))
  while (D > 0 && I[D] >= ind) D--
  if (v == "") { D++; I[D] = ind; K[D] = k; T[D] = "key"; return }
  CURIND = ind
  value(join(curpath(), k), v)
}
function iskey(s) { return s ~ /^("[^"]*"|'[^']*'|[^:]*[^: \t]):([ \t]|$)/ && s !~ /^[\[{"']/ || s ~ /^("[^"]*"|'[^']*'):([ \t]|$)/ }
{
  sub(/\r$/, "")
  if (BLK != "") { if (blockline($0)) next; blockend() }
  line = nocomment($0)
  if (PEND != "") { # inside a multi-line flow collection
    PEND = PEND "\n" line
    if (depth(PEND) <= 0) { flow(PPATH, PEND); PEND = "" }
    next
  }
  if (line ~ /^[ \t]*$/ || line ~ /^(---|\.\.\.)[ \t]*$/ || line ~ /^%/) next
  match(line, /^ */); ind = RLENGTH
  s = trim(line)
  while (s ~ /^-([ \t]|$)/) { # a sequence item (possibly "- - x" or "- key: v")
    while (D > 0 && I[D] > ind) D--
    if (D > 0 && I[D] == ind && T[D] == "key") eff = ind + 0.5  # "key:\n- item" at the same indent
    else { while (D > 0 && I[D] >= ind) D--; eff = ind }
    p = curpath(); n = N[p] + 0; N[p] = n + 1
    D++; I[D] = eff; K[D] = n; T[D] = "item"
    rest = substr(s, 2); match(rest, /^[ \t]*/)
    CURIND = ind; ind = ind + 1 + RLENGTH; s = trim(rest)
    if (s == "") next
  }
  if (iskey(s)) keyline(ind, s)
  else value(curpath(), s)
}
END { if (PEND != "") flow(PPATH, PEND); if (BLK != "") blockend() }
EOF

cat > "$ROOT/etc/vmlet/udhcpc.script" <<'EOF'
#!/bin/sh
# busybox udhcpc event script. udhcpc runs with -q: it exits after the first lease, so
# "renew" never happens in practice. If the NoCloud network-config already configured the
# interface statically (/run/vmlet/static.IF), the lease only adds its address: the
# static addresses, routes and MTU stay. resolv.conf is left alone if the network-config
# gave DNS settings (/run/vmlet/dns.static).
# shellcheck disable=SC2154 # interface, ip, mask, router, dns, ... come from udhcpc
. /etc/vmlet/lib.sh
static=
[ -e "/run/vmlet/static.$interface" ] && static=1
case "$1" in
  deconfig)
    ip link set "$interface" up
    [ -n "$static" ] || ip -4 addr flush dev "$interface"
    ;;
  bound|renew)
    [ -n "$mtu" ] && [ -z "$static" ] && ip link set dev "$interface" mtu "$mtu"
    [ -n "$static" ] || ip -4 addr flush dev "$interface"
    ip addr replace "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} dev "$interface"
    if [ -n "$staticroutes" ] && [ -z "$static" ]; then
      # Option 121 replaces the router option (RFC 3442): on-link routes first, so the
      # gateways of the others are reachable (a /32 lease has no on-link subnet).
      while ip route del default dev "$interface" 2>/dev/null; do :; done
      for pass in link via; do
        set -- $staticroutes
        while [ $# -ge 2 ]; do
          if [ "$2" = 0.0.0.0 ]; then
            [ $pass = link ] && ip route replace "$1" dev "$interface"
          else
            [ $pass = via ] && ip route replace "$1" via "$2" dev "$interface"
          fi
          shift 2
        done
      done
    elif [ -n "$router" ] && { [ -z "$static" ] || [ -z "$(ip route show default)" ]; }; then
      while ip route del default dev "$interface" 2>/dev/null; do :; done
      for r in $router; do ip route add default via "$r" dev "$interface"; break; done
    fi
    lease_done "$interface" "$ip" "$router" "$dns" "${search:-$domain}" "$hostname" "$mtu"
    ;;
esac
exit 0
EOF
chmod 0755 "$ROOT/etc/vmlet/udhcpc.script"

# ISC dhclient: vmlet.dhcp=dhclient (IPv4) and vmlet.dhcp6=dhclient (DHCPv6, IA_NA).
cat > "$ROOT/etc/vmlet/dhclient.sh" <<'EOF'
#!/bin/sh
# Started by /init in the background when vmlet.dhcp=dhclient ($1 = dhclient) and/or
# vmlet.dhcp6=dhclient ($2 = dhclient). One-shot (-1) clients on eth0; the lease is applied by
# /etc/vmlet/dhclient.script. Logs: /run/dhclient.log, /run/dhclient6.log.
. /etc/vmlet/lib.sh
R=/run/vmlet
v4= v6=
[ "$1" = dhclient ] && v4=1
[ "$2" = dhclient ] && v6=1

# The initrd has dhclient xz'd (see build-kernel-guest.sh): unpack it at the lowest priority,
# so it does not slow down /init and late.sh.
if [ ! -x /sbin/dhclient ]; then
  renice 19 -p $$ >/dev/null
  if xz -dc /usr/lib/vmlet/dhclient.xz > /sbin/dhclient.tmp && chmod 0755 /sbin/dhclient.tmp &&
     mv /sbin/dhclient.tmp /sbin/dhclient; then
    renice 0 -p $$ >/dev/null
  else
    say "vmlet-init: cannot unpack /usr/lib/vmlet/dhclient.xz"
    [ -n "$v4" ] && { say "VMLET-NODHCP eth0"; : > $R/dhcp.done; }
    [ -n "$v6" ] && say "VMLET-NODHCP6 eth0"
    exit 1
  fi
fi
# dhclient blocks in getrandom() until the kernel's random pool is initialised (about 1 s
# under TCG without a virtio-rng device): wait for that here, so that VMLET-DHCPSTART to
# VMLET-DHCP times the DHCP exchange only.
head -c 1 /dev/random > /dev/null

if [ -n "$v4" ]; then
  (
    say_early "VMLET-DHCPSTART eth0 dhclient"
    dhclient -4 -1 -v -cf /etc/vmlet/dhclient.conf -sf /etc/vmlet/dhclient.script \
      -lf /var/lib/dhcp/dhclient.eth0.leases -pf /run/dhclient.eth0.pid eth0 \
      >/run/dhclient.log 2>&1 || say "VMLET-NODHCP eth0"
    : > $R/dhcp.done
  ) &
fi

if [ -n "$v6" ]; then
  (
    ip link set eth0 up
    # dhclient -6 sends from the link-local address: wait until DAD is done with it (the
    # flags in /proc/net/if_inet6 lose IFA_F_TENTATIVE, 0x40; scope 20 is link). About 1-2 s.
    ok= i=0
    while [ $i -lt 100 ]; do
      while read -r _ _ _ scope flags dev; do
        [ "$dev" = eth0 ] && [ "$scope" = 20 ] && [ $((0x$flags & 0x40)) = 0 ] && ok=1
      done < /proc/net/if_inet6
      [ -n "$ok" ] && break
      sleep 0.1
      i=$((i + 1))
    done
    if [ -z "$ok" ]; then
      echo "eth0 has no usable IPv6 link-local address" > /run/dhclient6.log
      say "VMLET-NODHCP6 eth0"
      exit 1
    fi
    dhclient -6 -1 -v -cf /etc/vmlet/dhclient6.conf -sf /etc/vmlet/dhclient.script \
      -lf /var/lib/dhcp/dhclient6.eth0.leases -pf /run/dhclient6.eth0.pid eth0 \
      >/run/dhclient6.log 2>&1 || say "VMLET-NODHCP6 eth0"
  ) &
fi
wait
EOF
chmod 0755 "$ROOT/etc/vmlet/dhclient.sh"

# timeout 3: dhclient -1 sends about three DISCOVERs and gives up after about 4 s, as udhcpc -t 3 -T 1 does.
cat > "$ROOT/etc/vmlet/dhclient.conf" <<'EOF'
# dhclient -4 for vmlet.dhcp=dhclient (see /etc/vmlet/dhclient.sh).
option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;
request subnet-mask, broadcast-address, routers, domain-name-servers, domain-search,
	domain-name, host-name, interface-mtu, rfc3442-classless-static-routes;
timeout 3;
retry 60;
initial-interval 1;
backoff-cutoff 2;
EOF
cat > "$ROOT/etc/vmlet/dhclient6.conf" <<'EOF'
# dhclient -6 for vmlet.dhcp6=dhclient (see /etc/vmlet/dhclient.sh). With -1, timeout bounds
# the whole exchange (Solicit, Advertise, Request, Reply).
request dhcp6.name-servers, dhcp6.domain-search;
timeout 10;
EOF

cat > "$ROOT/etc/vmlet/dhclient.script" <<'EOF'
#!/bin/sh
# ISC dhclient event script (-sf), in place of Debian's dhclient-script (which needs more
# than busybox has). IPv4: applies the lease as udhcpc.script does (the same static
# network-config rules), plus the classless static routes (option 121, which replaces the
# routers option: RFC 3442), and prints the same VMLET-DHCP marker and /run/vmlet/dhcp.env.
# DHCPv6: adds the address (a /128: the on-link prefix route comes from the RA) and prints
# VMLET-DHCP6. Renewals are applied without a marker.
# shellcheck disable=SC2154 # reason, interface, new_*, old_* come from dhclient
. /etc/vmlet/lib.sh
static=
[ -e "/run/vmlet/static.$interface" ] && static=1

# bits IP MASK: the prefix length of a dotted netmask.
bits() { p=$(ipcalc -p "$1" "${2:-255.255.255.0}"); echo "${p#PREFIX=}"; }
# nodots WORDS: the words without their trailing dots (dhclient prints domain-search as "a.b.").
nodots() { echo "$*" | sed 's/\.\( \|$\)/\1/g'; }
# classless: option 121 ("24 192 168 10 192 168 1 1 ...": width, significant octets of the
# destination, router) as "DEST/WIDTH ROUTER" lines.
classless() (
  # shellcheck disable=SC2046 # word splitting wanted
  set -- $(echo "$new_rfc3442_classless_static_routes" | tr , ' ')
  while [ $# -gt 0 ]; do
    w=$1
    shift
    n=$(((w + 7) / 8))
    [ "$w" -le 32 ] && [ $# -ge $((n + 4)) ] || { echo "bad option 121 at width $w" >&2; exit 1; }
    d= i=0
    while [ $i -lt 4 ]; do
      if [ $i -lt $n ]; then o=$1; shift; else o=0; fi
      d=$d${d:+.}$o
      i=$((i + 1))
    done
    echo "$d/$w $1.$2.$3.$4"
    shift 4
  done
)
# set_default ROUTER: the default route, unless a static network-config already gave one.
set_default() {
  if [ -z "$static" ] || [ -z "$(ip route show default)" ]; then
    while ip route del default dev "$interface" 2>/dev/null; do :; done
    ip route add default via "$1" dev "$interface"
  fi
}
# wait_dad ADDR: until the IPv6 address is no longer tentative (at most about 3 s).
wait_dad() {
  i=0
  while [ $i -lt 30 ] && ip -6 addr show dev "$interface" | grep -q "inet6 $1/.*tentative"; do
    sleep 0.1
    i=$((i + 1))
  done
}

case "$reason" in
  PREINIT)
    ip link set "$interface" up
    [ -n "$static" ] || ip -4 addr flush dev "$interface"
    ;;
  BOUND|REBOOT|RENEW|REBIND)
    if [ -n "$old_ip_address" ] && [ "$old_ip_address" != "$new_ip_address" ]; then
      ip -4 addr del "$old_ip_address/$(bits "$old_ip_address" "$old_subnet_mask")" dev "$interface"
    fi
    mtu=$new_interface_mtu
    [ -n "$mtu" ] && [ -z "$static" ] && ip link set dev "$interface" mtu "$mtu"
    case "$reason" in BOUND|REBOOT) [ -n "$static" ] || ip -4 addr flush dev "$interface" ;; esac
    ip addr replace "$new_ip_address/$(bits "$new_ip_address" "$new_subnet_mask")" \
      ${new_broadcast_address:+broadcast "$new_broadcast_address"} dev "$interface"
    routes=$(classless)
    if [ -n "$routes" ]; then
      # On-link routes (router 0.0.0.0) first: the other routers may be reachable only so.
      echo "$routes" | while read -r dst via; do
        [ "$via" = 0.0.0.0 ] && ip route replace "$dst" dev "$interface"
      done
      echo "$routes" | while read -r dst via; do
        case "$dst $via" in
          *" 0.0.0.0") ;;
          "0.0.0.0/0 "*) set_default "$via" ;;
          *) ip route replace "$dst" via "$via" dev "$interface" ;;
        esac
      done
    elif [ -n "$new_routers" ]; then
      for r in $new_routers; do set_default "$r"; break; done
    fi
    dns=$new_domain_name_servers
    search=$(nodots "${new_domain_search:-$new_domain_name}")
    quiet=quiet
    case "$reason" in BOUND|REBOOT) quiet= ;; esac
    lease_done "$interface" "$new_ip_address" "$new_routers" "$dns" "$search" "$new_host_name" "$mtu" $quiet
    ;;
  EXPIRE|FAIL|RELEASE|STOP)
    if [ -n "$old_ip_address" ]; then
      ip -4 addr del "$old_ip_address/$(bits "$old_ip_address" "$old_subnet_mask")" dev "$interface"
    fi
    ;;
  PREINIT6)
    ip link set "$interface" up
    ;;
  BOUND6|REBOOT6|RENEW6|REBIND6)
    if [ -n "$old_ip6_address" ] && [ "$old_ip6_address" != "$new_ip6_address" ]; then
      ip -6 addr del "$old_ip6_address/${old_ip6_prefixlen:-128}" dev "$interface"
    fi
    ip -6 addr replace "$new_ip6_address/${new_ip6_prefixlen:-128}" dev "$interface"
    {
      echo "dhcp6_interface=$(shq "$interface")"
      echo "dhcp6_ip=$(shq "$new_ip6_address")"
      echo "dhcp6_dns=$(shq "$new_dhcp6_name_servers")"
      echo "dhcp6_search=$(shq "$(nodots "$new_dhcp6_domain_search")")"
    } > /run/vmlet/dhcp6.env
    case "$reason" in BOUND6|REBOOT6)
      wait_dad "$new_ip6_address"
      say "VMLET-DHCP6 $interface $new_ip6_address dns=$(commas "$new_dhcp6_name_servers")" ;;
    esac
    ;;
  EXPIRE6|RELEASE6|STOP6)
    [ -n "$old_ip6_address" ] && ip -6 addr del "$old_ip6_address/${old_ip6_prefixlen:-128}" dev "$interface"
    ;;
esac
exit 0
EOF
chmod 0755 "$ROOT/etc/vmlet/dhclient.script"

# The two cloud-config modules a cloud image's cloud-init runs for vmlet's volumes.
cat > "$ROOT/etc/vmlet/cloud-config.sh" <<'EOF'
#!/bin/sh
# vmlet test guest: write_files and mounts of a flattened (yaml.awk) #cloud-config, in
# cloud-init's order: write_files (not deferred), mounts, then deferred write_files. Started
# by late.sh in the background once the seed is mounted. Markers: see test/images/README.md.
# Usage: cloud-config.sh FLAT
. /etc/vmlet/lib.sh
R=/run/vmlet
FLAT=$1
META=$R/user-data.meta   # FLAT without the (long) write_files contents: quicker to search
grep -v '^write_files\.[0-9]*\.content=' "$FLAT" > "$META"
indexes() { sed -n "s/^$1\\.\\([0-9]*\\)[.=].*/\\1/p" "$FLAT" | sort -un; }

# write_file N: write_files entry N (path, content, encoding, permissions, owner, append).
WRITES=0
write_file() {
  p=write_files.$1
  path=$(getraw "$p.path" "$META")
  [ -n "$path" ] || { say "VMLET-WRITE write_files.$1 failed (no path)"; return; }
  enc=$(lower "$(getv "$p.encoding" "$META")")
  perm=$(getv "$p.permissions" "$META")
  owner=$(getv "$p.owner" "$META")
  case $(lower "$(getv "$p.append" "$META")") in true|yes|on) append=1 ;; *) append= ;; esac
  case $enc in
    b64|base64) dec='base64 -d' ;;
    gz+b64|gz+base64|gzip+b64|gzip+base64) dec='base64 -d | gunzip -c' ;;
    ''|text/plain) dec=cat ;;
    *) say "VMLET-WRITE $path failed (encoding $enc)"; return ;;
  esac
  mkdir -p "$(dirname "$path")"
  if [ -n "$append" ]; then
    getraw "$p.content" "$FLAT" | eval "$dec" >> "$path"
  else
    getraw "$p.content" "$FLAT" | eval "$dec" > "$path.vmlet-tmp" && mv -f "$path.vmlet-tmp" "$path"
  fi
  # shellcheck disable=SC2181 # the pipeline's status
  if [ $? -ne 0 ]; then
    rm -f "$path.vmlet-tmp"
    say "VMLET-WRITE $path failed"
    return
  fi
  chmod "${perm:-0644}" "$path" && chown "${owner:-root:root}" "$path" ||
    say "vmlet-init: $path: permissions ${perm:-0644} or owner ${owner:-root:root} not set"
  WRITES=$((WRITES + 1))
  say "VMLET-WRITE $path"
}
write_files() { # deferred: "true" for the deferred entries, else the others
  for n in $(indexes write_files); do
    case $(lower "$(getv "write_files.$n.defer" "$META")") in true|yes|on) d=true ;; *) d=false ;; esac
    [ "$d" = "$1" ] && write_file "$n"
  done
}

# mount_one N: mounts entry N, [fs_spec, fs_file, fs_vfstype, fs_mntops, ...], 9p or virtiofs.
MOUNTS=0
mount_one() {
  p=mounts.$1
  spec=$(getraw "$p.0" "$META")
  path=$(getraw "$p.1" "$META")
  type=$(getraw "$p.2" "$META")
  opts=$(getraw "$p.3" "$META")
  [ -n "$spec" ] && [ -n "$path" ] || return
  if [ "$type" != 9p ] && [ "$type" != virtiofs ]; then
    say "VMLET-MOUNT $spec $path skipped (type ${type:-auto})"
    return
  fi
  # fstab-only options go: nofail, defaults, auto, _netdev, x-systemd.*, comment=*.
  o=
  for w in $(echo "$opts" | tr , ' '); do
    case $w in
      noauto) say "VMLET-MOUNT $spec $path skipped (noauto)"; return ;;
      nofail|defaults|auto|_netdev|x-systemd.*|comment=*) ;;
      *) o=${o:+$o,}$w ;;
    esac
  done
  if [ ! -e "$R/$type.loaded" ]; then
    while read -r m; do # xz'd in the initrd (busybox insmod reads plain modules only)
      ko=$R/${m##*/}; ko=${ko%.xz}
      unxz -c "$m" > "$ko" && insmod "$ko" || echo "insmod $m failed"
      rm -f "$ko"
    done < "/etc/vmlet/modules.$type"
    : > "$R/$type.loaded"
  fi
  mkdir -p "$path"
  if mount -t "$type" ${o:+-o "$o"} "$spec" "$path"; then
    MOUNTS=$((MOUNTS + 1))
    say "VMLET-MOUNT $spec $path ok"
  else
    say "VMLET-MOUNT $spec $path failed"
  fi
}

write_files false
for n in $(indexes mounts); do mount_one "$n"; done
write_files true
say "VMLET-CLOUDCONFIG write_files=$WRITES mounts=$MOUNTS"
EOF
chmod 0755 "$ROOT/etc/vmlet/cloud-config.sh"

# After VMLET-READY, in the background: storage modules, the NoCloud seed, DNS, httpd, ping.
cat > "$ROOT/etc/vmlet/late.sh" <<'EOF'
#!/bin/sh
# vmlet test guest: everything that must not delay VMLET-READY. Started by /init in the
# background right after the marker. See test/images/README.md for the markers.
. /etc/vmlet/lib.sh
R=/run/vmlet
SEED=/mnt/cidata

while read -r m; do
  insmod "$m" || say "vmlet-init: insmod $m failed"
done < /etc/vmlet/modules.late
# insmod returns after the module's async probes (libata port probe, SCSI scan) finished,
# so every CD-ROM and disk attached at boot is a block device by now.

# An ISO9660 file system labelled cidata (any case) on a CD-ROM, else on a disk (or
# partition): the label is the volume id of the primary volume descriptor (sector 16,
# "CD001" at byte 1, volume id at bytes 40..71).
find_seed() {
  for b in /sys/class/block/sr* /sys/class/block/vd* /sys/class/block/sd* \
           /sys/class/block/hd* /sys/class/block/xvd*; do
    n=${b##*/}
    [ -b "/dev/$n" ] || continue
    [ "$(dd if="/dev/$n" bs=1 skip=32769 count=5 2>/dev/null)" = CD001 ] || continue
    label=$(dd if="/dev/$n" bs=1 skip=32808 count=32 2>/dev/null | tr -d ' \0')
    [ "$(lower "$label")" = cidata ] && { echo "/dev/$n"; return 0; }
  done
  return 1
}
# seedfile NAME: NAME on the mounted seed; also finds plain ISO9660 names (meta_dat).
seedfile() {
  for f in "$1" "$(echo "$1" | tr - _)" "$(echo "$1" | tr - _ | cut -c1-8)"; do
    [ -f "$SEED/$f" ] && { echo "$SEED/$f"; return 0; }
  done
  return 1
}
set_hostname() {
  hostname "$1"
  echo "$1" > /etc/hostname
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\t%s\n' "$1" > /etc/hosts
  say "VMLET-HOSTNAME $1"
}

# Apply the netplan v2 network-config: for each ethernets.<id>, find the interface by
# match.macaddress (else match.name, else <id>); addresses, gateway4/6, routes and mtu are
# applied, nameservers collected for resolv.conf.
NC_NS='' NC_SEARCH='' STATIC=''
apply_network_config() {
  flat=$R/network-config.flat
  awk -f /etc/vmlet/yaml.awk "$1" | sed 's/^network\.//' > "$flat"
  v=$(getv version "$flat")
  if [ "$v" != 2 ]; then
    say "VMLET-NETCONFIG unsupported version=$v"
    return
  fi
  # shellcheck disable=SC2013 # interface ids are single words
  for id in $(sed -n 's/^ethernets\.\([^.=]*\)\..*/\1/p' "$flat" | awk '!seen[$0]++'); do
    p=ethernets.$id
    mac=$(lower "$(getv "$p.match.macaddress" "$flat")")
    dev=
    if [ -n "$mac" ]; then
      for i in /sys/class/net/*; do
        [ "$(cat "$i/address" 2>/dev/null)" = "$mac" ] && { dev=${i##*/}; break; }
      done
    else
      dev=$(getv "$p.match.name" "$flat")
      [ -n "$dev" ] || dev=$id
    fi
    NC_NS="$NC_NS $(getl "$p.nameservers.addresses" "$flat")"
    NC_SEARCH="$NC_SEARCH $(getl "$p.nameservers.search" "$flat")"
    if [ -z "$dev" ] || [ ! -e "/sys/class/net/$dev" ]; then
      say "VMLET-NETCONFIG $id nomatch mac=$mac"
      continue
    fi
    addrs=$(getl "$p.addresses" "$flat")
    mtu=$(getv "$p.mtu" "$flat")
    gw=$(getv "$p.gateway4" "$flat")
    gw6=$(getv "$p.gateway6" "$flat")
    [ -n "$addrs" ] && { : > "$R/static.$dev"; STATIC=1; }
    [ -n "$mtu" ] && ip link set dev "$dev" mtu "$mtu"
    ip link set dev "$dev" up
    for a in $addrs; do ip addr replace "$a" dev "$dev"; done
    routes=
    n=0
    while :; do
      to=$(getv "$p.routes.$n.to" "$flat")
      via=$(getv "$p.routes.$n.via" "$flat")
      [ -n "$to$via" ] || break
      metric=$(getv "$p.routes.$n.metric" "$flat")
      case $to in
        default|0.0.0.0/0) gw=$via; to=default ;;
        ::/0) gw6=$via; to=default ;;
        *) routes="$routes $to->$via"
           fam=-4; case $via$to in *:*) fam=-6 ;; esac
           ip "$fam" route replace "$to" ${via:+via "$via"} dev "$dev" onlink ${metric:+metric "$metric"} ;;
      esac
      n=$((n + 1))
    done
    # onlink: the gateway may be outside the address's prefix (e.g. a /32 address).
    [ -n "$gw" ] && ip -4 route replace default via "$gw" dev "$dev" onlink
    [ -n "$gw6" ] && ip -6 route replace default via "$gw6" dev "$dev" onlink
    say "VMLET-NETCONFIG $dev mac=$(cat "/sys/class/net/$dev/address") addresses=$(commas "$addrs")" \
        "gateway=$gw${gw6:+,$gw6} routes=$(commas "$routes") mtu=$(cat "/sys/class/net/$dev/mtu")"
  done
}

# --- NoCloud seed ---
SEED_HOST=
if seeddev=$(find_seed); then
  mkdir -p "$SEED"
  if mount -t iso9660 -o ro "$seeddev" "$SEED"; then
    say "VMLET-CIDATA $seeddev"
    if f=$(seedfile meta-data); then
      awk -f /etc/vmlet/yaml.awk "$f" > "$R/meta-data.flat"
      SEED_HOST=$(getv local-hostname "$R/meta-data.flat")
      [ -n "$SEED_HOST" ] || SEED_HOST=$(getv hostname "$R/meta-data.flat")
      [ -n "$SEED_HOST" ] && set_hostname "$SEED_HOST"
      iid=$(getv instance-id "$R/meta-data.flat")
      [ -n "$iid" ] && say "VMLET-INSTANCE $iid"
    fi
    if f=$(seedfile user-data) && [ -s "$f" ]; then
      first=$(head -n 1 "$f" | tr -d '\r')
      say "VMLET-USERDATA $first"
      # A cloud-config (not a MIME multipart, not a script): its write_files and mounts, in
      # the background so that the 9p modules do not delay the network and VMLET-HTTPD.
      case $first in
        '#cloud-config'|'#cloud-config '*)
          awk -f /etc/vmlet/yaml.awk "$f" > "$R/user-data.flat"
          /etc/vmlet/cloud-config.sh "$R/user-data.flat" </dev/null >>"$R/cloud-config.log" 2>&1 &
          ;;
      esac
    fi
    if f=$(seedfile network-config); then
      apply_network_config "$f"
    fi
  else
    say "VMLET-CIDATA $seeddev mount-failed"
  fi
else
  say "VMLET-CIDATA none"
fi

# DNS from the network-config wins over DHCP; write it now so a later lease keeps it.
NC_NS=$(commas "$NC_NS") NC_SEARCH=$(commas "$NC_SEARCH")
if [ -n "$NC_NS$NC_SEARCH" ]; then
  : > "$R/dns.static"
  {
    for d in $(echo "$NC_NS" | tr , ' '); do echo "nameserver $d"; done
    [ -n "$NC_SEARCH" ] && echo "search $(echo "$NC_SEARCH" | tr , ' ')"
  } > /etc/resolv.conf
fi

# Wait for udhcpc (bound or given up: /init writes dhcp.done) unless the seed already
# gave the addresses, the DNS settings and the hostname.
if [ -z "$STATIC" ] || [ ! -e "$R/dns.static" ] || [ -z "$SEED_HOST" ]; then
  i=0
  while [ ! -e "$R/dhcp.done" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
fi
dhcp_dns='' dhcp_search='' dhcp_hostname=''
# shellcheck disable=SC1091
[ -f "$R/dhcp.env" ] && . "$R/dhcp.env"
if [ -e "$R/dns.static" ]; then
  say "VMLET-DNS nameservers=$NC_NS search=$NC_SEARCH"
else
  say "VMLET-DNS nameservers=$(commas "$dhcp_dns") search=$(commas "$dhcp_search")"
fi
[ -z "$SEED_HOST" ] && [ -n "$dhcp_hostname" ] && set_hostname "$dhcp_hostname"

# --- httpd: GET / answers "vmlet-guest <hostname>" ---
echo "vmlet-guest $(hostname)" > /www/index.html
httpd -p 80 -h /www </dev/null >/dev/null 2>&1
i=0
while [ $i -lt 100 ]; do   # LISTEN (0A) on port 80 (0050), IPv4 or IPv6 socket
  if grep -q '^ *[0-9]*: [0-9A-F]*:0050 [0-9A-F]*:0000 0A' /proc/net/tcp /proc/net/tcp6 2>/dev/null; then
    say "VMLET-HTTPD 80"
    break
  fi
  sleep 0.05
  i=$((i + 1))
done
[ $i -lt 100 ] || say "VMLET-HTTPD fail"

# --- vmlet.test=ping:<ip>[,<ip>...] ---
# shellcheck disable=SC2013 # words, not lines
for p in $(cat /proc/cmdline); do
  case "$p" in
    vmlet.test=ping:*)
      for ip in $(echo "${p#vmlet.test=ping:}" | tr , ' '); do
        if ping -c 3 -W 2 "$ip" > "$R/ping-$ip.log" 2>&1; then
          say "VMLET-PING $ip ok"
        else
          say "VMLET-PING $ip fail"
        fi
      done
      ;;
  esac
done
: > "$R/late.done"
EOF
chmod 0755 "$ROOT/etc/vmlet/late.sh"

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
# Kernel command line: vmlet.test=poweroff | echo | ticker | ping:<ip>, vmlet.dhcp=udhcpc |
# udhcpc-broadcast | dhclient | none, vmlet.dhcp6=dhclient  (see test/images/README.md)
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=linux

mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /dev/shm /run/vmlet
mount -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /dev/shm
ln -sf /proc/self/fd /dev/fd
. /etc/vmlet/lib.sh

while read -r m; do
  insmod "$m" || echo "vmlet-init: insmod $m failed"
done < /etc/vmlet/modules

hostname -F /etc/hostname
ip link set lo up

read -r cmdline < /proc/cmdline
dhcp=udhcpc dhcp6=
for p in $cmdline; do
  case "$p" in
    vmlet.dhcp=*) dhcp=${p#vmlet.dhcp=} ;;
    vmlet.dhcp6=*) dhcp6=${p#vmlet.dhcp6=} ;;
  esac
done

# DHCP on eth0 in the background, with the client vmlet.dhcp= names (udhcpc by default) and
# DHCPv6 if vmlet.dhcp6=dhclient. /run/vmlet/dhcp.done tells late.sh the IPv4 client is finished.
if [ -e /sys/class/net/eth0 ]; then
  case "$dhcp" in
    udhcpc|udhcpc-broadcast)
      (
        b=
        [ "$dhcp" = udhcpc-broadcast ] && b=-B
        say_early "VMLET-DHCPSTART eth0 $dhcp"
        udhcpc -i eth0 -t 3 -T 1 -n -q $b -O mtu -O search -O staticroutes -s /etc/vmlet/udhcpc.script \
          >/run/udhcpc.log 2>&1 </dev/null || say "VMLET-NODHCP eth0"
        : > /run/vmlet/dhcp.done
      ) &
      ;;
    dhclient) ;;
    *)
      [ "$dhcp" = none ] || say_early "vmlet-init: unknown vmlet.dhcp=$dhcp: no DHCP"
      : > /run/vmlet/dhcp.done
      ;;
  esac
  case "$dhcp6" in
    ''|dhclient) ;;
    *) say_early "vmlet-init: unknown vmlet.dhcp6=$dhcp6: no DHCPv6" ;;
  esac
  if [ "$dhcp" = dhclient ] || [ "$dhcp6" = dhclient ]; then
    /etc/vmlet/dhclient.sh "$dhcp" "$dhcp6" </dev/null >/dev/null 2>&1 &
  fi
else
  : > /run/vmlet/dhcp.done
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
: > /run/vmlet/ready

# Storage modules, NoCloud seed, DNS, httpd, vmlet.test=ping: (markers on the console).
/etc/vmlet/late.sh </dev/null &

mode=
for p in $cmdline; do
  case "$p" in vmlet.test=*) mode=${p#vmlet.test=} ;; esac
done
case "$mode" in
  poweroff)
    echo VMLET-POWEROFF
    sync
    poweroff -f
    ;;
  echo|ticker)
    # ticker: every 0.1 s, for the fault tests' check that no console line is lost or doubled.
    t=1
    [ "$mode" = ticker ] && t=0.1
    n=0
    while :; do
      n=$((n + 1))
      echo "VMLET-TICK $n"
      sleep $t
    done
    ;;
esac

while :; do
  : > /run/vmlet/prompt
  setsid cttyhack sh -l
  sleep 1
done
EOF
chmod 0755 "$ROOT/init"


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
chmod 0755 "$OUT"
publish_dir "$OUT" "$OUTDIR" "$NAME" "$WORK"

# Drop cached .debs of versions no longer used.
declare -A KEEP=()
for p in "${PKGS[@]}"; do KEEP[$(deb_of "$p")]=1; done
for f in "$DEBS"/*.deb; do [[ -n ${KEEP[$f]:-} ]] || rm -f "$f"; done

step "done: kernel $KREL ($KPKG ${VER[$KPKG]}), initrd $(stat -c %s "$DEST/initrd.img") bytes"
print_outputs
