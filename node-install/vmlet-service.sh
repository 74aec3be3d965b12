#!/usr/bin/env bash
# Start, stop, restart vmlet or show its status, with or without systemd.
#
# With systemd as PID 1: systemctl on vmlet.service (install.sh enables it).
# Without systemd: vmlet runs as a detached daemon of its own (new session, stdin /dev/null),
#   pid file /run/vmlet/vmlet.pid, stdout/stderr appended to /var/log/vmlet/vmlet.log.
#   start   also starts libvirtd/virtlogd (start-daemons.sh) if they are not running, then
#           waits until vmlet's socket is up; stop sends SIGTERM and waits (SIGKILL after 30 s).
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
  local pid
  pid=$(running_pid)
  if [ -z "$pid" ]; then
    if [ -e "$VMLET_PIDFILE" ]; then rm -f "$VMLET_PIDFILE"; report vmlet "changed (not running; removed stale $VMLET_PIDFILE)"
    else report vmlet "ok (not running)"; fi
    return
  fi
  kill -TERM "$pid" 2>/dev/null || true
  vmlet_gone() { ! vmlet_pid_is "$pid"; }
  if ! wait_for "$STOP_TIMEOUT" vmlet_gone; then
    kill -KILL "$pid" 2>/dev/null || true
    wait_for 5 vmlet_gone || die "vmlet (pid $pid) did not exit"
    rm -f "$VMLET_PIDFILE"
    report vmlet "changed (killed pid $pid: no exit within ${STOP_TIMEOUT}s of SIGTERM)"
    return
  fi
  rm -f "$VMLET_PIDFILE"
  report vmlet "changed (stopped pid $pid)"
}

do_start() {
  local pid sock
  sock=$(socket_path)
  pid=$(running_pid)
  if [ -n "$pid" ]; then report vmlet "ok (running, pid $pid, socket $sock)"; return; fi
  [ -x "$VMLET_BIN" ] || die "$VMLET_BIN not found: run node-install/install.sh first"
  # libvirtd and virtlogd first (after a reboot without systemd nothing runs).
  if [ "${VMLET_SKIP_DAEMONS:-0}" != 1 ] && [ -x "$HERE/start-daemons.sh" ]; then "$HERE/start-daemons.sh"; fi
  mkdir -p "$VMLET_RUN_DIR" "$VMLET_LOG_DIR"
  rm -f "$VMLET_PIDFILE"
  detached_exec "$VMLET_LOG" "$VMLET_BIN" serve --config "$VMLET_CONFIG" &
  pid=$!
  echo "$pid" >"$VMLET_PIDFILE"
  alive() { local st; st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; st=${st##*) }; [ "${st%% *}" != Z ]; }
  vmlet_up() {
    if ! alive "$pid"; then
      tail -n 15 "$VMLET_LOG" | sed 's/^/    | /' >&2
      rm -f "$VMLET_PIDFILE"
      die "vmlet exited during startup (log: $VMLET_LOG)"
    fi
    vmlet_pid_is "$pid" && [ -S "$sock" ] && [ "$sock" -nt "$VMLET_PIDFILE" ]
  }
  if ! wait_for "$START_TIMEOUT" vmlet_up; then
    tail -n 15 "$VMLET_LOG" | sed 's/^/    | /' >&2
    die "vmlet (pid $pid) did not come up on $sock within ${START_TIMEOUT}s (log: $VMLET_LOG)"
  fi
  report vmlet "changed (started, pid $pid, socket $sock, log $VMLET_LOG)"
}

without_systemd() {
  local pid
  case "$ACTION" in
    status)
      pid=$(running_pid)
      if [ -n "$pid" ]; then report vmlet "running (pid $pid, socket $(socket_path), log $VMLET_LOG)"
      else report vmlet "not running"; exit 3; fi ;;
    start) do_start ;;
    stop) do_stop ;;
    restart) do_stop; do_start ;;
  esac
}

if have_systemd; then with_systemd; else without_systemd; fi
