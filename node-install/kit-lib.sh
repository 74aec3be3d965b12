# Shell functions both builders of a kernel + initramfs share: the guest kit
# (node-install/build-guest-kit.sh) and the test guest (test/images/build-kernel-guest.sh); the
# test image builders use publish_dir too (through test/images/publish.sh). Sourced, not run;
# part of the two kernel builders' input hashes. They read the caller's globals: DEST (the
# published output), DEBS (the .deb cache), KMOD, KPKG, KREL (the unpacked kernel), ROOT (the
# initramfs tree), SOURCE_DATE_EPOCH, and its step and die.
# shellcheck shell=bash
# Sourced once (test/images/publish.sh sources it too).
[[ -n ${VMLET_KIT_LIB:-} ]] && return 0
VMLET_KIT_LIB=1

# Cheap fingerprint of everything apt uses to choose candidate versions (stat only).
apt_state() {
  local f files=()
  for f in /var/lib/apt/lists/*_Packages* /var/lib/dpkg/status /etc/apt/sources.list \
           /etc/apt/sources.list.d/* /etc/apt/preferences /etc/apt/preferences.d/*; do
    [[ -e $f ]] && files+=("$f")
  done
  { ((${#files[@]})) && stat -L -c '%n %s %Y' "${files[@]}"; } | sha256sum | cut -c1-64
}

apt_update_once() {
  [[ -z $APT_UPDATED ]] || return 1
  APT_UPDATED=1
  step "apt-get update (package lists missing or stale)"
  apt-get -q update >/dev/null || die "apt-get update failed"
  APT_STATE=$(apt_state)
}

deb_of() { # pkg -> path of the cached .deb for the resolved version (may not exist)
  local f=("$DEBS/${1}_${VER[$1]//:/%3a}_"*.deb)
  printf '%s\n' "${f[0]}"
}

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

is_builtin() {
  [[ -f $KMOD/modules.builtin ]] &&
    sed 's|.*/||; s|\.ko$||; s|-|_|g' "$KMOD/modules.builtin" | grep -qx "$1"
}

# --- initrd.img -----------------------------------------------------------------------------
newc_entry() { # name mode(octal) rdevmajor rdevminor ino: one header-only newc record
  local name=$1 mode=$(( 8#$2 )) namesize=$(( ${#1} + 1 )) pad
  printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
    "$5" "$mode" 0 0 1 "$SOURCE_DATE_EPOCH" 0 0 0 "$3" "$4" "$namesize" 0
  printf '%s\0' "$name"
  pad=$(( (4 - (110 + namesize) % 4) % 4 ))
  ((pad)) && head -c "$pad" /dev/zero
  return 0
}

stamp_get() {
  if [[ -f $DEST/stamp ]]; then
    awk -v k="$1" 'index($0, k "=") == 1 { print substr($0, length(k) + 2); exit }' "$DEST/stamp"
  fi
}

# index_modules: every module file of the unpacked kernel (KMOD), by name. Then add_module NAME
# copies NAME and, first, its dependencies into ROOT/lib/modules/KREL (plain, uncompressed),
# appending each to MODORDER once (MODSTATE remembers what was added) and its direct
# dependencies to MODDEPS (what modules.dep is written from).
declare -A MODPATH=() MODSTATE=() MODDEPS=()
MODORDER=()
index_modules() {
  local f b
  while read -r f; do
    b=${f##*/}; b=${b%%.ko*}; MODPATH[${b//-/_}]=$f
  done < <(find "$KMOD/kernel" -type f \( -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz' \))
}
add_module() { # name: depth first, dependencies first (the .modinfo "depends=" tag, as depmod)
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
  module_sig_enforced || strip_module_sig "$ROOT/lib/modules/$KREL/$m.ko"
  deps=$(tr '\0' '\n' < "$ROOT/lib/modules/$KREL/$m.ko" |
         awk 'index($0, "depends=") == 1 && !seen { print substr($0, 9); seen = 1 }')
  deps=${deps//-/_}
  MODDEPS[$m]=${deps//,/ }
  for d in ${MODDEPS[$m]}; do add_module "$d"; done
  MODSTATE[$m]="done"
  MODORDER+=("$m")
}

# Module signatures. A kernel that does not enforce them (no CONFIG_MODULE_SIG_FORCE; no lockdown:
# the VMs boot their kernel directly, never under EFI Secure Boot) still checks a signature it
# finds, and under TCG that costs: the guest kit's modules loaded in 0.78-1.2 s signed and
# 0.52-0.71 s without (6 boots each, bench/guest-kit-boot.ts). Unsigned, the kernel
# loads them and marks itself tainted (E), which changes nothing for a pod. A kernel that
# enforces them keeps them signed.
MODSIG_ENFORCED=''
module_sig_enforced() { # the unpacked kernel's config, read once
  if [[ -z $MODSIG_ENFORCED ]]; then
    local config=${KMOD%/lib/modules/*}/boot/config-$KREL
    # No config to read: assume enforced (signed modules load either way).
    if [[ ! -f $config ]] || grep -qx 'CONFIG_MODULE_SIG_FORCE=y' "$config"; then MODSIG_ENFORCED=y; else MODSIG_ENFORCED=n; fi
  fi
  [[ $MODSIG_ENFORCED == y ]]
}

# strip_module_sig FILE: drops the signature appended to a module, in place. The file ends with
# the PKCS#7 signature, then struct module_signature (12 bytes, the last 4 the signature's
# length, big-endian), then the 28-byte marker "~Module signature appended~\n".
strip_module_sig() {
  local f=$1 size len
  tail -c 28 "$f" | cmp -s - <(printf '~Module signature appended~\n') || return 0
  size=$(stat -c %s "$f")
  len=$(tail -c 32 "$f" | head -c 4 | od -An -tu1 | awk '{ print $1 * 16777216 + $2 * 65536 + $3 * 256 + $4 }')
  (( len > 0 && size - 40 - len > 0 )) || die "$f: malformed module signature (length $len of $size bytes)"
  truncate -s $((size - 40 - len)) "$f"
  is_elf "$f" || die "$f: not an ELF module once its signature is dropped"
}

# publish_dir SRC OUTDIR NAME WORK
#   Moves the finished build SRC to a fresh OUTDIR/.NAME.XXXXXX and points the symlink
#   OUTDIR/NAME at it with one rename, so a reader sees the old build or the new one, never half
#   of either; then removes older builds. A real directory left at OUTDIR/NAME by an older layout
#   is moved into WORK (removed with it). WORK and lock files (.NAME.lock) are left where they
#   are. Sets PUBLISHED to the new build's directory.
publish_dir() {
  local src=$1 outdir=$2 name=$3 work=$4
  local dest=$outdir/$name final d
  final=$(mktemp -d "$outdir/.$name.XXXXXX")
  rmdir "$final"
  mv "$src" "$final"
  if [[ -e $dest && ! -L $dest ]]; then mv "$dest" "$work/old-dest"; fi
  ln -s "${final##*/}" "$outdir/.$name.link.$$"
  mv -T "$outdir/.$name.link.$$" "$dest"
  for d in "$outdir/.$name".*; do
    case $d in "$final" | "$work" | *.lock) ;; *) rm -rf "$d" ;; esac
  done
  PUBLISHED=$final
}
