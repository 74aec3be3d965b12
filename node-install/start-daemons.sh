#!/usr/bin/env bash
# Start virtlogd and libvirtd if they are not running (idempotent).
#
# With systemd as PID 1: enable --now the libvirt units.
# Without systemd: start them ourselves, detached from the caller's session:
#   virtlogd -d              pid file /run/virtlogd.pid (marker /run/vmlet/virtlogd.pid)
#   tini -s -- keeper.sh libvirtd -- libvirtd -p /run/libvirtd.pid
#                            libvirtd in the foreground under a child subreaper, so
#                            QEMU (double-forked by libvirtd) is reparented to tini and
#                            reaped at once (domain destroy ~0.2 s instead of ~1.5 s when
#                            PID 1 reaps orphans late), and under a keeper that starts it
#                            again when it dies on its own (Restart=on-failure without
#                            systemd). pid files /run/libvirtd.pid and
#                            /run/vmlet/libvirtd-tini.pid.
# A libvirtd started by someone else (its socket answers) is left alone.
# Prints one line per daemon: "ok" (already running) or "changed" (started).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

START_TIMEOUT=${VMLET_LIBVIRTD_START_TIMEOUT:-20}

usage() {
  cat <<EOF
Usage: $(basename "$0") [--restart-libvirtd] [--help]
Start virtlogd and libvirtd (if not already running) and wait until
'virsh -c $LIBVIRT_URI version' answers (deadline ${START_TIMEOUT}s).
  --restart-libvirtd  restart a running libvirtd (to apply qemu.conf): systemd's through
                      systemctl, this installer's through its keeper (running VMs are not
                      touched and stay tini's children); also done when QEMU_CONF_CHANGED=1
EOF
}
RESTART=${QEMU_CONF_CHANGED:-0}
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  --restart-libvirtd) RESTART=1 ;;
  '') ;;
  *) usage >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || die "must run as root"

log_tail() { tail -n 15 "$DAEMON_LOG" 2>/dev/null | sed 's/^/    | /' >&2 || true; }

# ---------------------------------------------------------------- systemd
start_with_systemd() {
  local units=() u need=()
  unit_exists() { [ -n "$(systemctl list-unit-files --no-legend "$1" 2>/dev/null)" ]; }
  if unit_exists libvirtd.service; then
    for u in virtlogd.socket libvirtd.socket libvirtd.service; do
      unit_exists "$u" && units+=("$u")
    done
  elif unit_exists virtqemud.socket; then   # modular daemons (newer distros)
    for u in virtlogd.socket virtqemud.socket; do
      unit_exists "$u" && units+=("$u")
    done
  else
    die "no libvirtd/virtqemud systemd unit found (is libvirt-daemon-system installed?)"
  fi
  for u in "${units[@]}"; do
    if ! systemctl -q is-enabled "$u" 2>/dev/null || ! systemctl -q is-active "$u" 2>/dev/null; then
      need+=("$u")
    fi
  done
  if [ "${#need[@]}" -gt 0 ]; then
    systemctl enable --now "${need[@]}" >/dev/null 2>&1 || die "systemctl enable --now ${need[*]} failed"
    changed "enabled+started ${need[*]}"
  fi
  # qemu.conf is read at start: a running daemon needs a restart (running VMs are not touched).
  if [ "$RESTART" -eq 1 ]; then
    systemctl try-restart libvirtd.service virtqemud.service >/dev/null 2>&1 || die "systemctl try-restart libvirtd/virtqemud failed"
    changed "restarted libvirt"
  fi
  wait_for "$START_TIMEOUT" virsh_answers ||
    die "libvirt did not answer on $LIBVIRT_URI within ${START_TIMEOUT}s (see journalctl -u libvirtd)"
  step_done libvirt "systemd: ${units[*]}"
}

# ------------------------------------------------------------- no systemd
virtlogd_socket_ok() { [ -S /run/libvirt/virtlogd-sock ]; }

