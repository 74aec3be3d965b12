# shellcheck shell=bash
# Shared helpers for node-install/*.sh. Sourced, not executed.

# shellcheck disable=SC2034  # used by the scripts that source this file
# The two variables: vmlet-service.sh's test runs a vmlet of its own beside the node's.
VMLET_RUN_DIR=${VMLET_RUN_DIR:-/run/vmlet}
VMLET_LOG_DIR=${VMLET_LOG_DIR:-/var/log/vmlet}
LIBVIRT_URI=qemu:///system

VIRTLOGD_PIDFILE=/run/virtlogd.pid            # written by virtlogd itself
VIRTLOGD_OURS_PIDFILE=$VMLET_RUN_DIR/virtlogd.pid   # marker: we started it
LIBVIRTD_PIDFILE=/run/libvirtd.pid            # written by libvirtd itself
LIBVIRTD_TINI_PIDFILE=$VMLET_RUN_DIR/libvirtd-tini.pid  # marker: we started it
DAEMON_LOG=$VMLET_LOG_DIR/libvirtd.log        # stdout/stderr of tini/libvirtd/virtlogd

# Where vmlet itself is installed: its own copy, not the checkout it was built in.
#   $VMLET_LIB/releases/<version>-<hash>/  dist/, proto/, node_modules/ (production), node-install/
#   $VMLET_LIB/current -> releases/<...>   switched with one rename (mv -T) by install.sh
#   $VMLET_LIB/guest -> .guest.XXXXXX       the guest kit (build-guest-kit.sh)
#   $VMLET_BIN                              launcher: exec <node> $VMLET_LIB/current/dist/main.js
# VMLET_PREFIX (default /usr/local) moves both, e.g. for the install test. The scripts of an
# installed release (<prefix>/lib/vmlet/releases/<id>/node-install) default to their own prefix.
_vmlet_lib_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
case $_vmlet_lib_dir in
  */lib/vmlet/releases/*/node-install) VMLET_PREFIX=${VMLET_PREFIX:-${_vmlet_lib_dir%/lib/vmlet/releases/*}} ;;
  *) VMLET_PREFIX=${VMLET_PREFIX:-/usr/local} ;;
esac
VMLET_PREFIX=${VMLET_PREFIX%/}
VMLET_LIB=$VMLET_PREFIX/lib/vmlet
VMLET_BIN=$VMLET_PREFIX/bin/vmlet
# The config file (VMLET_CONFIG, as vmlet itself reads it) and its directory.
VMLET_CONFIG=${VMLET_CONFIG:-/etc/vmlet/config.yaml}
VMLET_CONF_DIR=$(dirname "$VMLET_CONFIG")
VMLET_UNIT=/etc/systemd/system/vmlet.service
VMLET_PIDFILE=$VMLET_RUN_DIR/vmlet.pid        # vmlet-service.sh without systemd (its keeper writes it)
VMLET_KEEPER_PIDFILE=$VMLET_RUN_DIR/vmlet-keeper.pid   # keeper.sh running vmlet
VMLET_LOG=$VMLET_LOG_DIR/vmlet.log            # its stdout/stderr (JSON log lines)

# report NAME STATUS: the one line every step prints.
report() { printf '%-14s %s\n' "$1:" "$2"; }

die() { printf 'install: error: %s\n' "$*" >&2; exit 1; }

have_systemd() { [ -d /run/systemd/system ]; }

# read_pid FILE: print the pid stored in FILE (nothing if absent/garbage).
read_pid() {
  local p=''
  if [ -r "$1" ]; then read -r p <"$1" 2>/dev/null || true; fi
  [[ $p =~ ^[0-9]+$ ]] && printf '%s\n' "$p"
  return 0
}

# pid_is PID NAME: PID is alive (not a zombie) and its comm is NAME.
pid_is() {
  local pid=$1 name=$2 comm stat
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  [ "$comm" = "$name" ] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

# vmlet_pid_is PID: PID is a live vmlet server (node running .../dist/main.js serve).
vmlet_pid_is() {
  local cmd
  pid_is "$1" node || return 1
  cmd=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
  [[ $cmd == *vmlet*/dist/main.js\ serve* ]]
}

# gone PID NAME: no live (non-zombie) process NAME has PID.
gone() { ! pid_is "$1" "$2"; }

# stop_pid PID NAME [TIMEOUT]: SIGTERM, wait up to TIMEOUT s (15), then SIGKILL and wait 5 s
# more (dies if it is still there). Sets STOP_KILLED to 1 when the SIGKILL was needed.
stop_pid() {
  local pid=$1 name=$2 timeout=${3:-15}
  STOP_KILLED=0
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_for "$timeout" gone "$pid" "$name"; then
    STOP_KILLED=1
    kill -KILL "$pid" 2>/dev/null || true
    wait_for 5 gone "$pid" "$name" || die "$name (pid $pid) did not exit"
  fi
}

# keeper_of PID NAME: PID is a live keeper.sh keeping NAME (an older installer's
# libvirtd-keeper.sh is not).
keeper_of() {
  local cmd
  pid_is "$1" bash || return 1
  cmd=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
  [[ $cmd == *keeper.sh\ "$2"\ * ]]
}

