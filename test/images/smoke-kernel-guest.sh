#!/usr/bin/env bash
# Boot the kernel guest under plain QEMU (TCG, no libvirt) and check its console markers,
# the NoCloud seed on both CD-ROM buses (its cloud-config write_files and a 9p mount too),
# DHCP, httpd and ping. See test/images/README.md.
#
#   test/images/smoke-kernel-guest.sh [OUTDIR]     (default OUTDIR=<repo>/.cache/test-images)
#
# Needs qemu-system-x86_64, genisoimage, curl and python3 (only to pick free TCP ports).
# Does not build the guest: run build-kernel-guest.sh first. Exits non-zero on failure.
set -euo pipefail
export LC_ALL=C
SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
REPO_ROOT=$(cd "$(dirname "$SCRIPT")/../.." && pwd)
G=${1:-$REPO_ROOT/.cache/test-images}/kernel-guest
for c in qemu-system-x86_64 genisoimage curl python3; do
  command -v "$c" >/dev/null || { echo "smoke: missing tool: $c" >&2; exit 2; }
done
[[ -s $G/vmlinux && -s $G/initrd.img ]] || { echo "smoke: no guest in $G (build it first)" >&2; exit 2; }

T=$(mktemp -d /tmp/vmlet-guest-smoke.XXXXXX)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$T"
}
trap cleanup EXIT
FAILS=0
ok() { printf '  ok    %s\n' "$*"; }
bad() { printf '  FAIL  %s\n' "$*"; FAILS=$((FAILS + 1)); }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }

