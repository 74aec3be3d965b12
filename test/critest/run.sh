#!/usr/bin/env bash
# Run cri-tools' critest (the CRI validation suite) against vmlet.
#
#   test/critest/run.sh CRITEST_BINARY [critest args...]
#
#   MODE=vm (default)  vmlet alone; critest --runtime-handler vmlet: every pod is a sandboxed
#                      pod (one micro-VM per pod, its containers as processes in it).
#   MODE=forward       vmlet with a real containerd as its downstream; critest without
#                      --runtime-handler: every pod is forwarded to containerd.
#
# No binary given, or not there: prints why and exits 0 (build one as test/critest/README.md
# says). Otherwise: builds the image stand-ins (build-images.sh), starts a loopback
# docker-registry and pushes them under critest's own repository names, starts vmlet
# (dist/main.js; `bash test/prepare.sh` builds it and .cache/guest-kit) with registry mirrors
# for registry.k8s.io and gcr.io, runs critest, prints the pass/fail/skip counts and stops
# everything it started (by pid). Needs root, libvirtd and virtlogd (test/prepare.sh).
#
# Env: MODE, VMLET_MAIN (default <repo>/dist/main.js), CRICTL (default: on PATH, else next to CRITEST_BINARY), KEEP=1 (keep the temp dir: logs), OUT=DIR (work dir, default a new /tmp dir),
#      LOG_LEVEL (vmlet's, default debug), CRITEST_TIMEOUT (default 3h).
# Extra args go to critest, e.g. --ginkgo.focus='PodSandbox' or --ginkgo.skip='digest'.
# Outputs in the work dir: critest.log, vmlet.log, registry.log, containerd.log (forward),
# junit.xml, summary.txt.
set -uo pipefail
umask 022

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HERE/../.." && pwd)
CRITEST=${1:-}
if [[ -z $CRITEST || ! -x $CRITEST ]]; then
  echo "critest: SKIP: ${CRITEST:+$CRITEST is not an executable; }usage: $0 CRITEST_BINARY [critest args] (see test/critest/README.md to build critest from cri-tools v1.29.0)"
  exit 0
fi
CRITEST=$(readlink -f "$CRITEST")
shift
# crictl (for removing pods a failed spec left): CRICTL, else on PATH, else next to critest.
CRICTL=${CRICTL:-$(command -v crictl || echo "$(dirname "$CRITEST")/crictl")}
MODE=${MODE:-vm}
case $MODE in vm|forward) ;; *) echo "MODE must be vm or forward" >&2; exit 2 ;; esac
[[ $(id -u) == 0 ]] || { echo "critest run.sh: needs root (VMs, netns, CNI)" >&2; exit 2; }
VMLET_MAIN=${VMLET_MAIN:-$REPO_ROOT/dist/main.js}
[[ -f $VMLET_MAIN ]] || { echo "no $VMLET_MAIN: run bash test/prepare.sh first" >&2; exit 2; }
[[ -f $REPO_ROOT/.cache/guest-kit/initrd.img ]] || { echo "no .cache/guest-kit: run bash test/prepare.sh first" >&2; exit 2; }

OUT=${OUT:-$(mktemp -d /tmp/vmlet-critest.XXXXXX)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
echo "critest: mode $MODE, work dir $OUT"
PIDS=()          # what this script started, stopped in reverse order
CTR_SOCK=

stop_pid() { # stop_pid PID NAME: SIGTERM, wait up to 20 s, then SIGKILL
  local pid=$1 name=$2 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 200; i++)); do kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }; sleep 0.1; done
  echo "critest: $name ($pid) ignored SIGTERM: SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
}

