#!/usr/bin/env bash
# Keeps libvirtd running on a node without systemd, as libvirtd.service's Restart=on-failure does
# under systemd: start-daemons.sh runs it as `tini -s -- libvirtd-keeper.sh`. libvirtd runs in the
# foreground as its child; when it dies on its own (a crash, the OOM killer, a kill -9) it is
# started again, after 1 s, doubling up to 30 s while it keeps dying within 10 s of its start;
# after 5 such quick deaths in a row (it cannot start: see its log) the keeper gives up and ends.
# A libvirtd that exits 0 or on SIGTERM/SIGINT (stop-daemons.sh, an operator) is stopped on
# purpose: the keeper ends with it. SIGTERM/SIGINT to the keeper (tini forwards them) stop both;
# SIGHUP is passed on to libvirtd (its reload).
# Running VMs are not touched: QEMU outlives libvirtd, and the new one reconnects to them.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

# The variables: the keeper's own test makes its restarts immediate.
MIN_DELAY=${VMLET_KEEPER_MIN_DELAY:-1}
MAX_DELAY=30
STABLE_SECS=${VMLET_KEEPER_STABLE_SECS:-10}
MAX_QUICK_DEATHS=5

say() { printf '%s libvirtd-keeper[%d]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$$" "$*" >&2; }

child=''
stopping=0
on_stop() {
  stopping=1
  [ -n "$child" ] && kill -TERM "$child" 2>/dev/null
}
trap on_stop TERM INT
# SIGHUP is libvirtd's reload: passed on, never the keeper's end (tini forwards it here).
trap '[ -n "$child" ] && kill -HUP "$child" 2>/dev/null' HUP

delay=$MIN_DELAY
quick=0
while :; do
  started=$SECONDS
  libvirtd -p "$LIBVIRTD_PIDFILE" &
  child=$!
  # A stop that came before $child was known: pass it on now.
  [ "$stopping" -eq 1 ] && kill -TERM "$child" 2>/dev/null
  # A trapped signal ends `wait` early (status > 128): wait again until the child is gone.
  wait "$child"
  status=$?
  while kill -0 "$child" 2>/dev/null; do
    wait "$child"
    status=$?
  done
  child=''
  lived=$((SECONDS - started))
  if [ "$stopping" -eq 1 ] || [ "$status" -eq 0 ] || [ "$status" -eq 143 ] || [ "$status" -eq 130 ]; then
    say "libvirtd exited (status $status) after ${lived}s: stopped on purpose, not restarted"
    exit 0
  fi
  if [ "$status" -gt 128 ]; then how="killed by signal $((status - 128))"; else how="exited with status $status"; fi
  if [ "$lived" -ge "$STABLE_SECS" ]; then delay=$MIN_DELAY; quick=0; else quick=$((quick + 1)); fi
  if [ "$quick" -ge "$MAX_QUICK_DEATHS" ]; then
    say "libvirtd $how after ${lived}s, the ${quick}th time in a row within ${STABLE_SECS}s of its start: giving up"
    exit 1
  fi
  say "libvirtd $how after ${lived}s: starting it again in ${delay}s"
  sleep "$delay" &
  sleeper=$!
  wait "$sleeper"
  kill "$sleeper" 2>/dev/null
  [ "$stopping" -eq 1 ] && { say "stopped while waiting to restart libvirtd"; exit 0; }
  if [ "$lived" -lt "$STABLE_SECS" ]; then delay=$((delay * 2 > MAX_DELAY ? MAX_DELAY : delay * 2)); fi
done
