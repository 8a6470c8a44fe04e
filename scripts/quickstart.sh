#!/usr/bin/env bash
# The main job: set up, build berth and berth-os, create the machine `dev` with
# the default (libvirt) driver, and run a container on it with the docker CLI.
# The machine has no internet here, so busybox is built locally from Debian's
# busybox-static (scripts/make-test-image.sh) and loaded with `docker load`.
# Usage: scripts/quickstart.sh            (as root)
#        scripts/quickstart.sh --down     removes the machine
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${BERTH_BUILD_DIR:-$here/build}
berth="$build/cli/berth"
name=${BERTH_DEMO_NAME:-dev}

if [[ ${1:-} == --down ]]; then
  exec "$berth" rm -f "$name"
fi

# Only what the main job runs: no tests, only berth and berth-agent.
BERTH_CMAKE_ARGS="-DBERTH_TESTS=OFF ${BERTH_CMAKE_ARGS:-}" BERTH_TARGETS="berth berth-agent" \
  "$here/scripts/setup.sh" "$build"

if "$berth" ls -q | grep -qx "$name"; then "$berth" rm -f "$name"; fi
"$berth" create --engine-label purpose=quickstart "$name"
"$berth" ls
eval "$("$berth" env "$name")"
docker version
image="$build/busybox.tar"
"$here/scripts/make-test-image.sh" "$image" busybox:latest
docker load -i "$image"
docker run --rm busybox echo hello from berth
echo
echo "Done. Try: eval \"\$($berth env $name)\"; docker run -it --rm busybox sh"
echo "Remove it with: $0 --down"
