#!/bin/sh
# shellcheck shell=sh
# vmlet guest kit self-test (vmlet.selftest=1 on the kernel command line; run by /init before
# the agent). Checks what the agent's create_container rests on: an overlayfs whose lower dir
# is on the image share (virtiofs or 9p) and whose upper and work dirs are on the scratch disk.
# Prints "VMLET-SELFTEST-NET <nic> mtu=.. addrs=.. routes4=.. routes6=.." and then one line:
# "VMLET-SELFTEST ok <details>" or "VMLET-SELFTEST fail <what>".
# If the image dir holds a file "vmlet-selftest", its first line is printed as
# "VMLET-SELFTEST-LOWER <line>" (read through the overlay), and then appended to through the
# overlay (copy-up), which must leave the file on the share unchanged.
I=/run/vmlet/images S=/run/vmlet/scratch/.selftest M=/run/vmlet/selftest

fail() { echo "VMLET-SELFTEST fail $*"; cleanup; exit 0; }
cleanup() { umount "$M" 2>/dev/null; rm -rf "$S"; rmdir "$M" 2>/dev/null; }

# The network as /init configured it, for the host to compare with the command line.
for n in /sys/class/net/*; do
  n=${n##*/}
  [ "$n" = lo ] && continue
  echo "VMLET-SELFTEST-NET $n mtu=$(cat "/sys/class/net/$n/mtu")" \
    "addrs=$(ip -o addr show dev "$n" | awk '$3 != "inet6" || $4 !~ /^fe80/ { printf "%s,", $4 }')" \
    "routes4=$(ip -4 route show | tr '\n' ';' | tr -s ' ')" \
    "routes6=$(ip -6 route show | grep -v '^fe80' | tr '\n' ';' | tr -s ' ')"
  break
done
grep -Eq ' /run/vmlet/images (virtiofs|9p) ' /proc/mounts || fail "image share not mounted"
fs=$(awk '$2 == "/run/vmlet/scratch" { print $3 }' /proc/mounts)
lower=''
for d in "$I"/*; do [ -d "$d" ] && { lower=$d; break; }; done
[ -n "$lower" ] || fail "no directory in $I"
if touch "$I/.rw" 2>/dev/null; then rm -f "$I/.rw"; fail "image share is writable"; fi

rm -rf "$S"
mkdir -p "$S/upper" "$S/work" "$M" || fail "mkdir on scratch ($fs)"
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$S/upper,workdir=$S/work" "$M" ||
  fail "mount overlay lower=$lower (the image share) upper=$S/upper ($fs): $(dmesg | grep -i overlay | tail -n 1)"
n=$(ls -A "$M" | wc -l)
[ "$n" = "$(ls -A "$lower" | wc -l)" ] || fail "merged dir lists $n entries, lower $(ls -A "$lower" | wc -l)"
echo vmlet > "$M/.selftest-new" || fail "write a new file"
[ "$(cat "$S/upper/.selftest-new")" = vmlet ] || fail "new file not in upper"
if [ -f "$lower/vmlet-selftest" ]; then
  read -r line < "$M/vmlet-selftest" || fail "read a lower file through the overlay"
  echo "VMLET-SELFTEST-LOWER $line"
  before=$(wc -c < "$lower/vmlet-selftest")
  echo copied-up >> "$M/vmlet-selftest" || fail "append to a lower file (copy-up)"
  [ "$(tail -n 1 "$S/upper/vmlet-selftest")" = copied-up ] || fail "copy-up not in upper"
  [ "$(wc -c < "$lower/vmlet-selftest")" = "$before" ] || fail "copy-up changed the lower file"
fi
rm "$M/.selftest-new" || fail "remove a file"
echo "VMLET-SELFTEST ok lower=${lower##*/} entries=$n scratch=$fs"
cleanup
