#!/usr/bin/env bash
# The main job: set up, build berth and berth-os, create the machine `dev` with
# the default (libvirt) driver, and talk to it with the docker CLI.
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

"$here/scripts/setup.sh" "$build"

if "$berth" ls -q | grep -qx "$name"; then "$berth" rm -f "$name"; fi
"$berth" create --engine-label purpose=quickstart "$name"
"$berth" ls
eval "$("$berth" env "$name")"
docker version
docker info
echo
echo "Done. Try: eval \"\$($berth env $name)\"; docker info"
echo "Remove it with: $0 --down"
