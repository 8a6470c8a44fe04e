#!/usr/bin/env bash
# Builds the Debian package: berth, berth-agent and berth-os, then cpack.
# Usage: scripts/make-deb.sh [BUILDDIR]     (default: build-deb; as root, for berth-os)
# Prints the .deb's path and size. Install it with: apt install ./berth_*.deb
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath -m "${1:-$here/build-deb}")

cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBERTH_TESTS=OFF
"$here/image/build.sh" "$here/image/out"
# The deb target builds berth, berth-agent, the completions and man pages, then runs cpack.
cmake --build "$build" --target deb

deb=$(ls -t "$build"/berth_*_amd64.deb | head -1)
echo "$deb ($(du -h "$deb" | cut -f1), $(stat -c %s "$deb") bytes)"
