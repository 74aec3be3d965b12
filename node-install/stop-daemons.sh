#!/usr/bin/env bash
# Stop the libvirtd / virtlogd that start-daemons.sh (install.sh) started
# WITHOUT systemd, identified by the marker pid files in /run/vmlet.
# Daemons started by anyone else (or by systemd) are never touched.
#
# Running VMs (QEMU processes) are not stopped: they keep running and a
# restarted libvirtd reconnects to them. virtlogd is kept while QEMU
# processes still log through it, unless --force.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

FORCE=0
LIBVIRTD_ONLY=0
usage() {
  cat <<EOF
Usage: $(basename "$0") [--libvirtd-only] [--force] [--help]
Stop libvirtd and virtlogd if (and only if) this installer started them.
  --libvirtd-only  leave virtlogd running
  --force          stop virtlogd even while QEMU processes are still running
EOF
}
for a in "$@"; do
  case "$a" in
    -h|--help) usage; exit 0 ;;
    --force) FORCE=1 ;;
    --libvirtd-only) LIBVIRTD_ONLY=1 ;;
    *) usage >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || die "must run as root"

# libvirtd: ours iff the tini marker is alive and is the parent of libvirtd's keeper (or, started
# by an older installer, of libvirtd itself). A SIGTERM stops libvirtd on purpose: its keeper
# ends with it instead of starting it again, and tini with the keeper.
tpid=$(read_pid "$LIBVIRTD_TINI_PIDFILE")
lpid=$(read_pid "$LIBVIRTD_PIDFILE")
if [ -n "$tpid" ] && pid_is "$tpid" tini; then
  kpid=$(ppid_of "${lpid:-0}")
  if [ -n "$lpid" ] && pid_is "$lpid" libvirtd && { [ "$(ppid_of "$kpid")" = "$tpid" ] || [ "$kpid" = "$tpid" ]; }; then
    # The keeper first: a libvirtd that then needs a SIGKILL is not started again.
    [ "$kpid" != "$tpid" ] && { kill -TERM "$kpid" 2>/dev/null || true; }
    stop_pid "$lpid" libvirtd
  else
    # tini without our libvirtd child: tini forwards SIGTERM to its child.
    lpid=''
  fi
  wait_for 5 gone "$tpid" tini || stop_pid "$tpid" tini
  rm -f "$LIBVIRTD_TINI_PIDFILE"
  [ -n "$lpid" ] && ! pid_is "$lpid" libvirtd && rm -f "$LIBVIRTD_PIDFILE"
  report libvirtd "stopped (pid ${lpid:-?}, tini $tpid)"
else
  [ -n "$tpid" ] && rm -f "$LIBVIRTD_TINI_PIDFILE"   # stale marker
  report libvirtd "not started by vmlet installer: left alone"
fi

if [ "$LIBVIRTD_ONLY" -eq 1 ]; then
  report virtlogd "left running (--libvirtd-only)"
  exit 0
fi
vpid=$(read_pid "$VIRTLOGD_OURS_PIDFILE")
if [ -n "$vpid" ] && pid_is "$vpid" virtlogd && [ "$(read_pid "$VIRTLOGD_PIDFILE")" = "$vpid" ]; then
  nqemu=0
  for c in /proc/[0-9]*/comm; do
    case "$(cat "$c" 2>/dev/null)" in qemu-system-*|qemu-kvm) nqemu=$((nqemu + 1)) ;; esac
  done
  if [ "$nqemu" -gt 0 ] && [ "$FORCE" -eq 0 ]; then
    report virtlogd "left running: $nqemu QEMU process(es) still log through it (use --force)"
    exit 0
  fi
  stop_pid "$vpid" virtlogd
  rm -f "$VIRTLOGD_OURS_PIDFILE"
  report virtlogd "stopped (pid $vpid)"
else
  [ -n "$vpid" ] && rm -f "$VIRTLOGD_OURS_PIDFILE"
  report virtlogd "not started by vmlet installer: left alone"
fi