# boot NAME "EXTRA CMDLINE" QEMU-ARGS...: start a guest, console to $T/NAME.log, pid in PID.
boot() {
  local name=$1 extra=$2
  shift 2
  T0=$(now)
  qemu-system-x86_64 -machine q35,accel=tcg -m 256 -display none -no-reboot -nodefaults \
    -serial "file:$T/$name.log" -kernel "$G/vmlinux" -initrd "$G/initrd.img" \
    -append "$(cat "$G/cmdline")${extra:+ $extra}" "$@" </dev/null >"$T/$name.qemu" 2>&1 &
  PID=$!
  PIDS+=("$PID")
}
# lines NAME: the console log without the tty's CRs (it has CRLF line ends).
lines() { tr -d '\r' 2>/dev/null < "$T/$1.log"; }
# wait_for NAME REGEX [SECONDS]: poll the console log until a line matches (deadline).
wait_for() {
  local deadline=$(( $(date +%s) + ${3:-60} ))
  while ! lines "$1" | grep -aqE -- "$2"; do
    if (( $(date +%s) >= deadline )); then return 1; fi
    sleep 0.05
  done
}
expect() { # NAME REGEX [SECONDS]
  if wait_for "$@"; then ok "$1: $(lines "$1" | grep -aoE -- "$2" | head -n1)"; else bad "$1: no line matching /$2/"; fi
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
iso() { # NAME DIR: a NoCloud seed from the files in DIR
  (cd "$2" && genisoimage -quiet -output "$T/$1.iso" -volid cidata -joliet -rock -- *)
}

MAC=52:54:00:ab:cd:01
mkdir -p "$T/s1" "$T/s2"
printf 'instance-id: iid-smoke-1\nlocal-hostname: smoke-one\n' > "$T/s1/meta-data"
# write_files and a 9p mount: the share exists in the first guest only (its mount fails in the second).
cat > "$T/s1/user-data" <<'EOF'
#cloud-config
runcmd:
  - [echo, not-run]
write_files:
  - {path: /etc/smoke/b64.txt, encoding: b64, content: c21va2UK, permissions: "0600"}
  - path: /etc/smoke/plain.txt
    content: |
      plain
mounts:
  - [smoke9p, /mnt/share, 9p, "trans=virtio,version=9p2000.L,msize=512000,ro,nofail", "0", "0"]
EOF
mkdir -p "$T/share"
cat > "$T/s1/network-config" <<EOF
version: 2
ethernets:
  eth0:
    match:
      macaddress: "$MAC"
    set-name: eth0
    addresses: [10.0.2.15/24]
    routes: [{to: default, via: 10.0.2.2}]
    nameservers:
      addresses: [10.0.2.3, 192.0.2.53]
      search: [ns1.svc.cluster.local, svc.cluster.local]
    mtu: 1400
EOF
printf 'instance-id: iid-smoke-2\nlocal-hostname: smoke-two\n' > "$T/s2/meta-data"
cp "$T/s1/user-data" "$T/s2/"
iso seed1 "$T/s1"
iso seed2 "$T/s2"

sata() { echo "-drive file=$1,media=cdrom,if=none,id=cd0,readonly=on -device ahci,id=ahci -device ide-cd,drive=cd0,bus=ahci.0"; }
vscsi() { echo "-drive file=$1,media=cdrom,if=none,id=cd0,readonly=on -device virtio-scsi-pci,id=scsi0 -device scsi-cd,drive=cd0"; }

# seed_case NAME ISO BUS HOSTNAME DNS-REGEX [QEMU-ARGS...]
seed_case() {
  local name=$1 iso=$2 bus=$3 host=$4 dns=$5 port body
  shift 5
  echo "== $name: seed $(basename "$iso") on $bus"
  port=$(free_port)
  # shellcheck disable=SC2046 # the bus helpers print several arguments
  boot "$name" "" $($bus "$iso") \
    -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:80" -device "virtio-net-pci,netdev=n0,mac=$MAC" "$@"
  if wait_for "$name" '^VMLET-READY' 60; then ok "$name: VMLET-READY after $(awk -v a="$(now)" -v b="$T0" 'BEGIN { printf "%.2f", a - b }') s"; else bad "$name: no VMLET-READY"; fi
  expect "$name" '^VMLET-CIDATA /dev/sr0$'
  expect "$name" "^VMLET-HOSTNAME $host\$"
  expect "$name" '^VMLET-INSTANCE iid-smoke-'
  expect "$name" '^VMLET-USERDATA #cloud-config$'
  expect "$name" '^VMLET-DHCP eth0 10\.0\.2\.15 router=10\.0\.2\.2 dns=10\.0\.2\.3 '
  expect "$name" "^VMLET-DNS $dns\$"
  expect "$name" '^VMLET-HTTPD 80$'
  expect "$name" '^VMLET-WRITE /etc/smoke/b64\.txt$'
  expect "$name" '^VMLET-WRITE /etc/smoke/plain\.txt$'
  expect "$name" '^VMLET-CLOUDCONFIG '   # before the stop: the callers check its mount markers
  body=$(curl -sS -m 10 "http://127.0.0.1:$port/" 2>&1 || true)
  if [[ $body == "vmlet-guest $host" ]]; then ok "$name: curl -> $body"; else bad "$name: curl -> '$body'"; fi
  stop "$PID"
}
seed_case sata-netconfig "$T/seed1.iso" sata smoke-one \
  'nameservers=10\.0\.2\.3,192\.0\.2\.53 search=ns1\.svc\.cluster\.local,svc\.cluster\.local' \
  -virtfs "local,path=$T/share,mount_tag=smoke9p,security_model=none,readonly=on"
expect sata-netconfig '^VMLET-MOUNT smoke9p /mnt/share ok$' 1
expect sata-netconfig '^VMLET-CLOUDCONFIG write_files=2 mounts=1$' 1
expect sata-netconfig '^VMLET-NETCONFIG eth0 mac=52:54:00:ab:cd:01 addresses=10\.0\.2\.15/24 gateway=10\.0\.2\.2 routes= mtu=1400$' 1
seed_case vscsi-dhcp-dns "$T/seed2.iso" vscsi smoke-two 'nameservers=10\.0\.2\.3 search='
expect vscsi-dhcp-dns '^VMLET-MOUNT smoke9p /mnt/share failed$' 1
expect vscsi-dhcp-dns '^VMLET-CLOUDCONFIG write_files=2 mounts=0$' 1

echo "== no seed: DHCP hostname/search, vmlet.test=ping:10.0.2.2,10.0.2.99"
boot noseed "vmlet.test=ping:10.0.2.2,10.0.2.99" \
  -netdev user,id=n0,hostname=dhcp-host,dnssearch=example.com,dnssearch=corp.test -device virtio-net-pci,netdev=n0
expect noseed '^VMLET-CIDATA none$'
expect noseed '^VMLET-DHCP eth0 10\.0\.2\.15 router=10\.0\.2\.2 dns=10\.0\.2\.3 search=example\.com,corp\.test hostname=dhcp-host mtu=$'
expect noseed '^VMLET-DNS nameservers=10\.0\.2\.3 search=example\.com,corp\.test$'
expect noseed '^VMLET-HOSTNAME dhcp-host$'
expect noseed '^VMLET-PING 10\.0\.2\.2 ok$'
expect noseed '^VMLET-PING 10\.0\.2\.99 fail$' 90
stop "$PID"

echo "== two guests, static network-config (flow style / JSON), no DHCP server: pod-to-pod ping"
mkdir -p "$T/a" "$T/b"
printf 'instance-id: iid-a\nlocal-hostname: pod-a\n' > "$T/a/meta-data"
cat > "$T/a/network-config" <<'EOF'
network:
  version: 2
  ethernets: { id0: { match: {macaddress: "52:54:00:00:00:0a"}, addresses: [10.89.0.5/16], gateway4: 10.89.0.1, nameservers: { addresses: [10.96.0.10], search: [default.svc.cluster.local] } } }
EOF
printf '{"instance-id": "iid-b", "local-hostname": "pod-b"}\n' > "$T/b/meta-data"
printf '{"version": 2, "ethernets": {"eth0": {"match": {"macaddress": "52:54:00:00:00:0b"},\n "addresses": ["10.89.0.6/16"], "routes": [{"to": "default", "via": "10.89.0.1"}],\n "nameservers": {"addresses": ["10.96.0.10"]}}}}\n' > "$T/b/network-config"
iso seedA "$T/a"
iso seedB "$T/b"
port=$(free_port)
# shellcheck disable=SC2046
boot pod-a "" $(vscsi "$T/seedA.iso") -netdev "socket,id=n0,listen=127.0.0.1:$port" -device virtio-net-pci,netdev=n0,mac=52:54:00:00:00:0a
PA=$PID
expect pod-a '^VMLET-NETCONFIG eth0 mac=52:54:00:00:00:0a addresses=10\.89\.0\.5/16 gateway=10\.89\.0\.1 '
expect pod-a '^VMLET-HTTPD 80$'
# shellcheck disable=SC2046
boot pod-b "vmlet.test=ping:10.89.0.5" $(sata "$T/seedB.iso") -netdev "socket,id=n0,connect=127.0.0.1:$port" -device virtio-net-pci,netdev=n0,mac=52:54:00:00:00:0b
expect pod-b '^VMLET-DNS nameservers=10\.96\.0\.10 search=$'
expect pod-b '^VMLET-PING 10\.89\.0\.5 ok$'
stop "$PID"
stop "$PA"

echo "== vmlet.test=poweroff (QEMU must exit by itself)"
# shellcheck disable=SC2046
boot poweroff "vmlet.test=poweroff" $(vscsi "$T/seed1.iso")
expect poweroff '^VMLET-POWEROFF$'
deadline=$(( $(date +%s) + 30 ))
while kill -0 "$PID" 2>/dev/null && (( $(date +%s) < deadline )); do sleep 0.1; done
if kill -0 "$PID" 2>/dev/null; then bad "poweroff: QEMU still running"; stop "$PID"; else ok "poweroff: QEMU exited"; fi

if ((FAILS)); then
  echo "smoke: $FAILS check(s) failed (logs: kept in ${T}.failed)"
  cp -r "$T" "${T}.failed"
  exit 1
fi
echo "smoke: all checks passed"
