#!/usr/bin/env bash
# vmlet node installer (Debian 12 / Ubuntu 22.04+), run as root (sudo or not).
# Idempotent: each step prints one line, "ok" (already fine) or "changed".
set -euo pipefail

# Packages vmlet needs on the node. Add new ones here.
PACKAGES=(
  qemu-system-x86 qemu-utils            # the VMs
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
  containernetworking-plugins           # CNI bridge/host-local/portmap/loopback
  tini                                  # child subreaper for libvirtd (no systemd)
  ovmf                                  # UEFI firmware
  iproute2
  dnsmasq-base                          # per-pod DHCP server for the VM (src/net/dhcp.ts)
  util-linux                            # nsenter: the pod's dnsmasq starts in its netns
  zstd                                  # zstd image layers, ~6x faster than vmlet's JavaScript fallback
  golang-go cpio xz-utils               # the guest kit: vmlet-agent (Go), initramfs (build-guest-kit.sh)
  curl ca-certificates                  # Node.js from the npm registry where the node has none >= 20
)
# Only with --with-test-deps: what the test suite needs beyond a node (test image builds;
# genisoimage: isoinfo reads vmlet's seed ISOs back, test/images/smoke-kernel-guest.sh writes some).
# python3-yaml/jinja2/jsonschema/requests: what cloud-init's own parsers import, for Debian's
# /usr/bin/python3 (the seed tests run cloud-init from an unpacked .deb, never installed on the node).
TEST_PACKAGES=(genisoimage python3 python3-yaml python3-jinja2 python3-jsonschema python3-requests docker-registry skopeo apache2-utils mtools syslinux libxml2-utils iputils-ping containerd runc busybox-static golang-github-docker-spdystream-dev golang-github-gorilla-websocket-dev)
# Only with --with-test-deps, and not fatal when apt cannot get them: the tests that use them
# fall back and say so (vncsnapshot: a real VNC client for the VNC console test).
TEST_OPTIONAL_PACKAGES=(vncsnapshot)
# Only when systemd is PID 1 (it ships units, users, qemu.conf, AppArmor profiles).
SYSTEMD_PACKAGES=(libvirt-daemon-system)
NODE_MIN_MAJOR=20
NPM_MAJOR=10     # the npm installed with a Node.js fetched from the registry (npm 10 runs on Node 20)

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
# The guest kit (node-install/build-guest-kit.sh): config.yaml's guestKitDir default.
GUEST_KIT_DIR=$VMLET_LIB/guest
# Node.js fetched from the npm registry goes here (VMLET_NODE_PREFIX: for tests), with
# node, npm and npx linked into $NODE_PREFIX/bin.
NODE_PREFIX=${VMLET_NODE_PREFIX:-/usr/local}
NODE_HOME_BASE=$NODE_PREFIX/lib/nodejs
NPM_REGISTRY=${VMLET_NPM_REGISTRY:-${npm_config_registry:-https://registry.npmjs.org}}
NPM_REGISTRY=${NPM_REGISTRY%/}

SKIP_VMLET=0
TEST_DEPS=0
COPY_ONLY=0
NODE_ONLY=0
usage() {
  cat <<EOF
Usage: $(basename "$0") [--skip-vmlet] [--with-test-deps] [--copy-only] [--help]

Prepares this node for vmlet: Node.js ${NODE_MIN_MAJOR}+ (from the npm registry into
$NODE_HOME_BASE when the node has none), apt packages, libvirt (libvirtd/virtlogd
running), state directories, a default CNI config, and (unless --skip-vmlet)
builds vmlet in $REPO and installs its own copy: $VMLET_LIB/current
(a versioned release dir, switched atomically; the checkout can then be deleted),
the launcher $VMLET_BIN, the guest kit sandboxed pods boot from ($GUEST_KIT_DIR),
$VMLET_CONFIG and /etc/crictl.yaml (each only if absent), then runs vmlet:
through vmlet.service when systemd is PID 1, otherwise as a detached daemon of
node-install/vmlet-service.sh under keeper.sh, which restarts it if it dies
(pid $VMLET_PIDFILE, log $VMLET_LOG); restarted
when this run installed a new release. Safe to re-run: it upgrades in place.

  --skip-vmlet      do everything except building/installing/running vmlet itself
                    (and its guest kit, $GUEST_KIT_DIR)
  --with-test-deps  also install what the test suite needs (npm test uses this)
  --copy-only       only copy the already built vmlet (dist/) into $VMLET_LIB and write
                    $VMLET_BIN: no packages, daemons, config or service
                    (VMLET_PREFIX=DIR installs under DIR instead of /usr/local)
  --help            show this help
EOF
}
for a in "$@"; do
  case "$a" in
    --skip-vmlet) SKIP_VMLET=1 ;;
    --with-test-deps) TEST_DEPS=1 ;;
    --copy-only) COPY_ONLY=1 ;;
    --node-only) NODE_ONLY=1 ;;   # the Node.js step alone (VMLET_NODE_FETCH=1 fetches even if one is there)
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
# vmlet needs Node.js >= 20 (Debian 12's own is 18). Where the node has none on PATH, fetch the
# official build from the npm registry, the one registry the node is sure to reach besides apt:
# the package node-linux-<arch> (what the `node` npm package installs: package/bin/node), the
# newest 20.x, plus npm ${NPM_MAJOR}.x (the `npm` package, dependencies bundled). Each tarball's
# sha512 is checked against the integrity the registry publishes for it. They are unpacked to
# $NODE_HOME_BASE/node-v<version>-linux-<arch>/ and node, npm, npx linked into $NODE_PREFIX/bin
# (ahead of /usr/bin on root's PATH), so `npm test` runs with them too.
NODE_BIN=''
NPM_FETCHED=''

