#!/usr/bin/env bash
# Start, stop, restart vmlet or show its status, with or without systemd.
#
# With systemd as PID 1: systemctl on vmlet.service (install.sh enables it).
# Without systemd: vmlet runs detached (new session, stdin /dev/null) under keeper.sh, which
#   starts it again when it dies on its own (a crash, the OOM killer, kill -9), as the unit's
#   Restart= does; pid files /run/vmlet/vmlet.pid and vmlet-keeper.pid, stdout/stderr appended
#   to /var/log/vmlet/vmlet.log.
#   start   also starts libvirtd/virtlogd (start-daemons.sh) if they are not running, then
#           waits until vmlet's socket is up (a vmlet that dies meanwhile is not restarted: the
#           start fails with its log); stop sends SIGTERM to the keeper, which passes it on and
#           ends with vmlet (SIGKILL after 30 s).
# Stopping vmlet never stops a VM: libvirtd owns them and vmlet re-adopts them at start.
# Prints one line, "ok" (nothing to do) or "changed", like install.sh; status exits 0 when
# vmlet runs, 3 when it does not (as LSB init scripts do).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

STOP_TIMEOUT=${VMLET_STOP_TIMEOUT:-30}
START_TIMEOUT=${VMLET_START_TIMEOUT:-30}

usage() {
  cat <<EOF
Usage: $(basename "$0") start|stop|restart|status

Runs $VMLET_BIN serve --config $VMLET_CONFIG:
through systemctl (vmlet.service) when systemd is PID 1, otherwise as a detached daemon
(pid file $VMLET_PIDFILE, log $VMLET_LOG). VMs keep running when vmlet stops.
EOF
}
ACTION=${1:-}
case "$ACTION" in
  start | stop | restart | status) ;;
  -h | --help) usage; exit 0 ;;
  *) usage >&2; exit 2 ;;
esac
[ "$#" -le 1 ] || { usage >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || die "must run as root"

socket_path() { local s; s=$(config_value socket); printf '%s\n' "${s:-$VMLET_RUN_DIR/vmlet.sock}"; }

# ---------------------------------------------------------------- systemd
with_systemd() {
  [ -f "$VMLET_UNIT" ] || die "$VMLET_UNIT not found: run node-install/install.sh first"
  case "$ACTION" in
    status)
      if systemctl -q is-active vmlet; then
        report vmlet "running (systemd: vmlet.service, pid $(systemctl show -p MainPID --value vmlet), socket $(socket_path))"
      else
        report vmlet "not running (systemd: vmlet.service $(systemctl is-active vmlet 2>/dev/null || true))"
        exit 3
      fi ;;
    start)
      if systemctl -q is-active vmlet; then report vmlet "ok (running: systemctl start vmlet)"; else
        systemctl start vmlet; report vmlet "changed (started: systemctl start vmlet)"
      fi ;;
    stop)
      if systemctl -q is-active vmlet; then
        systemctl stop vmlet; report vmlet "changed (stopped: systemctl stop vmlet)"
      else report vmlet "ok (not running)"; fi ;;
    restart) systemctl restart vmlet; report vmlet "changed (restarted: systemctl restart vmlet)" ;;
  esac
}

# ------------------------------------------------------------- no systemd
running_pid() {
  local pid
  pid=$(read_pid "$VMLET_PIDFILE")
  if [ -n "$pid" ] && vmlet_pid_is "$pid"; then printf '%s\n' "$pid"; fi
}

do_stop() {
  stop_vmlet_daemon "$STOP_TIMEOUT"
  if [ -n "$STOPPED" ]; then report vmlet "changed ($STOPPED)"
  else report vmlet "ok (not running)"; fi
}

# unit_limits_exec LOG CMD...: detached_exec with what vmlet.service sets under systemd:
# LimitNOFILE=1048576 (each VM pod and stream holds descriptors; Node.js raises its soft limit to
# the hard one, never the hard one; left as it is where it cannot be raised) and
# OOMScoreAdjust=-999 (the OOM killer takes a VM's QEMU before the runtime that manages it).
# Inherited by the keeper, vmlet and vmlet's helpers. Call it with '&'.
unit_limits_exec() {
  ulimit -Hn 1048576 2>/dev/null || true
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  echo -999 >/proc/self/oom_score_adj 2>/dev/null || true
  detached_exec "$@"
}