start_virtlogd() {
  local pid
  pid=$(read_pid "$VIRTLOGD_PIDFILE")
  if [ -n "$pid" ] && pid_is "$pid" virtlogd; then
    step_done virtlogd "running, pid $pid"
    return
  fi
  # Someone else's virtlogd (other pid file)? pgrep also lists zombies: skip them.
  local p
  pid=''
  for p in $(pgrep -x virtlogd 2>/dev/null || true); do
    if pid_is "$p" virtlogd; then pid=$p; break; fi
  done
  if [ -n "$pid" ]; then
    step_done virtlogd "running, pid $pid, not started by vmlet"
    return
  fi
  # Stale pid files (process gone or pid reused by something else).
  rm -f "$VIRTLOGD_PIDFILE" "$VIRTLOGD_OURS_PIDFILE"
  # virtlogd -d forks and detaches; redirect fds so it never holds the
  # caller's stdout/stderr (a caller piping our output must not hang).
  (detached_exec "$DAEMON_LOG" virtlogd -d -p "$VIRTLOGD_PIDFILE") ||
    { log_tail; die "virtlogd failed to start (log: $DAEMON_LOG)"; }
  virtlogd_up() { pid=$(read_pid "$VIRTLOGD_PIDFILE"); [ -n "$pid" ] && pid_is "$pid" virtlogd && virtlogd_socket_ok; }
  wait_for 10 virtlogd_up || { log_tail; die "virtlogd did not come up (log: $DAEMON_LOG)"; }
  echo "$pid" >"$VIRTLOGD_OURS_PIDFILE"
  changed "started, pid $pid"
  step_done virtlogd
}

# restart_through_keeper KEEPER TINI: SIGUSR1 to our libvirtd's keeper, which stops it and starts
# a new one at once under the same tini; waits for the new one to answer ($pid is the old one's).
restart_through_keeper() {
  local old=$pid
  kill -USR1 "$1" 2>/dev/null || die "libvirtd's keeper (pid $1) is gone"
  new_answers() { libvirtd_answers && [ "$pid" != "$old" ]; }
  wait_for "$START_TIMEOUT" new_answers ||
    { log_tail; die "libvirtd's keeper (pid $1) did not restart it within ${START_TIMEOUT}s (log: $DAEMON_LOG)"; }
  changed "restarted by its keeper $1, pid $old -> $pid, under tini $2"
  step_done libvirtd
}

