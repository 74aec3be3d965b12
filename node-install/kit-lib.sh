# Shell functions both builders of a kernel + initramfs share: the guest kit
# (node-install/build-guest-kit.sh) and the test guest (test/images/build-kernel-guest.sh).
# Sourced, not run; part of each builder's input hash. They read the caller's globals: DEST (the
# published output), DEBS (the .deb cache), KMOD (the unpacked kernel's modules dir),
# SOURCE_DATE_EPOCH, and its step and die.
# shellcheck shell=bash

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
