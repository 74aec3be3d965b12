#!/usr/bin/env bash
# Build stand-ins for the images critest (cri-tools v1.29.0) pulls, from Debian packages only.
#
#   test/critest/build-images.sh [OUTDIR]      (default OUTDIR=<repo>/.cache/critest-images)
#
# Produces OUTDIR/oci/<name>/ (OCI image layouts, tags as critest names them) and
# OUTDIR/oci/images.txt (`<layout> <tag> <registry/repository:tag>` per push). See
# test/critest/README.md for what each stand-in holds and why.
#
# Inputs: busybox from Debian's busybox-static .deb (every applet hard-linked), the `standin`
# Go program (test/critest/standin/: nginx, httpd, nnp, pgrep, ipcs, pause), built static and
# reproducibly (-trimpath, no build id, no VCS stamp), and test/registry/oci.py for the layouts.
# Reproducible (SOURCE_DATE_EPOCH, default 0) and cached: a stamp records the inputs.
set -euo pipefail
umask 022
export LC_ALL=C TZ=UTC

SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
HERE=$(dirname "$SCRIPT")
REPO_ROOT=$(cd "$HERE/../.." && pwd)
OUTDIR=${1:-$REPO_ROOT/.cache/critest-images}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
NAME=oci
DEST=$OUTDIR/$NAME
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}
export SOURCE_DATE_EPOCH
DEB_CACHE=${VMLET_DEB_CACHE:-/var/cache/vmlet/test-debs}

step() { printf '==> %s\n' "$*" >&2; }
die() { printf 'critest build-images: error: %s\n' "$*" >&2; exit 1; }
# shellcheck source=../images/publish.sh
. "$HERE/../images/publish.sh"

for c in python3 gzip go dpkg-deb dpkg-query sha256sum flock; do
  command -v "$c" >/dev/null || die "missing tool: $c"
done

# get_deb PKG: the newest PKG .deb in the test .deb cache or apt's cache, else apt-get download.
get_deb() {
  local deb
  deb=$( (ls -1 "$DEB_CACHE"/"$1"_*_amd64.deb /var/cache/apt/archives/"$1"_*_amd64.deb 2>/dev/null || true) | sort -V | tail -1)
  if [[ -z $deb ]]; then
    step "downloading $1"
    (cd "$WORK" && apt-get -q -o APT::Sandbox::User=root download "$1" >/dev/null) || die "apt-get download $1 failed"
    deb=$(ls -1 "$WORK"/"$1"_*.deb | tail -1)
  fi
  printf '%s\n' "$deb"
}

exec 9>"$OUTDIR/.lock"
flock 9
WORK=$(mktemp -d "$OUTDIR/.build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
BB_DEB=$(get_deb busybox)
LIBC_DEB=$(get_deb libc6)

INPUTS=$(
  printf 'epoch=%s\n' "$SOURCE_DATE_EPOCH"
  printf 'busybox-deb=%s\n' "$(sha256sum < "$BB_DEB" | cut -c1-64)"
  printf 'libc6-deb=%s\n' "$(sha256sum < "$LIBC_DEB" | cut -c1-64)"
  for f in "$SCRIPT" "$HERE/images.py" "$REPO_ROOT/test/registry/oci.py" "$HERE"/standin/*; do
    printf '%s=%s\n' "${f#"$REPO_ROOT"/}" "$(sha256sum < "$f" | cut -c1-64)"
  done
  printf 'go=%s\n' "$(go version)"
  dpkg-query -W -f='${Package}=${Version}\n' gzip python3 2>/dev/null | sort
)
KEY=$(sha256sum <<<"$INPUTS" | cut -c1-64)
if [[ -z ${FORCE:-} && -s $DEST/images.txt && -f $DEST/stamp && $(head -1 "$DEST/stamp") == "key=$KEY" ]]; then
  step "up to date ($DEST)"
  exit 0
fi

step "busybox from $(basename "$BB_DEB"), glibc from $(basename "$LIBC_DEB")"
dpkg-deb -x "$BB_DEB" "$WORK/bb"
[[ -x $WORK/bb/bin/busybox ]] || die "no /bin/busybox in $BB_DEB"
dpkg-deb -x "$LIBC_DEB" "$WORK/libc"
"$WORK/libc/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" --library-path "$WORK/libc/lib/x86_64-linux-gnu" "$WORK/bb/bin/busybox" --list > "$WORK/applets"

step "standin (Go, static)"
GOCACHE_DIR=${VMLET_CRITEST_GOCACHE:-$REPO_ROOT/.cache/critest-gocache}
mkdir -p "$GOCACHE_DIR"
(cd "$HERE/standin" && CGO_ENABLED=0 GOOS=linux GOARCH=amd64 GOFLAGS=-mod=mod GOPROXY=off \
  GOCACHE=$GOCACHE_DIR GOPATH=$GOCACHE_DIR/gopath go build -trimpath -buildvcs=false -ldflags='-s -w -buildid=' -o "$WORK/standin" .)

step "writing OCI image layouts"
python3 "$HERE/images.py" --work "$WORK/out" --busybox "$WORK/bb/bin/busybox" --libc "$WORK/libc" --applets "$WORK/applets" --standin "$WORK/standin"
printf 'key=%s\n%s\n' "$KEY" "$INPUTS" > "$WORK/out/stamp"
find "$WORK/out" -type d -exec chmod 0755 {} +
find "$WORK/out" -type f -exec chmod 0644 {} +
publish_dir "$WORK/out" "$OUTDIR" "$NAME" "$WORK"
step "done: $(du -sh "$PUBLISHED" | cut -f1) in $DEST"