# vmlet_keeper_pid: the pid of the keeper vmlet-service.sh runs vmlet under, if it runs.
vmlet_keeper_pid() {
  local k
  k=$(read_pid "$VMLET_KEEPER_PIDFILE")
  if [ -n "$k" ] && keeper_of "$k" vmlet; then printf '%s\n' "$k"; fi
  return 0
}

# stop_vmlet_daemon TIMEOUT: stop vmlet-service.sh's vmlet (no systemd). Its keeper gets the
# SIGTERM: it passes it on to vmlet and ends once vmlet has, instead of starting it again. A vmlet
# of an older installer (no keeper) gets it itself. SIGKILL after TIMEOUT s. Both pid files go.
# Sets STOPPED to what it stopped ('' for nothing).
stop_vmlet_daemon() {
  local timeout=$1 k pid
  STOPPED=''
  k=$(vmlet_keeper_pid)
  pid=$(read_pid "$VMLET_PIDFILE")
  vmlet_pid_is "${pid:-x}" || pid=''
  if [ -n "$k" ]; then
    kill -TERM "$k" 2>/dev/null || true
    if wait_for "$timeout" gone "$k" bash; then
      STOPPED="stopped ${pid:+pid $pid and }its keeper $k"
    else
      pid=$(read_pid "$VMLET_PIDFILE")   # the keeper's child now
      kill -KILL "$pid" 2>/dev/null || true
      wait_for 5 gone "$k" bash || kill -KILL "$k" 2>/dev/null || true
      STOPPED="killed pid $pid: no exit within ${timeout}s of SIGTERM; stopped its keeper $k"
    fi
  elif [ -n "$pid" ]; then
    stop_pid "$pid" node "$timeout"
    if [ "$STOP_KILLED" -eq 1 ]; then STOPPED="killed pid $pid: no exit within ${timeout}s of SIGTERM"
    else STOPPED="stopped pid $pid"; fi
  fi
  rm -f "$VMLET_PIDFILE" "$VMLET_KEEPER_PIDFILE"
}

# config_value KEY [FILE]: a top-level scalar of vmlet's config file (quotes and comments
# stripped); nothing when the file or the key is absent.
config_value() {
  awk -v k="$1" 'index($0, k ":") == 1 { v = substr($0, length(k) + 2); sub(/^[ \t]*/, "", v); sub(/[ \t]+#.*/, "", v); gsub(/["\047]/, "", v); print v; exit }' \
    "${2:-$VMLET_CONFIG}" 2>/dev/null || true
}

# ppid_of PID
ppid_of() { awk '/^PPid:/{print $2}' "/proc/$1/status" 2>/dev/null; }

virsh_answers() { timeout 5 virsh -c "$LIBVIRT_URI" version >/dev/null 2>&1; }

# wait_for SECONDS CMD...: poll CMD every 0.1 s until it succeeds or the deadline passes.
wait_for() {
  local secs=$1; shift
  local deadline=$((SECONDS + secs))
  while :; do
    "$@" && return 0
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

# Cumulative "what changed" list for the current step.
_CHANGES=()
changed() { _CHANGES+=("$*"); }
# step_done NAME [OK-DETAIL]: print "changed (a, b)" or "ok[ (detail)]", reset.
step_done() {
  local name=$1 detail=${2:-} out='' c
  if [ "${#_CHANGES[@]}" -gt 0 ]; then
    for c in "${_CHANGES[@]}"; do out+="${out:+, }$c"; done
    report "$name" "changed ($out)"
  else
    report "$name" "ok${detail:+ ($detail)}"
  fi
  _CHANGES=()
}

# detached_exec LOG CMD...: replace the current (sub)shell with CMD in a new
# session (setsid: immune to the caller's SIGHUP / process-group kills),
# stdin /dev/null, stdout/stderr appended to LOG, and every other
# inherited descriptor closed (e.g. a caller's or test harness's pipes on
# fd 3+): daemons must never keep a caller's pipe open, or a caller reading
# our output until EOF would hang. Call it in a subshell or with '&'.
detached_exec() {
  local fd log=$1; shift
  exec </dev/null >>"$log" 2>&1
  for fd in /proc/self/fd/*; do
    fd=${fd##*/}
    if [ "$fd" -gt 2 ] 2>/dev/null; then eval "exec $fd>&-" 2>/dev/null || true; fi
  done
  exec setsid "$@"
}

# npm_ci [ARGS...]: the lockfile's packages, from npm's cache where it has them (--prefer-offline: a cached
# package is not revalidated, so a machine that installed once does not need the registry
# again), and three tries with a pause between them: the registry sometimes does not answer
# for a while (DNS EAI_AGAIN, time-outs), and a failed try leaves nothing half-installed.
npm_ci() {
  local try
  for try in 1 2 3; do
    npm ci --no-audit --no-fund --prefer-offline "$@" && return 0
    [ "$try" -lt 3 ] || break
    printf 'npm ci failed (try %s of 3); trying again in %s s\n' "$try" $((try * 15)) >&2
    sleep $((try * 15))
  done
  return 1
}
