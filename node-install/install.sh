#!/usr/bin/env bash
# vmlet node installer (Debian 12 / Ubuntu 22.04+), run as root.
# Idempotent: each step prints one line, "ok" (already fine) or "changed".
set -euo pipefail

# Packages vmlet needs on the node. Add new ones here.
PACKAGES=(
  qemu-system-x86 qemu-utils            # the VMs
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
  containernetworking-plugins           # CNI bridge/host-local/portmap/loopback
  tini                                  # child subreaper for libvirtd (no systemd)
  ovmf                                  # UEFI firmware
  genisoimage                           # cloud-init NoCloud seed ISOs (cidata)
  iproute2
  dnsmasq-base                          # per-pod DHCP server for the VM (src/net/dhcp.ts)
  golang-go cpio xz-utils               # the guest kit: vmlet-agent (Go), initramfs (build-guest-kit.sh)
)
# Only with --with-test-deps: what the test suite needs beyond a node (test image builds).
TEST_PACKAGES=(python3 docker-registry skopeo apache2-utils mtools syslinux libxml2-utils iputils-ping containerd runc busybox-static golang-github-docker-spdystream-dev golang-github-gorilla-websocket-dev)
# Only when systemd is PID 1 (it ships units, users, qemu.conf, AppArmor profiles).
SYSTEMD_PACKAGES=(libvirt-daemon-system)
NODE_MIN_MAJOR=20
# The guest kit (node-install/build-guest-kit.sh): config.yaml's guestKitDir default.
GUEST_KIT_DIR=/usr/local/lib/vmlet/guest

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

SKIP_VMLET=0
TEST_DEPS=0
usage() {
  cat <<EOF
Usage: $(basename "$0") [--skip-vmlet] [--with-test-deps] [--help]

Prepares this node for vmlet: apt packages, libvirt (libvirtd/virtlogd
running), state directories, a default CNI config, and (unless
--skip-vmlet) builds vmlet from $REPO and installs
the guest kit sandboxed pods boot from ($GUEST_KIT_DIR),
/usr/local/bin/vmlet, /etc/vmlet/config.yaml, /etc/crictl.yaml and
the vmlet systemd unit, then runs vmlet: through systemd when it is PID 1,
otherwise as a detached daemon (pid in /run/vmlet/vmlet.pid, log in
/var/log/vmlet/vmlet.log; restarted when this run rebuilt it). Safe to re-run.

  --skip-vmlet      do everything except building/installing/running vmlet itself
                    (and its guest kit, $GUEST_KIT_DIR)
  --with-test-deps  also install what the test suite needs (npm test uses this)
  --help        show this help
EOF
}
for a in "$@"; do
  case "$a" in
    --skip-vmlet) SKIP_VMLET=1 ;;
    --with-test-deps) TEST_DEPS=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $a" >&2; usage >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || die "must run as root"
if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
  die "this installer supports Debian 12 / Ubuntu 22.04+ (apt/dpkg) only"
fi

INSTALL_LOG=$VMLET_LOG_DIR/install.log
mkdir -p "$VMLET_LOG_DIR"

# run_logged DESC CMD...: run CMD with output to the install log; on failure
# show the log tail and die.
run_logged() {
  local desc=$1; shift
  { printf '\n=== %s: %s\n' "$(date -Is)" "$*"; } >>"$INSTALL_LOG"
  if ! "$@" </dev/null >>"$INSTALL_LOG" 2>&1; then
    tail -n 25 "$INSTALL_LOG" | sed 's/^/    | /' >&2
    die "$desc failed (full log: $INSTALL_LOG)"
  fi
}

# install_file SRC DST MODE: copy only if DST differs. Sets WROTE=1 if written.
install_file() {
  local src=$1 dst=$2 mode=$3
  WROTE=0
  if [ -f "$dst" ] && cmp -s "$src" "$dst"; then
    if [ "$(stat -c %a "$dst")" != "$mode" ]; then chmod "$mode" "$dst"; WROTE=1; fi
    return 0
  fi
  mkdir -p "$(dirname "$dst")"
  install -m "$mode" "$src" "$dst.vmlet-tmp"
  mv -f "$dst.vmlet-tmp" "$dst"
  WROTE=1
}

