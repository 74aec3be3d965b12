#!/bin/sh
# Builds vmlet-agent reproducibly: static (CGO off), no paths, build id or git revision (which
# would change with every commit) in the binary, with the
# Go standard library only (no module downloads). Usage: build.sh OUT. Prints only errors.
# GOCACHE: $VMLET_AGENT_GOCACHE, else the repo's .cache/guest-agent/gocache (shared with the
# tests), else a directory under $TMPDIR; never next to OUT (that may be packaged).
set -eu
out=${1:?usage: build.sh OUT}
case $out in /*) ;; *) out=$(pwd)/$out ;; esac
dir=$(cd "$(dirname "$0")" && pwd)
cache=${VMLET_AGENT_GOCACHE:-$dir/../../../.cache/guest-agent/gocache}
if ! mkdir -p "$cache" 2>/dev/null || [ ! -w "$cache" ]; then
  cache=${TMPDIR:-/tmp}/vmlet-agent-gocache-$(id -u)
  mkdir -p "$cache"
fi
mkdir -p "$(dirname "$out")"
cd "$dir"
CGO_ENABLED=0 GOOS=linux GOFLAGS=-mod=mod GOPROXY=off GOCACHE=$cache GOPATH=$cache/gopath \
  go build -trimpath -buildvcs=false -ldflags='-s -w -buildid=' -o "$out" .
