#!/usr/bin/env bash
# The main job: set up, build, make a Docker host with berth and talk to it with docker.
# Until the libvirt driver lands, the host is a throwaway SSH host in its own
# network namespace (scripts/testhost.sh), created with the generic driver.
# Usage: scripts/quickstart.sh            (as root)
#        scripts/quickstart.sh --down     removes the machine and the host
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${BERTH_BUILD_DIR:-$here/build}
berth="$build/cli/berth"
name=${BERTH_DEMO_NAME:-dev}
keydir=${BERTH_DEMO_DIR:-/var/lib/berth-demo}

if [[ ${1:-} == --down ]]; then
  "$berth" rm -f "$name" || true
  "$here/scripts/testhost.sh" down demo || true
  exit 0
fi

"$here/scripts/setup.sh" "$build"

mkdir -p "$keydir" && chmod 700 "$keydir"
[[ -f $keydir/id_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -f "$keydir/id_ed25519"
ip=$("$here/scripts/testhost.sh" up demo 200 "$keydir/id_ed25519.pub")

if "$berth" ls -q | grep -qx "$name"; then "$berth" rm -f "$name"; fi
"$berth" create -d generic --generic-ip-address "$ip" --generic-ssh-key "$keydir/id_ed25519" \
  --engine-label purpose=quickstart "$name"
"$berth" ls
eval "$("$berth" env "$name")"
docker version
docker info
echo
echo "Done. Try: eval \"\$($berth env $name)\"; docker info"
echo "Remove it with: $0 --down"
