# Sourced by the test-image builders (build-kernel-guest.sh, ../registry/build-oci-images.sh).
#
# publish_dir lives in node-install/kit-lib.sh (the guest kit publishes the same way).
# shellcheck source=../../node-install/kit-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../node-install/kit-lib.sh"