start_libvirtd() {
  local pid tpid ppid kpid
  # The libvirtd its pid file names is alive and answers (sets pid).
  libvirtd_answers() { pid=$(read_pid "$LIBVIRTD_PIDFILE"); [ -n "$pid" ] && pid_is "$pid" libvirtd && virsh_answers; }
  # A libvirtd this script cannot restart (an older installer's, under tini; someone else's) is
  # left running: its line says how to.
  local by_hand='' by_owner=''
  if [ "$RESTART" -eq 1 ]; then
    by_hand=': to restart it (qemu.conf), stop-daemons.sh --libvirtd-only, then start-daemons.sh'
    by_owner=': restart it the way it was started to apply qemu.conf'
  fi
  pid=$(read_pid "$LIBVIRTD_PIDFILE")
  if [ -n "$pid" ] && pid_is "$pid" libvirtd; then
    # Alive (maybe still starting up): wait for it to answer.
    wait_for "$START_TIMEOUT" virsh_answers ||
      die "libvirtd (pid $pid) is running but does not answer on $LIBVIRT_URI within ${START_TIMEOUT}s"
    tpid=$(read_pid "$LIBVIRTD_TINI_PIDFILE")
    ppid=$(ppid_of "$pid")
    if [ -n "$tpid" ] && [ "$(ppid_of "$ppid")" = "$tpid" ] && pid_is "$tpid" tini; then
      # keeper.sh restarts libvirtd on SIGUSR1; an older installer's libvirtd-keeper.sh dies of it.
      if [ "$RESTART" -eq 1 ] && keeper_of "$ppid" libvirtd; then restart_through_keeper "$ppid" "$tpid"; return; fi
      step_done libvirtd "running, pid $pid under its keeper $ppid and tini $tpid$by_hand"
    elif [ -n "$tpid" ] && [ "$ppid" = "$tpid" ] && pid_is "$tpid" tini; then
      step_done libvirtd "running, pid $pid under tini $tpid (no keeper: started by an older vmlet installer)$by_hand"
    else
      step_done libvirtd "running, pid $pid, not started by vmlet$by_owner"
    fi
    return
  fi
  if virsh_answers; then
    step_done libvirtd "answers on $LIBVIRT_URI, not started by vmlet$by_owner"
    return
  fi
  tpid=$(read_pid "$LIBVIRTD_TINI_PIDFILE")
  if [ -n "$tpid" ] && pid_is "$tpid" tini; then
    # Our keeper is between two libvirtds (it starts a crashed one again after its delay): a
    # second tini and keeper would start a libvirtd that cannot take the socket.
    wait_for "$START_TIMEOUT" libvirtd_answers ||
      { log_tail; die "libvirtd's keeper (under tini $tpid) has not started it again within ${START_TIMEOUT}s (log: $DAEMON_LOG)"; }
    step_done libvirtd "running, pid $pid, started again by its keeper (tini $tpid)"
    return
  fi
  rm -f "$LIBVIRTD_PIDFILE" "$LIBVIRTD_TINI_PIDFILE"   # stale
  # libvirtd stays in the foreground (no -d: it would fork away from tini);
  # setsid: own session, immune to the caller's SIGHUP / process-group kills.
  detached_exec "$DAEMON_LOG" tini -s -- bash "$HERE/keeper.sh" libvirtd -- libvirtd -p "$LIBVIRTD_PIDFILE" &
  local launcher=$!
  libvirtd_up() {
    libvirtd_answers && return 0
    if ! kill -0 "$launcher" 2>/dev/null; then   # tini (and libvirtd) already exited
      log_tail; die "libvirtd exited during startup (log: $DAEMON_LOG)"
    fi
    return 1
  }
  if ! wait_for "$START_TIMEOUT" libvirtd_up; then
    log_tail
    die "libvirtd did not answer on $LIBVIRT_URI within ${START_TIMEOUT}s (log: $DAEMON_LOG)"
  fi
  # libvirtd's parent is its keeper, whose parent is tini (setsid execs in place; $! is
  # normally tini too).
  kpid=$(ppid_of "$pid")
  tpid=$(ppid_of "$kpid")
  if pid_is "$tpid" tini; then
    echo "$tpid" >"$LIBVIRTD_TINI_PIDFILE"
    changed "started, pid $pid under its keeper $kpid and tini $tpid"
  else
    echo "$launcher" >"$LIBVIRTD_TINI_PIDFILE"
    changed "started, pid $pid (WARNING: its keeper's parent $tpid is not tini)"
  fi
  step_done libvirtd
}

# /dev/kvm for QEMU's group (kvm), as distributions' udev rules make it (GROUP="kvm",
# MODE="0660"). Without udev the kernel leaves it root's 0600: QEMU, which runs as libvirt-qemu:kvm
# (qemu.conf, vmlet's qemuUser), cannot use KVM, and libvirt then probes QEMU again at every
# domain define (8.6 s a define seen here). At every start: without udev /dev is new at each boot.
kvm_device() {
  local dev=${VMLET_KVM_DEVICE:-/dev/kvm} gid mode  # the variable: tests point it at a device node of their own
  [ -c "$dev" ] || { step_done kvm-device "no $dev"; return; }
  gid=$(getent group kvm | cut -d: -f3)
  [ -n "$gid" ] || { step_done kvm-device "no group kvm: $dev left as it is"; return; }
  mode=$((8#$(stat -c %a "$dev")))
  if [ $((mode & 8#006)) -eq 6 ] || { [ "$(stat -c %g "$dev")" = "$gid" ] && [ $((mode & 8#060)) -eq 48 ]; }; then
    step_done kvm-device "$dev $(stat -c '%a %U:%G' "$dev")"
    return
  fi
  if chgrp kvm "$dev" && chmod g+rw "$dev"; then
    changed "$dev $(stat -c '%a %U:%G' "$dev")"
  else
    changed "WARNING: could not give $dev to group kvm; QEMU cannot use it (see 'vmlet doctor')"
  fi
  step_done kvm-device
}

mkdir -p "$VMLET_RUN_DIR" "$VMLET_LOG_DIR"
kvm_device
if have_systemd; then
  start_with_systemd
else
  start_virtlogd
  start_libvirtd
fi