# ------------------------------------------------------------------ Node.js
step_node() {
  local v major
  command -v node >/dev/null 2>&1 ||
    die "Node.js not found: vmlet needs Node.js ${NODE_MIN_MAJOR}+ (install it first, e.g. from NodeSource or your distro; this installer does not)"
  v=$(node --version 2>/dev/null) || die "'node --version' failed: vmlet needs Node.js ${NODE_MIN_MAJOR}+"
  major=${v#v}; major=${major%%.*}
  if ! [[ $major =~ ^[0-9]+$ ]] || [ "$major" -lt "$NODE_MIN_MAJOR" ]; then
    die "Node.js $v found, but vmlet needs Node.js ${NODE_MIN_MAJOR}+ (this installer does not install Node.js)"
  fi
  step_done node "$v at $(command -v node)"
}

# ----------------------------------------------------------------- packages
pkg_installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }
pkg_has_candidate() {
  local c
  c=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2; exit}')
  [ -n "$c" ] && [ "$c" != "(none)" ]
}
apt_lists_empty() { ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; }

step_packages() {
  local want=("${PACKAGES[@]}") missing=() p update=0
  if have_systemd; then want+=("${SYSTEMD_PACKAGES[@]}"); fi
  if [ "$TEST_DEPS" -eq 1 ]; then want+=("${TEST_PACKAGES[@]}"); fi
  for p in "${want[@]}"; do pkg_installed "$p" || missing+=("$p"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    if apt_lists_empty; then update=1; else
      for p in "${missing[@]}"; do pkg_has_candidate "$p" || { update=1; break; }; done
    fi
    if [ "$update" -eq 1 ]; then
      run_logged "apt-get update" apt-get -o DPkg::Lock::Timeout=300 update
      changed "apt-get update"
    fi
    # docker-registry (a test dependency) would start a registry on :5000 on all interfaces
    # under systemd: the tests run their own, so keep the packaged service from ever starting.
    if have_systemd && printf '%s\n' "${missing[@]}" | grep -qx docker-registry; then
      systemctl mask docker-registry.service >/dev/null 2>&1 && changed "masked docker-registry.service"
    fi
    run_logged "apt-get install ${missing[*]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "${missing[@]}"
    changed "installed ${missing[*]}"
  fi
  step_done packages "${#want[@]} installed"
}

# ----------------------------------------------------- libvirt preparation
apparmor_enabled() {
  if command -v aa-status >/dev/null 2>&1; then
    aa-status --enabled >/dev/null 2>&1 && return 0
    return 1
  fi
  [ -d /sys/kernel/security/apparmor ] &&
    [ "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" = Y ] &&
    [ -n "$(head -c1 /sys/kernel/security/apparmor/profiles 2>/dev/null)" ]
}
selinux_enabled() {
  if command -v selinuxenabled >/dev/null 2>&1; then selinuxenabled && return 0; fi
  [ -f /sys/fs/selinux/enforce ]
}

# set_conf_keys FILE KEY=VALUE...: make FILE contain exactly one active
# 'KEY = VALUE' line per key: an existing active line is replaced (extra
# active duplicates dropped), else the first commented-out example ("#KEY = ...", no space after #)
# is replaced, else the line is appended. Everything else is kept.
# Prints "updated" if the file changed.
set_conf_keys() {
  local file=$1; shift
  local tmp="$file.vmlet-tmp"
  [ -f "$file" ] || printf '%s\n' \
    '# libvirt QEMU driver configuration (created by vmlet node-install).' \
    '# See https://libvirt.org/kbase/qemu-conf.html (upstream qemu.conf) for all keys.' >"$file"
  awk -v kvs="$*" '
    BEGIN { n = split(kvs, a, " "); for (i = 1; i <= n; i++) { p = index(a[i], "="); k = substr(a[i], 1, p - 1); val[k] = substr(a[i], p + 1); keys[i] = k } nk = n }
    { lines[NR] = $0 }
    END {
      for (i = 1; i <= nk; i++) {
        k = keys[i]; act = 0; com = 0
        for (j = 1; j <= NR; j++) {
          if (lines[j] ~ ("^[ \t]*" k "[ \t]*=")) { if (!act) act = j; else drop[j] = 1 }
          else if (!com && lines[j] ~ ("^#" k "[ \t]*=")) com = j
        }
        line = k " = " val[k]
        if (act) lines[act] = line
        else if (com) lines[com] = line
        else extra = extra line "\n"
      }
      for (j = 1; j <= NR; j++) if (!(j in drop)) print lines[j]
      printf "%s", extra
    }' "$file" >"$tmp"
  if cmp -s "$file" "$tmp"; then rm -f "$tmp"; else
    chmod --reference="$file" "$tmp" 2>/dev/null || true
    mv -f "$tmp" "$file"; echo updated
  fi
}

step_libvirt_prep() {
  if have_systemd; then
    step_done libvirt-prep "systemd: done by libvirt-daemon-system"
    return
  fi
  local g d kvs
  for g in kvm libvirt-qemu; do
    getent group "$g" >/dev/null || { groupadd --system "$g"; changed "group $g"; }
  done
  if ! getent passwd libvirt-qemu >/dev/null; then
    useradd --system --gid kvm --groups libvirt-qemu --no-create-home \
      --home-dir /var/lib/libvirt --shell /usr/sbin/nologin --comment "Libvirt Qemu" libvirt-qemu
    changed "user libvirt-qemu"
  fi
  for d in /var/log/libvirt /var/lib/libvirt/qemu; do
    [ -d "$d" ] || { mkdir -p "$d"; changed "$d"; }
  done
  mkdir -p /etc/libvirt
  kvs=('user="root"' 'group="root"')
  # No usable MAC framework: tell libvirt explicitly not to look for one.
  if ! apparmor_enabled && ! selinux_enabled; then kvs+=('security_driver="none"'); fi
  if [ -n "$(set_conf_keys /etc/libvirt/qemu.conf "${kvs[@]}")" ]; then
    changed "qemu.conf ${kvs[*]}"
    RESTART_LIBVIRTD_HINT=1
  fi
  step_done libvirt-prep "qemu.conf ${kvs[*]}"
}

# ------------------------------------------------------------- state dirs
ensure_dir() {
  local d=$1 mode=$2
  if [ ! -d "$d" ]; then
    mkdir -p "$d"; chmod "$mode" "$d"; changed "$d"
  elif [ "$(stat -c %a "$d")" != "$mode" ]; then
    chmod "$mode" "$d"; changed "chmod $mode $d"
  fi
}
step_state_dirs() {
  ensure_dir /var/lib/vmlet 711
  ensure_dir /run/vmlet 755
  ensure_dir /var/log/vmlet 755
  ensure_dir /etc/vmlet 755
  step_done state-dirs
}

# -------------------------------------------------------------------- CNI
CNI_DIR=/etc/cni/net.d
CNI_FILE=$CNI_DIR/10-vmlet-bridge.conflist
step_cni() {
  local existing
  existing=''
  if [ -d "$CNI_DIR" ]; then
    existing=$(find "$CNI_DIR" -maxdepth 1 -type f \( -name '*.conf' -o -name '*.conflist' -o -name '*.json' \) | LC_ALL=C sort | head -n1 || true)
  fi
  if [ -n "$existing" ]; then
    step_done cni "using $existing"
    return
  fi
  mkdir -p "$CNI_DIR"
  # The network tests run this very file (test/integration/net-matrix.test.ts).
  install -m 644 "$HERE/10-vmlet-bridge.conflist" "$CNI_FILE.vmlet-tmp"
  mv -f "$CNI_FILE.vmlet-tmp" "$CNI_FILE"
  changed "wrote $CNI_FILE"
  step_done cni
}

# -------------------------------------------------------------- guest kit
# What sandboxed pods boot from (kernel, initramfs, vmlet-agent): built from Debian packages
# and src/guest/agent by build-guest-kit.sh, which does nothing when its inputs are unchanged.
# The tests build their own (test/prepare.sh: <repo>/.cache/guest-kit).
step_guest_kit() {
  local before after
  before=$(readlink "$GUEST_KIT_DIR" 2>/dev/null || true)
  run_logged "node-install/build-guest-kit.sh $GUEST_KIT_DIR" bash "$HERE/build-guest-kit.sh" "$GUEST_KIT_DIR"
  after=$(readlink "$GUEST_KIT_DIR" 2>/dev/null || true)
  [ "$before" = "$after" ] || changed "built $(cat "$GUEST_KIT_DIR/VERSION")"
  step_done guest-kit "$GUEST_KIT_DIR, version $(cat "$GUEST_KIT_DIR/VERSION")"
}

# ------------------------------------------------------------------ vmlet
step_vmlet_build() {
  [ -f "$REPO/package.json" ] || die "$REPO/package.json not found: cannot build vmlet (use --skip-vmlet)"
  cd "$REPO"
  # npm writes node_modules/.package-lock.json last (package-lock.json can be
  # a few ms newer than the node_modules directory after a plain npm install).
  local installed=node_modules/.package-lock.json
  [ -e "$installed" ] || installed=node_modules
  if [ -f package-lock.json ]; then
    if [ ! -d node_modules ] || [ package-lock.json -nt "$installed" ]; then
      run_logged "npm ci" npm_ci
      mkdir -p node_modules
      if [ -e node_modules/.package-lock.json ]; then touch node_modules/.package-lock.json; else touch node_modules; fi
      changed "npm ci"
    fi
  elif [ ! -d node_modules ]; then
    run_logged "npm install" npm install --no-audit --no-fund
    changed "npm install"
  fi
  # Rebuild when anything that goes into dist/ is newer than the last build.
  local stamp=dist/.vmlet-build-stamp newer=''
  if [ -f "$stamp" ] && [ -f dist/main.js ]; then
    newer=$(find src proto package.json package-lock.json tsconfig*.json node_modules \
      -maxdepth 0 -newer "$stamp" -print -quit 2>/dev/null || true)
    [ -n "$newer" ] || newer=$(find src proto -path src/gen -prune -o -type f -newer "$stamp" -print -quit 2>/dev/null || true)
  else
    newer=missing
  fi
  if [ -n "$newer" ]; then
    run_logged "npm run build" npm run build
    [ -f dist/main.js ] || die "npm run build did not produce $REPO/dist/main.js"
    touch "$stamp"
    VMLET_REBUILT=1
    changed "npm run build"
  fi
  cd - >/dev/null
  step_done vmlet-build "$REPO/dist/main.js up to date"
}

step_vmlet_files() {
  local tmp node
  tmp=$(mktemp)
  node=$(command -v node)
  printf '#!/bin/sh\n# Installed by vmlet node-install/install.sh\nexec %s %s/dist/main.js "$@"\n' "$node" "$REPO" >"$tmp"
  install_file "$tmp" /usr/local/bin/vmlet 755; rm -f "$tmp"
  [ "$WROTE" -eq 0 ] || changed "/usr/local/bin/vmlet"
  step_done vmlet-bin "/usr/local/bin/vmlet -> $REPO/dist/main.js"

  if [ ! -e /etc/vmlet/config.yaml ]; then
    install -D -m 644 "$HERE/config.yaml" /etc/vmlet/config.yaml
    changed "wrote /etc/vmlet/config.yaml"
  fi
  step_done vmlet-config "/etc/vmlet/config.yaml present, kept"

  if [ ! -e /etc/crictl.yaml ]; then
    install -m 644 "$HERE/crictl.yaml" /etc/crictl.yaml
    changed "wrote /etc/crictl.yaml"
  fi
  step_done crictl-config "/etc/crictl.yaml present, kept"

  install_file "$HERE/vmlet.service" /etc/systemd/system/vmlet.service 644
  local unit_changed=$WROTE
  [ "$unit_changed" -eq 0 ] || changed "/etc/systemd/system/vmlet.service"
  if have_systemd; then
    if [ "$unit_changed" -eq 1 ]; then systemctl daemon-reload; fi
    if ! systemctl -q is-enabled vmlet 2>/dev/null; then
      systemctl enable vmlet >/dev/null 2>&1; changed "enabled"
    fi
    if ! systemctl -q is-active vmlet 2>/dev/null; then
      systemctl start vmlet; changed "started"
    elif [ "$unit_changed" -eq 1 ]; then
      systemctl restart vmlet; changed "restarted"
    fi
    step_done vmlet-service "enabled, active"
  else
    step_done vmlet-service "unit installed, systemd not running"
    step_vmlet_run
  fi
}

# Without systemd, run vmlet as a detached daemon of our own (pid file, log file), as for
# libvirtd. Restart it when this run rebuilt it; VMs keep running across the restart.
VMLET_PIDFILE=$VMLET_RUN_DIR/vmlet.pid
VMLET_LOG=$VMLET_LOG_DIR/vmlet.log
step_vmlet_run() {
  local pid sock
  sock=$(awk '/^socket:/ {sub(/^socket:[ \t]*/, ""); sub(/[ \t]*#.*/, ""); gsub(/["\047]/, ""); print; exit}' /etc/vmlet/config.yaml 2>/dev/null)
  sock=${sock:-$VMLET_RUN_DIR/vmlet.sock}
  pid=$(read_pid "$VMLET_PIDFILE")
  if [ -n "$pid" ] && pid_is "$pid" node; then
    if [ "$VMLET_REBUILT" -eq 0 ]; then
      step_done vmlet-run "running, pid $pid, socket $sock"
      return
    fi
    kill -TERM "$pid"
    vmlet_gone() { ! pid_is "$pid" node; }
    wait_for 30 vmlet_gone || die "vmlet (pid $pid) did not stop within 30 s"
    changed "stopped old pid $pid"
  fi
  detached_exec "$VMLET_LOG" /usr/local/bin/vmlet serve --config /etc/vmlet/config.yaml &
  pid=$!
  echo "$pid" >"$VMLET_PIDFILE"
  vmlet_up() { pid_is "$pid" node && [ -S "$sock" ] && [ "$sock" -nt "$VMLET_PIDFILE" ]; }
  if ! wait_for 30 vmlet_up; then
    tail -n 15 "$VMLET_LOG" | sed 's/^/    | /' >&2
    die "vmlet did not come up on $sock (log: $VMLET_LOG)"
  fi
  changed "started, pid $pid"
  step_done vmlet-run "socket $sock, log $VMLET_LOG"
}

# ---------------------------------------------------------------- summary
summary() {
  local ver hv lib hint caps
  ver=$(timeout 10 virsh -c "$LIBVIRT_URI" version 2>/dev/null || true)
  caps=$(timeout 20 virsh -c "$LIBVIRT_URI" capabilities 2>/dev/null || true)
  lib=$(sed -n 's/^Using library: //p' <<<"$ver")
  hv=$(sed -n 's/^Running hypervisor: //p' <<<"$ver")
  if [[ $caps == *"<domain type='kvm'"* ]] && ! grep -qwE 'vmx|svm' /proc/cpuinfo; then
    # e.g. kvm_pvm (paravirtualized KVM): libvirt offers it, stock guests don't boot.
    hint="tcg likely: /dev/kvm works but the CPU has no vmx/svm$([ -d /sys/module/kvm_pvm ] && echo ' (kvm_pvm)'); see 'vmlet doctor'"
  elif [[ $caps == *"<domain type='kvm'"* ]]; then
    hint="kvm (hardware acceleration available)"
  elif [ -e /dev/kvm ]; then
    hint="tcg only: /dev/kvm exists but libvirt cannot use it (VMs will be slow)"
  else
    hint="tcg only: no /dev/kvm (VMs will be slow; enable nested virtualization for KVM)"
  fi
  echo "---"
  echo "libvirt:       ${lib:-?} on $LIBVIRT_URI, hypervisor ${hv:-?}, socket /run/libvirt/libvirt-sock"
  echo "hypervisor:    $hint"
  echo "vmlet socket:  /run/vmlet/vmlet.sock (crictl: /etc/crictl.yaml)"
  if [ "${RESTART_LIBVIRTD_HINT:-0}" -eq 1 ] && [ "$LIBVIRTD_WAS_RUNNING" -eq 1 ]; then
    echo "note:          qemu.conf changed while libvirtd was running: restart libvirtd to apply it"
  fi
}

LIBVIRTD_WAS_RUNNING=0
VMLET_REBUILT=0
virsh_answers && LIBVIRTD_WAS_RUNNING=1
RESTART_LIBVIRTD_HINT=0

step_node
step_packages
step_libvirt_prep
step_state_dirs
"$HERE/start-daemons.sh"
step_cni
if [ "$SKIP_VMLET" -eq 0 ]; then
  step_guest_kit
  step_vmlet_build
  step_vmlet_files
else
  report vmlet "skipped (--skip-vmlet)"
fi
summary
