#!/usr/bin/env bash
# Remove vmlet from this node, as root (sudo or not). Idempotent: each step prints one line,
# "ok" (nothing to do) or "changed", like install.sh; a second run prints only "ok".
#
# Default: stop vmlet and remove what install.sh installed for it: the service (vmlet.service or
#   the daemon of vmlet-service.sh), the launcher /usr/local/bin/vmlet, its copy
#   /usr/local/lib/vmlet (releases, guest kit), /etc/vmlet (config), and /etc/crictl.yaml when
#   it is still the one install.sh wrote. Kept: the state dir (pods, disks, images) and running
#   VMs (libvirtd owns them; a reinstalled vmlet re-adopts them).
# --purge: also destroy and undefine vmlet's libvirt domains (only those this vmlet made: named
#   vmlet-*, carrying vmlet's metadata, with their disks in its state dir), stop their DHCP servers, delete their network
#   namespaces and CNI address leases, remove the state dir (images included), vmlet's logs and
#   runtime files, and the default CNI network install.sh wrote (if unchanged).
# Never removed: the apt packages, libvirtd/virtlogd (node-install/stop-daemons.sh stops the
#   ones install.sh started), Node.js, and cluster objects (kubectl delete runtimeclass vmlet).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

METADATA_NS=https://vmlet.io/xmlns/domain/1   # src/vm/domain-xml.ts
CNI_FILE=/etc/cni/net.d/10-vmlet-bridge.conflist

PURGE=0
COPY_ONLY=0
usage() {
  cat <<EOF
Usage: $(basename "$0") [--purge] [--copy-only] [--help]

Stops vmlet and removes its service, $VMLET_BIN, $VMLET_LIB,
$VMLET_CONFIG (VMLET_CONFIG) and an unchanged /etc/crictl.yaml. Keeps the state dir and running VMs.

  --purge      also destroy vmlet's VMs (libvirt domains vmlet made), remove its state dir
               (pods, disks, images), logs, pod network leftovers and the default CNI network
  --copy-only  only remove $VMLET_BIN and $VMLET_LIB (what install.sh --copy-only
               wrote; VMLET_PREFIX=DIR as there)
  --help       show this help
EOF
}
for a in "$@"; do
  case "$a" in
    --purge) PURGE=1 ;;
    --copy-only) COPY_ONLY=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $a" >&2; usage >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || die "must run as root"
[ "$PURGE" -eq 0 ] || [ "$COPY_ONLY" -eq 0 ] || die "--purge and --copy-only do not go together"

# vmlet's settings as vmlet reads them (VMLET_* env > config file > defaults), before the
# config file goes.
STATE_DIR=${VMLET_STATE_DIR:-$(config_value stateDir)}; STATE_DIR=${STATE_DIR:-/var/lib/vmlet}
LIBVIRT=${VMLET_LIBVIRT_URI:-$(config_value libvirtUri)}; LIBVIRT=${LIBVIRT:-$LIBVIRT_URI}
SOCKET=${VMLET_SOCKET:-$(config_value socket)}; SOCKET=${SOCKET:-$VMLET_RUN_DIR/vmlet.sock}
STATE_DIR=${STATE_DIR%/}

# ------------------------------------------------------------------ service
step_service() {
  if have_systemd; then
    if systemctl -q is-active vmlet 2>/dev/null; then systemctl stop vmlet; changed "stopped vmlet.service"; fi
    if systemctl -q is-enabled vmlet 2>/dev/null; then systemctl disable vmlet >/dev/null 2>&1; changed "disabled vmlet.service"; fi
  fi
  # The daemon of vmlet-service.sh and its keeper (no systemd, or left from a time without it).
  local stale=''
  if [ -e "$VMLET_PIDFILE" ] || [ -e "$VMLET_KEEPER_PIDFILE" ]; then stale=1; fi
  stop_vmlet_daemon 30
  if [ -n "$STOPPED" ]; then changed "vmlet: $STOPPED"
  elif [ -n "$stale" ]; then changed "removed stale pid files in $VMLET_RUN_DIR"; fi
  if [ -f "$VMLET_UNIT" ]; then
    rm -f "$VMLET_UNIT"; changed "removed $VMLET_UNIT"
    if have_systemd; then systemctl daemon-reload; fi
  fi
  step_done vmlet-service "not running, no unit"
}

