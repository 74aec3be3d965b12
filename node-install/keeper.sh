#!/usr/bin/env bash
# keeper.sh NAME [--pidfile FILE] -- CMD [ARG...]
#
# Keeps a daemon running on a node without systemd, as a unit's Restart=on-failure does under
# systemd. start-daemons.sh runs libvirtd under it (`tini -s -- keeper.sh libvirtd -- libvirtd
# -p …`), vmlet-service.sh runs vmlet under it. CMD runs in the foreground as the keeper's child;
# when it dies on its own (a crash, the OOM killer, a kill -9, an error exit) it is started again,
# after 1 s, doubling up to 30 s while it keeps dying within 10 s of its start; after 5 such
# quick deaths in a row (it cannot start: see its log) the keeper gives up and ends.
# A CMD that exits 0 or on SIGTERM/SIGINT (stop-daemons.sh, vmlet-service.sh stop, an operator)
# is stopped on purpose: the keeper ends with it. SIGTERM/SIGINT to the keeper stop both;
# SIGHUP is passed on to CMD (libvirtd's reload); SIGUSR1 restarts CMD at once (SIGTERM, then a
# new one: start-daemons.sh --restart-libvirtd, so that tini above stays the VMs' reaper).
# --pidfile FILE: the keeper writes each CMD's pid there (libvirtd writes its own).
set -uo pipefail

usage() { echo "usage: keeper.sh NAME [--pidfile FILE] -- CMD [ARG...]" >&2; exit 2; }
[ "$#" -ge 1 ] || usage
NAME=$1; shift
PIDFILE=''
while [ "$#" -gt 0 ]; do
  case "$1" in
    --pidfile) [ "$#" -ge 2 ] || usage; PIDFILE=$2; shift 2 ;;
    --) shift; break ;;
    *) usage ;;
  esac
done
[ "$#" -ge 1 ] || usage

# The variables: the keeper's own test makes its restarts immediate.
MIN_DELAY=${VMLET_KEEPER_MIN_DELAY:-1}
MAX_DELAY=30
STABLE_SECS=${VMLET_KEEPER_STABLE_SECS:-10}
MAX_QUICK_DEATHS=5

say() { printf '%s %s-keeper[%d]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$NAME" "$$" "$*" >&2; }

child=''
stopping=0
restart=0
# Set by every trap: a trapped signal ends `wait` early with 128+its number, which is not CMD's status.
interrupted=0
on_stop() {
  interrupted=1
  stopping=1
  [ -n "$child" ] && kill -TERM "$child" 2>/dev/null
}
trap on_stop TERM INT
# SIGHUP is libvirtd's reload: passed on, never the keeper's end (tini forwards it here).
trap 'interrupted=1; [ -n "$child" ] && kill -HUP "$child" 2>/dev/null' HUP
# SIGUSR1: a restart asked for (also cuts a restart delay short).
trap 'interrupted=1; restart=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null' USR1

delay=$MIN_DELAY
quick=0
while :; do
  started=$SECONDS
  restart=0
  "$@" &
  child=$!
  if [ -n "$PIDFILE" ]; then echo "$child" >"$PIDFILE.tmp" && mv -f "$PIDFILE.tmp" "$PIDFILE"; fi
  # A stop or restart asked for before $child was known: pass it on now.
  [ "$stopping" -eq 1 ] || [ "$restart" -eq 1 ] && kill -TERM "$child" 2>/dev/null
  # A trapped signal ends `wait` early: wait again, until a wait that no trap cut short gives
  # CMD's own status (bash keeps it once it has reaped CMD; checking whether CMD still ran, as
  # this did before, took the cut-short wait's 128+signal for CMD's when bash had reaped it
  # first). 127 from a wait again: the last one had CMD's status already (the trap ran before it).
  interrupted=0
  wait "$child"
  status=$?
  while [ "$interrupted" -eq 1 ]; do
    interrupted=0
    wait "$child" 2>/dev/null
    again=$?
    [ "$again" -eq 127 ] && break
    status=$again
  done
  child=''
  lived=$((SECONDS - started))
  if [ "$restart" -eq 1 ] && [ "$stopping" -eq 0 ]; then
    say "$NAME exited (status $status) after ${lived}s: restarted as asked (SIGUSR1)"
    delay=$MIN_DELAY; quick=0
    continue
  fi
  if [ "$stopping" -eq 1 ] || [ "$status" -eq 0 ] || [ "$status" -eq 143 ] || [ "$status" -eq 130 ]; then
    say "$NAME exited (status $status) after ${lived}s: stopped on purpose, not restarted"
    exit 0
  fi
  if [ "$status" -gt 128 ]; then how="killed by signal $((status - 128))"; else how="exited with status $status"; fi
  if [ "$lived" -ge "$STABLE_SECS" ]; then delay=$MIN_DELAY; quick=0; else quick=$((quick + 1)); fi
  if [ "$quick" -ge "$MAX_QUICK_DEATHS" ]; then
    say "$NAME $how after ${lived}s, the ${quick}th time in a row within ${STABLE_SECS}s of its start: giving up"
    exit 1
  fi
  say "$NAME $how after ${lived}s: starting it again in ${delay}s"
  sleep "$delay" &
  sleeper=$!
  wait "$sleeper"
  kill "$sleeper" 2>/dev/null
  [ "$stopping" -eq 1 ] && { say "stopped while waiting to restart $NAME"; exit 0; }
  if [ "$lived" -lt "$STABLE_SECS" ]; then delay=$((delay * 2 > MAX_DELAY ? MAX_DELAY : delay * 2)); fi
done