node_major() { local v; v=$("$1" --version 2>/dev/null) || return 1; v=${v#v}; v=${v%%.*}; [[ $v =~ ^[0-9]+$ ]] && printf '%s\n' "$v"; }

registry_curl() { curl -fsSL --retry 3 --retry-delay 5 --retry-all-errors --connect-timeout 20 "$@"; }

# registry_newest PKG MAJOR: the newest MAJOR.x.y (no pre-release) of PKG in the registry.
registry_newest() {
  registry_curl -H 'Accept: application/vnd.npm.install-v1+json' "$NPM_REGISTRY/$1" |
    grep -oE "\"$2\.[0-9]+\.[0-9]+\":" | tr -d '":' | sort -V | tail -n 1
}

# registry_unpack PKG VERSION DIR: download PKG@VERSION's tarball, check its sha512 against the
# registry's integrity field, unpack its package/ into DIR.
registry_unpack() {
  local pkg=$1 ver=$2 dir=$3 meta integrity url tgz got
  meta=$(registry_curl "$NPM_REGISTRY/$pkg/$ver") || return 1
  integrity=$(grep -oE '"integrity": *"sha512-[A-Za-z0-9+/=]+"' <<<"$meta" | head -n 1 | sed 's/.*"\(sha512-[^"]*\)"/\1/')
  url=$(grep -oE '"tarball": *"[^"]+"' <<<"$meta" | head -n 1 | sed 's/.*"\([^"]*\)"$/\1/')
  [ -n "$integrity" ] && [ -n "$url" ] || { echo "$pkg@$ver: no tarball/integrity in the registry's answer" >&2; return 1; }
  tgz=$(mktemp)
  registry_curl -o "$tgz" "$url" || { rm -f "$tgz"; return 1; }
  got=sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w 0)
  if [ "$got" != "$integrity" ]; then
    rm -f "$tgz"; echo "$pkg@$ver: $url has $got, the registry says $integrity" >&2; return 1
  fi
  mkdir -p "$dir"
  tar -xzf "$tgz" -C "$dir" --strip-components=1 --no-same-owner --no-same-permissions || { rm -f "$tgz"; return 1; }
  rm -f "$tgz"
}

node_fix() {
  cat <<EOF
install Node.js ${NODE_MIN_MAJOR}+ yourself and run this installer again, e.g. (any one):
      - the nodejs package of NodeSource's apt repository for Node ${NODE_MIN_MAJOR}.x (https://github.com/nodesource/distributions)
      - the official archive node-v${NODE_MIN_MAJOR}.*-linux-x64.tar.xz from https://nodejs.org/dist/latest-v${NODE_MIN_MAJOR}.x/ (check it against SHASUMS256.txt there), unpacked with its bin/ on PATH
      or point VMLET_NPM_REGISTRY at an npm registry mirror this node reaches
EOF
}

# link_into_bin SRC NAME: $NODE_PREFIX/bin/NAME -> SRC (replaced atomically), unless NAME there
# is something else than a link into $NODE_HOME_BASE. Prints "NAME" when it changed.
link_into_bin() {
  local src=$1 dst=$NODE_PREFIX/bin/$2 cur
  cur=$(readlink "$dst" 2>/dev/null || true)
  [ "$cur" = "$src" ] && return 0
  if [ -e "$dst" ] && [[ $cur != "$NODE_HOME_BASE"/* ]]; then
    die "$dst exists and is not vmlet's installer's (it links to ${cur:-nothing}): remove it, or put Node.js ${NODE_MIN_MAJOR}+ first on PATH"
  fi
  mkdir -p "$NODE_PREFIX/bin"
  ln -s "$src" "$dst.vmlet-tmp.$$" && mv -T "$dst.vmlet-tmp.$$" "$dst"
  printf '%s\n' "$2"
}

# install_npm_into DIR: npm NPM_MAJOR.x into DIR/lib/node_modules/npm, DIR/bin/{npm,npx}.
install_npm_into() {
  local dir=$1 ver
  ver=$(registry_newest npm "$NPM_MAJOR") && [ -n "$ver" ] || return 1
  registry_unpack npm "$ver" "$dir/lib/node_modules/npm" || return 1
  NPM_FETCHED=$ver
  chmod 755 "$dir/lib/node_modules/npm/bin/npm-cli.js" "$dir/lib/node_modules/npm/bin/npx-cli.js"
  mkdir -p "$dir/bin"
  ln -sfn ../lib/node_modules/npm/bin/npm-cli.js "$dir/bin/npm"
  ln -sfn ../lib/node_modules/npm/bin/npx-cli.js "$dir/bin/npx"
}

install_node() {
  local arch ver dir tmp v links='' l
  case "$(uname -m)" in
    x86_64) arch=x64 ;;
    aarch64) arch=arm64 ;;
    *) die "Node.js ${NODE_MIN_MAJOR}+ not found and no node-linux-* package for $(uname -m): $(node_fix)" ;;
  esac
  command -v curl >/dev/null && command -v openssl >/dev/null ||
    die "curl and openssl are needed to fetch Node.js (apt-get install curl ca-certificates)"
  ver=${VMLET_NODE_VERSION:-}
  if [ -z "$ver" ]; then
    ver=$(registry_newest "node-linux-$arch" "$NODE_MIN_MAJOR" 2>>"$INSTALL_LOG") || ver=''
    [ -n "$ver" ] || die "Node.js ${NODE_MIN_MAJOR}+ not found, and the npm registry ($NPM_REGISTRY) did not answer for node-linux-$arch: $(node_fix)"
  fi
  dir=$NODE_HOME_BASE/node-v$ver-linux-$arch
  if [ ! -x "$dir/bin/node" ] || [ ! -e "$dir/bin/npm" ]; then
    mkdir -p "$NODE_HOME_BASE"
    tmp=$(mktemp -d "$NODE_HOME_BASE/.new-XXXXXX")
    { registry_unpack "node-linux-$arch" "$ver" "$tmp" && chmod 755 "$tmp/bin/node" && install_npm_into "$tmp"; } 2>>"$INSTALL_LOG" ||
      { rm -rf "$tmp"; die "fetching Node.js $ver from $NPM_REGISTRY failed (log: $INSTALL_LOG): $(node_fix)"; }
    v=$("$tmp/bin/node" --version 2>&1) || { rm -rf "$tmp"; die "the fetched node does not run: $v"; }
    chmod 755 "$tmp"
    rm -rf "$dir"
    mv -T "$tmp" "$dir"
    changed "fetched Node.js $v from the npm registry (node-linux-$arch@$ver, npm $NPM_FETCHED) into $dir"
  fi
  for l in node npm npx; do links+=$(link_into_bin "$dir/bin/$l" "$l"); done
  [ -z "$links" ] || changed "linked node, npm, npx into $NODE_PREFIX/bin"
  hash -r
  NODE_BIN=$NODE_PREFIX/bin/node
}

step_node() {
  local node='' major=''
  node=$(command -v node 2>/dev/null || true)
  [ -z "$node" ] || major=$(node_major "$node" || true)
  if [ "${VMLET_NODE_FETCH:-0}" != 1 ] && [ -n "$major" ] && [ "$major" -ge "$NODE_MIN_MAJOR" ]; then
    NODE_BIN=$node
    if ! command -v npm >/dev/null 2>&1; then
      # A Node.js without npm (some distro packages split it off): npm from the registry.
      install_npm_into "$NODE_HOME_BASE/npm" 2>>"$INSTALL_LOG" || die "npm not found and fetching it from $NPM_REGISTRY failed: apt-get install npm, then run this installer again"
      link_into_bin "$NODE_HOME_BASE/npm/bin/npm" npm >/dev/null
      link_into_bin "$NODE_HOME_BASE/npm/bin/npx" npx >/dev/null
      hash -r
      changed "fetched npm $NPM_FETCHED from the npm registry into $NODE_HOME_BASE/npm"
    fi
    step_done node "$("$node" --version) at $node"
    return
  fi
  [ "$COPY_ONLY" -eq 0 ] || die "Node.js ${NODE_MIN_MAJOR}+ not found (${node:-no node on PATH}${major:+, major $major}): run this installer without --copy-only first"
  install_node
  export PATH="$NODE_PREFIX/bin:$PATH"
  local old=''
  [ -z "$node" ] || [ "$node" = "$NODE_BIN" ] || old="; $node (${major:+major $major}) left in place, behind it on PATH"
  step_done node "$("$NODE_BIN" --version) at $NODE_BIN$old"
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
  [ "$TEST_DEPS" -eq 1 ] && step_optional_test_packages
  return 0
}

step_optional_test_packages() {
  local missing=() p
  for p in "${TEST_OPTIONAL_PACKAGES[@]}"; do pkg_installed "$p" || missing+=("$p"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    { printf '\n=== %s: apt-get install %s (optional)\n' "$(date -Is)" "${missing[*]}"; } >>"$INSTALL_LOG"
    if env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "${missing[@]}" </dev/null >>"$INSTALL_LOG" 2>&1; then
      changed "installed ${missing[*]}"
    else
      report test-extras "not installed: ${missing[*]} (apt-get failed, see $INSTALL_LOG); the tests that use them say so and fall back"
      return 0
    fi
  fi
  step_done test-extras "${#TEST_OPTIONAL_PACKAGES[@]} installed"
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
  local kvs
  # Users and dirs: libvirt-daemon-system makes them under systemd; without it, we do.
  have_systemd || libvirt_users_and_dirs
  # QEMU as libvirt's unprivileged user, libvirt-daemon-system's own default, on every node (an
  # earlier vmlet installer set root here). vmlet names the user in each of its domains anyway
  # (config qemuUser; root only for a VM with 9p shares: docs/security.md); this is for any other.
  # seccomp_sandbox=1: QEMU's own syscall filter (-sandbox on, no setuid, no spawning), libvirt's
  # default where QEMU has it; set so that it stays on whatever the distribution ships.
  kvs=('user="libvirt-qemu"' 'group="kvm"' 'seccomp_sandbox=1')
  # No usable MAC framework: tell libvirt explicitly not to look for one.
  if ! apparmor_enabled && ! selinux_enabled; then kvs+=('security_driver="none"'); fi
  mkdir -p /etc/libvirt
  if [ -n "$(set_conf_keys /etc/libvirt/qemu.conf "${kvs[@]}")" ]; then
    changed "qemu.conf ${kvs[*]}"
    QEMU_CONF_CHANGED=1
  fi
  step_done libvirt-prep "qemu.conf ${kvs[*]}"
}

libvirt_users_and_dirs() {
  local g d
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
    changed "npm run build"
  fi
  cd - >/dev/null
  step_done vmlet-build "$REPO/dist/main.js up to date"
}

# What the installed copy holds besides the production node_modules (npm ci --omit=dev):
# everything `vmlet` reads at run time (dist/, proto/api.proto, package.json for its version)
# and the node-install files an operator needs once the checkout is gone.
RELEASE_FILES=(dist proto package.json package-lock.json)
RELEASE_NODE_INSTALL=(lib.sh vmlet-service.sh uninstall.sh start-daemons.sh stop-daemons.sh keeper.sh
  vmlet.service config.yaml crictl.yaml runtimeclass.yaml 10-vmlet-bridge.conflist)
VMLET_RELEASE_CHANGED=0

# release_id: <package version>-<first 12 hex of the sha256 of every file that goes in>.
release_id() {
  local ver hash
  ver=$(sed -n 's/^[[:space:]]*"version":[[:space:]]*"\([^"]*\)".*/\1/p' "$REPO/package.json" | head -n 1)
  hash=$(cd "$REPO" && {
    find "${RELEASE_FILES[@]}" -type f ! -name .vmlet-build-stamp -print0
    for f in "${RELEASE_NODE_INSTALL[@]}"; do printf 'node-install/%s\0' "$f"; done
  } | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)
  printf '%s-%s\n' "${ver:-0}" "$hash"
}

# Copies the built vmlet into $VMLET_LIB/releases/<id> (once per id: a dir is only ever used
# once complete) and points $VMLET_LIB/current at it with one rename, so a `vmlet` starting
# meanwhile runs the old release or the new one, never a mix. Keeps the release it replaced
# (a running vmlet may still load modules from it until it restarts) and removes older ones.
step_vmlet_copy() {
  local id rel cur new prev tmp f d
  [ -f "$REPO/dist/main.js" ] || die "$REPO/dist/main.js not found: build vmlet first (npm ci && npm run build), or run without --copy-only"
  id=$(release_id)
  rel=$VMLET_LIB/releases/$id
  mkdir -p "$VMLET_LIB/releases"
  if [ ! -f "$rel/.complete" ]; then
    tmp=$(mktemp -d "$VMLET_LIB/releases/.new-XXXXXX")
    cp -a "${RELEASE_FILES[@]/#/$REPO/}" "$tmp/"
    rm -f "$tmp/dist/.vmlet-build-stamp"
    mkdir -p "$tmp/node-install"
    for f in "${RELEASE_NODE_INSTALL[@]}"; do cp -a "$HERE/$f" "$tmp/node-install/"; done
    cur=$(readlink "$VMLET_LIB/current" 2>/dev/null || true)
    if [ -n "$cur" ] && [ -f "$VMLET_LIB/$cur/.complete" ] && [ -d "$VMLET_LIB/$cur/node_modules" ] &&
      cmp -s "$VMLET_LIB/$cur/package-lock.json" "$tmp/package-lock.json"; then
      # Same lockfile as the current release: share its node_modules (hard links; a release
      # is never modified once complete).
      cp -a --link "$VMLET_LIB/$cur/node_modules" "$tmp/"
    else
      # Production dependencies only, from npm's cache where it has them (the build's npm ci
      # filled it): no registry round trip on a node that built before.
      (cd "$tmp" && run_logged "npm ci --omit=dev (installed copy)" npm_ci --omit=dev --ignore-scripts) ||
        { rm -rf "$tmp"; exit 1; }
    fi
    chmod 755 "$tmp"
    touch "$tmp/.complete"
    rm -rf "$rel"
    mv -T "$tmp" "$rel"
    changed "copied release $id"
  fi
  cur=$(readlink "$VMLET_LIB/current" 2>/dev/null || true)
  new=releases/$id
  if [ "$cur" != "$new" ]; then
    if [ -e "$VMLET_LIB/current" ] && [ ! -L "$VMLET_LIB/current" ]; then die "$VMLET_LIB/current is not a symlink: move it away"; fi
    if [ -n "$cur" ]; then
      ln -s "$cur" "$VMLET_LIB/.previous.tmp.$$"
      mv -T "$VMLET_LIB/.previous.tmp.$$" "$VMLET_LIB/previous"
    fi
    ln -s "$new" "$VMLET_LIB/.current.tmp.$$"
    mv -T "$VMLET_LIB/.current.tmp.$$" "$VMLET_LIB/current"
    VMLET_RELEASE_CHANGED=1
    changed "current -> $new${cur:+ (was $cur)}"
  fi
  # Keep the current release and the one before it (`previous`); remove the rest.
  prev=$(readlink "$VMLET_LIB/previous" 2>/dev/null || true)
  for d in "$VMLET_LIB/releases"/* "$VMLET_LIB/releases"/.new-*; do
    [ -e "$d" ] || continue
    case "releases/${d##*/}" in "$new" | "$prev") ;; *) rm -rf "$d"; changed "removed old ${d##*/}" ;; esac
  done
  step_done vmlet-copy "$VMLET_LIB/current -> $new ($(du -sh "$rel" | cut -f1))"

  # The launcher: the node this run found (or fetched) and the current release.
  tmp=$(mktemp)
  printf '#!/bin/sh\n# vmlet, installed by node-install/install.sh: the release in %s/current\nexec %s %s/current/dist/main.js "$@"\n' \
    "$VMLET_LIB" "$NODE_BIN" "$VMLET_LIB" >"$tmp"
  install_file "$tmp" "$VMLET_BIN" 755; rm -f "$tmp"
  if [ "$WROTE" -eq 1 ]; then changed "wrote $VMLET_BIN"; VMLET_RELEASE_CHANGED=1; fi
  step_done vmlet-bin "$VMLET_BIN -> $NODE_BIN $VMLET_LIB/current/dist/main.js"
}

step_vmlet_files() {
  if [ ! -e "$VMLET_CONFIG" ]; then
    install -D -m 644 "$HERE/config.yaml" "$VMLET_CONFIG"
    changed "wrote $VMLET_CONFIG"
  fi
  step_done vmlet-config "$VMLET_CONFIG present, kept"

  if [ ! -e /etc/crictl.yaml ]; then
    install -m 644 "$HERE/crictl.yaml" /etc/crictl.yaml
    changed "wrote /etc/crictl.yaml"
  fi
  step_done crictl-config "/etc/crictl.yaml present, kept"
}

# vmlet's service: vmlet.service under systemd; without systemd no unit is written (nothing
# would read it) and vmlet runs as a daemon of vmlet-service.sh. Restarted when this run
# installed a new release or launcher; VMs keep running across the restart.
step_vmlet_service() {
  local svc=$VMLET_LIB/current/node-install/vmlet-service.sh tmp unit_changed
  if have_systemd; then
    tmp=$(mktemp)
    sed "s|/usr/local/bin/vmlet|$VMLET_BIN|g" "$HERE/vmlet.service" >"$tmp"
    install_file "$tmp" "$VMLET_UNIT" 644; rm -f "$tmp"
    unit_changed=$WROTE
    if [ "$unit_changed" -eq 1 ]; then systemctl daemon-reload; changed "wrote $VMLET_UNIT"; fi
    if ! systemctl -q is-enabled vmlet 2>/dev/null; then
      systemctl enable vmlet >/dev/null 2>&1; changed "enabled"
    fi
    if ! systemctl -q is-active vmlet 2>/dev/null; then
      systemctl start vmlet; changed "started"
    elif [ "$unit_changed" -eq 1 ] || [ "$VMLET_RELEASE_CHANGED" -eq 1 ]; then
      systemctl restart vmlet; changed "restarted"
    fi
    step_done vmlet-service "systemd: vmlet.service enabled, active"
    return
  fi
  # An older installer wrote the unit here too: remove it if it is ours, unchanged.
  if [ -f "$VMLET_UNIT" ] && cmp -s "$HERE/vmlet.service" "$VMLET_UNIT"; then
    rm -f "$VMLET_UNIT"; changed "removed $VMLET_UNIT (written by an older installer; unused without systemd)"
  fi
  step_done vmlet-unit "no systemd unit written: systemd is not PID 1 here, so nothing would run it; vmlet runs as a daemon of $svc"
  # libvirtd and virtlogd are up already (start-daemons.sh above).
  if [ "$VMLET_RELEASE_CHANGED" -eq 1 ]; then
    VMLET_SKIP_DAEMONS=1 bash "$svc" restart
  else
    VMLET_SKIP_DAEMONS=1 bash "$svc" start
  fi
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
}

if [ "$NODE_ONLY" -eq 1 ]; then step_node; exit 0; fi
if [ "$COPY_ONLY" -eq 1 ]; then
  step_node
  step_vmlet_copy
  exit 0
fi

QEMU_CONF_CHANGED=0

step_packages
step_node
step_libvirt_prep
step_state_dirs
# qemu.conf is read at libvirtd's start: a running one (systemd's, which the package may have
# started before qemu.conf changed, or ours under its keeper) is restarted when it changed.
QEMU_CONF_CHANGED=$QEMU_CONF_CHANGED "$HERE/start-daemons.sh"
step_cni
if [ "$SKIP_VMLET" -eq 0 ]; then
  step_guest_kit
  step_vmlet_build
  step_vmlet_copy
  step_vmlet_files
  step_vmlet_service
else
  report vmlet "skipped (--skip-vmlet)"
fi
summary