# ------------------------------------------------------------------- files
step_files() {
  if [ -e "$VMLET_BIN" ] || [ -L "$VMLET_BIN" ]; then
    if grep -q 'node-install/install.sh' "$VMLET_BIN" 2>/dev/null; then
      rm -f "$VMLET_BIN"; changed "removed $VMLET_BIN"
    else
      step_done vmlet-bin "$VMLET_BIN left alone: not written by install.sh"; return
    fi
  fi
  step_done vmlet-bin "$VMLET_BIN absent"
  if [ -e "$VMLET_LIB" ]; then rm -rf "$VMLET_LIB"; changed "removed $VMLET_LIB (releases, guest kit)"; fi
  step_done vmlet-lib "$VMLET_LIB absent"
}

step_config() {
  if [ -e "$VMLET_CONFIG" ]; then rm -f "$VMLET_CONFIG"; changed "removed $VMLET_CONFIG"; fi
  # The directory too when it is vmlet's own (/etc/vmlet); any other only when empty.
  if [ -d "$VMLET_CONF_DIR" ]; then
    if [ "${VMLET_CONF_DIR##*/}" = vmlet ]; then rm -rf "$VMLET_CONF_DIR"; changed "removed $VMLET_CONF_DIR"
    elif rmdir "$VMLET_CONF_DIR" 2>/dev/null; then changed "removed empty $VMLET_CONF_DIR"; fi
  fi
  step_done vmlet-config "$VMLET_CONFIG absent"
  local ours=$HERE/crictl.yaml
  if [ -f /etc/crictl.yaml ] && [ -f "$ours" ] && cmp -s "$ours" /etc/crictl.yaml; then
    rm -f /etc/crictl.yaml; changed "removed /etc/crictl.yaml (the one install.sh wrote)"
  fi
  if [ -f /etc/crictl.yaml ] && grep -q "unix://$SOCKET" /etc/crictl.yaml; then
    step_done crictl-config "/etc/crictl.yaml kept (edited by hand), still points at $SOCKET"
  else
    step_done crictl-config "no /etc/crictl.yaml of vmlet's"
  fi
}

# ------------------------------------------------------------------- purge
virsh_() { timeout 30 virsh -q -c "$LIBVIRT" "$@"; }

step_domains() {
  local names=() n xml state
  command -v virsh >/dev/null || { step_done vms "no virsh: no libvirt, no VMs"; return; }
  local list
  list=$(virsh_ list --all --name 2>&1) ||
    die "libvirt ($LIBVIRT) does not answer, so vmlet's VMs cannot be removed: start it (node-install/start-daemons.sh) and run this again ($list)"
  while read -r n; do
    [[ $n == vmlet-* ]] || continue
    xml=$(virsh_ dumpxml "$n" 2>/dev/null) || continue   # gone meanwhile
    [[ $xml == *"$METADATA_NS"* ]] || continue             # not vmlet's
    [[ $xml == *"'$STATE_DIR/"* ]] || continue             # another vmlet's (its disks are elsewhere)
    state=$(virsh_ domstate "$n" 2>/dev/null || true)
    if [ "$state" != "shut off" ]; then virsh_ destroy "$n" >/dev/null 2>&1 || true; fi
    virsh_ undefine --nvram "$n" >/dev/null 2>&1 || virsh_ undefine "$n" >/dev/null 2>&1 ||
      die "virsh undefine $n failed"
    names+=("$n")
  done <<<"$list"
  [ "${#names[@]}" -eq 0 ] || changed "destroyed and undefined ${#names[@]} domain(s): ${names[*]}"
  step_done vms "no domain of this vmlet's (disks in $STATE_DIR) in $LIBVIRT"
}