# vmlet_answers PID: PID is vmlet and its socket was made since its keeper started it.
vmlet_answers() { vmlet_pid_is "$1" && [ -S "$SOCK" ] && [ "$SOCK" -nt "$VMLET_PIDFILE" ]; }

do_start() {
  local pid kpid first=''
  SOCK=$(socket_path)
  pid=$(running_pid)
  kpid=$(vmlet_keeper_pid)
  if [ -n "$pid" ]; then report vmlet "ok (running, pid $pid${kpid:+ under its keeper $kpid}, socket $SOCK)"; return; fi
  if [ -n "$kpid" ]; then
    # The keeper is between two vmlets (it starts a crashed one again after its delay): a second
    # keeper would start a vmlet that cannot take the socket.
    restarted() { pid=$(running_pid); [ -n "$pid" ] && vmlet_answers "$pid"; }
    wait_for "$START_TIMEOUT" restarted ||
      die "vmlet's keeper (pid $kpid) has not started it again within ${START_TIMEOUT}s (log: $VMLET_LOG)"
    report vmlet "ok (running, pid $pid, started again by its keeper $kpid, socket $SOCK)"
    return
  fi
  [ -x "$VMLET_BIN" ] || die "$VMLET_BIN not found: run node-install/install.sh first"
  # libvirtd and virtlogd first (after a reboot without systemd nothing runs).
  if [ "${VMLET_SKIP_DAEMONS:-0}" != 1 ] && [ -x "$HERE/start-daemons.sh" ]; then "$HERE/start-daemons.sh"; fi
  mkdir -p "$VMLET_RUN_DIR" "$VMLET_LOG_DIR"
  rm -f "$VMLET_PIDFILE" "$VMLET_KEEPER_PIDFILE"
  # The keeper starts vmlet again when it dies on its own, as vmlet.service's Restart= does.
  unit_limits_exec "$VMLET_LOG" bash "$HERE/keeper.sh" vmlet --pidfile "$VMLET_PIDFILE" -- "$VMLET_BIN" serve --config "$VMLET_CONFIG" &
  kpid=$!
  echo "$kpid" >"$VMLET_KEEPER_PIDFILE"
  alive() { local st; st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; st=${st##*) }; [ "${st%% *}" != Z ]; }
  failed() {
    tail -n 15 "$VMLET_LOG" | sed 's/^/    | /' >&2
    stop_vmlet_daemon 5
    die "$1 (log: $VMLET_LOG)"
  }
  vmlet_up() {
    alive "$kpid" || failed "vmlet's keeper exited during startup"
    pid=$(read_pid "$VMLET_PIDFILE")
    [ -n "$pid" ] || return 1
    first=${first:-$pid}
    # A vmlet that dies during startup is not started again: its error is the operator's to read.
    if [ "$pid" != "$first" ] || ! alive "$pid"; then failed "vmlet exited during startup"; fi
    vmlet_answers "$pid"
  }
  if ! wait_for "$START_TIMEOUT" vmlet_up; then
    failed "vmlet (pid ${pid:-?}) did not come up on $SOCK within ${START_TIMEOUT}s"
  fi
  report vmlet "changed (started, pid $pid under its keeper $kpid, socket $SOCK, log $VMLET_LOG)"
}

without_systemd() {
  local pid kpid
  case "$ACTION" in
    status)
      pid=$(running_pid)
      kpid=$(vmlet_keeper_pid)
      if [ -n "$pid" ]; then report vmlet "running (pid $pid${kpid:+ under its keeper $kpid}, socket $(socket_path), log $VMLET_LOG)"
      elif [ -n "$kpid" ]; then report vmlet "not running: its keeper $kpid starts it again (log $VMLET_LOG)"; exit 3
      else report vmlet "not running"; exit 3; fi ;;
    start) do_start ;;
    stop) do_stop ;;
    restart) do_stop; do_start ;;
  esac
}

if have_systemd; then with_systemd; else without_systemd; fi