cleanup() {
  local i
  # Pods left behind (a failed spec's AfterEach): remove them through vmlet while it runs.
  if [[ -n ${VMLET_SOCK:-} && -S $VMLET_SOCK && -x $CRICTL ]]; then
    timeout 300 "$CRICTL" --runtime-endpoint "unix://$VMLET_SOCK" rmp -fa >/dev/null 2>&1 || true
  fi
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    stop_pid "${PIDS[i]%%:*}" "${PIDS[i]#*:}"
  done
  if [[ -n $CTR_SOCK ]]; then # shims of our containerd (their command line names its socket)
    for p in /proc/[0-9]*; do
      if tr '\0' ' ' < "$p/cmdline" 2>/dev/null | grep -q "containerd-shim.*$CTR_SOCK"; then kill -KILL "${p#/proc/}" 2>/dev/null; fi
    done
  fi
  # Mounts under OUT: containerd's, and vmlet's read-only view of its image tree (state/images-ro).
  if [[ -n $OUT && $OUT != / ]]; then
    grep -F " $OUT/" /proc/self/mounts | awk '{ print $2 }' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  fi
  for br in critest0 critestc0; do ip link del "$br" 2>/dev/null || true; done
  if [[ -z ${KEEP:-} ]]; then
    rm -rf "$OUT/registry/storage" "$OUT/state" "$OUT/containerd/root" 2>/dev/null
  fi
  echo "critest: logs in $OUT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # wait_for SECONDS DESC CMD...
  local t=$1 desc=$2 i; shift 2
  for ((i = 0; i < t * 10; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "critest: timed out waiting for $desc" >&2; return 1
}

# --- images -----------------------------------------------------------------------------
bash "$HERE/build-images.sh" || exit 1
IMAGES=$REPO_ROOT/.cache/critest-images/oci

# --- registry -----------------------------------------------------------------------------
mkdir -p "$OUT/registry"
REG_PORT=$(free_port)
REG=127.0.0.1:$REG_PORT
cat > "$OUT/registry/config.yml" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $OUT/registry/storage
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $REG
YML
docker-registry serve "$OUT/registry/config.yml" > "$OUT/registry.log" 2>&1 &
PIDS+=("$!:docker-registry")
wait_for 20 "registry on $REG" curl -fsS "http://$REG/v2/" || exit 1
echo "critest: registry on $REG; pushing the stand-ins"
while read -r layout tag ref; do
  [[ -n $layout ]] || continue
  path=${ref#*/}   # drop the registry host: the mirror serves the same repository paths
  skopeo --insecure-policy copy --quiet --preserve-digests --dest-tls-verify=false \
    "oci:$IMAGES/$layout:$tag" "docker://$REG/$path" || { echo "critest: push of $ref failed" >&2; exit 1; }
done < "$IMAGES/images.txt"

# --- containerd (forward mode) --------------------------------------------------------------
DOWNSTREAM=
if [[ $MODE == forward ]]; then
  C=$OUT/containerd
  mkdir -p "$C/cni"
  CTR_SOCK=$C/containerd.sock
  cat > "$C/cni/10-critest.conflist" <<JSON
{"cniVersion":"1.0.0","name":"critest-containerd","plugins":[{"type":"bridge","bridge":"critestc0","isGateway":true,"ipMasq":false,"ipam":{"type":"host-local","ranges":[[{"subnet":"10.253.0.0/24"}]],"dataDir":"$C/ipam"}},{"type":"portmap","capabilities":{"portMappings":true}}]}
JSON
  CRI='plugins."io.containerd.grpc.v1.cri"'
  cat > "$C/config.toml" <<TOML
version = 2
root = "$C/root"
state = "$C/state"
plugin_dir = ""
disabled_plugins = ["io.containerd.internal.v1.tracing", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$CTR_SOCK"
[ttrpc]
  address = "$CTR_SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$C/opt"
[$CRI]
  sandbox_image = "registry.k8s.io/pause:3.9"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
[$CRI.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[$CRI.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[$CRI.containerd.runtimes.runc.options]
  BinaryName = "$(command -v runc)"
  SystemdCgroup = false
[$CRI.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "$C/cni"
[$CRI.registry.mirrors."registry.k8s.io"]
  endpoint = ["http://$REG"]
[$CRI.registry.mirrors."gcr.io"]
  endpoint = ["http://$REG"]
TOML
  containerd --config "$C/config.toml" --log-level info > "$OUT/containerd.log" 2>&1 &
  PIDS+=("$!:containerd")
  wait_for 60 "containerd on $CTR_SOCK" test -S "$CTR_SOCK" || exit 1
  DOWNSTREAM="downstream: unix://$CTR_SOCK"
fi

# --- vmlet ----------------------------------------------------------------------------------
mkdir -p "$OUT/cni" "$OUT/state"
cat > "$OUT/cni/10-critest.conflist" <<JSON
{"cniVersion":"1.0.0","name":"critest-vmlet","plugins":[{"type":"bridge","bridge":"critest0","isGateway":true,"ipam":{"type":"host-local","ranges":[[{"subnet":"10.252.0.0/24"}]],"dataDir":"$OUT/ipam"}},{"type":"portmap","capabilities":{"portMappings":true}}]}
JSON
VMLET_SOCK=$OUT/vmlet.sock
cat > "$OUT/vmlet.yaml" <<YML
guestKitDir: $REPO_ROOT/.cache/guest-kit
cni:
  confDir: $OUT/cni
  binDirs: [/usr/lib/cni, /opt/cni/bin]
registries:
  insecure: ["$REG"]
  mirrors:
    registry.k8s.io: ["http://$REG"]
    gcr.io: ["http://$REG"]
logLevel: ${LOG_LEVEL:-debug}
$DOWNSTREAM
YML
node "$VMLET_MAIN" serve --config "$OUT/vmlet.yaml" --socket "$VMLET_SOCK" --state-dir "$OUT/state" > "$OUT/vmlet.out" 2> "$OUT/vmlet.log" &
PIDS+=("$!:vmlet")
wait_for 60 "vmlet on $VMLET_SOCK" test -S "$VMLET_SOCK" || { tail -20 "$OUT/vmlet.log" >&2; exit 1; }

# --- critest --------------------------------------------------------------------------------
ARGS=(--runtime-endpoint "unix://$VMLET_SOCK" --image-endpoint "unix://$VMLET_SOCK"
      --ginkgo.v --ginkgo.no-color --ginkgo.junit-report "$OUT/junit.xml" --ginkgo.timeout "${CRITEST_TIMEOUT:-3h}")
[[ $MODE == vm ]] && ARGS+=(--runtime-handler vmlet)
echo "critest: $CRITEST ${ARGS[*]} $*"
(cd "$OUT" && exec "$CRITEST" "${ARGS[@]}" "$@") > "$OUT/critest.log" 2>&1 &
CT=$!
PIDS+=("$CT:critest")
tail -n +1 -f --pid="$CT" "$OUT/critest.log" &
wait "$CT"
RC=$?
sleep 0.5
PIDS=("${PIDS[@]:0:${#PIDS[@]}-1}")

# --- summary --------------------------------------------------------------------------------
{
  echo "mode $MODE: $(grep -E '^(Ran [0-9]+ of [0-9]+ Specs|(SUCCESS|FAIL)! -- [0-9]+ Passed)' "$OUT/critest.log" | tr '\n' ' ')"
  [[ -f $OUT/junit.xml ]] && python3 "$HERE/summary.py" "$OUT/junit.xml"
} | tee "$OUT/summary.txt"
exit "$RC"