step_pod_network() {
  local p cmd pids=() ns id f n=0
  # Per-pod DHCP servers (src/net/dhcp.ts: dnsmasq --conf-file=<state dir>/...).
  for p in /proc/[0-9]*; do
    [ "$(cat "$p/comm" 2>/dev/null)" = dnsmasq ] || continue
    cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
    [[ $cmd == *"--conf-file=$STATE_DIR/"* ]] && pids+=("${p#/proc/}")
  done
  if [ "${#pids[@]}" -gt 0 ]; then kill -TERM "${pids[@]}" 2>/dev/null || true; changed "stopped ${#pids[@]} pod dnsmasq"; fi
  # CNI host-local leases hold the sandbox id (CNI_CONTAINERID) on their first line.
  if [ -d "$STATE_DIR/pods" ]; then
    for id in "$STATE_DIR"/pods/*; do
      id=${id##*/}
      [[ $id =~ ^[0-9a-f]{16,}$ ]] || continue
      for f in /var/lib/cni/networks/*/*; do
        [ -f "$f" ] && [ "$(head -n 1 "$f" 2>/dev/null)" = "$id" ] && { rm -f "$f"; n=$((n + 1)); }
      done
    done
  fi
  [ "$n" -eq 0 ] || changed "removed $n CNI lease(s)"
  # Pod network namespaces: vmlet-<first 16 of the sandbox id> (src/net/netns.ts).
  n=0
  for ns in /run/netns/vmlet-*; do
    [[ ${ns##*/} =~ ^vmlet-[0-9a-f]{16}$ ]] || continue
    ip netns del "${ns##*/}" 2>/dev/null || rm -f "$ns"
    n=$((n + 1))
  done
  [ "$n" -eq 0 ] || changed "deleted $n pod network namespace(s)"
  step_done pod-network "no pod DHCP server, lease or netns of vmlet's"
}

step_state() {
  case "$STATE_DIR" in
    /* ) ;;
    *) die "stateDir '$STATE_DIR' is not an absolute path: not removing it" ;;
  esac
  case "${STATE_DIR%/}" in
    '' | /var | /var/lib | /usr | /usr/local | /home | /root | /tmp | /etc | /opt | /srv)
      die "stateDir '$STATE_DIR' is not vmlet's own directory: not removing it" ;;
  esac
  # Bind mounts under it first (a sandboxed pod's volumes in its shared dir, a VM-image container's
  # read-only shares, the image tree's read-only view): rm -rf must never reach a volume through one.
  local m left=0
  for _ in 1 2 3 4; do
    left=0
    while read -r m; do
      umount -l "$m" 2>/dev/null || true
      left=1
    done < <(awk -v d="$STATE_DIR" '$5 == d || index($5, d "/") == 1 { print length($5), $5 }' /proc/self/mountinfo | sort -rn | cut -d' ' -f2-)
    [ "$left" -eq 0 ] && break
  done
  if awk -v d="$STATE_DIR" '$5 == d || index($5, d "/") == 1 { f = 1 } END { exit !f }' /proc/self/mountinfo; then
    die "mounts are left under $STATE_DIR after umount: not removing it"
  fi
  if [ -e "$STATE_DIR" ]; then rm -rf "$STATE_DIR"; changed "removed $STATE_DIR (pods, disks, images)"; fi
  step_done state-dir "$STATE_DIR absent"
  local f
  for f in "$VMLET_LOG" "$VMLET_LOG_DIR/install.log" "$SOCKET"; do
    if [ -e "$f" ] || [ -L "$f" ]; then rm -f "$f"; changed "removed $f"; fi
  done
  # Guest agent sockets of VMs with long state paths (src/vm/guest-agent.ts); shared by every
  # vmlet on the node, so only once empty.
  if [ -d "$VMLET_RUN_DIR/qga" ] && rmdir "$VMLET_RUN_DIR/qga" 2>/dev/null; then changed "removed $VMLET_RUN_DIR/qga"; fi
  step_done logs-runtime "no vmlet log or runtime file (libvirtd's log and pid files stay)"
  if [ -f "$CNI_FILE" ] && cmp -s "$HERE/10-vmlet-bridge.conflist" "$CNI_FILE"; then
    rm -f "$CNI_FILE"; changed "removed $CNI_FILE"
  fi
  if ip link show vmlet0 >/dev/null 2>&1 && [ -z "$(ls /sys/class/net/vmlet0/brif 2>/dev/null)" ]; then
    ip link del vmlet0 && changed "deleted bridge vmlet0 (no ports left)"
  fi
  step_done cni "no default vmlet network"
}

if [ "$COPY_ONLY" -eq 1 ]; then
  step_files
  exit 0
fi
step_service
if [ "$PURGE" -eq 1 ]; then
  step_domains
  step_pod_network
  step_state
fi
step_config   # before step_files: it compares with this script's crictl.yaml, maybe in $VMLET_LIB
step_files
if [ "$PURGE" -eq 0 ]; then
  report kept "ok (state dir $STATE_DIR and running VMs; --purge removes them)"
fi
report kept "ok (apt packages, libvirtd/virtlogd: node-install/stop-daemons.sh stops them, Node.js; the RuntimeClass is the cluster's: kubectl delete runtimeclass vmlet)"
