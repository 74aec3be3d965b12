#!/usr/bin/env bash
# Everything the tests need on a fresh Debian/Ubuntu node, then nothing more: the node
# installer's dependency and daemon steps (the same script a user runs), the npm packages,
# the build and its checks (typecheck, lint, depcheck), and the test guest images. Idempotent
# and quick when all is in place.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

[ "$(id -u)" -eq 0 ] || { echo "npm test needs root (it starts libvirtd and boots VMs)" >&2; exit 1; }

step() { printf '== %s\n' "$*"; }

step "node-install/install.sh --skip-vmlet --with-test-deps (packages, libvirtd, virtlogd, state dirs, CNI)"
bash node-install/install.sh --skip-vmlet --with-test-deps

# npm ci only when the lockfile changed since the last install (npm writes .package-lock.json last).
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  step "npm ci"
  # shellcheck source=../node-install/lib.sh
  . node-install/lib.sh
  npm_ci
fi

step "npm run build"
npm run build --silent
step "typecheck (src, tests, benches)"
npm run typecheck --silent
step "lint (eslint: src, tests, benches)"
npm run lint --silent
step "depcheck (dependency-cruiser: layers, no import cycles)"
npm run depcheck --silent

step "test images"
bash test/images/build-kernel-guest.sh
# The guest kit sandboxed pods boot from, here rather than in /usr/local/lib/vmlet/guest (what
# install.sh builds without --skip-vmlet): the tests point vmlet's guestKitDir at it.
bash node-install/build-guest-kit.sh .cache/guest-kit
bash test/registry/build-oci-images.sh
